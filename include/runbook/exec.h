/*
 * exec.h: what lib_exec.c and output_sink.c offer besides the Lua module.
 */
#ifndef RUNBOOK_EXEC_H
#define RUNBOOK_EXEC_H

#include <stddef.h>

#include <lua.h>

#include "runbook/buf.h"
#include "runbook/redact.h"

/* Remove ANSI escape sequences from s[0..len) in place and return the new
 * length: CSI (ESC [ params final), string sequences (OSC ESC ], DCS ESC P,
 * SOS, PM, APC) up to BEL or ST (an unterminated one ends at a newline or
 * the end), and two- or three-byte escapes (ESC ( B, ESC =, ESC 7).  A lone
 * ESC is dropped.  Every other byte stays, UTF-8 included. */
size_t rb_exec_strip_ansi(char *s, size_t len);

/* ---- one stream cut into lines (output_sink.c) ------------------------
 * Linear in what arrives: a chunk is cut at its newlines; a line that
 * arrives whole in one chunk is handed over where it lies; a partial line
 * waits in a buffer of at most `max` bytes.  A line longer than max is
 * handed over cut, its first max bytes as soon as they are there; when it
 * ends, the count of the bytes past them follows. */
typedef struct rb_lines {
    size_t max;
    rb_buf part;        /* the current line so far, at most max bytes */
    size_t hidden;      /* bytes of the current line past max */
    int cut;            /* the current line passed max: its head was given */
} rb_lines;

/* What a splitter hands over: line[0..len) to show, or (line NULL) the end
 * of a cut line, hidden bytes of which were not shown.  Returns 0, or -1
 * to stop (out of memory). */
typedef int (*rb_line_fn)(void *ctx, const char *line, size_t len, size_t hidden);

void rb_lines_init(rb_lines *l, size_t max);
void rb_lines_free(rb_lines *l);
/* Cut data[0..n) into lines for fn.  Returns 0, or -1 (out of memory, or
 * fn said stop). */
int rb_lines_feed(rb_lines *l, const char *data, size_t n, rb_line_fn fn, void *ctx);
/* The last line, when one is pending without its newline.  Returns 0 or -1. */
int rb_lines_flush(rb_lines *l, rb_line_fn fn, void *ctx);

/* ---- a command's output shown to the operator (output_sink.c) --------- */
typedef struct rb_sink rb_sink;

/* The sink whose feed function is the value at idx (what exec.sink
 * returned as feed), or NULL.  [-0, +0, -] */
rb_sink *rb_sink_of(lua_State *L, int idx);

/* Show chunk data[0..n) of stream 0 (stdout) or 1 (stderr): its whole
 * lines without escapes, redacted by r, behind the stream's bar, in one
 * write.  Returns 0, or -1 when out of memory. */
int rb_sink_feed(rb_sink *s, const rb_redactor *r, int stream, const char *data, size_t n);

/* exec.sink{stdout=BAR, stderr=BAR, line_max=N, note={ON, OFF}} -> feed,
 * flush: feed(stream, chunk) shows a chunk, flush() the last partial lines.
 * [-1, +2, m] */
int rb_exec_sink_new(lua_State *L);

/* Register the sink's metatable (luaopen_runbook_exec).  [-0, +0, m] */
void rb_exec_sink_class(lua_State *L);

#endif
