/* rb_exec_strip_ansi: escape sequences out, every other byte kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "runbook/exec.h"

/* Strip a copy of in (len bytes) and compare with want. */
static void check_len(const char *in, size_t len, const char *want)
{
    char *buf = malloc(len + 1);
    memcpy(buf, in, len);
    size_t n = rb_exec_strip_ansi(buf, len);
    buf[n] = '\0';
    if (n != strlen(want) || memcmp(buf, want, n) != 0)
        fail_msg("stripping gave \"%s\" (%zu bytes), expected \"%s\"", buf, n, want);
    free(buf);
}

static void check(const char *in, const char *want)
{
    check_len(in, strlen(in), want);
}

static void plain_text_is_untouched(void **state)
{
    (void)state;
    check("", "");
    assert_int_equal(rb_exec_strip_ansi(NULL, 0), 0);       /* an empty, unallocated buffer */
    check("online  \xe2\x9c\x93 caf\xc3\xa9\n[0] app", "online  \xe2\x9c\x93 caf\xc3\xa9\n[0] app");
}

static void csi_colours_and_cursor_moves_go(void **state)
{
    (void)state;
    check("\033[31mred\033[0m", "red");
    check("a\033[1;38;5;208mb\033[mc", "abc");
    check("\033[2K\033[1Gline\033[?25l", "line");
    check("\033[0;1;4m\xe2\x94\x82 name \033[39m\xe2\x94\x82", "\xe2\x94\x82 name \xe2\x94\x82");
}

static void osc_ends_at_bel_or_st(void **state)
{
    (void)state;
    check("\033]0;title\atext", "text");
    check("\033]8;;http://x/\033\\link\033]8;;\033\\ after", "link after");
    check("\033Pdcs data\033\\kept", "kept");
}

static void unterminated_string_stops_at_newline(void **state)
{
    (void)state;
    check("a\033]0;never ends\nnext line", "a\nnext line");
    check("a\033]0;never ends", "a");
}

static void short_escapes_and_lone_esc(void **state)
{
    (void)state;
    check("\033(Bplain\033=\0337x\0338", "plainx");
    check("end\033", "end");
    check("a\033\nb", "a\nb");
    check("\033[", "");
    check("\033[12", "");
}

static void malformed_csi_keeps_the_breaking_byte(void **state)
{
    (void)state;
    check("\033[31\nred", "\nred");
}

static void nul_bytes_survive(void **state)
{
    (void)state;
    char buf[] = { 'a', 0, 033, '[', '1', 'm', 'b', 0 };
    size_t n = rb_exec_strip_ansi(buf, sizeof buf);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "a\0b\0", 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_text_is_untouched),
        cmocka_unit_test(csi_colours_and_cursor_moves_go),
        cmocka_unit_test(osc_ends_at_bel_or_st),
        cmocka_unit_test(unterminated_string_stops_at_newline),
        cmocka_unit_test(short_escapes_and_lone_esc),
        cmocka_unit_test(malformed_csi_keeps_the_breaking_byte),
        cmocka_unit_test(nul_bytes_survive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
