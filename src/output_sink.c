/*
 * output_sink.c: a running command's output on the operator's screen.  See
 * exec.h.
 *
 * Each stream is cut into lines (rb_lines); each line is shown without its
 * escapes, redacted, behind its stream's bar, a line longer than the
 * display bound cut with a note; what one chunk shows is one write.  This
 * was Lua (ui.output_sink) at about 1 us a line; here a chunk costs one
 * redaction scan over its lines (rb_redact_needed), and only a chunk with
 * something to hide is redacted line by line.
 *
 * Redaction is line by line, as it was: each line is what rb_redact sees,
 * so a YAML "password: x" is at the start of its line whatever bar is in
 * front of it.  The scan of a whole chunk stands for the scans of its
 * lines: its lines are joined with '\n', and every rule but the PEM block
 * stops at a line's end, so it finds all that any line's scan would (and
 * the PEM case takes the line-by-line path anyway).  A private key's body
 * lines hold nothing a rule could recognise: each stream remembers, as
 * transcript.line_redactor does, that it is inside such a block.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "runbook/exec.h"
#include "runbook/host.h"
#include "runbook/operator.h"

#define SINK_MT "runbook.exec.sink"

/* ---- lines ------------------------------------------------------------ */

void rb_lines_init(rb_lines *l, size_t max)
{
    memset(l, 0, sizeof *l);
    l->max = max;
    rb_buf_init(&l->part, max);
}

void rb_lines_free(rb_lines *l)
{
    rb_buf_free(&l->part);
}

/* More of the current line: the line reaching max is handed over then, and
 * what comes after is only counted. */
static int add(rb_lines *l, const char *s, size_t n, rb_line_fn fn, void *ctx)
{
    if (l->cut) {
        l->hidden += n;
        return 0;
    }
    size_t room = l->max - l->part.len;
    if (n <= room)
        return rb_buf_add(&l->part, s, n);
    if (rb_buf_add(&l->part, s, room) != 0)
        return -1;
    int rc = fn(ctx, l->part.p, l->part.len, 0);
    l->part.len = 0;
    l->cut = 1;
    l->hidden = n - room;
    return rc;
}

/* The end of the current line, whose last bytes are s[0..n). */
static int finish(rb_lines *l, const char *s, size_t n, rb_line_fn fn, void *ctx)
{
    int rc;
    if (l->cut)
        rc = fn(ctx, NULL, 0, l->hidden + n);
    else if (l->part.len == 0 && n <= l->max)
        rc = fn(ctx, s, n, 0);          /* nearly every line: where it lies */
    else if ((rc = add(l, s, n, fn, ctx)) == 0)
        rc = l->cut ? fn(ctx, NULL, 0, l->hidden) : fn(ctx, l->part.p, l->part.len, 0);
    l->part.len = 0;
    l->cut = 0;
    l->hidden = 0;
    return rc;
}

int rb_lines_feed(rb_lines *l, const char *data, size_t n, rb_line_fn fn, void *ctx)
{
    const char *p = data, *end = data + n, *nl;
    while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (finish(l, p, (size_t)(nl - p), fn, ctx) != 0)
            return -1;
        p = nl + 1;
    }
    return p < end ? add(l, p, (size_t)(end - p), fn, ctx) : 0;
}

int rb_lines_flush(rb_lines *l, rb_line_fn fn, void *ctx)
{
    return l->part.len > 0 || l->cut ? finish(l, "", 0, fn, ctx) : 0;
}

/* ---- the sink --------------------------------------------------------- */

/* A line of the chunk being shown: text.p[off..off+len), or a note. */
typedef struct shown {
    size_t off, len, hidden;
    int note;
} shown;

struct rb_sink {
    rb_lines lines[2];
    char *bar[2];
    size_t barlen[2];
    int in_key[2];          /* inside a private key block */
    char *note_on, *note_off;
    size_t max;
    rb_buf text;            /* the chunk's lines, stripped, each ending in \n */
    rb_buf rec;             /* nrec shown records */
    size_t nrec;
    rb_buf out;             /* what the chunk writes */
};

static shown *records(const rb_sink *s)
{
    return (shown *)s->rec.p;
}

/* rb_line_fn: keep a line (stripped of escapes) or a note for render. */
static int collect(void *ctx, const char *line, size_t len, size_t hidden)
{
    rb_sink *s = ctx;
    shown *r = (shown *)rb_buf_reserve(&s->rec, sizeof *r);
    if (r == NULL)
        return -1;
    s->rec.len += sizeof *r;
    r->note = line == NULL;
    r->hidden = hidden;
    r->off = s->text.len;
    r->len = 0;
    if (line != NULL) {
        if (rb_buf_add(&s->text, line, len) != 0)
            return -1;
        r->len = len ? rb_exec_strip_ansi(s->text.p + r->off, len) : 0;    /* text.p may be NULL */
        s->text.len = r->off + r->len;
        if (rb_buf_add(&s->text, "\n", 1) != 0)
            return -1;
    }
    s->nrec++;
    return 0;
}

