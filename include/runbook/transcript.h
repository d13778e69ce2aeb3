/*
 * The transcript: JSON Lines, one event a line, hash-chained.
 *
 * A line looks like
 *   {"seq":3,"ts":"2026-11-23T19:03:03.123Z","run":"R","event":"step.start",<fields>,"prev":"<hex>","hash":"<hex>"}
 * where <fields> is the event's own members, already JSON-encoded by the
 * caller ("" for none).  `hash` is the SHA-256, in lower-case hex, of the
 * bytes of `prev` (64 hex digits, or 64 zeros for the first line) followed by
 * the line without its `,"hash":"..."` member (that is, the line up to and
 * including `"prev":"<hex>"`, then a closing `}`).  Each line reaches the
 * file in one write(2) on an O_APPEND descriptor, so a run killed with
 * SIGKILL leaves whole lines only.
 */
#ifndef RUNBOOK_TRANSCRIPT_H
#define RUNBOOK_TRANSCRIPT_H

#include <stddef.h>
#include <lua.h>

#include "runbook/buf.h"

#define RB_HASH_HEX 64

/* The longest line (without its newline) the writer writes and verify,
 * report and --resume read: a longer one is refused, never cut or kept. */
#define RB_TRANSCRIPT_LINE_MAX ((size_t)16 << 20)

/* The most of one transcript that report and --resume hold in memory. */
#define RB_TRANSCRIPT_READ_MAX ((size_t)256 << 20)

typedef struct rb_transcript rb_transcript;

/* Create path (mode 0600, parent directories 0700; fails if it exists) and
 * return a writer for run `run_id`; NULL with a message in err on failure. */
rb_transcript *rb_transcript_open(const char *path, const char *run_id,
                                  char *err, size_t errlen);

/* Append one event; fields_json is "\"k\":v,..." or "".  Returns 0, or -1
 * with errno set (the line is then not written at all; EMSGSIZE: the line
 * would be longer than RB_TRANSCRIPT_LINE_MAX). */
int rb_transcript_append(rb_transcript *t, const char *event,
                         const char *fields_json);

/* fsync the file (step boundaries), unless nothing was written since the
 * last one.  Returns 0 or -1; after an owed fsync failed, -1 with its
 * errno, as every later append. */
int rb_transcript_sync(rb_transcript *t);

/* Owe an fsync: done by rb_transcript_sync, or just before the event loop
 * next blocks (rb_loop_before_block), whichever comes first.  For a line
 * nothing has acted on yet (run.start, the last step's end): it reaches
 * the disk before anything waits, without an fsync of its own when the
 * next sync comes first. */
void rb_transcript_owe(rb_transcript *t);

/* The hash of the last line written (64 zeros before the first). */
const char *rb_transcript_last_hash(const rb_transcript *t);

/* Number of lines written. */
long rb_transcript_seq(const rb_transcript *t);

/* Told, on the writer's thread, of each line once it is in the file: its
 * seq and bytes (without the newline); line NULL once, when the writer
 * closes.  It must not block, nor write to the transcript. */
typedef void (*rb_transcript_tap)(void *ud, long seq, const char *line, size_t len);

/* Set (fn NULL: clear) the one tap of t (src/lib_roompub.c's publisher). */
void rb_transcript_set_tap(rb_transcript *t, rb_transcript_tap fn, void *ud);

/* The file t writes. */
const char *rb_transcript_path(const rb_transcript *t);

/* The writer of the Lua transcript writer at idx, NULL once it is closed
 * (for modules that tap it).  [-0, +0, v] */
rb_transcript *rb_transcript_check(lua_State *L, int idx);

/* Close the file and free the writer; NULL is allowed. */
void rb_transcript_close(rb_transcript *t);

/* The current time as "YYYY-MM-DDTHH:MM:SS.mmmZ" into buf (>= 25 bytes). */
void rb_transcript_timestamp(char *buf, size_t len);

/* SHA-256 of data as lower-case hex into out (RB_HASH_HEX + 1 bytes). */
void rb_sha256_hex(const void *data, size_t len, char *out);

/* What `runbook verify` found. */
typedef struct rb_verify_result {
    long lines;             /* lines that verified */
    long bad_line;          /* 1-based number of the first bad line; 0 if none,
                               or (verify returned 1) the file as a whole */
    char reason[256];       /* why that line is bad */
    char last_hash[RB_HASH_HEX + 1];  /* hash of the last good line */
    int ended;              /* the last good line is a run.end event */
} rb_verify_result;

/* Check every line of the file at path: its hash, its prev against the line
 * before, its seq (1, 2, 3, ...).  Returns 0 when intact, 1 when a line is
 * bad or the file is empty (see res), -1 when the file cannot be read or a
 * line is longer than RB_TRANSCRIPT_LINE_MAX (reason says why).  From Lua,
 * verify(path [, {lines=true, expect=HEX}]) -> ok (nil: unreadable), result
 * (expect_line: the line whose hash is HEX) and, with lines=true, every
 * line read, in the same pass (up to RB_TRANSCRIPT_READ_MAX). */
int rb_transcript_verify(const char *path, rb_verify_result *res);

/* transcript.encode(fields): the members of a JSON object for fields (no
 * braces), every string redacted, credential members as "***", long
 * strings cut, invalid UTF-8 escaped (see include/runbook/redact.h).
 * [-0, +1, m] */
int rb_transcript_encode(lua_State *L);

/* Append those members for the table at idx (nil: none) to b.  Raises on
 * a bad table or out of memory, leaving b to its owner.  [-0, +0, e] */
void rb_transcript_encode_members(lua_State *L, int idx, rb_buf *b);

/* The same in a protected call: the Lua status, the error on the stack
 * when not LUA_OK.  [-0, +(0|1), -] */
int rb_transcript_encode_protected(lua_State *L, int idx, rb_buf *b);

/* Open the Lua module "runbook.transcript": open(path, run_id) -> writer with
 * :event(name, fields) (encodes and appends in one call: true, or nil, why,
 * too_long when the line cannot be written), :append(event, fields_json),
 * :sync(), :owe(), :hash(), :seq(), :path(), :close(); verify(path) -> ok, result
 * table; encode(fields); timestamp(); sha256(s); and, until their callers
 * use runbook.redact, its secret(s), redact(s), line_redactor().  [-0, +1, m] */
int luaopen_runbook_transcript(lua_State *L);

#endif
