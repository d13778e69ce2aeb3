/* Unit tests for src/answers.c: the --answers file and its Lua binding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runbook/answers.h"

#define EXPECT_STR(actual, expected, what) do {                            \
        const char *got_ = (actual), *want_ = (expected);                  \
        if (!got_ || strcmp(got_, want_))                                  \
            fail_msg("%s: expected \"%s\", got %s%s%s", (what), want_,     \
                     got_ ? "\"" : "", got_ ? got_ : "NULL",               \
                     got_ ? "\"" : "");                                    \
    } while (0)

#define EXPECT_NULL(actual, what) do {                                     \
        const char *got_ = (actual);                                       \
        if (got_)                                                          \
            fail_msg("%s: expected no answer, got \"%s\"", (what), got_);  \
    } while (0)

#define EXPECT_INT(actual, expected, what) do {                            \
        long got_ = (long)(actual), want_ = (long)(expected);              \
        if (got_ != want_)                                                 \
            fail_msg("%s: expected %ld, got %ld", (what), want_, got_);    \
    } while (0)

static rb_answers *parse_ok(const char *text)
{
    char err[256] = "";
    rb_answers *a = rb_answers_parse("t.answers", text, err, sizeof err);
    if (!a)
        fail_msg("expected the text to parse, got \"%s\"", err);
    return a;
}

static void expect_parse_error(const char *text, const char *want)
{
    char err[256] = "";
    rb_answers *a = rb_answers_parse("t.answers", text, err, sizeof err);
    if (a) {
        rb_answers_free(a);
        fail_msg("expected error \"%s\", but the text parsed", want);
    }
    EXPECT_STR(err, want, "parse error");
}

static void comments_and_blank_lines_are_ignored(void **state)
{
    (void)state;
    rb_answers *a = parse_ok("# header\n"
                             "\n"
                             "   # indented comment = not an answer\n"
                             "  \t \n"
                             "Proceed? = yes\n"
                             "\t# last");
    EXPECT_INT(rb_answers_count(a), 1, "answer lines");
    EXPECT_STR(rb_answers_next(a, NULL, "Proceed?"), "yes", "Proceed?");
    EXPECT_NULL(rb_answers_next(a, NULL, "# indented comment"),
                "a comment is not a question");
    rb_answers_free(a);
}

static void empty_text_has_no_answers(void **state)
{
    (void)state;
    rb_answers *a = parse_ok("");
    EXPECT_INT(rb_answers_count(a), 0, "answer lines in empty text");
    EXPECT_NULL(rb_answers_next(a, "s", "Q"), "Q in empty text");
    rb_answers_free(a);
}

static void question_must_match_exactly(void **state)
{
    (void)state;
    rb_answers *a = parse_ok("Which replica? = replica-2\n");
    EXPECT_STR(rb_answers_next(a, "any", "Which replica?"), "replica-2",
               "exact question");
    EXPECT_NULL(rb_answers_next(a, NULL, "which replica?"), "other case");
    EXPECT_NULL(rb_answers_next(a, NULL, "Which replica"), "prefix");
    EXPECT_NULL(rb_answers_next(a, NULL, "Which replica? "), "trailing blank");
    rb_answers_free(a);
}

static void blanks_around_step_question_and_answer_are_trimmed(void **state)
{
    (void)state;
    rb_answers *a = parse_ok("  [ approve ]   Approved?   =   yes  \t\n"
                             "Default? = \n"
                             "Bare? =\n");
    EXPECT_STR(rb_answers_next(a, "approve", "Approved?"), "yes",
               "trimmed step, question and answer");
    EXPECT_STR(rb_answers_next(a, NULL, "Default?"), "",
               "empty answer after ' = '");
    EXPECT_STR(rb_answers_next(a, NULL, "Bare?"), "",
               "empty answer after a final ' ='");
    rb_answers_free(a);
}

static void step_specific_line_wins_over_any_step(void **state)
{
    (void)state;
    rb_answers *a = parse_ok("Q = any\n"
                             "[restore] Q = specific\n"
                             "[*] R = star\n"
                             "[3] R = by-number\n");
    EXPECT_STR(rb_answers_next(a, "restore", "Q"), "specific",
               "step 'restore' prefers its own line");
    EXPECT_STR(rb_answers_next(a, "restore", "Q"), "specific",
               "and keeps preferring it");
    EXPECT_STR(rb_answers_next(a, "verify", "Q"), "any",
               "another step falls back to the any-step line");
    EXPECT_STR(rb_answers_next(a, NULL, "Q"), "any",
               "no step uses the any-step line");
    EXPECT_STR(rb_answers_next(a, "restore", "R"), "star",
               "[*] answers in any step");
    EXPECT_STR(rb_answers_next(a, "3", "R"), "by-number",
               "a step number is an id like any other");
    EXPECT_STR(rb_answers_next(a, "Restore", "Q"), "any",
               "step ids match exactly, case included");
    rb_answers_free(a);
}

static void successive_answers_then_the_last_repeats(void **state)
{
    (void)state;
    rb_answers *a = parse_ok("Q = one\n"
                             "[s] X = x\n"
                             "Q = two\n"
                             "[*] Q = three\n");
    const char *want[] = { "one", "two", "three", "three", "three" };
    for (int i = 0; i < 5; i++) {
        char what[48];
        snprintf(what, sizeof what, "call %d for (nil, Q)", i + 1);
        EXPECT_STR(rb_answers_next(a, NULL, "Q"), want[i], what);
    }
    EXPECT_STR(rb_answers_next(a, "a", "Q"), "one",
               "step 'a' has its own cursor");
    EXPECT_STR(rb_answers_next(a, "b", "Q"), "one",
               "step 'b' has its own cursor");
    EXPECT_STR(rb_answers_next(a, "a", "Q"), "two", "second call for 'a'");
    EXPECT_STR(rb_answers_next(a, "s", "X"), "x", "single line");
    EXPECT_STR(rb_answers_next(a, "s", "X"), "x", "single line repeats");
    rb_answers_free(a);
}

static void step_specific_lines_have_their_own_sequence(void **state)
{
    (void)state;
    rb_answers *a = parse_ok("[s] Q = 1\n"
                             "Q = any\n"
                             "[s] Q = 2\n");
    EXPECT_STR(rb_answers_next(a, "s", "Q"), "1", "first for step s");
    EXPECT_STR(rb_answers_next(a, "s", "Q"), "2", "second for step s");
    EXPECT_STR(rb_answers_next(a, "s", "Q"), "2", "last for step s repeats");
    EXPECT_STR(rb_answers_next(a, "t", "Q"), "any", "step t");
    rb_answers_free(a);
}

static void error_lines_answer_retry_skip_abort(void **state)
{
    (void)state;
    rb_answers *a = parse_ok("[restore] !error = retry\n"
                             "[restore] !error = skip\n"
                             "!error = abort\n");
    EXPECT_STR(rb_answers_next(a, "restore", "!error"), "retry",
               "first failure of restore");
    EXPECT_STR(rb_answers_next(a, "restore", "!error"), "skip",
               "second failure of restore");
    EXPECT_STR(rb_answers_next(a, "restore", "!error"), "skip",
               "third failure of restore");
    EXPECT_STR(rb_answers_next(a, "verify", "!error"), "abort",
               "failure of another step");
    rb_answers_free(a);
}

static void question_may_contain_the_separator(void **state)
{
    (void)state;
    rb_answers *a = parse_ok("Is 1 + 1 = 2? = yes\n"
                             "a == b = c\n");
    EXPECT_STR(rb_answers_next(a, NULL, "Is 1 + 1 = 2?"), "yes",
               "split at the last ' = '");
    EXPECT_NULL(rb_answers_next(a, NULL, "Is 1 + 1"), "first ' = ' half");
    EXPECT_STR(rb_answers_next(a, NULL, "a == b"), "c", "'==' is not ' = '");
    rb_answers_free(a);
}

static void crlf_line_endings(void **state)
{
    (void)state;
    rb_answers *a = parse_ok("# c\r\n"
                             "[s] Q = yes\r\n"
                             "\r\n"
                             "R = no\r\n");
    EXPECT_INT(rb_answers_count(a), 2, "answer lines in a CRLF file");
    EXPECT_STR(rb_answers_next(a, "s", "Q"), "yes", "answer without \\r");
    EXPECT_STR(rb_answers_next(a, NULL, "R"), "no", "last line without \\r");
    rb_answers_free(a);
    expect_parse_error("a = b\r\nbad\r\n",
                       "t.answers:2: expected 'question = answer'");
}

static void byte_order_mark_is_skipped(void **state)
{
    (void)state;
    rb_answers *a = parse_ok("\xEF\xBB\xBF" "Q = yes\n");
    EXPECT_STR(rb_answers_next(a, NULL, "Q"), "yes", "question after a BOM");
    rb_answers_free(a);
}

static void errors_name_file_and_line(void **state)
{
    (void)state;
    expect_parse_error("ok = 1\n\njust some text\n",
                       "t.answers:3: expected 'question = answer'");
    expect_parse_error("a=b\n", "t.answers:1: expected 'question = answer'");
    expect_parse_error("[s]\n", "t.answers:1: expected 'question = answer'");
    expect_parse_error("# c\n[approve Approved? = yes\n",
                       "t.answers:2: missing ']' after step id");
    expect_parse_error("x = 1\ny = 2\n = yes\n",
                       "t.answers:3: empty question before ' = '");
    expect_parse_error("[s]   = yes\n",
                       "t.answers:1: empty question before ' = '");
    expect_parse_error("[] Q = yes\n",
                       "t.answers:1: empty step id (use [*] for any step)");
}

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/rb_answers_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        fail_msg("expected mkstemp to create a file");
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n)
        fail_msg("expected to write %zu bytes to %s", n, path);
    close(fd);
    return path;
}

static void load_reads_a_file_and_names_it_in_errors(void **state)
{
    (void)state;
    char err[512] = "", want[512];
    char *path = write_temp("Q = one\nQ = two\n");
    rb_answers *a = rb_answers_load(path, err, sizeof err);
    if (!a)
        fail_msg("expected %s to load, got \"%s\"", path, err);
    EXPECT_INT(rb_answers_count(a), 2, "answer lines in the file");
    EXPECT_STR(rb_answers_next(a, NULL, "Q"), "one", "first from file");
    rb_answers_free(a);
    unlink(path);
    free(path);

    path = write_temp("Q = one\noops\n");
    if (rb_answers_load(path, err, sizeof err))
        fail_msg("expected %s to fail on line 2", path);
    snprintf(want, sizeof want, "%s:2: expected 'question = answer'", path);
    EXPECT_STR(err, want, "load error");
    unlink(path);
    free(path);

    if (rb_answers_load("/nonexistent/answers", err, sizeof err))
        fail_msg("expected a missing file to fail");
    EXPECT_STR(err, "/nonexistent/answers: No such file or directory",
               "missing file error");
}

static void load_reads_a_file_larger_than_one_buffer(void **state)
{
    (void)state;
    char err[512] = "", *text = malloc(3000 * 16), *p = text;
    for (int i = 1; i <= 3000; i++)
        p += sprintf(p, "Q%d = a%d\n", i, i);
    char *path = write_temp(text);
    rb_answers *a = rb_answers_load(path, err, sizeof err);
    if (!a)
        fail_msg("expected %s to load, got \"%s\"", path, err);
    EXPECT_INT(rb_answers_count(a), 3000, "answer lines in a large file");
    EXPECT_STR(rb_answers_next(a, NULL, "Q3000"), "a3000", "last line");
    rb_answers_free(a);
    unlink(path);
    free(path);
    free(text);
}

/* --answers /dev/zero read until memory ran out (1 GB, the ulimit of the
 * check, after 17 s): now it stops at the bound and says so. */
