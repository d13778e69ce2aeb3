/* Unit tests for src/args.c: every accepted syntax, every error message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runbook/args.h"

#define EXPECT_STR(actual, expected, what) do {                            \
        const char *got_ = (actual), *want_ = (expected);                  \
        if (!got_ || strcmp(got_, want_))                                  \
            fail_msg("%s: expected \"%s\", got %s%s%s", (what), want_,     \
                     got_ ? "\"" : "", got_ ? got_ : "NULL",               \
                     got_ ? "\"" : "");                                    \
    } while (0)

#define EXPECT_INT(actual, expected, what) do {                            \
        long got_ = (long)(actual), want_ = (long)(expected);              \
        if (got_ != want_)                                                 \
            fail_msg("%s: expected %ld, got %ld", (what), want_, got_);    \
    } while (0)

static const rb_optdef run_opts[] = {
    { RB_OPT_LIST, "param", 'p', "K=V", "set a parameter (repeatable)" },
    { RB_OPT_VALUE, "target", 't', "T", "target from the config file" },
    { RB_OPT_FLAG, "dry-run", 'n', NULL, "simulate every mutating action" },
    { RB_OPT_FLAG, "yes", 'y', NULL, "answer yes to every confirmation" },
    { RB_OPT_VALUE, "answers", 0, "FILE", "answer questions from FILE" },
    { RB_OPT_VALUE, "start-at", 0, "STEP", "skip the steps before STEP" },
    { 0 },
};

static int argv_len(char **argv)
{
    int n = 0;
    while (argv[n])
        n++;
    return n;
}

/* PARSE(&a, "x", "y") parses those arguments with run_opts. */
#define PARSE(a, ...) \
    rb_args_parse(run_opts, argv_len((char *[]){ __VA_ARGS__, NULL }), \
                  (char *[]){ __VA_ARGS__, NULL }, (a))

#define PARSE_OK(a, ...) do {                                              \
        if (PARSE(a, __VA_ARGS__) != 0)                                    \
            fail_msg("expected parse of {%s} to succeed, got error \"%s\"",\
                     #__VA_ARGS__, (a)->error);                            \
    } while (0)

