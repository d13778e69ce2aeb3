/* rb_lines (a stream cut into lines, long ones cut with a note) and the
 * sink exec shows output through: what it writes is, line for line, what
 * transcript.line_redactor gives for the line without its escapes, behind
 * the stream's bar, however the output is cut into chunks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>

#include "runbook/exec.h"
#include "runbook/transcript.h"

int luaopen_runbook_exec(lua_State *L);

/* ---- rb_lines --------------------------------------------------------- */

/* What a splitter handed over, as text: "line|" or "<cut N>|". */
static char got[4096];

static int record(void *ctx, const char *line, size_t len, size_t hidden)
{
    (void)ctx;
    size_t n = strlen(got);
    if (line == NULL)
        snprintf(got + n, sizeof got - n, "<cut %zu>|", hidden);
    else
        snprintf(got + n, sizeof got - n, "%.*s|", (int)len, line);
    return 0;
}

/* Feed the chunks (NULL-terminated) to a splitter of bound max, flush, and
 * compare what came out with want. */
static void split(size_t max, const char *want, const char *const *chunks)
{
    rb_lines l;
    rb_lines_init(&l, max);
    got[0] = '\0';
    for (size_t i = 0; chunks[i] != NULL; i++)
        assert_int_equal(rb_lines_feed(&l, chunks[i], strlen(chunks[i]), record, NULL), 0);
    assert_int_equal(rb_lines_flush(&l, record, NULL), 0);
    rb_lines_free(&l);
    if (strcmp(got, want) != 0)
        fail_msg("expected %s, got %s", want, got);
}

#define SPLIT(max, want, ...) split(max, want, (const char *const[]){ __VA_ARGS__, NULL })

static void whole_and_partial_lines(void **state)
{
    (void)state;
    SPLIT(8, "a|bbb|", "a\nbb", "b\n");
    SPLIT(8, "a|b|c|", "a\nb\nc");                 /* the last line without its newline */
    SPLIT(8, "||x|", "\n\nx\n");                    /* empty lines stay */
    SPLIT(8, "abc|", "a", "b", "c", "\n");
    SPLIT(8, "", "");
}

static void a_line_at_the_bound_is_whole(void **state)
{
    (void)state;
    SPLIT(8, "12345678|", "12345678\n");
    SPLIT(8, "12345678|", "1234", "5678", "\n");
    SPLIT(8, "12345678|", "12345678");
}

static void a_longer_line_is_cut_with_a_note(void **state)
{
    (void)state;
    SPLIT(8, "12345678|<cut 1>|", "123456789\n");
    SPLIT(8, "12345678|<cut 4>|next|", "12345", "6789", "abc\nnext\n");
    SPLIT(8, "12345678|<cut 12>|", "12345678901234567890");     /* cut, then flushed */
    SPLIT(8, "12345678|<cut 2>|12345678|", "1234567890\n12345678\n");
}

/* The head of a cut line comes as soon as the bound is reached, before
 * the line ends. */
static void the_head_comes_before_the_end(void **state)
{
    (void)state;
    rb_lines l;
    rb_lines_init(&l, 4);
    got[0] = '\0';
    assert_int_equal(rb_lines_feed(&l, "abcdef", 6, record, NULL), 0);
    assert_string_equal(got, "abcd|");
    assert_int_equal(rb_lines_feed(&l, "gh\n", 3, record, NULL), 0);
    assert_string_equal(got, "abcd|<cut 4>|");
    rb_lines_free(&l);
}

/* ---- the sink against transcript.line_redactor ------------------------ */

static int setup(void **state)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "runbook.transcript", luaopen_runbook_transcript, 0);
    luaL_requiref(L, "runbook.exec", luaopen_runbook_exec, 0);
    lua_pop(L, 2);
    *state = L;
    return 0;
}

static int teardown(void **state)
{
    lua_close(*state);
    return 0;
}

/* Lua: feed text to a sink in chunks of `step` bytes (0: whole), then
 * flush, with fd 1 sent to a file; returns what was written.  The
 * reference: each line (cut at 4096 with the note) stripped and through a
 * line redactor per stream. */
static const char *SHOW =
    "local exec, transcript = require('runbook.exec'), require('runbook.transcript')\n"
    "local text, step, stream, bar = ...\n"
    "local feed, flush = exec.sink { stdout = 'O| ', stderr = '\\27[33mE| \\27[0m',\n"
    "  line_max = 4096, note = { '<', '>' } }\n"
    "if step == 0 then feed(stream, text) else\n"
    "  for i = 1, #text, step do feed(stream, text:sub(i, i + step - 1)) end end\n"
    "flush()\n"
    "local lr, want = transcript.line_redactor(), {}\n"
    "for line in (text:sub(-1) == '\\n' and text or text .. '\\n'):gmatch('(.-)\\n') do\n"
    "  if #line > 4096 then\n"
    "    want[#want + 1] = bar .. lr:line(exec.strip_ansi(line:sub(1, 4096))) .. '\\n'\n"
    "    want[#want + 1] = bar .. '<[line cut at 4096 bytes: ' .. (#line - 4096) .. ' more not shown]>\\n'\n"
    "  else want[#want + 1] = bar .. lr:line(exec.strip_ansi(line)) .. '\\n' end\n"
    "end\n"
    "return table.concat(want)\n";

