/*
 * The answers file (--answers FILE).  See answers.h for the format.
 *
 * The whole text is kept in one buffer and split in place, so a line's step,
 * question and answer are pointers into it and freeing is one call.  Cursors
 * (how far each step/question pair has got) are created only for pairs that
 * have more than one matching line, since only those ever advance.
 */
#include "runbook/host.h"
#include "runbook/answers.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ANSWERS_MT "runbook.answers.file"

struct line {
    const char *step;           /* NULL: any step */
    const char *question;
    const char *answer;
};

struct cursor {
    char *step;                 /* the step asked for, owned; NULL: none */
    const char *question;       /* points into the buffer */
    int next;                   /* ordinal among the matching lines */
};

struct rb_answers {
    char *buf;
    struct line *lines;
    int n, cap;
    struct cursor *cursors;
    int ncur, capcur;
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Trims in place; `\r` counts as blank so CRLF files need no special case. */
static char *trim(char *s)
{
    while (is_blank(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && is_blank(s[n - 1]))
        s[--n] = 0;
    return s;
}

/* The last " = " in a trimmed line.  Trimming has eaten the blank after a
 * final " =" or before a leading "= ", so those count too: "q =" has an empty
 * answer and "= a" an empty question, rather than no separator at all. */
static char *last_separator(char *s)
{
    for (size_t i = strlen(s); i-- > 0;)
        if (s[i] == '=' && (i == 0 || s[i - 1] == ' ')
            && (s[i + 1] == ' ' || s[i + 1] == 0))
            return s + i;
    return NULL;
}

static int add_line(rb_answers *a, const char *step, const char *q,
                    const char *ans)
{
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 16;
        struct line *l = realloc(a->lines, (size_t)cap * sizeof *l);
        if (!l)
            return -1;
        a->lines = l;
        a->cap = cap;
    }
    a->lines[a->n++] = (struct line){ step, q, ans };
    return 0;
}

/* Parses one line (already NUL-terminated); returns 0, or -1 with `why`. */
static int parse_line(rb_answers *a, char *s, const char **why)
{
    const char *step = NULL;
    s = trim(s);
    if (*s == 0 || *s == '#')
        return 0;
    if (*s == '[') {
        char *close = strchr(s, ']');
        if (!close)
            return *why = "missing ']' after step id", -1;
        *close = 0;
        step = trim(s + 1);
        if (*step == 0)
            return *why = "empty step id (use [*] for any step)", -1;
        if (!strcmp(step, "*"))
            step = NULL;
        s = trim(close + 1);
    }
    char *sep = last_separator(s);
    if (!sep)
        return *why = "expected 'question = answer'", -1;
    *sep = 0;
    const char *q = trim(s), *ans = trim(sep + 1);
    if (*q == 0)
        return *why = "empty question before ' = '", -1;
    if (add_line(a, step, q, ans) < 0)
        return *why = "out of memory", -1;
    return 0;
}

rb_answers *rb_answers_parse(const char *name, const char *text,
                             char *err, size_t errlen)
{
    rb_answers *a = calloc(1, sizeof *a);
    if (!a || !(a->buf = strdup(text))) {
        seterr(err, errlen, "%s: out of memory", name);
        free(a);
        return NULL;
    }
    char *p = a->buf;
    if (!strncmp(p, "\xEF\xBB\xBF", 3))   /* editors on Windows add a BOM */
        p += 3;
    for (int lineno = 1; p; lineno++) {
        char *nl = strchr(p, '\n');
        const char *why = NULL;
        if (nl)
            *nl = 0;
        if (strlen(p) > RB_ANSWERS_LINE_MAX)
            why = "line longer than 64 KiB, the bound for an answers-file line";
        if (why || parse_line(a, p, &why) < 0) {
            seterr(err, errlen, "%s:%d: %s", name, lineno, why);
            rb_answers_free(a);
            return NULL;
        }
        p = nl ? nl + 1 : NULL;
    }
    return a;
}

/* Reads until EOF rather than trusting the size, so `--answers <(...)` and
 * /dev/stdin work, but never past the bound: /dev/zero or a FIFO that never
 * ends would otherwise take all memory.  Returns a NUL-terminated buffer,
 * or NULL with errno (EFBIG: over RB_ANSWERS_FILE_MAX). */
static char *slurp(FILE *f, size_t *len)
{
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n > RB_ANSWERS_FILE_MAX) {
            free(buf);
            errno = EFBIG;
            return NULL;
        }
        if (cap - n - 1 == 0) {
            char *b = realloc(buf, cap *= 2);
            if (!b)
                free(buf);
            buf = b;
        }
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = 0;
    *len = n;
    return buf;
}

rb_answers *rb_answers_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        seterr(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t len;
    char *text = slurp(f, &len);
    int saved = errno;
    fclose(f);
    if (!text && saved == EFBIG) {
        seterr(err, errlen, "%s: larger than %zu KiB, the bound for an answers file "
               "(is it the right file?)", path, RB_ANSWERS_FILE_MAX >> 10);
        return NULL;
    }
    if (!text) {
        seterr(err, errlen, "%s: %s", path, strerror(saved));
        return NULL;
    }
    rb_answers *a = NULL;
    if (memchr(text, 0, len))
        seterr(err, errlen, "%s: contains a NUL byte (not a text file?)", path);
    else
        a = rb_answers_parse(path, text, err, errlen);
    free(text);
    return a;
}

