/*
 * operator.c: everything that talks to the person at the keyboard.  Output
 * goes to stdout (stderr for errors); input is read from stdin through the
 * event loop, so a question waits like any other primitive: with a timeout,
 * and Ctrl-C interrupts it.  Policy (what to ask, colours, --yes, answers
 * files) is in stdlib/runbook/ui.lua.
 */
#ifndef RUNBOOK_OPERATOR_H
#define RUNBOOK_OPERATOR_H

#include <stddef.h>

#include <lua.h>

/* Restore the terminal if a secret prompt left echo off (atexit-safe). */
void rb_operator_restore_tty(void);

/* Write s[0..n) to stdout at once, after what stdio holds: one write(2)
 * (more only when the pipe takes part of it); an error is dropped, as
 * operator.write's are. */
void rb_operator_write(const char *s, size_t n);

/* Open the Lua module "runbook.operator": readline, write, ewrite, isatty,
 * username, hostname.  [-0, +1, m] */
int luaopen_runbook_operator(lua_State *L);

#endif
