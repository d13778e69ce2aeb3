/*
 * Unit tests for stdlib/runbook/url.lua, the one reader of the URLs runbook
 * is given (redis.connect, lock, http, sql's display): userinfo holding
 * "@", ":" and percent-escapes, IPv6 hosts, default ports, rediss://, /db,
 * query options, where http's authority ends, redaction, and bad input
 * refused with a reason that names what is wrong.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#define CHECK(cond, ...) do { if (!(cond)) fail_msg(__VA_ARGS__); } while (0)

/* A state with runbook.url loaded, as M on the stack's index 1. */
static int setup(void **state)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushliteral(L, RB_SOURCE_DIR "/stdlib/?.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "runbook.url");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        fail_msg("require runbook.url: %s", lua_tostring(L, -1));
    *state = L;
    return 0;
}

static int teardown(void **state)
{
    lua_close(*state);
    return 0;
}

/* url[fn](s) -> its two results on the stack; returns the first's type. */
static int call(lua_State *L, const char *fn, const char *s)
{
    lua_settop(L, 1);
    lua_getfield(L, 1, fn);
    lua_pushstring(L, s);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK)
        fail_msg("url.%s(\"%s\") raised: %s", fn, s, lua_tostring(L, -1));
    return lua_type(L, 2);
}

/* The field of the result table as text ("nil" when absent). */
static const char *field(lua_State *L, const char *key)
{
    lua_getfield(L, 2, key);
    const char *v = lua_isnil(L, -1) ? "nil" : lua_tostring(L, -1);
    if (v == NULL)
        v = lua_toboolean(L, -1) ? "true" : "false";
    lua_pop(L, 1);              /* the string stays in the table */
    return v;
}

#define EXPECT(L, key, want, s) do { const char *got_ = field(L, key); \
    CHECK(strcmp(got_, want) == 0, "%s: expected %s = %s, got %s", s, key, want, got_); } while (0)

/* url.fn(s) must fail, its reason containing why. */
static void refused(lua_State *L, const char *fn, const char *s, const char *why)
{
    CHECK(call(L, fn, s) == LUA_TNIL, "url.%s(\"%s\") should fail with \"%s\"", fn, s, why);
    const char *got = lua_tostring(L, 3);
    CHECK(got != NULL && strstr(got, why) != NULL, "url.%s(\"%s\"): expected \"%s\", got \"%s\"",
          fn, s, why, got ? got : "nothing");
}

static void userinfo_with_at_colon_and_escapes(void **state)
{
    lua_State *L = *state;
    const char *s = "redis://:p%40ss@host:6380/2?timeout=3";
    CHECK(call(L, "parse", s) == LUA_TTABLE, "%s should parse", s);
    EXPECT(L, "user", "", s);
    EXPECT(L, "password", "p@ss", s);
    EXPECT(L, "raw_password", "p%40ss", s);
    EXPECT(L, "host", "host", s);
    EXPECT(L, "port", "6380", s);
    EXPECT(L, "path", "/2", s);

    s = "redis://ann:pa:ss@h";
    CHECK(call(L, "parse", s) == LUA_TTABLE, "%s should parse", s);
    EXPECT(L, "user", "ann", s);
    EXPECT(L, "password", "pa:ss", s);

    s = "redis://:p@ss/x@host/1";       /* to the last @ before the query */
    CHECK(call(L, "parse", s) == LUA_TTABLE, "%s should parse", s);
    EXPECT(L, "password", "p@ss/x", s);
    EXPECT(L, "host", "host", s);
    EXPECT(L, "path", "/1", s);

    s = "redis://:100%25%zz@h";         /* %zz is not an escape: kept */
    CHECK(call(L, "parse", s) == LUA_TTABLE, "%s should parse", s);
    EXPECT(L, "password", "100%%zz", s);
}

static void http_authority_ends_at_the_first_slash(void **state)
{
    lua_State *L = *state;
    const char *s = "http://host/a@b?x=1";
    CHECK(call(L, "parse", s) == LUA_TTABLE, "%s should parse", s);
    EXPECT(L, "host", "host", s);
    EXPECT(L, "user", "nil", s);
    EXPECT(L, "path", "/a@b", s);
    s = "HTTPS://u:pw@Example.org";
    CHECK(call(L, "parse", s) == LUA_TTABLE, "%s should parse", s);
    EXPECT(L, "scheme", "https", s);
    EXPECT(L, "port", "nil", s);
    EXPECT(L, "default_port", "443", s);
    EXPECT(L, "password", "pw", s);
}