static int put_redacted(rb_buf *b, const rb_redactor *r, const char *t, size_t n)
{
    if (!rb_redact_needed(r, t, n))
        return rb_buf_add(b, t, n);
    size_t m;
    char *red = rb_redact(r, t, n, &m);
    if (red == NULL)
        return -1;
    int rc = rb_buf_add(b, red, m);
    free(red);
    return rc;
}

/* One line through the stream's key-block state, as transcript.line_redactor
 * does: a block's body is "***" up to the END marker. */
static int put_line_redacted(rb_sink *s, const rb_redactor *r, int stream, const char *t, size_t n)
{
    size_t body = rb_redact_key_line(&s->in_key[stream], t, n);
    if (body && rb_buf_add(&s->out, "***", 3) != 0)
        return -1;
    return put_redacted(&s->out, r, t + body, n - body);
}

static int put_note(rb_sink *s, size_t hidden)
{
    char note[96];
    int k = snprintf(note, sizeof note, "[line cut at %zu bytes: %zu more not shown]", s->max, hidden);
    if (rb_buf_add(&s->out, s->note_on, strlen(s->note_on)) != 0 || rb_buf_add(&s->out, note, (size_t)k) != 0)
        return -1;
    return rb_buf_add(&s->out, s->note_off, strlen(s->note_off));
}

/* Whether lines t[0..n) of stream can be shown as they are: no key block
 * open or starting in them, and nothing any rule or marked secret hides. */
static int nothing_to_hide(const rb_sink *s, const rb_redactor *r, int stream, const char *t, size_t n)
{
    return !s->in_key[stream] &&
        (n == 0 || (!memmem(t, n, "-----BEGIN ", 11) && !rb_redact_needed(r, t, n)));
}

/* Forget the lines collected from the chunk. */
static void forget(rb_sink *s)
{
    s->nrec = 0;
    s->rec.len = 0;
    s->text.len = 0;
}

/* Add the lines collected from stream to what the chunk writes, and
 * forget them. */
static int render(rb_sink *s, const rb_redactor *r, int stream)
{
    int rc = 0;
    int plain = nothing_to_hide(s, r, stream, s->text.p, s->text.len);
    for (size_t i = 0; i < s->nrec && rc == 0; i++) {
        const shown *l = &records(s)[i];
        rc = rb_buf_add(&s->out, s->bar[stream], s->barlen[stream]);
        if (rc == 0 && l->note)
            rc = put_note(s, l->hidden);
        else if (rc == 0 && plain)
            rc = rb_buf_add(&s->out, s->text.p + l->off, l->len);
        else if (rc == 0)
            rc = put_line_redacted(s, r, stream, s->text.p + l->off, l->len);
        if (rc == 0)
            rc = rb_buf_add(&s->out, "\n", 1);
    }
    forget(s);
    return rc;
}

/* data[0..n) through the line cutter into lines, then rendered. */
static int collect_and_render(rb_sink *s, const rb_redactor *r, int stream, const char *data, size_t n)
{
    if (n > 0 && rb_lines_feed(&s->lines[stream], data, n, collect, s) != 0) {
        forget(s);
        return -1;
    }
    return render(s, r, stream);
}

/* What the chunk rendered, in one write. */
static void emit(rb_sink *s)
{
    if (s->out.len > 0)
        rb_operator_write(s->out.p, s->out.len);
    s->out.len = 0;
}

/* Whole lines shown as they lie, without collecting them: data[0..n)
 * starts a line, and show_plain is used only when no line is too long,
 * there is no escape, no key block is open and nothing in the lines is to
 * be hidden (what render would find plain).  *shown is how much of data
 * that was, the whole lines (0: they take the general path); -1 when out
 * of memory. */
static int show_plain(rb_sink *s, const rb_redactor *r, int stream, const char *data, size_t n,
                      size_t *shown)
{
    *shown = 0;
    if (n == 0 || n > s->max || memchr(data, 0x1b, n))
        return 0;
    const char *last = memrchr(data, '\n', n);
    size_t whole = last ? (size_t)(last - data) + 1 : 0;
    if (whole == 0 || !nothing_to_hide(s, r, stream, data, whole))
        return 0;
    for (const char *p = data, *end = data + whole, *nl; p < end; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (rb_buf_add(&s->out, s->bar[stream], s->barlen[stream]) != 0 ||
            rb_buf_add(&s->out, p, (size_t)(nl - p) + 1) != 0)
            return -1;
    }
    *shown = whole;
    return 0;
}

/* A chunk: the end of a line carried over from the last one goes the
 * general way; then nearly always the chunk's whole lines go plain; what
 * is left (a line to be continued, or lines with something to hide or
 * cut) goes the general way. */