static int same(const char *x, const char *y)
{
    return x == y || (x && y && !strcmp(x, y));
}

/* `step` NULL selects the any-step lines, else that step's own lines. */
static int candidate(const struct line *l, const char *step, const char *q)
{
    return same(l->step, step) && !strcmp(l->question, q);
}

static int has_specific(const rb_answers *a, const char *step, const char *q)
{
    for (int i = 0; step && i < a->n; i++)
        if (candidate(&a->lines[i], step, q))
            return 1;
    return 0;
}

/* The k-th candidate line, or -1; *more says whether another follows. */
static int pick(const rb_answers *a, const char *step, const char *q, int k,
                int *more)
{
    int hit = -1, seen = 0;
    *more = 0;
    for (int i = 0; i < a->n; i++) {
        if (!candidate(&a->lines[i], step, q))
            continue;
        if (hit >= 0) {
            *more = 1;
            break;
        }
        if (seen++ == k)
            hit = i;
    }
    return hit;
}

static struct cursor *find_cursor(rb_answers *a, const char *step,
                                  const char *q)
{
    for (int i = 0; i < a->ncur; i++)
        if (same(a->cursors[i].step, step) && !strcmp(a->cursors[i].question, q))
            return &a->cursors[i];
    return NULL;
}

/* `q` must point into the buffer: the cursor keeps it. */
static struct cursor *new_cursor(rb_answers *a, const char *step,
                                 const char *q)
{
    if (a->ncur == a->capcur) {
        int cap = a->capcur ? 2 * a->capcur : 8;
        struct cursor *c = realloc(a->cursors, (size_t)cap * sizeof *c);
        if (!c)
            return NULL;
        a->cursors = c;
        a->capcur = cap;
    }
    char *s = step ? strdup(step) : NULL;
    if (step && !s)
        return NULL;
    a->cursors[a->ncur] = (struct cursor){ s, q, 0 };
    return &a->cursors[a->ncur++];
}

const char *rb_answers_next(rb_answers *a, const char *step_id,
                            const char *question)
{
    if (!a || !question)
        return NULL;
    const char *from = has_specific(a, step_id, question) ? step_id : NULL;
    struct cursor *c = find_cursor(a, step_id, question);
    int more, hit = pick(a, from, question, c ? c->next : 0, &more);
    if (hit < 0)
        return NULL;
    if (more && !c)
        c = new_cursor(a, step_id, a->lines[hit].question);
    if (more && c)    /* without memory for a cursor, repeating is the safe fallback */
        c->next++;
    return a->lines[hit].answer;
}

int rb_answers_count(const rb_answers *a)
{
    return a ? a->n : 0;
}

void rb_answers_free(rb_answers *a)
{
    if (!a)
        return;
    for (int i = 0; i < a->ncur; i++)
        free(a->cursors[i].step);
    free(a->cursors);
    free(a->lines);
    free(a->buf);
    free(a);
}

/* Lua binding: a full userdata holding the rb_answers pointer. */

static rb_answers *check_open(lua_State *L)
{
    rb_answers **h = luaL_checkudata(L, 1, ANSWERS_MT);
    luaL_argcheck(L, *h != NULL, 1, "answers file is closed");
    return *h;
}

static int l_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char err[512];
    rb_answers **h = lua_newuserdatauv(L, sizeof *h, 0);
    *h = NULL;
    luaL_setmetatable(L, ANSWERS_MT);
    *h = rb_answers_load(path, err, sizeof err);
    if (!*h)
        return luaL_error(L, "%s", err);
    return 1;
}

static int l_next(lua_State *L)
{
    rb_answers *a = check_open(L);
    const char *step = luaL_optstring(L, 2, NULL);
    const char *ans = rb_answers_next(a, step, luaL_checkstring(L, 3));
    if (ans)
        lua_pushstring(L, ans);
    else
        lua_pushnil(L);
    return 1;
}

static int l_count(lua_State *L)
{
    lua_pushinteger(L, rb_answers_count(check_open(L)));
    return 1;
}

/* __gc and __close: clear the pointer first so a second close is a no-op. */
static int l_close(lua_State *L)
{
    rb_answers **h = luaL_checkudata(L, 1, ANSWERS_MT);
    rb_answers *a = *h;
    *h = NULL;
    rb_answers_free(a);
    return 0;
}

static const luaL_Reg methods[] = {
    { "next", l_next },
    { "count", l_count },
    { NULL, NULL },
};

static const luaL_Reg funcs[] = {
    { "load", l_load },
    { NULL, NULL },
};

int luaopen_runbook_answers(lua_State *L)
{
    rb_class(L, ANSWERS_MT, l_close, NULL, methods);
    luaL_newlib(L, funcs);
    return 1;
}
