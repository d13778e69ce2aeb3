/*
 * transcript_encode.c: a Lua table -> the members of a JSON object, for
 * transcript events, in one C walk.
 *
 * Every string value is redacted on the way (src/redact.c: the state's
 * secrets, secret-named keys, token shapes, URL passwords), a string or
 * number under a secret-named member (Authorization, Set-Cookie, password,
 * DB_PASSWORD, apiKey, ...) is written as "***" whatever it holds, and so
 * is the element after a secret flag in an array (an argv's "--password",
 * "VALUE").  Long strings are cut, bytes that are not UTF-8 are escaped so
 * every line stays valid JSON, and keys (which are the host's own, or
 * variable names) are written as they are.  Doing this in Lua cost a deep
 * copy per event (about 9 us of the 11 us an event took).
 *
 * The members are appended to an rb_buf the caller owns and frees even
 * when the walk raises (out of memory, a __tostring that fails): the
 * transcript's writer runs it in a protected call (src/transcript.c).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>

#include "runbook/buf.h"
#include "runbook/redact.h"
#include "runbook/transcript.h"

#define MAX_STRING (64 * 1024)
#define MAX_DEPTH 8

typedef rb_buf out;

static void out_of_memory(lua_State *L)
{
    luaL_error(L, "transcript: out of memory");
}

static inline void put(lua_State *L, out *o, const char *s, size_t n)
{
    if (rb_buf_add(o, s, n) != 0)
        out_of_memory(L);
}

/* One byte: the punctuation of every member, so stored in place when
 * there is room rather than through a copy of one byte. */
static inline void putc_(lua_State *L, out *o, char c)
{
    if (o->len < o->cap)
        o->p[o->len++] = c;
    else
        put(L, o, &c, 1);
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (n == 0 || n > left || s[0] >= 0xf8)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* The bytes that are copied as they are (printable ASCII but the quote
 * and the backslash): one lookup a byte in the loop below. */
static const unsigned char PLAIN[256] = {
    [' '] = 1, ['!'] = 1, ['#' ... '['] = 1, [']' ... '~'] = 1,
};

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
#define HAS_ZERO(v) (((v) - ONES) & ~(v) & HIGHS)

/* The end of the run of plain bytes from i, eight at a time while a word
 * holds no byte under ' ', over '~', '"' or '\\' (the tests are exact: a
 * word they pass is plain), then one at a time. */
static size_t plain_run(const unsigned char *u, size_t i, size_t len)
{
    for (uint64_t x; i + 8 <= len; i += 8) {
        memcpy(&x, u + i, 8);
        if (((x - 0x20 * ONES) & ~x & HIGHS) | (x & HIGHS) | HAS_ZERO(x ^ ('"' * ONES)) |
            HAS_ZERO(x ^ ('\\' * ONES)) | HAS_ZERO(x ^ (0x7f * ONES)))
            break;
    }
    while (i < len && PLAIN[u[i]])
        i++;
    return i;
}

/* s as a JSON string: runs of plain bytes are copied whole; quotes,
 * backslashes, control bytes and bytes that are not UTF-8 are escaped. */
static void put_escaped(lua_State *L, out *o, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    char esc[8];
    size_t plain = 0;           /* start of the run not yet copied */
    putc_(L, o, '"');
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        size_t n;
        if (PLAIN[c]) {
            i = plain_run(u, i + 1, len);
            continue;
        }
        if (c >= 0x80 && (n = utf8_seq(u + i, len - i)) > 0) {
            i += n;
            continue;
        }
        put(L, o, s + plain, i - plain);
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(L, o, esc, 2);
        } else {
            snprintf(esc, sizeof esc, "\\u%04x", c);     /* control byte, or Latin-1 */
            put(L, o, esc, 6);
        }
        plain = ++i;
    }
    put(L, o, s + plain, len - plain);
    putc_(L, o, '"');
}

/*
 * A string over MAX_STRING is recorded cut, so only its head is redacted:
 * a prefix that ends at a line's end, long enough that its redaction holds
 * MAX_STRING bytes plus three times CUT_MARGIN (a hidden byte shows as up
 * to three).  Every rule but the PEM block and the run's secret values
 * stops at a line's end, so the prefix's redaction is the whole string's
 * but for its last CUT_MARGIN bytes (a secret value up to that long that
 * straddles the prefix's end; a PEM body runs to the prefix's end), which
 * are never kept.  A 32 MiB stdout costs a scan of about 1 MiB, not of 32.
 * The note counts the redacted prefix's bytes past MAX_STRING and the
 * unscanned rest as it is.
 */