static void load_refuses_an_endless_file_at_the_bound(void **state)
{
    (void)state;
    char err[512] = "";
    rb_answers *a = rb_answers_load("/dev/zero", err, sizeof err);
    if (a || !strstr(err, "/dev/zero: larger than 1024 KiB"))
        fail_msg("expected /dev/zero refused at the 1024 KiB bound, got \"%s\"", err);
}

static void parse_refuses_a_line_over_the_bound(void **state)
{
    (void)state;
    char err[512] = "";
    size_t n = RB_ANSWERS_LINE_MAX + 8;
    char *text = malloc(n + 32);
    strcpy(text, "ok = yes\nQ = ");
    memset(text + 13, 'a', n);
    text[13 + n] = 0;
    rb_answers *a = rb_answers_parse("long.txt", text, err, sizeof err);
    if (a || !strstr(err, "long.txt:2: line longer than 64 KiB"))
        fail_msg("expected line 2 refused at the 64 KiB bound, got \"%s\"", err);
    free(text);
}

static void free_and_count_accept_null(void **state)
{
    (void)state;
    rb_answers_free(NULL);
    EXPECT_INT(rb_answers_count(NULL), 0, "count of NULL");
    EXPECT_NULL(rb_answers_next(NULL, "s", "Q"), "next on NULL");
}

