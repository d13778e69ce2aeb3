/* transcript.encode: Lua table -> JSON members, redacted, always valid. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>

#include "runbook/transcript.h"

/* Run `code` (which returns a table) and encode it; returns the members. */
static const char *encode(lua_State *L, const char *code)
{
    lua_settop(L, 0);
    lua_pushcfunction(L, rb_transcript_encode);
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("test chunk failed: %s", lua_tostring(L, -1));
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        fail_msg("encode raised: %s", lua_tostring(L, -1));
    return lua_tostring(L, -1);
}

static int setup(void **state)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "runbook.transcript", luaopen_runbook_transcript, 0);
    lua_setglobal(L, "transcript");
    *state = L;
    return 0;
}

static int teardown(void **state)
{
    lua_close(*state);
    return 0;
}

static void expect(lua_State *L, const char *code, const char *want)
{
    const char *got = encode(L, code);
    if (strcmp(got, want) != 0)
        fail_msg("encoding %s: expected %s, got %s", code, want, got);
}

static void test_scalars_and_arrays(void **state)
{
    lua_State *L = *state;
    expect(L, "return { n = 3 }", "\"n\":3");
    expect(L, "return { f = 0.5 }", "\"f\":0.5");
    expect(L, "return { b = false }", "\"b\":false");
    expect(L, "return { a = { 1, 2, 'x' } }", "\"a\":[1,2,\"x\"]");
    expect(L, "return { e = {} }", "\"e\":{}");
    expect(L, "return { x = 1/0 }", "\"x\":\"inf\"");
    expect(L, "return {}", "");
}

/* Whole microseconds (a call's duration) in fixed notation, read back as
 * the same double; any other float as %.14g. */
static void test_microsecond_floats(void **state)
{
    lua_State *L = *state;
    expect(L, "return { d = 45 / 1e6 }", "\"d\":0.000045");
    expect(L, "return { d = 1.25 }", "\"d\":1.25");
    expect(L, "return { d = -2.5 }", "\"d\":-2.5");
    expect(L, "return { d = 2.0 }", "\"d\":2");
    expect(L, "return { d = 123456789 / 1e6 }", "\"d\":123.456789");
    expect(L, "return { d = 1 / 3 }", "\"d\":0.33333333333333");
    expect(L, "return { d = 1e300 }", "\"d\":1e+300");
    /* every whole microsecond of the first second reads back exactly */
    const char *bad = encode(L, "local bad = {} for n = 0, 999999 do local d = n / 1e6 "
                                "local s = transcript.encode({ d = d }):sub(5) "
                                "if tonumber(s) ~= d then bad[#bad + 1] = s end end "
                                "return { bad = #bad }");
    assert_string_equal(bad, "\"bad\":0");
}

static void test_escapes_and_invalid_utf8(void **state)
{
    lua_State *L = *state;
    expect(L, "return { s = 'a\"b\\\\c\\n' }", "\"s\":\"a\\\"b\\\\c\\u000a\"");
    expect(L, "return { s = 'caf\\xc3\\xa9' }", "\"s\":\"caf\xc3\xa9\"");
    /* A lone 0xff byte is not UTF-8: escaped, so the line stays valid JSON. */
    expect(L, "return { s = 'x\\xffy' }", "\"s\":\"x\\u00ffy\"");
}

/* Plain runs are skipped eight bytes at a time: a byte to escape (or a
 * UTF-8 sequence to keep) at every position of strings of 1 to 40 bytes,
 * against the same rules applied byte by byte (in Lua). */
static void test_escapes_at_every_position(void **state)
{
    lua_State *L = *state;
    const char *bad = encode(L,
        "local Q, B = string.char(34), string.char(92) "
        "local E = string.char(0xc3, 0xa9) "
        "local function ref(s) "
        "  local out, i = {}, 1 "
        "  while i <= #s do "
        "    local c = s:byte(i) "
        "    if s:sub(i, i + 1) == E then out[#out + 1] = E; i = i + 1 "
        "    elseif c == 34 or c == 92 then out[#out + 1] = B .. string.char(c) "
        "    elseif c < 32 or c >= 127 then out[#out + 1] = string.format(B .. 'u%04x', c) "
        "    else out[#out + 1] = string.char(c) end "
        "    i = i + 1 "
        "  end "
        "  return Q .. 's' .. Q .. ':' .. Q .. table.concat(out) .. Q "
        "end "
        "local specials = { Q, B, E } "
        "for _, c in ipairs({ 0, 31, 32, 126, 127, 128, 255 }) do specials[#specials + 1] = string.char(c) end "
        "local bad = 0 "
        "for _, sp in ipairs(specials) do "
        "  for len = 1, 40 do "
        "    for at = 1, len do "
        "      local s = ('a'):rep(at - 1) .. sp .. ('b'):rep(len - at) "
        "      if transcript.encode({ s = s }) ~= ref(s) then bad = bad + 1 end "
        "    end "
        "  end "
        "end "
        "return { bad = bad } ");
    assert_string_equal(bad, "\"bad\":0");
}