#define CUT_MARGIN (256 * 1024)

/* The margin: CUT_MARGIN, or more when a run secret is longer than that
 * (a marked PEM bundle, a 1 MB secret output), so no secret can straddle
 * the end of the scanned head unseen. */
static size_t cut_margin(const rb_redactor *r)
{
    size_t longest = rb_redactor_longest(r) + 1;
    return longest > CUT_MARGIN ? longest : CUT_MARGIN;
}

/* The end of the first line that ends at or after want, or len. */
static size_t line_end_after(const char *s, size_t len, size_t want)
{
    if (want >= len)
        return len;
    const char *nl = memchr(s + want, '\n', len - want);
    return nl ? (size_t)(nl - s) + 1 : len;
}

/* s redacted (malloc'ed, its length in *n), through at least enough of
 * it to keep MAX_STRING bytes; *end is how much of s was redacted. */
static char *redact_head(lua_State *L, rb_redactor *r, const char *s, size_t len, size_t *n,
                         size_t *end)
{
    size_t margin = cut_margin(r);
    size_t want = MAX_STRING + 4 * margin;
    for (;;) {
        *end = line_end_after(s, len, want);
        char *red = rb_redact(r, s, *end, n);
        if (red == NULL)
            luaL_error(L, "transcript: out of memory");
        if (*end == len || *n >= MAX_STRING + 3 * margin)
            return red;
        free(red);          /* the head hid more than it kept: take more */
        want *= 2;
    }
}

static void put_string(lua_State *L, out *o, rb_redactor *r, const char *s, size_t len)
{
    size_t n, end;
    if (len <= MAX_STRING && !rb_redact_needed(r, s, len)) {
        put_escaped(L, o, s, len);      /* the common case: nothing to hide */
        return;
    }
    char *red = len <= MAX_STRING ? rb_redact(r, s, len, &n) : redact_head(L, r, s, len, &n, &end);
    if (red == NULL)
        luaL_error(L, "transcript: out of memory");
    if (len <= MAX_STRING)
        end = len;
    if (n > MAX_STRING) {
        char note[64];
        put_escaped(L, o, red, MAX_STRING);
        o->len--;       /* reopen the string to add the note */
        int k = snprintf(note, sizeof note, "... [%zu bytes cut]\"", n - MAX_STRING + (len - end));
        put(L, o, note, (size_t)k);
    } else {
        put_escaped(L, o, red, n);
    }
    free(red);
}

/* A member whose name says it holds a credential: its string or number
 * value is hidden whole, and so are those of an array under it (several
 * Set-Cookie headers).  A map under it is still walked (a "credentials"
 * table's user stays visible), and booleans stay (an option secret = true). */
static int is_credential_key(lua_State *L, int kidx)
{
    size_t klen;

    if (lua_type(L, kidx) != LUA_TSTRING)
        return 0;
    const char *key = lua_tolstring(L, kidx, &klen);
    /* "auth" alone is the host's own member saying how a login went
     * (ssh's "agent key ..."), not a credential */
    return rb_redact_secret_name(key, klen) && !(klen == 4 && strcasecmp(key, "auth") == 0);
}

static int is_scalar(lua_State *L, int idx)
{
    int t = lua_type(L, idx);
    return t == LUA_TSTRING || t == LUA_TNUMBER;
}

static void put_value(lua_State *L, out *o, rb_redactor *r, int idx, int depth);

/* A table with keys 1..n and nothing else is an array (n > 0). */
static int is_array(lua_State *L, int idx)
{
    lua_Unsigned n = lua_rawlen(L, idx);
    lua_Unsigned count = 0;
    if (n == 0)
        return 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (++count > n) {
            lua_pop(L, 1);
            return 0;
        }
    }
    return count == n;
}

static void put_key(lua_State *L, out *o, int kidx)
{
    if (lua_type(L, kidx) == LUA_TSTRING) {
        size_t n;
        const char *k = lua_tolstring(L, kidx, &n);
        put_escaped(L, o, k, n);
    } else {
        lua_pushvalue(L, kidx);     /* never convert the key lua_next uses */
        size_t n;
        const char *k = luaL_tolstring(L, -1, &n);
        put_escaped(L, o, k, n);
        lua_pop(L, 2);
    }
}