/* The Lua side asserts with messages that say what it expected. */
static const char lua_checks[] =
    "local answers = require('runbook.answers')\n"
    "local function eq(got, want, what)\n"
    "  if got ~= want then\n"
    "    error(string.format('%s: expected %s, got %s', what,\n"
    "      tostring(want), tostring(got)), 2)\n"
    "  end\n"
    "end\n"
    "local h = answers.load(PATH)\n"
    "eq(h:count(), 4, 'h:count()')\n"
    "eq(h:next('restore', '!error'), 'retry', 'first !error')\n"
    "eq(h:next('restore', '!error'), 'skip', 'second !error')\n"
    "eq(h:next('restore', '!error'), 'skip', 'third !error')\n"
    "eq(h:next(nil, 'Which replica?'), 'replica-2', 'next(nil, q)')\n"
    "eq(h:next(3, 'Which replica?'), 'three', 'numeric step id')\n"
    "eq(h:next('x', 'Unknown?'), nil, 'unknown question')\n"
    "local ok, e = pcall(answers.load, BAD)\n"
    "eq(ok, false, 'load of a bad file succeeds')\n"
    "eq(e:find(BAD .. ':1: missing', 1, true) ~= nil, true,\n"
    "   'load error names file:line (' .. tostring(e) .. ')')\n"
    "ok, e = pcall(h.next, {}, nil, 'q')\n"
    "eq(ok, false, 'next on a non-handle succeeds')\n"
    "local kept\n"
    "do local c <close> = answers.load(PATH); kept = c end\n"
    "ok, e = pcall(kept.count, kept)\n"
    "eq(ok, false, 'count on a closed handle succeeds')\n"
    "eq(e:find('closed', 1, true) ~= nil, true, 'closed error: ' .. e)\n"
    "kept = nil; collectgarbage()\n";