#define PARSE_FAILS(a, message, ...) do {                                  \
        if (PARSE(a, __VA_ARGS__) != -1)                                   \
            fail_msg("expected parse of {%s} to fail with \"%s\"",         \
                     #__VA_ARGS__, (message));                             \
        EXPECT_STR((a)->error, (message), "error for {" #__VA_ARGS__ "}"); \
        rb_args_free(a);                                                   \
    } while (0)

static void long_option_takes_next_argument(void **state)
{
    (void)state;
    rb_args a;
    PARSE_OK(&a, "--target", "prod");
    EXPECT_STR(rb_args_value(&a, "target"), "prod", "--target prod");
    EXPECT_INT(rb_args_count(&a, "target"), 1, "count of --target");
    EXPECT_INT(a.npos, 0, "positional count");
    rb_args_free(&a);
}

static void long_option_takes_value_after_equals(void **state)
{
    (void)state;
    rb_args a;
    PARSE_OK(&a, "--target=prod", "--answers=", "--start-at=a=b");
    EXPECT_STR(rb_args_value(&a, "target"), "prod", "--target=prod");
    EXPECT_STR(rb_args_value(&a, "answers"), "", "--answers= (empty value)");
    EXPECT_STR(rb_args_value(&a, "start-at"), "a=b",
               "--start-at=a=b (split at the first '=')");
    rb_args_free(&a);
}

static void short_option_takes_next_or_glued_value(void **state)
{
    (void)state;
    rb_args a;
    PARSE_OK(&a, "-t", "prod");
    EXPECT_STR(rb_args_value(&a, "target"), "prod", "-t prod");
    rb_args_free(&a);
    PARSE_OK(&a, "-tstaging");
    EXPECT_STR(rb_args_value(&a, "target"), "staging", "-tstaging");
    rb_args_free(&a);
}

static void value_may_look_like_an_option(void **state)
{
    (void)state;
    rb_args a;
    PARSE_OK(&a, "--target", "--yes");
    EXPECT_STR(rb_args_value(&a, "target"), "--yes",
               "--target takes the next argument whatever it is");
    EXPECT_INT(rb_args_count(&a, "yes"), 0, "--yes consumed as a value");
    rb_args_free(&a);
}

static void flags_long_short_and_bundled(void **state)
{
    (void)state;
    rb_args a;
    PARSE_OK(&a, "--dry-run", "-y", "--yes");
    EXPECT_INT(rb_args_count(&a, "dry-run"), 1, "count of --dry-run");
    EXPECT_INT(rb_args_count(&a, "yes"), 2, "count of -y --yes");
    if (rb_args_value(&a, "yes") != NULL)
        fail_msg("expected a flag to have no value, got \"%s\"",
                 rb_args_value(&a, "yes"));
    rb_args_free(&a);

    PARSE_OK(&a, "-nyp", "k=v", "-ynpj=w");
    EXPECT_INT(rb_args_count(&a, "dry-run"), 2, "-n in two bundles");
    EXPECT_INT(rb_args_count(&a, "yes"), 2, "-y in two bundles");
    EXPECT_STR(rb_args_list(&a, "param")[0], "k=v", "-nyp k=v");
    EXPECT_STR(rb_args_list(&a, "param")[1], "j=w", "-ynpj=w");
    rb_args_free(&a);
}

static void list_option_keeps_every_value_in_order(void **state)
{
    (void)state;
    rb_args a;
    PARSE_OK(&a, "-p", "a=1", "--param", "b=2", "-pc=3", "--param=d=4");
    const char *const *l = rb_args_list(&a, "param");
    const char *want[] = { "a=1", "b=2", "c=3", "d=4" };
    for (int i = 0; i < 4; i++) {
        char what[32];
        snprintf(what, sizeof what, "param value %d", i);
        EXPECT_STR(l[i], want[i], what);
    }
    if (l[4] != NULL)
        fail_msg("expected the list to end after 4 values, got \"%s\"", l[4]);
    EXPECT_INT(rb_args_count(&a, "param"), 4, "count of -p");
    EXPECT_STR(rb_args_value(&a, "param"), "d=4", "value of a list is its last");
    rb_args_free(&a);
}

static void repeated_value_option_keeps_the_last(void **state)
{
    (void)state;
    rb_args a;
    PARSE_OK(&a, "--target", "a", "-tb");
    EXPECT_STR(rb_args_value(&a, "target"), "b", "last --target wins");
    EXPECT_INT(rb_args_count(&a, "target"), 2, "count of --target");
    rb_args_free(&a);
}

static void absent_and_unknown_names_are_empty(void **state)
{
    (void)state;
    rb_args a;
    PARSE_OK(&a, "x");
    EXPECT_INT(rb_args_count(&a, "target"), 0, "count of absent --target");
    EXPECT_INT(rb_args_count(&a, "nope"), 0, "count of undeclared name");
    if (rb_args_value(&a, "target") || rb_args_value(&a, "nope"))
        fail_msg("expected NULL value for absent and undeclared options");
    const char *const *l = rb_args_list(&a, "param");
    if (!l || l[0])
        fail_msg("expected an empty, non-NULL list for absent -p");
    l = rb_args_list(&a, "nope");
    if (!l || l[0])
        fail_msg("expected an empty, non-NULL list for an undeclared name");
    rb_args_free(&a);
}

static void positionals_anywhere_and_dash_alone(void **state)
{
    (void)state;
    rb_args a;
    PARSE_OK(&a, "db-restore", "-y", "extra", "--target", "t", "-");
    EXPECT_INT(a.npos, 3, "positional count");
    EXPECT_STR(a.pos[0], "db-restore", "first positional");
    EXPECT_STR(a.pos[1], "extra", "positional after a flag");
    EXPECT_STR(a.pos[2], "-", "lone '-' is positional");
    EXPECT_INT(rb_args_count(&a, "yes"), 1, "-y between positionals");
    rb_args_free(&a);
}

static void double_dash_ends_options(void **state)
{
    (void)state;
    rb_args a;
    PARSE_OK(&a, "a", "--", "--yes", "-p", "--");
    EXPECT_INT(a.npos, 4, "positional count after --");
    EXPECT_STR(a.pos[1], "--yes", "--yes after --");
    EXPECT_STR(a.pos[2], "-p", "-p after --");
    EXPECT_STR(a.pos[3], "--", "second -- is positional");
    EXPECT_INT(rb_args_count(&a, "yes"), 0, "--yes after -- is not a flag");
    rb_args_free(&a);
}

static void sixteen_positionals_fit_seventeen_do_not(void **state)
{
    (void)state;
    char *argv[RB_ARGS_MAXPOS + 1];
    for (int i = 0; i <= RB_ARGS_MAXPOS; i++)
        argv[i] = "x";
    rb_args a;
    if (rb_args_parse(run_opts, RB_ARGS_MAXPOS, argv, &a) != 0)
        fail_msg("expected %d positionals to parse, got \"%s\"",
                 RB_ARGS_MAXPOS, a.error);
    rb_args_free(&a);
    if (rb_args_parse(run_opts, RB_ARGS_MAXPOS + 1, argv, &a) != -1)
        fail_msg("expected %d positionals to fail", RB_ARGS_MAXPOS + 1);
    EXPECT_STR(a.error, "too many arguments", "error for 17 positionals");
    rb_args_free(&a);
}

static void unknown_long_option_suggests_closest(void **state)
{
    (void)state;
    rb_args a;
    PARSE_FAILS(&a, "unknown option '--dryrun' (did you mean '--dry-run'?)",
                "--dryrun");
    PARSE_FAILS(&a, "unknown option '--dryrun' (did you mean '--dry-run'?)",
                "x", "--dryrun=1");
    PARSE_FAILS(&a, "unknown option '--taget' (did you mean '--target'?)",
                "--taget", "prod");
    PARSE_FAILS(&a, "unknown option '--ans' (did you mean '--answers'?)",
                "--ans", "f");
    PARSE_FAILS(&a, "unknown option '--verbose'", "--verbose");
    PARSE_FAILS(&a, "unknown option '--=x'", "--=x");
}

static void unknown_short_option_is_named(void **state)
{
    (void)state;
    rb_args a;
    PARSE_FAILS(&a, "unknown option '-z'", "-z");
    PARSE_FAILS(&a, "unknown option '-z'", "-nz");
}

static void missing_value_is_named(void **state)
{
    (void)state;
    rb_args a;
    PARSE_FAILS(&a, "option '--target' needs a value", "x", "--target");
    PARSE_FAILS(&a, "option '-t' needs a value", "-t");
    PARSE_FAILS(&a, "option '-p' needs a value", "-ynp");
}

static void flag_with_value_is_an_error(void **state)
{
    (void)state;
    rb_args a;
    PARSE_FAILS(&a, "option '--yes' takes no value", "--yes=x");
    PARSE_FAILS(&a, "option '--dry-run' takes no value", "--dry-run=");
}

static void free_is_safe_after_failure_and_twice(void **state)
{
    (void)state;
    rb_args a;
    if (PARSE(&a, "-p", "a=1", "--bogus") != -1)
        fail_msg("expected --bogus to fail the parse");
    rb_args_free(&a);
    rb_args_free(&a);
    EXPECT_INT(rb_args_count(&a, "param"), 0, "count after free");
}

static void no_options_at_all(void **state)
{
    (void)state;
    static const rb_optdef none[] = { { 0 } };
    rb_args a;
    char *argv[] = { "a", "-y", NULL };
    if (rb_args_parse(none, 1, argv, &a) != 0)
        fail_msg("expected a lone positional to parse, got \"%s\"", a.error);
    EXPECT_STR(a.pos[0], "a", "positional with an empty table");
    rb_args_free(&a);
    if (rb_args_parse(none, 2, argv, &a) != -1)
        fail_msg("expected -y to be unknown with an empty table");
    EXPECT_STR(a.error, "unknown option '-y'", "error with an empty table");
    rb_args_free(&a);
}

static char *usage_text(const char *cmd, const char *synopsis,
                        const char *desc, const rb_optdef *defs)
{
    FILE *f = tmpfile();
    if (!f)
        fail_msg("expected tmpfile() to work");
    rb_args_usage(f, cmd, synopsis, desc, defs);
    long n = ftell(f);
    char *buf = calloc(1, (size_t)n + 1);
    rewind(f);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        fail_msg("expected to read back %ld bytes of usage", n);
    fclose(f);
    return buf;
}

static void usage_prints_synopsis_description_and_aligned_table(void **state)
{
    (void)state;
    char *got = usage_text("run", "NAME|FILE [options]", "Run a runbook.",
                           run_opts);
    EXPECT_STR(got,
        "usage: runbook run NAME|FILE [options]\n"
        "\n"
        "Run a runbook.\n"
        "\n"
        "  -p, --param K=V      set a parameter (repeatable)\n"
        "  -t, --target T       target from the config file\n"
        "  -n, --dry-run        simulate every mutating action\n"
        "  -y, --yes            answer yes to every confirmation\n"
        "      --answers FILE   answer questions from FILE\n"
        "      --start-at STEP  skip the steps before STEP\n",
        "usage text");
    free(got);
}

static void usage_without_options_or_description(void **state)
{
    (void)state;
    static const rb_optdef none[] = { { 0 } };
    char *got = usage_text("list", NULL, NULL, none);
    EXPECT_STR(got, "usage: runbook list\n", "bare usage text");
    free(got);
}

/* Checks t[key] (at the top of L's stack) against `want`, NULL meaning nil. */
static void expect_field(lua_State *L, const char *key, const char *want)
{
    lua_getfield(L, -1, key);
    const char *got = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
    if (!want && !lua_isnil(L, -1))
        fail_msg("t.%s: expected nil, got a %s", key, luaL_typename(L, -1));
    if (want)
        EXPECT_STR(got, want, key);
    lua_pop(L, 1);
}

static void expect_index(lua_State *L, int i, const char *want)
{
    char what[32];
    lua_rawgeti(L, -1, i);
    snprintf(what, sizeof what, "t[%d]", i);
    EXPECT_STR(lua_tostring(L, -1), want, what);
    lua_pop(L, 1);
}

static void push_builds_lua_table(void **state)
{
    (void)state;
    rb_args a;
    PARSE_OK(&a, "db-restore", "-y", "-p", "a=1", "--target=prod",
             "-pb=2", "extra");
    lua_State *L = luaL_newstate();
    rb_args_push(L, &a);
    EXPECT_INT(lua_gettop(L), 1, "rb_args_push pushes one value");
    EXPECT_INT(lua_type(L, -1), LUA_TTABLE, "rb_args_push pushes a table");

    lua_getfield(L, -1, "yes");
    if (lua_type(L, -1) != LUA_TBOOLEAN || !lua_toboolean(L, -1))
        fail_msg("t.yes: expected true, got a %s", luaL_typename(L, -1));
    lua_pop(L, 1);
    expect_field(L, "target", "prod");
    expect_field(L, "dry-run", NULL);
    expect_field(L, "answers", NULL);

    lua_getfield(L, -1, "param");
    EXPECT_INT(lua_type(L, -1), LUA_TTABLE, "t.param is a table");
    EXPECT_INT(luaL_len(L, -1), 2, "#t.param");
    expect_index(L, 1, "a=1");
    expect_index(L, 2, "b=2");
    lua_pop(L, 1);

    EXPECT_INT(luaL_len(L, -1), 2, "#t (positionals)");
    expect_index(L, 1, "db-restore");
    expect_index(L, 2, "extra");
    lua_close(L);
    rb_args_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(long_option_takes_next_argument),
        cmocka_unit_test(long_option_takes_value_after_equals),
        cmocka_unit_test(short_option_takes_next_or_glued_value),
        cmocka_unit_test(value_may_look_like_an_option),
        cmocka_unit_test(flags_long_short_and_bundled),
        cmocka_unit_test(list_option_keeps_every_value_in_order),
        cmocka_unit_test(repeated_value_option_keeps_the_last),
        cmocka_unit_test(absent_and_unknown_names_are_empty),
        cmocka_unit_test(positionals_anywhere_and_dash_alone),
        cmocka_unit_test(double_dash_ends_options),
        cmocka_unit_test(sixteen_positionals_fit_seventeen_do_not),
        cmocka_unit_test(unknown_long_option_suggests_closest),
        cmocka_unit_test(unknown_short_option_is_named),
        cmocka_unit_test(missing_value_is_named),
        cmocka_unit_test(flag_with_value_is_an_error),
        cmocka_unit_test(free_is_safe_after_failure_and_twice),
        cmocka_unit_test(no_options_at_all),
        cmocka_unit_test(usage_prints_synopsis_description_and_aligned_table),
        cmocka_unit_test(usage_without_options_or_description),
        cmocka_unit_test(push_builds_lua_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
