/*
 * exec.h: what lib_exec.c offers besides its Lua module.
 */
#ifndef RUNBOOK_EXEC_H
#define RUNBOOK_EXEC_H

#include <stddef.h>

/* Remove ANSI escape sequences from s[0..len) in place and return the new
 * length: CSI (ESC [ params final), string sequences (OSC ESC ], DCS ESC P,
 * SOS, PM, APC) up to BEL or ST (an unterminated one ends at a newline or
 * the end), and two- or three-byte escapes (ESC ( B, ESC =, ESC 7).  A lone
 * ESC is dropped.  Every other byte stays, UTF-8 included. */
size_t rb_exec_strip_ansi(char *s, size_t len);

#endif