int rb_sink_feed(rb_sink *s, const rb_redactor *r, int stream, const char *data, size_t n)
{
    const rb_lines *l = &s->lines[stream];
    size_t first = 0, shown;
    if (l->part.len || l->cut) {
        const char *nl = memchr(data, '\n', n);
        first = nl ? (size_t)(nl - data) + 1 : n;
    }
    s->out.len = 0;
    int rc = collect_and_render(s, r, stream, data, first);
    if (rc == 0)
        rc = show_plain(s, r, stream, data + first, n - first, &shown);
    if (rc == 0)
        rc = collect_and_render(s, r, stream, data + first + shown, n - first - shown);
    if (rc == 0)
        emit(s);
    return rc;
}

static int sink_flush(rb_sink *s, const rb_redactor *r)
{
    for (int i = 0; i < 2; i++) {
        s->out.len = 0;
        if (rb_lines_flush(&s->lines[i], collect, s) != 0 || render(s, r, i) != 0)
            return -1;
        emit(s);
    }
    return 0;
}

/* ---- Lua -------------------------------------------------------------- */

static int l_sink_gc(lua_State *L)
{
    rb_sink *s = luaL_checkudata(L, 1, SINK_MT);
    for (int i = 0; i < 2; i++) {
        rb_lines_free(&s->lines[i]);
        free(s->bar[i]);
        s->bar[i] = NULL;
    }
    free(s->note_on);
    free(s->note_off);
    rb_buf_free(&s->text);
    rb_buf_free(&s->out);
    rb_buf_free(&s->rec);
    memset(s, 0, sizeof *s);
    return 0;
}

static int stream_arg(lua_State *L, int arg)
{
    static const char *const names[] = { "stdout", "stderr", NULL };
    return luaL_checkoption(L, arg, NULL, names);
}

/* feed(stream, chunk); upvalue 1 is the sink. */
static int l_feed(lua_State *L)
{
    rb_sink *s = luaL_checkudata(L, lua_upvalueindex(1), SINK_MT);
    int stream = stream_arg(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    if (rb_sink_feed(s, rb_redactor_of(L), stream, data, n) != 0)
        return luaL_error(L, "exec: out of memory showing output");
    return 0;
}

static int l_flush(lua_State *L)
{
    rb_sink *s = luaL_checkudata(L, lua_upvalueindex(1), SINK_MT);
    if (sink_flush(s, rb_redactor_of(L)) != 0)
        return luaL_error(L, "exec: out of memory showing output");
    return 0;
}

rb_sink *rb_sink_of(lua_State *L, int idx)
{
    if (lua_tocfunction(L, idx) != l_feed || lua_getupvalue(L, idx, 1) == NULL)
        return NULL;
    rb_sink *s = luaL_testudata(L, -1, SINK_MT);
    lua_pop(L, 1);
    return s;
}

/* A malloc'ed copy of the string field name of the table at idx (or of
 * sub[i] when i > 0); "" when absent. */
static char *string_field(lua_State *L, int idx, const char *name, lua_Integer i)
{
    int t = lua_getfield(L, idx, name);
    if (i > 0 && t == LUA_TTABLE)
        lua_geti(L, -1, i);
    else if (i > 0)
        lua_pushnil(L);
    size_t n = 0;
    const char *v = lua_isnil(L, -1) ? "" : lua_tolstring(L, -1, &n);
    if (v == NULL)
        luaL_error(L, "exec.sink: %s must be a string", name);
    char *copy = malloc(n + 1);
    if (copy != NULL) {
        memcpy(copy, v, n);
        copy[n] = '\0';
    }
    lua_pop(L, i > 0 ? 2 : 1);
    return copy;
}

int rb_exec_sink_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "line_max");
    lua_Integer max = luaL_optinteger(L, -1, 64 * 1024);
    luaL_argcheck(L, max >= 1, 1, "line_max must be at least 1");
    lua_pop(L, 1);
    rb_sink *s = lua_newuserdatauv(L, sizeof *s, 0);     /* closed until filled */
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, SINK_MT);
    int ud = lua_gettop(L);
    s->max = (size_t)max;
    rb_lines_init(&s->lines[0], s->max);
    rb_lines_init(&s->lines[1], s->max);
    s->bar[0] = string_field(L, 1, "stdout", 0);
    s->bar[1] = string_field(L, 1, "stderr", 0);
    s->note_on = string_field(L, 1, "note", 1);
    s->note_off = string_field(L, 1, "note", 2);
    if (!s->bar[0] || !s->bar[1] || !s->note_on || !s->note_off)
        return luaL_error(L, "exec.sink: out of memory");
    s->barlen[0] = strlen(s->bar[0]);
    s->barlen[1] = strlen(s->bar[1]);
    lua_pushvalue(L, ud);
    lua_pushcclosure(L, l_feed, 1);
    lua_pushvalue(L, ud);
    lua_pushcclosure(L, l_flush, 1);
    return 2;
}

void rb_exec_sink_class(lua_State *L)
{
    rb_class(L, SINK_MT, l_sink_gc, NULL, NULL);
}
