/*
 * The scanner's neighbour filter (redact.c, next_start_of_rule) skips a
 * trigger byte whose neighbours rule out its rule.  It must never skip one
 * its rule would act on: for every trigger, every pair of neighbours the
 * filter turns away, and contexts around them that the rules act on (a
 * secret key name before, a value after, a flag, a token's prefix, a
 * URL), the rule itself, asked at that byte, must hide nothing and move on
 * by at most two bytes (the '==' case).  The rules are static: this file
 * includes redact.c to reach them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../src/redact.c"

/* The rule of trigger byte t at i, as scan_text calls it. */
static size_t rule_at(scan *sc, command_cache *cmds, size_t i)
{
    switch ((unsigned char)sc->s[i]) {
    case '=': return at_equals(sc, i);
    case ':': return at_colon(sc, i);
    case '-': return at_dash(sc, cmds, i);
    case '<': return at_lt(sc, i);
    case '_': return at_underscore(sc, i);
    case 'A': return at_upper_a(sc, i);
    case 'x': return at_x(sc, i);
    default:  return at_upper_j(sc, i);
    }
}

static const char *const LEFT[] = {
    "", "password", "export DB_PASSWORD", "{\"token\"", "redis-cli -a", "curl -u",
    "sshpass", "s", "gh", "github", "e", "https", "x --api-key", "?access_token", NULL,
};
static const char *const RIGHT[] = {
    "", " hunter2", "\"v-4412\"", "//user:pw@host/x", "live_abcdefghijklmnop1234",
    "p_16C7e42F292c6912E7710c838347Ae178B4a", "IAABCDEFGHIJKLMNOP", "oxb-1234567890-abcdefghij",
    "hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghij1", "assword>pw-77</password>",
    "----BEGIN RSA PRIVATE KEY-----", NULL,
};

/* The neighbours tried: every ASCII byte and a few others (the filter's
 * tables treat all bytes past 0x7f alike: no rule starts next to one). */
static const int EXTRA[] = { 0x80, 0xa0, 0xc3, 0xe2, 0xff };

static int neighbour(int k)
{
    return k < 127 ? k + 1 : EXTRA[k - 127];
}
#define NEIGHBOURS (127 + (int)(sizeof EXTRA / sizeof EXTRA[0]))

static void no_rule_skipped_that_would_act(void **state)
{
    (void)state;
    static const char triggers[] = "=:-_AxJ<";
    char text[256];
    unsigned char mask[256];
    size_t turned_away = 0;

    pthread_once(&neighbours_once, build_neighbours);
    for (const char *t = triggers; *t; t++) {
        for (int kb = 0; kb < NEIGHBOURS; kb++) {
            for (int ka = 0; ka < NEIGHBOURS; ka++) {
                int b = neighbour(kb), a = neighbour(ka);
                char probe[4] = { (char)b, *t, (char)a, '\0' };
                if (may_start((const unsigned char *)probe, 1, 3))
                    continue;       /* the filter lets this pair through */
                turned_away++;
                for (const char *const *l = LEFT; *l; l++) {
                    for (const char *const *r = RIGHT; *r; r++) {
                        int n = snprintf(text, sizeof text, "%s%c%c%c%s", *l, b, *t, a, *r);
                        size_t i = strlen(*l) + 1;
                        scan sc = { text, (size_t)n, mask, 0 };
                        command_cache cmds = { 0, CMD_NONE };
                        memset(mask, 0, sizeof mask);
                        size_t next = rule_at(&sc, &cmds, i);
                        if (sc.hit || next > i + 2)
                            fail_msg("filter skips %c between %#x and %#x, but its rule acts in \"%s\"",
                                     *t, b, a, text);
                    }
                }
            }
        }
    }
    /* most neighbour pairs of most triggers are turned away */
    assert_true(turned_away > 8u * NEIGHBOURS * NEIGHBOURS / 2);
}

/* Texts with a secret next to the bytes the filter looks at are still
 * hidden, and the dates, times and host:port of a log stay as they are. */
static void filtered_texts_still_hidden(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        { "2026-12-01T20:00:00Z db:5432\npassword: pw-1", "2026-12-01T20:00:00Z db:5432\npassword: ***" },
        { "a\tpassword=pw-2", "a\tpassword=***" },
        { "x=\"token\":\"pw-3\"", "x=\"token\":\"***\"" },
        { "redis-cli -a pw-4 ping", "redis-cli -a *** ping" },
        { "k=sk_live_abcdefghijkl", "k=sk_live_***" },
        { "AKIAABCDEFGHIJKLMNOP", "AKIA***" },
        { "=xoxb-1234567890-abc", "=xoxb-***" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t n;
        char *out = rb_redact(NULL, cases[k][0], strlen(cases[k][0]), &n);
        assert_non_null(out);
        assert_string_equal(out, cases[k][1]);
        free(out);
    }
    const char *log = "2026-12-01T20:00:00.000Z INFO api[1]: GET /v1/x 200 user=00123 trace=abc";
    assert_false(rb_redact_needed(NULL, log, strlen(log)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_rule_skipped_that_would_act),
        cmocka_unit_test(filtered_texts_still_hidden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