static void test_secrets_and_credentials_redacted(void **state)
{
    lua_State *L = *state;
    if (luaL_dostring(L, "transcript.secret('hunter22')") != LUA_OK)
        fail_msg("secret() failed: %s", lua_tostring(L, -1));
    expect(L, "return { msg = 'pw is hunter22!' }", "\"msg\":\"pw is ***!\"");
    expect(L, "return { url = 'postgres://u:pw@h/db' }", "\"url\":\"postgres://u:***@h/db\"");
    expect(L, "return { headers = { Authorization = 'Bearer abc' } }",
           "\"headers\":{\"Authorization\":\"***\"}");
    /* Keys are the host's own: never redacted, even when they contain a secret. */
    expect(L, "return { hunter22 = 1 }", "\"hunter22\":1");
}

/* exec{env = {...}}, an http response's headers: the member's name says
 * what it holds, so its value goes whatever it looks like. */
static void test_secret_named_members_hidden(void **state)
{
    lua_State *L = *state;
    expect(L, "return { env = { DB_PASSWORD = 'x' } }", "\"env\":{\"DB_PASSWORD\":\"***\"}");
    expect(L, "return { env = { PORT = '3000' } }", "\"env\":{\"PORT\":\"3000\"}");
    expect(L, "return { headers = { ['set-cookie'] = 'sid=1' } }", "\"headers\":{\"set-cookie\":\"***\"}");
    expect(L, "return { headers = { ['SET-COOKIE'] = 'sid=1' } }", "\"headers\":{\"SET-COOKIE\":\"***\"}");
    expect(L, "return { h = { ['Set-Cookie'] = { 'a=1', 'b=2' } } }",
           "\"h\":{\"Set-Cookie\":[\"***\",\"***\"]}");
    expect(L, "return { api_key = 12345 }", "\"api_key\":\"***\"");
    /* booleans stay (an option secret = true), tables are walked */
    expect(L, "return { secret = true }", "\"secret\":true");
    expect(L, "return { credentials = { user = 'u' } }", "\"credentials\":{\"user\":\"u\"}");
    expect(L, "return { author = 'Jane' }", "\"author\":\"Jane\"");
}

/* An argv's secret flag hides the argument after it. */
static void test_argv_flag_value_hidden(void **state)
{
    lua_State *L = *state;
    expect(L, "return { argv = { 'mysql', '--password', 'hunter2', '-h', 'db' } }",
           "\"argv\":[\"mysql\",\"--password\",\"***\",\"-h\",\"db\"]");
    expect(L, "return { argv = { 'x', '--api-key', 'k', '--token', 't', '--user', 'bob' } }",
           "\"argv\":[\"x\",\"--api-key\",\"***\",\"--token\",\"***\",\"--user\",\"bob\"]");
    expect(L, "return { argv = { 'docker', 'login', '--password-stdin', 'reg' } }",
           "\"argv\":[\"docker\",\"login\",\"--password-stdin\",\"reg\"]");
    expect(L, "return { argv = { 'x', '--password=hunter2' } }", "\"argv\":[\"x\",\"--password=***\"]");
    expect(L, "return { argv = { 'sh', '-c', 'mysql --password hunter2' } }",
           "\"argv\":[\"sh\",\"-c\",\"mysql --password ***\"]");
}

/* A program's own password flags, in an argv as exec records it: the
 * program (first element, a path or a name) decides what -a, -p or -u
 * mean; elsewhere they stay (psql -p is a port, grep -a is text). */
static void test_argv_program_password_flags_hidden(void **state)
{
    lua_State *L = *state;
    expect(L, "return { argv = { 'redis-cli', '-h', 'cache', '-a', 'Rds-pw-1', 'ping' } }",
           "\"argv\":[\"redis-cli\",\"-h\",\"cache\",\"-a\",\"***\",\"ping\"]");
    expect(L, "return { argv = { '/usr/bin/mysql', '-uroot', '-pMy-pw-2', 'shop' } }",
           "\"argv\":[\"/usr/bin/mysql\",\"-uroot\",\"-p***\",\"shop\"]");
    expect(L, "return { argv = { 'curl', '-u', 'ops:Curl-pw-3', 'https://x/' } }",
           "\"argv\":[\"curl\",\"-u\",\"ops:***\",\"https://x/\"]");
    expect(L, "return { argv = { 'curl', '--user', 'ops:Curl-pw-4' } }",
           "\"argv\":[\"curl\",\"--user\",\"ops:***\"]");
    expect(L, "return { argv = { 'sshpass', '-p', 'Ssh-pw-5', 'ssh', '-p', '2222', 'h' } }",
           "\"argv\":[\"sshpass\",\"-p\",\"***\",\"ssh\",\"-p\",\"2222\",\"h\"]");
    expect(L, "return { argv = { 'psql', '-p', '5432', '-a', 'x' } }",
           "\"argv\":[\"psql\",\"-p\",\"5432\",\"-a\",\"x\"]");
    expect(L, "return { argv = { 'grep', '-a', 'needle', 'f' } }",
           "\"argv\":[\"grep\",\"-a\",\"needle\",\"f\"]");
    expect(L, "return { argv = { 'mysql', '-p', 'shop' } }",
           "\"argv\":[\"mysql\",\"-p\",\"shop\"]");
}