static char *show(lua_State *L, const char *text, int step, const char *stream, char **want)
{
    FILE *f = tmpfile();
    int saved = dup(1);
    assert_non_null(f);
    fflush(stdout);
    dup2(fileno(f), 1);
    lua_settop(L, 0);
    int rc = luaL_loadstring(L, SHOW);
    lua_pushstring(L, text);
    lua_pushinteger(L, step);
    lua_pushstring(L, stream);
    lua_pushstring(L, strcmp(stream, "stdout") == 0 ? "O| " : "\033[33mE| \033[0m");
    if (rc == LUA_OK)
        rc = lua_pcall(L, 4, 1, 0);
    dup2(saved, 1);
    close(saved);
    if (rc != LUA_OK)
        fail_msg("sink chunk failed: %s", lua_tostring(L, -1));
    *want = strdup(lua_tostring(L, -1));
    long n = ftell(f);
    char *out = calloc(1, (size_t)n + 1);
    rewind(f);
    assert_int_equal(fread(out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return out;
}

/* Every chunking of text on both streams shows what the reference does. */
static void expect_as_reference(lua_State *L, const char *text)
{
    static const int steps[] = { 0, 1, 2, 7, 64, 1000 };
    static const char *const streams[] = { "stdout", "stderr" };
    for (size_t s = 0; s < 2; s++) {
        for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
            char *want, *out = show(L, text, steps[i], streams[s], &want);
            if (strcmp(out, want) != 0)
                fail_msg("%s in chunks of %d: expected\n%s\ngot\n%s", streams[s], steps[i], want, out);
            free(out);
            free(want);
        }
    }
}

static const char PEM[] =
    "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAplanted1\n"
    "Zm9vYmFyYmF6planted2\n-----END RSA PRIVATE KEY-----\nafter password=pw-Tail-1\n";

static void secrets_hidden_line_by_line(void **state)
{
    lua_State *L = *state;
    expect_as_reference(L, PEM);
    expect_as_reference(L, "host: db\npassword: yaml-Pw-7419\n  token: \"t-1180\"\nDB_PASSWORD=x y\n");
    expect_as_reference(L, "\033[31mpassword: red-Pw\033[0m\nGET /?access_token=tok-4471&page=2\n");
    expect_as_reference(L, "no newline at the end ghp_16C7e42F292c6912E7710c838347Ae178B4a");
    expect_as_reference(L, "-----BEGIN PRIVATE KEY-----\nbody-never-ends\nmore\n");
    char *out, *want;
    out = show(L, PEM, 3, "stdout", &want);
    assert_null(strstr(out, "planted"));
    assert_null(strstr(out, "pw-Tail-1"));
    assert_non_null(strstr(out, "O| -----END RSA PRIVATE KEY-----\n"));
    free(out);
    free(want);
}

static void escapes_go_and_long_lines_are_cut(void **state)
{
    lua_State *L = *state;
    /* empty lines first (certbot's output starts a block with one): the
     * sink's text buffer is still unallocated then (UBSan caught a NULL
     * passed to memchr in the ASan pass of tls-renewal) */
    expect_as_reference(L, "\n\n- - -\n\nProcessing\n");
    expect_as_reference(L, "\033]0;title\007\033[1;33mwarn\033[m\nplain\n");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; i < 5000; i++)
        luaL_addchar(&b, (char)('a' + i % 26));
    luaL_addstring(&b, " api_key=ak-Long-1\nshort\n");
    luaL_pushresult(&b);
    char *text = strdup(lua_tostring(L, -1));
    expect_as_reference(L, text);
    free(text);
}

/* A log whose chunks mostly hold nothing to hide (shown as they lie, see
 * show_plain) with a secret, an escape or an over-long line now and then,
 * and chunks that end and start inside a line. */
static void plain_chunks_among_the_rest(void **state)
{
    lua_State *L = *state;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; i < 300; i++) {
        char line[160];
        snprintf(line, sizeof line, "2026-12-01T20:00:%02d.000Z INFO api[%d]: GET /v1/x/%d 200 user=%d\n",
                 i % 60, i, i * 7, i % 97);
        luaL_addstring(&b, line);
        if (i % 37 == 5)
            luaL_addstring(&b, "DB_PASSWORD=pw-Plain-Chunk-9\n");
        if (i % 53 == 7)
            luaL_addstring(&b, "\033[32monline\033[0m ok\n");
        if (i == 150)
            for (int k = 0; k < 5000; k++)
                luaL_addchar(&b, k == 4999 ? '\n' : 'z');
    }
    luaL_pushresult(&b);
    char *text = strdup(lua_tostring(L, -1));
    expect_as_reference(L, text);
    char *want, *out = show(L, text, 1000, "stdout", &want);
    assert_null(strstr(out, "pw-Plain-Chunk-9"));
    assert_non_null(strstr(out, "O| DB_PASSWORD=***\n"));
    free(out);
    free(want);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_and_partial_lines),
        cmocka_unit_test(a_line_at_the_bound_is_whole),
        cmocka_unit_test(a_longer_line_is_cut_with_a_note),
        cmocka_unit_test(the_head_comes_before_the_end),
        cmocka_unit_test_setup_teardown(secrets_hidden_line_by_line, setup, teardown),
        cmocka_unit_test_setup_teardown(escapes_go_and_long_lines_are_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(plain_chunks_among_the_rest, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