static void lua_binding_loads_and_answers(void **state)
{
    (void)state;
    char *path = write_temp("[restore] !error = retry\n"
                            "[restore] !error = skip\n"
                            "Which replica? = replica-2\n"
                            "[3] Which replica? = three\n");
    char *bad = write_temp("[restore !error = retry\n");
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "runbook.answers", luaopen_runbook_answers, 0);
    lua_pop(L, 1);
    lua_pushstring(L, path);
    lua_setglobal(L, "PATH");
    lua_pushstring(L, bad);
    lua_setglobal(L, "BAD");
    if (luaL_dostring(L, lua_checks) != LUA_OK)
        fail_msg("Lua checks: %s", lua_tostring(L, -1));
    lua_close(L);
    unlink(path);
    unlink(bad);
    free(path);
    free(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(comments_and_blank_lines_are_ignored),
        cmocka_unit_test(empty_text_has_no_answers),
        cmocka_unit_test(question_must_match_exactly),
        cmocka_unit_test(blanks_around_step_question_and_answer_are_trimmed),
        cmocka_unit_test(step_specific_line_wins_over_any_step),
        cmocka_unit_test(successive_answers_then_the_last_repeats),
        cmocka_unit_test(step_specific_lines_have_their_own_sequence),
        cmocka_unit_test(error_lines_answer_retry_skip_abort),
        cmocka_unit_test(question_may_contain_the_separator),
        cmocka_unit_test(crlf_line_endings),
        cmocka_unit_test(byte_order_mark_is_skipped),
        cmocka_unit_test(errors_name_file_and_line),
        cmocka_unit_test(load_reads_a_file_and_names_it_in_errors),
        cmocka_unit_test(load_reads_a_file_larger_than_one_buffer),
        cmocka_unit_test(load_refuses_an_endless_file_at_the_bound),
        cmocka_unit_test(parse_refuses_a_line_over_the_bound),
        cmocka_unit_test(free_and_count_accept_null),
        cmocka_unit_test(lua_binding_loads_and_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