static void test_long_string_cut(void **state)
{
    lua_State *L = *state;
    const char *got = encode(L, "return { out = string.rep('a', 70000) }");
    assert_non_null(strstr(got, "... [4464 bytes cut]\""));
    assert_true(strlen(got) < 66000);
}

/* Run code that returns a table to encode and the count its note must
 * give (the whole string redacted, less 64 KiB); check the note. */
static const char *expect_cut(lua_State *L, const char *code)
{
    lua_settop(L, 0);
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("test chunk failed: %s", lua_tostring(L, -1));
    lua_Integer cut = lua_tointeger(L, 2);
    lua_pushcfunction(L, rb_transcript_encode);
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        fail_msg("encode raised: %s", lua_tostring(L, -1));
    const char *got = lua_tostring(L, -1);
    char note[64];
    snprintf(note, sizeof note, "... [%lld bytes cut]\"", (long long)cut);
    if (strstr(got, note) == NULL)
        fail_msg("expected the note %s at the end of %.200s...", note, got + strlen(got) - 100);
    return got;
}

/* A long string is redacted through a head only, but a secret that
 * straddles the 64 KiB cut is still found, and the note counts what the
 * whole string's redaction would have cut. */
static void test_long_string_redacted_across_the_cut(void **state)
{
    lua_State *L = *state;
    const char *got = expect_cut(L,
        "transcript.secret('Sekret-Straddle-42')\n"
        "local head = string.rep('2026-12-01 GET /v1/orders 200\\n', 2184)\n"    /* 65520 bytes */
        "local s = head .. 'Sekret-Straddle-42 password=hunter2-Cut\\n' ..\n"
        "  string.rep('user=00123 trace=abcdef0123456789\\n', 100000)\n"
        "return { out = s }, #transcript.redact(s) - 65536");
    assert_null(strstr(got, "Sek"));
    assert_non_null(strstr(got, "200\\u000a*** password=***... ["));
}

/* A head whose redaction hides most of it (a 2 MiB private key) is taken
 * longer, until what it keeps is the whole string's. */
static void test_long_string_head_grows_past_a_hidden_block(void **state)
{
    lua_State *L = *state;
    const char *got = expect_cut(L,
        "local s = '-----BEGIN PRIVATE KEY-----\\n' .. string.rep('TUlJRXZRSUJBREFOQmdrcWhraUc5\\n', 70000) ..\n"
        "  '-----END PRIVATE KEY-----\\n' .. string.rep('after the key line 0123456789\\n', 40000)\n"
        "return { out = s }, #transcript.redact(s) - 65536");
    assert_null(strstr(got, "TUlJ"));
    assert_non_null(strstr(got, "KEY-----\\u000a***\\u000a-----END PRIVATE KEY-----\\u000aafter the key line"));
}

/* A marked secret longer than the head's fixed margin (a 1.5 MB multi-line
 * secret output), starting inside the kept 64 KiB: the head reaches past
 * its end, so not one of its bytes is recorded in clear. */
static void test_long_secret_straddling_the_head_is_hidden(void **state)
{
    lua_State *L = *state;
    const char *got = encode(L,
        "local big = {}\n"
        "for i = 1, 60000 do big[i] = string.format('vault-line-%06d-of-the-bundle', i) end\n"
        "big = table.concat(big, '\\n')\n"                              /* 1.7 MB, 60000 lines */
        "transcript.secret(big)\n"
        "local s = string.rep('2026-12-01 GET /v1/orders 200\\n', 2000) .. big ..\n"
        "  string.rep('\\nuser=00123 trace=abcdef0123456789', 1000)\n"
        "return { out = s }");
    assert_null(strstr(got, "vault-line"));
    assert_non_null(strstr(got, "200\\u000a***"));
}

static void test_deep_and_cyclic_tables_end(void **state)
{
    lua_State *L = *state;
    const char *got = encode(L, "local t = {}; t.self = t; return { t = t }");
    assert_non_null(strstr(got, "\"self\":\"table: "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scalars_and_arrays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_microsecond_floats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escapes_and_invalid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escapes_at_every_position, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_and_credentials_redacted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_named_members_hidden, setup, teardown),
        cmocka_unit_test_setup_teardown(test_argv_flag_value_hidden, setup, teardown),
        cmocka_unit_test_setup_teardown(test_argv_program_password_flags_hidden, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_string_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_string_redacted_across_the_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_string_head_grows_past_a_hidden_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_secret_straddling_the_head_is_hidden, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deep_and_cyclic_tables_end, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