static void ipv6_hosts(void **state)
{
    lua_State *L = *state;
    const char *s = "redis://[::1]:6379";
    CHECK(call(L, "redis", s) == LUA_TTABLE, "%s should be a redis URL", s);
    EXPECT(L, "host", "::1", s);
    EXPECT(L, "port", "6379", s);
    s = "http://[fe80::1]/x";
    CHECK(call(L, "parse", s) == LUA_TTABLE, "%s should parse", s);
    EXPECT(L, "host", "fe80::1", s);
    EXPECT(L, "ipv6", "true", s);
    EXPECT(L, "path", "/x", s);
    refused(L, "parse", "redis://[::1:6379", "the [ of an IPv6 address is not closed");
}

static void redis_urls(void **state)
{
    lua_State *L = *state;
    const char *s = "redis://h";
    CHECK(call(L, "redis", s) == LUA_TTABLE, "%s should be a redis URL", s);
    EXPECT(L, "port", "6379", s);
    EXPECT(L, "db", "0", s);
    EXPECT(L, "password", "nil", s);
    s = "redis://u:pw@h:7000/3?connect_timeout=1.5&timeout=0";
    CHECK(call(L, "redis", s) == LUA_TTABLE, "%s should be a redis URL", s);
    EXPECT(L, "user", "u", s);
    EXPECT(L, "password", "pw", s);
    EXPECT(L, "port", "7000", s);
    EXPECT(L, "db", "3", s);
    EXPECT(L, "connect_timeout", "1.5", s);
    EXPECT(L, "timeout", "0", s);
    refused(L, "redis", "rediss://h:6380", "TLS (rediss://) is not supported");
    refused(L, "redis", "redis://pw@h", "the password goes after a colon, before the @");
    refused(L, "redis", "http://h:6379", "not a redis:// URL");
    refused(L, "redis", "redis://h/zero", "the path must be a database number");
    refused(L, "redis", "redis://h?retries=3", "unknown or bad option \"retries=3\"");
    refused(L, "redis", "redis://h?timeout=-1", "unknown or bad option \"timeout=-1\"");
    refused(L, "redis", "redis://:pw@/0", "no host");
}

static void bad_input_names_what_is_wrong(void **state)
{
    lua_State *L = *state;
    refused(L, "parse", "host:6379", "not a URL");
    refused(L, "parse", "redis://h:abc", "the port must be a number");
    refused(L, "parse", "redis://h:", "the port is empty");
    refused(L, "parse", "redis://h:70000", "the port must be 1-65535");
    refused(L, "parse", "redis://h:0", "the port must be 1-65535");
    CHECK(call(L, "parse", "redis://:secret@h:abc") == LUA_TNIL, "a bad port must fail");
    CHECK(strstr(lua_tostring(L, 3), "secret") == NULL, "the reason must not quote the URL");
}

static void redact_hides_the_password_only(void **state)
{
    lua_State *L = *state;
    static const char *const cases[][2] = {
        { "postgresql://u:s3cret@h/db?password=x&a=b", "postgresql://u:***@h/db?password=***&a=b" },
        { "redis://:p@ss@host/0", "redis://:***@host/0" },
        { "https://u:pw@h/x@y", "https://u:***@h/x@y" },
        { "http://host/a@b", "http://host/a@b" },
        { "redis://user@h", "redis://user@h" },
        { "redis://:pw@h:bad", "redis://:***@h:bad" },     /* a URL that does not parse too */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        call(L, "redact", cases[i][0]);
        const char *got = lua_tostring(L, 2);
        CHECK(got && strcmp(got, cases[i][1]) == 0, "redact(\"%s\"): expected \"%s\", got \"%s\"",
              cases[i][0], cases[i][1], got ? got : "nil");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(userinfo_with_at_colon_and_escapes),
        cmocka_unit_test(http_authority_ends_at_the_first_slash),
        cmocka_unit_test(ipv6_hosts),
        cmocka_unit_test(redis_urls),
        cmocka_unit_test(bad_input_names_what_is_wrong),
        cmocka_unit_test(redact_hides_the_password_only),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
