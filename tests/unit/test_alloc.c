/*
 * rb_alloc (src/alloc.c): blocks of 2 MiB and more in their own mappings,
 * the rest from malloc, the kind told by the size alone.  A block keeps
 * its bytes through every resize, across the threshold both ways; a
 * mapped block starts on a huge-page boundary; a Lua state on it runs;
 * its heap's first pages come faulted in; rb_closestate runs every
 * finalizer, one that allocates too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>

#include "runbook/host.h"

#define MIB ((size_t)1 << 20)

static void fill(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 131u + (i >> 12));
}

static void same(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i += 4093)        /* a byte in every page, and then some */
        if (p[i] != (unsigned char)(i * 131u + (i >> 12)))
            fail_msg("byte %zu changed", i);
    if (n > 0 && p[n - 1] != (unsigned char)((n - 1) * 131u + ((n - 1) >> 12)))
        fail_msg("last byte changed");
}

static void resizes_keep_the_bytes(void **state)
{
    (void)state;
    unsigned char *p = rb_alloc(NULL, NULL, LUA_TSTRING, 3 * MIB);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % (2 * MIB), 0);        /* mapped, on a huge page */
    fill(p, 3 * MIB);
    p = rb_alloc(NULL, p, 3 * MIB, 10 * MIB);              /* grows, maybe moved */
    assert_non_null(p);
    same(p, 3 * MIB);
    fill(p, 10 * MIB);
    unsigned char *q = rb_alloc(NULL, p, 10 * MIB, 2 * MIB + 5);   /* shrinks in place */
    assert_ptr_equal(q, p);
    same(q, 2 * MIB + 5);
    p = rb_alloc(NULL, q, 2 * MIB + 5, MIB);                /* to malloc */
    assert_non_null(p);
    same(p, MIB);
    p = rb_alloc(NULL, p, MIB, 5 * MIB);                    /* back to a mapping */
    assert_non_null(p);
    same(p, MIB);
    assert_null(rb_alloc(NULL, p, 5 * MIB, 0));
}

static void small_blocks_are_malloc_s(void **state)
{
    (void)state;
    unsigned char *p = rb_alloc(NULL, NULL, LUA_TTABLE, 100);
    assert_non_null(p);
    fill(p, 100);
    p = rb_alloc(NULL, p, 100, 2 * MIB - 1);                /* just under: still malloc */
    assert_non_null(p);
    same(p, 100);
    assert_null(rb_alloc(NULL, p, 2 * MIB - 1, 0));
}

static void a_state_on_it_runs(void **state)
{
    (void)state;
    lua_State *L = rb_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    const char *code =
        "local parts = {}\n"
        "for i = 1, 40 do parts[i] = string.rep(string.char(64 + i), 1 << 20) end\n"
        "local s = table.concat(parts)\n"
        "local t = {}\n"
        "for i = 1, 300000 do t[i] = i end\n"
        "return #s, s:sub(-1), s:byte(1 << 20), #t\n";
    assert_int_equal(luaL_dostring(L, code), LUA_OK);
    assert_int_equal(lua_tointeger(L, -4), 40 * (lua_Integer)MIB);
    assert_string_equal(lua_tostring(L, -3), "h");
    assert_int_equal(lua_tointeger(L, -2), 'A');
    assert_int_equal(lua_tointeger(L, -1), 300000);
    lua_close(L);
}

#if !defined(__SANITIZE_ADDRESS__)
static long minor_faults(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_minflt;
}
#endif

/* 300 KiB in small blocks right after rb_newstate: without the populated
 * start that is about 75 page faults, one per fresh page. */
static void the_heap_starts_faulted_in(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip();                     /* ASan's malloc has a heap of its own */
#else
    lua_State *L = rb_newstate();
    assert_non_null(L);
    enum { N = 300 };
    void *blocks[N];
    long before = minor_faults();
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(1000);
        assert_non_null(blocks[i]);
        memset(blocks[i], i, 1000);
    }
    long faults = minor_faults() - before;
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    lua_close(L);
    if (faults >= 20)
        fail_msg("%ld page faults for 300 KiB of small blocks", faults);
#endif
}

static int gc_count;

static int count_gc(lua_State *L)
{
    (void)L;
    gc_count++;
    return 0;
}

static void closing_runs_every_finalizer(void **state)
{
    (void)state;
    lua_State *L = rb_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    lua_pushcfunction(L, count_gc);
    lua_setglobal(L, "count");
    const char *code =
        "keep = {}\n"
        "for i = 1, 50 do\n"
        "  keep[i] = setmetatable({}, { __gc = function()\n"
        "    local s = string.rep('x', 1000 + i) .. i   -- allocates while closing\n"
        "    if #s > 1000 then count() end\n"
        "  end })\n"
        "end\n";
    assert_int_equal(luaL_dostring(L, code), LUA_OK);
    gc_count = 0;
    rb_closestate(L);
    assert_int_equal(gc_count, 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_heap_starts_faulted_in),   /* first: on a heap no test grew yet */
        cmocka_unit_test(resizes_keep_the_bytes),
        cmocka_unit_test(small_blocks_are_malloc_s),
        cmocka_unit_test(a_state_on_it_runs),
        cmocka_unit_test(closing_runs_every_finalizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
