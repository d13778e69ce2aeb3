/*
 * bench/redact.c: what the redactor's marked secrets cost, as their number
 * grows: the time to add N secrets, and the time to redact a 200-byte and
 * a 64 KiB string (nothing to hide, and the same with the last secret
 * added in it) with N secrets held.  Two kinds of secrets: random tokens,
 * and .pgpass-like lines that share a 22-byte prefix (the lines of a
 * secret file often start alike).  Medians, with the fastest and slowest
 * round, in microseconds; adding is one round per N.
 *   cc -O2 -Iinclude $(pkg-config --cflags lua5.4) bench/redact.c build/librunbook_core.a \
 *      $(pkg-config --libs lua5.4 lua5.4-cjson libcrypto libedit) -lm -o /tmp/bench-redact
 *   /tmp/bench-redact [N...]        (default 1000 10000 100000)
 */
#include "runbook/redact.h"
#include "timing.h"

#include <string.h>

/* The i-th secret of a kind, into buf (at least 64 bytes); its length. */
static size_t make_secret(int kind, unsigned i, char *buf)
{
    unsigned x = i * 2654435761u ^ 0x5bd1e995u;

    if (kind == 0)
        return (size_t)snprintf(buf, 64, "tok_%08x%08x", x, i);
    return (size_t)snprintf(buf, 64, "db.prod.internal:5432:app_%u:svc:%08x", i, x);
}

/* Text like a log line, no secret shape in it, repeated to len bytes. */
static char *make_text(size_t len)
{
    static const char line[] = "Dec 01 20:58:52 web-1 nginx[1042]: GET /api/v1/orders/981 HTTP/1.1 200 "
                               "upstream 10.0.0.7 port 8080 took 12 ms, bytes 5120, cache miss\n";
    char *t = malloc(len + 1);

    for (size_t i = 0; i < len; i++)
        t[i] = line[i % (sizeof line - 1)];
    t[len] = '\0';
    return t;
}

static void time_redact(const rb_redactor *r, const char *what, const char *s, size_t len, int rounds)
{
    double *t = malloc((size_t)rounds * sizeof *t);
    size_t n = 0;
    int hides = strstr(what, "secret in it") != NULL;

    for (int i = 0; i < rounds; i++) {
        double t0 = now();
        free(rb_redact(r, s, len, &n));
        t[i] = now() - t0;
    }
    if ((n != len) != hides) {
        fprintf(stderr, "%s: expected %s, got %zu of %zu bytes\n", what, hides ? "a secret hidden" : "nothing hidden", n, len);
        exit(1);
    }
    double med = median(t, rounds);
    printf("  redact %-28s %10.2f us  (min %.2f, max %.2f, %d rounds)\n", what, med * 1e6, t[0] * 1e6,
           t[rounds - 1] * 1e6, rounds);
    free(t);
}

/* Rounds that keep one case near a second, at least 5. */
static int rounds_for(const rb_redactor *r, const char *s, size_t len)
{
    double t0 = now();
    free(rb_redact(r, s, len, NULL));
    double one = now() - t0;
    int n = one > 0 ? (int)(1.0 / one) : 1001;
    return n < 5 ? 5 : n > 1001 ? 1001 : n;
}

static void bench(int kind, unsigned n)
{
    rb_redactor *r = rb_redactor_new();
    char buf[64], *small = make_text(200), *big = make_text(64 * 1024);
    size_t last = 0;

    double t0 = now();
    for (unsigned i = 0; i < n; i++)
        rb_redactor_add(r, buf, last = make_secret(kind, i, buf));
    double add = now() - t0;
    printf("%s, N = %u: add %.3f s (%.2f us per secret)\n", kind ? "pgpass lines" : "tokens", n, add,
           add / n * 1e6);
    time_redact(r, "200 B, nothing to hide", small, 200, rounds_for(r, small, 200));
    time_redact(r, "64 KiB, nothing to hide", big, 64 * 1024, rounds_for(r, big, 64 * 1024));
    if (n == 0)
        goto done;
    memcpy(small + 100, buf, last);
    memcpy(big + 32 * 1024, buf, last);
    time_redact(r, "200 B, last secret in it", small, 200, rounds_for(r, small, 200));
    time_redact(r, "64 KiB, last secret in it", big, 64 * 1024, rounds_for(r, big, 64 * 1024));
done:
    free(small);
    free(big);
    rb_redactor_free(r);
}

int main(int argc, char **argv)
{
    unsigned def[] = { 1000, 10000, 100000 };

    for (int kind = 0; kind < 2; kind++) {
        if (argc > 1)
            for (int i = 1; i < argc; i++)
                bench(kind, (unsigned)strtoul(argv[i], NULL, 10));
        else
            for (size_t i = 0; i < sizeof def / sizeof def[0]; i++)
                bench(kind, def[i]);
    }
    return 0;
}