/* The string at idx with its bytes from keep on written as "***" (keep is
 * at most its length), the kept part redacted like any string. */
static void put_kept(lua_State *L, out *o, rb_redactor *r, int idx, int depth, size_t keep)
{
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (keep > n)
        keep = n;
    lua_pushlstring(L, s, keep);
    lua_pushliteral(L, "***");
    lua_concat(L, 2);
    put_value(L, o, r, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
}

/* What element i of an argv whose program is prog (NULL when the first
 * element is not a string) hides, given what the element before said. */
static rb_argv_secret argv_rule(lua_State *L, const char *prog, size_t pn, int idx)
{
    size_t an;
    if (prog == NULL || lua_type(L, idx) != LUA_TSTRING)
        return RB_ARGV_NONE;
    const char *a = lua_tolstring(L, idx, &an);
    if (rb_redact_secret_flag(a, an))
        return RB_ARGV_NEXT;
    return rb_redact_argv(prog, pn, a, an);
}

/* One element of an array; pending is what the element before hides of it. */
static void put_element(lua_State *L, out *o, rb_redactor *r, int idx, int depth, int hide,
                        rb_argv_secret pending, rb_argv_secret own)
{
    if ((hide || pending == RB_ARGV_NEXT) && is_scalar(L, idx)) {
        put(L, o, "\"***\"", 5);
    } else if (pending == RB_ARGV_NEXT_PASSWORD && lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx), *colon = strchr(s, ':');
        put_kept(L, o, r, idx, depth, colon ? (size_t)(colon - s) + 1 : lua_rawlen(L, idx));
    } else if (own == RB_ARGV_AFTER_FLAG) {
        put_kept(L, o, r, idx, depth, 2);
    } else {
        put_value(L, o, r, idx, depth + 1);
    }
}

/* An array: an argv's secrets are found element by element (the flag
 * before a value, the program the flag belongs to). */
static void put_array(lua_State *L, out *o, rb_redactor *r, int idx, int depth, int hide)
{
    lua_Unsigned n = lua_rawlen(L, idx);
    rb_argv_secret pending = RB_ARGV_NONE;
    size_t pn = 0;
    lua_rawgeti(L, idx, 1);
    const char *prog = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &pn) : NULL;
    putc_(L, o, '[');       /* the program stays on the stack while prog is used */
    for (lua_Unsigned i = 1; i <= n; i++) {
        if (i > 1)
            putc_(L, o, ',');
        lua_rawgeti(L, idx, (lua_Integer)i);
        int top = lua_gettop(L);
        rb_argv_secret own = argv_rule(L, prog, pn, top);
        put_element(L, o, r, top, depth, hide, pending, own);
        if (own == RB_ARGV_PROGRAM) {
            lua_replace(L, top - 1);    /* keep the new program where the old one was */
            lua_rawgeti(L, idx, (lua_Integer)i);
            prog = lua_tolstring(L, top - 1, &pn);
        }
        pending = own == RB_ARGV_AFTER_FLAG || own == RB_ARGV_PROGRAM ? RB_ARGV_NONE : own;
        lua_pop(L, 1);
    }
    putc_(L, o, ']');
    lua_pop(L, 1);
}

/* hide: the table is an array under a credential member. */
static void put_table(lua_State *L, out *o, rb_redactor *r, int idx, int depth, int hide)
{
    if (is_array(L, idx)) {
        put_array(L, o, r, idx, depth, hide);
        return;
    }
    putc_(L, o, '{');
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int vt = lua_type(L, -1);
        if (vt != LUA_TFUNCTION && vt != LUA_TTHREAD) {
            if (!first)
                putc_(L, o, ',');
            first = 0;
            put_key(L, o, lua_gettop(L) - 1);
            putc_(L, o, ':');
            int top = lua_gettop(L), secret = is_credential_key(L, top - 1);
            if (secret && is_scalar(L, top))
                put(L, o, "\"***\"", 5);
            else if (secret && vt == LUA_TTABLE && depth + 1 < MAX_DEPTH && is_array(L, top))
                put_table(L, o, r, top, depth + 1, 1);
            else
                put_value(L, o, r, top, depth + 1);
        }
        lua_pop(L, 1);
    }
    putc_(L, o, '}');
}

/* A float that is a whole number of microseconds under 10^8 s (what
 * api.call makes of a call's duration) in fixed notation, digits by hand:
 * %.14g costs a call event more than the rest of its numbers together.
 * n / 10^6 is the double nearest the decimal written, so the text reads
 * back as the same double; %.14g would print the same digits (in
 * exponent form under 10^-4).  Returns 0 for any other float. */
static int put_micros(lua_State *L, out *o, double d)
{
    char num[32], *p = num + sizeof num;
    if (!(d > -1e8 && d < 1e8))
        return 0;
    long long n = llround(fabs(d) * 1e6);
    if ((double)n / 1e6 != fabs(d))
        return 0;
    long long whole = n / 1000000;
    int frac = (int)(n % 1000000), digits = 6;
    for (; frac != 0 && frac % 10 == 0; frac /= 10)
        digits--;
    if (frac != 0) {
        for (int i = 0; i < digits; i++, frac /= 10)
            *--p = (char)('0' + frac % 10);
        *--p = '.';
    }
    do
        *--p = (char)('0' + whole % 10);
    while ((whole /= 10) != 0);
    if (d < 0)
        *--p = '-';
    put(L, o, p, (size_t)(num + sizeof num - p));
    return 1;
}

static void put_number(lua_State *L, out *o, int idx)
{
    char num[64];
    int k;
    if (lua_isinteger(L, idx)) {
        if (rb_buf_int(o, lua_tointeger(L, idx)) != 0)
            out_of_memory(L);
        return;
    } else {
        double d = lua_tonumber(L, idx);
        if (put_micros(L, o, d))
            return;
        if (!isfinite(d))
            k = snprintf(num, sizeof num, "\"%s\"", isnan(d) ? "nan" : d > 0 ? "inf" : "-inf");
        else
            k = snprintf(num, sizeof num, "%.14g", d);
    }
    put(L, o, num, (size_t)k);
}

static void put_value(lua_State *L, out *o, rb_redactor *r, int idx, int depth)
{
    size_t n;
    const char *s;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &n);
        put_string(L, o, r, s, n);
        break;
    case LUA_TNUMBER:
        put_number(L, o, idx);
        break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            put(L, o, "true", 4);
        else
            put(L, o, "false", 5);
        break;
    case LUA_TNIL:
        put(L, o, "null", 4);
        break;
    default:
        if (lua_type(L, idx) == LUA_TTABLE && depth < MAX_DEPTH) {
            luaL_checkstack(L, 6, "transcript: table too deep");
            put_table(L, o, r, idx, depth, 0);
            break;
        }
        s = luaL_tolstring(L, idx, &n);     /* a function, or too deep: its name */
        put_string(L, o, r, s, n);
        lua_pop(L, 1);
        break;
    }
}

void rb_transcript_encode_members(lua_State *L, int idx, rb_buf *b)
{
    if (lua_isnoneornil(L, idx))
        return;
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    size_t start = b->len;
    put_table(L, b, rb_redactor_of(L), idx, 0, 0);
    if (b->p[start] != '{')
        luaL_error(L, "transcript.encode: fields must be a table with named members");
    /* members only: drop the braces */
    memmove(b->p + start, b->p + start + 1, b->len - start - 2);
    b->len -= 2;
}

static int encode_into(lua_State *L)
{
    rb_transcript_encode_members(L, 2, lua_touserdata(L, 1));
    return 0;
}

static int encode_string(lua_State *L)
{
    rb_buf *b = lua_touserdata(L, 1);
    rb_transcript_encode_members(L, 2, b);
    lua_pushlstring(L, b->p ? b->p : "", b->len);
    return 1;
}

int rb_transcript_encode_protected(lua_State *L, int idx, rb_buf *b)
{
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, encode_into);
    lua_pushlightuserdata(L, b);
    lua_pushvalue(L, idx);
    return lua_pcall(L, 2, 0, 0);
}

int rb_transcript_encode(lua_State *L)
{
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TTABLE);
    rb_buf b = RB_BUF_INIT(RB_BUF_NOCAP);
    lua_settop(L, 1);
    lua_pushcfunction(L, encode_string);
    lua_pushlightuserdata(L, &b);
    lua_pushvalue(L, 1);
    int status = lua_pcall(L, 2, 1, 0);
    rb_buf_free(&b);
    return status == LUA_OK ? 1 : lua_error(L);
}
