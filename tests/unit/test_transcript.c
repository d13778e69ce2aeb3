/*
 * Unit tests for src/transcript.c: the hash-chained writer, verify's
 * detection of edited, dropped, reordered and torn lines, and the Lua
 * module over them (the redaction rules are tested in test_redact.c).  Every test works in its own mkdtemp
 * directory, removed afterwards.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "runbook/redact.h"
#include "runbook/transcript.h"

/* cmocka's own asserts print only the two values; this says what was meant. */
#define CHECK(cond, ...) do { if (!(cond)) fail_msg(__VA_ARGS__); } while (0)

#define ZEROS "0000000000000000000000000000000000000000000000000000000000000000"
#define MAX_LINES 32

typedef struct fixture {
    char dir[64];
    char path[128];        /* dir/t.jsonl, not created */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);

    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/rb_test_transcript_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/t.jsonl", f->dir);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    int rc = nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);

    free(f);
    return rc;
}

/* ---- file helpers ---------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long n;

    CHECK(fp != NULL, "expected to read %s: %s", path, strerror(errno));
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    rewind(fp);
    buf = malloc((size_t)n + 1);
    CHECK(buf && fread(buf, 1, (size_t)n, fp) == (size_t)n, "expected to read all of %s", path);
    buf[n] = '\0';
    fclose(fp);
    if (len)
        *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const char *data, size_t len)
{
    FILE *fp = fopen(path, "wb");

    CHECK(fp != NULL, "expected to write %s: %s", path, strerror(errno));
    CHECK(fwrite(data, 1, len, fp) == len, "expected to write all of %s", path);
    fclose(fp);
}

/* Split the file into lines (each keeps its '\n'); the caller frees each. */
static int load_lines(const char *path, char **lines)
{
    char *all = slurp(path, NULL), *p = all;
    int n = 0;

    while (*p && n < MAX_LINES) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);
        lines[n] = strndup(p, len);
        n++;
        p += len;
    }
    free(all);
    return n;
}

static void save_lines(const char *path, char **lines, int n)
{
    FILE *fp = fopen(path, "wb");

    CHECK(fp != NULL, "expected to rewrite %s", path);
    for (int i = 0; i < n; i++)
        fputs(lines[i], fp);
    fclose(fp);
}

static void free_lines(char **lines, int n)
{
    for (int i = 0; i < n; i++)
        free(lines[i]);
}

/* A run of n events: run.start, steps, and run.end last when `end`. */
static void write_chain(const char *path, int n, int end, char *last_hash)
{
    char err[256];
    rb_transcript *t = rb_transcript_open(path, "run-1", err, sizeof err);

    CHECK(t != NULL, "expected open to succeed, got: %s", err);
    for (int i = 1; i <= n; i++) {
        const char *event = i == 1 ? "run.start" : i == n && end ? "run.end" : "step.start";
        char fields[64];
        snprintf(fields, sizeof fields, "\"n\":%d,\"title\":\"step %d\"", i, i);
        CHECK(rb_transcript_append(t, event, fields) == 0,
              "expected append %d to succeed: %s", i, strerror(errno));
    }
    CHECK(rb_transcript_seq(t) == n, "expected seq %d, got %ld", n, rb_transcript_seq(t));
    if (last_hash)
        strcpy(last_hash, rb_transcript_last_hash(t));
    CHECK(rb_transcript_sync(t) == 0, "expected sync to succeed");
    rb_transcript_close(t);
}

static int verify(const char *path, rb_verify_result *res)
{
    return rb_transcript_verify(path, res);
}

/* ---- the chain ------------------------------------------------------- */

static void test_chain_verifies_and_reports_end(void **state)
{
    fixture *f = *state;
    char last[RB_HASH_HEX + 1];
    rb_verify_result res;

    write_chain(f->path, 5, 1, last);
    CHECK(verify(f->path, &res) == 0, "expected an intact chain, got: %s", res.reason);
    CHECK(res.lines == 5, "expected 5 good lines, got %ld", res.lines);
    CHECK(res.bad_line == 0, "expected no bad line, got %ld", res.bad_line);
    CHECK(res.ended == 1, "expected ended=1 after a run.end event");
    CHECK(strcmp(res.last_hash, last) == 0, "expected last_hash %s, got %s", last, res.last_hash);
}

/* What the tap was told: each line as it is in the file, then the close. */
typedef struct taps {
    int calls, closed;
    long seqs[8];
    char lines[8][512];
} taps;

static void record_tap(void *ud, long seq, const char *line, size_t len)
{
    taps *t = ud;
    if (line == NULL) {
        t->closed++;
        return;
    }
    if (t->calls < 8 && len < sizeof t->lines[0]) {
        t->seqs[t->calls] = seq;
        memcpy(t->lines[t->calls], line, len);
        t->lines[t->calls][len] = '\0';
    }
    t->calls++;
}

static void test_tap_is_told_each_line_as_written_and_the_close(void **state)
{
    fixture *f = *state;
    char err[256], *lines[MAX_LINES];
    taps t = { 0 };
    rb_transcript *w = rb_transcript_open(f->path, "run-tap", err, sizeof err);

    CHECK(w != NULL, "expected to open %s: %s", f->path, err);
    CHECK(rb_transcript_append(w, "before", "") == 0, "expected the first append to work");
    rb_transcript_set_tap(w, record_tap, &t);
    CHECK(rb_transcript_append(w, "one", "\"k\":1") == 0, "expected an append");
    CHECK(rb_transcript_append(w, "bad", "\"k\":\n1") != 0, "expected a line with a newline refused");
    CHECK(rb_transcript_append(w, "two", "") == 0, "expected an append");
    CHECK(strcmp(rb_transcript_path(w), f->path) == 0, "expected the writer's path back");
    rb_transcript_close(w);
    int n = load_lines(f->path, lines);
    CHECK(n == 3, "expected 3 lines in the file, got %d", n);
    CHECK(t.calls == 2, "expected the tap told of the 2 lines after it was set, got %d", t.calls);
    for (int i = 0; i < 2; i++) {
        CHECK(t.seqs[i] == i + 2, "expected seq %d, got %ld", i + 2, t.seqs[i]);
        lines[i + 1][strlen(lines[i + 1]) - 1] = '\0';       /* the tap gets no newline */
        CHECK(strcmp(t.lines[i], lines[i + 1]) == 0,
              "expected the tap's line %d to be the file's:\n%s\n%s", i, t.lines[i], lines[i + 1]);
    }
    CHECK(t.closed == 1, "expected the tap told of the close once, got %d", t.closed);
    for (int i = 0; i < n; i++)
        free(lines[i]);
}

static void test_chain_without_run_end_is_not_ended(void **state)
{
    fixture *f = *state;
    rb_verify_result res;

    write_chain(f->path, 3, 0, NULL);
    CHECK(verify(f->path, &res) == 0, "expected an intact chain, got: %s", res.reason);
    CHECK(res.lines == 3, "expected 3 lines, got %ld", res.lines);
    CHECK(res.ended == 0, "expected ended=0 without run.end");
}

/* The bytes on disk follow the format and hash rule of the header. */
static void test_line_format_matches_header(void **state)
{
    fixture *f = *state;
    char err[256], hash[RB_HASH_HEX + 1], *lines[MAX_LINES];
    rb_transcript *t = rb_transcript_open(f->path, "r\"1\n", err, sizeof err);

    CHECK(t != NULL, "expected open to succeed, got: %s", err);
    CHECK(strcmp(rb_transcript_last_hash(t), ZEROS) == 0, "expected 64 zeros before any line");
    CHECK(rb_transcript_append(t, "log", "") == 0, "expected append without fields to work");
    CHECK(rb_transcript_append(t, "run.end", "\"status\":\"ok\"") == 0, "expected append to work");
    CHECK(rb_transcript_append(t, "log", "\"a\":1,\n\"b\":2") == -1 && errno == EINVAL,
          "expected fields with a raw newline to be refused with EINVAL");
    rb_transcript_close(t);

    int n = load_lines(f->path, lines);
    CHECK(n == 2, "expected 2 lines, got %d", n);
    const char *l1 = lines[0];
    CHECK(strncmp(l1, "{\"seq\":1,\"ts\":\"", 15) == 0, "expected line 1 to start with seq and ts: %s", l1);
    CHECK(l1[15 + 23] == 'Z' && l1[15 + 10] == 'T' && l1[15 + 19] == '.',
          "expected a UTC timestamp with ms: %s", l1);
    CHECK(strstr(l1, ",\"run\":\"r\\\"1\\u000a\",\"event\":\"log\",\"prev\":\"" ZEROS "\",\"hash\":\""),
          "expected escaped run id, no fields, zero prev: %s", l1);

    /* hash = SHA-256(prev || line without the hash member, closed by '}') */
    char *cut = strstr(lines[0], ",\"hash\":\"");
    char buf[512];
    snprintf(buf, sizeof buf, "%s%.*s}", ZEROS, (int)(cut - lines[0]), lines[0]);
    rb_sha256_hex(buf, strlen(buf), hash);
    CHECK(strncmp(cut + 9, hash, RB_HASH_HEX) == 0, "expected hash %s in line 1: %s", hash, l1);
    CHECK(strcmp(cut + 9 + RB_HASH_HEX, "\"}\n") == 0, "expected the line to end with \"}\\n");

    char want_prev[100];
    snprintf(want_prev, sizeof want_prev, ",\"status\":\"ok\",\"prev\":\"%s\"", hash);
    CHECK(strstr(lines[1], want_prev), "expected line 2's prev to be line 1's hash: %s", lines[1]);
    free_lines(lines, n);
}

/* ---- tampering ------------------------------------------------------- */

static void test_edited_middle_line_is_named(void **state)
{
    fixture *f = *state;
    char *lines[MAX_LINES];
    rb_verify_result res;

    write_chain(f->path, 5, 1, NULL);
    int n = load_lines(f->path, lines);
    char *p = strstr(lines[2], "step 3");
    CHECK(p != NULL, "expected line 3 to hold \"step 3\"");
    p[5] = '9';
    save_lines(f->path, lines, n);
    free_lines(lines, n);

    CHECK(verify(f->path, &res) == 1, "expected an edited line to be found");
    CHECK(res.bad_line == 3, "expected bad line 3, got %ld", res.bad_line);
    CHECK(res.lines == 2, "expected 2 good lines, got %ld", res.lines);
    CHECK(strcmp(res.reason, "hash mismatch: line was edited") == 0,
          "expected the edit reason, got: %s", res.reason);
    CHECK(res.ended == 0, "expected ended=0 when run.end is past the bad line");
}

static void test_removed_line_is_named(void **state)
{
    fixture *f = *state;
    char *lines[MAX_LINES];
    rb_verify_result res;

    write_chain(f->path, 5, 1, NULL);
    int n = load_lines(f->path, lines);
    free(lines[2]);
    memmove(lines + 2, lines + 3, (size_t)(n - 3) * sizeof *lines);
    save_lines(f->path, lines, n - 1);
    free_lines(lines, n - 1);

    CHECK(verify(f->path, &res) == 1, "expected a removed line to be found");
    CHECK(res.bad_line == 3, "expected bad line 3, got %ld", res.bad_line);
    CHECK(strcmp(res.reason,
                 "prev does not match line 2's hash: a line was removed or reordered") == 0,
          "expected the removal reason naming line 2, got: %s", res.reason);
}

static void test_removed_first_line_is_named(void **state)
{
    fixture *f = *state;
    char *lines[MAX_LINES];
    rb_verify_result res;

    write_chain(f->path, 3, 0, NULL);
    int n = load_lines(f->path, lines);
    save_lines(f->path, lines + 1, n - 1);
    free_lines(lines, n);

    CHECK(verify(f->path, &res) == 1, "expected a missing first line to be found");
    CHECK(res.bad_line == 1, "expected bad line 1, got %ld", res.bad_line);
    CHECK(strstr(res.reason, "first line was removed"), "expected the reason to say so: %s", res.reason);
}

static void test_swapped_lines_are_detected(void **state)
{
    fixture *f = *state;
    char *lines[MAX_LINES], *tmp;
    rb_verify_result res;

    write_chain(f->path, 4, 1, NULL);
    int n = load_lines(f->path, lines);
    tmp = lines[1];
    lines[1] = lines[2];
    lines[2] = tmp;
    save_lines(f->path, lines, n);
    free_lines(lines, n);

    CHECK(verify(f->path, &res) == 1, "expected swapped lines to be found");
    CHECK(res.bad_line == 2, "expected bad line 2, got %ld", res.bad_line);
    CHECK(strstr(res.reason, "removed or reordered"), "expected a reorder reason, got: %s", res.reason);
}

static void test_truncated_last_line_is_detected(void **state)
{
    fixture *f = *state;
    size_t len;
    rb_verify_result res;

    write_chain(f->path, 4, 1, NULL);
    char *all = slurp(f->path, &len);
    spit(f->path, all, len - 40);   /* cut into the hash of line 4 */
    free(all);

    CHECK(verify(f->path, &res) == 1, "expected a torn last line to be found");
    CHECK(res.bad_line == 4, "expected bad line 4, got %ld", res.bad_line);
    CHECK(res.lines == 3, "expected 3 good lines, got %ld", res.lines);
    CHECK(strcmp(res.reason, "line is truncated (no hash)") == 0,
          "expected the truncation reason, got: %s", res.reason);
}

static void test_final_line_without_newline_is_intact(void **state)
{
    fixture *f = *state;
    size_t len;
    rb_verify_result res;

    write_chain(f->path, 3, 1, NULL);
    char *all = slurp(f->path, &len);
    spit(f->path, all, len - 1);
    free(all);

    CHECK(verify(f->path, &res) == 0, "expected intact without a final newline, got: %s", res.reason);
    CHECK(res.lines == 3 && res.ended == 1, "expected 3 lines ending in run.end, got %ld", res.lines);
}

/* An empty file holds no run: "hash chain intact" would vouch for nothing. */
static void test_empty_file_is_not_a_transcript(void **state)
{
    fixture *f = *state;
    rb_verify_result res;

    spit(f->path, "", 0);
    CHECK(verify(f->path, &res) == 1, "expected an empty file to fail, got: %s", res.reason);
    CHECK(res.lines == 0 && res.bad_line == 0, "expected 0 lines and the whole file bad, got %ld, %ld",
          res.lines, res.bad_line);
    CHECK(strstr(res.reason, "empty file") && strstr(res.reason, "not a runbook transcript"),
          "expected the reason to say empty, not a transcript, got: %s", res.reason);
}

static void test_text_file_is_not_a_transcript(void **state)
{
    fixture *f = *state;
    rb_verify_result res;
    static const char passwd[] = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/bin/sh\n";

    spit(f->path, passwd, sizeof passwd - 1);
    CHECK(verify(f->path, &res) == 1, "expected a text file to fail");
    CHECK(res.bad_line == 1 && strstr(res.reason, "not a runbook transcript"),
          "expected line 1 named as not a transcript, got line %ld: %s", res.bad_line, res.reason);
}

/* /dev/zero has no newline: verify must stop at the bound, not grow its
 * buffer until memory runs out (it reached 1 GB, the ulimit, before). */
static void test_endless_line_is_refused_at_the_bound(void **state)
{
    rb_verify_result res;

    (void)state;
    CHECK(verify("/dev/zero", &res) == -1, "expected /dev/zero to be refused, got: %s", res.reason);
    CHECK(strstr(res.reason, "/dev/zero:1:") && strstr(res.reason, "16 MiB"),
          "expected the reason to name file:line and the bound, got: %s", res.reason);
}

/* A line one byte over the bound after a good one: named with its number. */
static void test_line_over_the_bound_is_named(void **state)
{
    fixture *f = *state;
    rb_verify_result res;
    FILE *fp;

    write_chain(f->path, 1, 0, NULL);
    fp = fopen(f->path, "ab");
    CHECK(fp != NULL, "expected to append to %s", f->path);
    for (size_t i = 0; i <= RB_TRANSCRIPT_LINE_MAX; i++)
        fputc('x', fp);
    fputc('\n', fp);
    fclose(fp);
    CHECK(verify(f->path, &res) == -1, "expected the long line to be refused, got: %s", res.reason);
    CHECK(strstr(res.reason, ":2: line longer than 16 MiB") != NULL,
          "expected line 2 and the bound named, got: %s", res.reason);
}

/* The writer never writes a line verify would refuse. */
static void test_append_refuses_a_line_over_the_bound(void **state)
{
    fixture *f = *state;
    char err[256];
    rb_verify_result res;
    size_t n = RB_TRANSCRIPT_LINE_MAX + 16;
    char *fields = malloc(n + 16);
    rb_transcript *t = rb_transcript_open(f->path, "r", err, sizeof err);

    CHECK(t && fields, "expected open to succeed, got: %s", err);
    memcpy(fields, "\"big\":\"", 7);
    memset(fields + 7, 'y', n);
    strcpy(fields + 7 + n, "\"");
    CHECK(rb_transcript_append(t, "run.start", "") == 0, "expected the first append to work");
    CHECK(rb_transcript_append(t, "log", fields) == -1 && errno == EMSGSIZE,
          "expected EMSGSIZE for a line over the bound, got %s", strerror(errno));
    CHECK(rb_transcript_seq(t) == 1, "expected nothing written, seq %ld", rb_transcript_seq(t));
    rb_transcript_close(t);
    free(fields);
    CHECK(verify(f->path, &res) == 0 && res.lines == 1, "expected 1 good line, got: %s", res.reason);
}

static void test_missing_file_is_an_error(void **state)
{
    fixture *f = *state;
    rb_verify_result res;

    CHECK(verify(f->path, &res) == -1, "expected -1 for a missing file");
    CHECK(strstr(res.reason, f->path) && strstr(res.reason, "No such file"),
          "expected the reason to name the file and the cause, got: %s", res.reason);
}

/* A line with a good hash and link but the wrong seq can only be forged;
 * build one by hand to prove seq is checked on its own. */
static void test_seq_gap_is_detected(void **state)
{
    fixture *f = *state;
    char h1[RB_HASH_HEX + 1], h2[RB_HASH_HEX + 1], body[256], file[1024];
    rb_verify_result res;

    snprintf(body, sizeof body, "%s{\"seq\":1,\"event\":\"a\",\"prev\":\"%s\"}", ZEROS, ZEROS);
    rb_sha256_hex(body, strlen(body), h1);
    snprintf(body, sizeof body, "%s{\"seq\":3,\"event\":\"b\",\"prev\":\"%s\"}", h1, h1);
    rb_sha256_hex(body, strlen(body), h2);
    snprintf(file, sizeof file,
             "{\"seq\":1,\"event\":\"a\",\"prev\":\"%s\",\"hash\":\"%s\"}\n"
             "{\"seq\":3,\"event\":\"b\",\"prev\":\"%s\",\"hash\":\"%s\"}\n",
             ZEROS, h1, h1, h2);
    spit(f->path, file, strlen(file));

    CHECK(verify(f->path, &res) == 1, "expected a seq gap to be found");
    CHECK(res.bad_line == 2, "expected bad line 2, got %ld", res.bad_line);
    CHECK(strcmp(res.reason, "seq 2 expected, found 3") == 0, "expected the seq reason, got: %s", res.reason);
}

/* Append whose write(2) fails part-way (RLIMIT_FSIZE) leaves the file with
 * whole lines and the writer's state unchanged. */
static void test_failed_append_leaves_whole_lines(void **state)
{
    fixture *f = *state;
    char err[256], before[RB_HASH_HEX + 1];
    struct rlimit old, lim;
    struct stat st;
    rb_verify_result res;
    rb_transcript *t = rb_transcript_open(f->path, "r", err, sizeof err);

    CHECK(t != NULL, "expected open to succeed, got: %s", err);
    CHECK(rb_transcript_append(t, "run.start", "") == 0, "expected the first append to work");
    strcpy(before, rb_transcript_last_hash(t));
    stat(f->path, &st);
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)st.st_size + 20;
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    int rc = rb_transcript_append(t, "log", "\"msg\":\"a line longer than twenty bytes\"");
    int e = errno;
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);

    CHECK(rc == -1 && e == EFBIG, "expected append to fail with EFBIG, got rc %d: %s", rc, strerror(e));
    CHECK(rb_transcript_seq(t) == 1, "expected seq to stay 1, got %ld", rb_transcript_seq(t));
    CHECK(strcmp(rb_transcript_last_hash(t), before) == 0, "expected the last hash unchanged");
    CHECK(rb_transcript_append(t, "run.end", "") == 0, "expected a later append to work");
    rb_transcript_close(t);
    CHECK(verify(f->path, &res) == 0, "expected whole lines only, got line %ld: %s", res.bad_line, res.reason);
    CHECK(res.lines == 2, "expected 2 lines, got %ld", res.lines);
}

/* ---- open ------------------------------------------------------------ */

static void test_file_mode_is_0600_despite_umask(void **state)
{
    fixture *f = *state;
    char path[320], dir[256], err[256];
    struct stat st;
    mode_t old = umask(0);

    snprintf(dir, sizeof dir, "%s/a/b", f->dir);
    snprintf(path, sizeof path, "%s/t.jsonl", dir);
    rb_transcript *t = rb_transcript_open(path, "r", err, sizeof err);
    umask(old);
    CHECK(t != NULL, "expected open with new parent directories to work, got: %s", err);
    rb_transcript_close(t);

    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600,
          "expected file mode 0600, got %o", (unsigned)(st.st_mode & 07777));
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0700,
          "expected new directory mode 0700, got %o", (unsigned)(st.st_mode & 07777));
}

static void test_open_refuses_an_existing_file(void **state)
{
    fixture *f = *state;
    char err[256] = "", want[256];

    spit(f->path, "keep me\n", 8);
    CHECK(rb_transcript_open(f->path, "r", err, sizeof err) == NULL, "expected open to refuse an existing file");
    snprintf(want, sizeof want, "transcript: cannot create %s: File exists", f->path);
    CHECK(strcmp(err, want) == 0, "expected \"%s\", got \"%s\"", want, err);
    char *all = slurp(f->path, NULL);
    CHECK(strcmp(all, "keep me\n") == 0, "expected the existing file untouched, got: %s", all);
    free(all);
}

static void test_open_says_which_directory_failed(void **state)
{
    fixture *f = *state;
    char path[256], want[256], err[256] = "";

    snprintf(path, sizeof path, "%s/plain", f->dir);
    spit(path, "x", 1);
    snprintf(path, sizeof path, "%s/plain/sub/t.jsonl", f->dir);
    CHECK(rb_transcript_open(path, "r", err, sizeof err) == NULL, "expected open under a plain file to fail");
    snprintf(want, sizeof want, "transcript: cannot create directory %s/plain/sub: Not a directory", f->dir);
    CHECK(strcmp(err, want) == 0, "expected \"%s\", got \"%s\"", want, err);
}

/* ---- hashing and time ------------------------------------------------ */

static void test_sha256_known_vectors(void **state)
{
    char hex[RB_HASH_HEX + 1];
    size_t big = 1000000;
    char *a = malloc(big);
    (void)state;

    rb_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    rb_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    memset(a, 'a', big);
    rb_sha256_hex(a, big, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

static void test_timestamp_is_utc_with_ms(void **state)
{
    char ts[32];
    (void)state;

    rb_transcript_timestamp(ts, sizeof ts);
    CHECK(strlen(ts) == 24, "expected 24 characters, got \"%s\"", ts);
    CHECK(ts[4] == '-' && ts[7] == '-' && ts[10] == 'T' && ts[13] == ':' && ts[16] == ':'
          && ts[19] == '.' && ts[23] == 'Z', "expected YYYY-MM-DDTHH:MM:SS.mmmZ, got \"%s\"", ts);
}

/* ---- Lua ------------------------------------------------------------- */

static lua_State *new_state(const fixture *f)
{
    lua_State *L = luaL_newstate();

    luaL_openlibs(L);
    luaL_requiref(L, "runbook.transcript", luaopen_runbook_transcript, 0);
    lua_setglobal(L, "T");
    lua_pushstring(L, f->dir);
    lua_setglobal(L, "DIR");
    return L;
}

static void run_lua(lua_State *L, const char *code)
{
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("expected the Lua chunk to pass, got: %s", lua_tostring(L, -1));
}

static void test_lua_writer_and_verify(void **state)
{
    lua_State *L = new_state(*state);

    run_lua(L,
        "local p = DIR .. '/lua/t.jsonl'\n"
        "do\n"
        "  local w <close> = T.open(p, 'run-9')\n"
        "  assert(w:path() == p, 'path() should return the path')\n"
        "  assert(w:seq() == 0 and w:hash() == string.rep('0', 64), 'fresh writer')\n"
        "  w:append('run.start', '\"operator\":\"me\"')\n"
        "  w:append('log')\n"
        "  w:append('run.end', '\"status\":\"ok\"')\n"
        "  w:sync()\n"
        "  assert(w:seq() == 3, 'seq should be 3, got ' .. w:seq())\n"
        "  H = w:hash()\n"
        "  w:close(); w:close()\n"
        "  local ok, e = pcall(w.append, w, 'x')\n"
        "  assert(not ok and e:find('closed transcript'), 'use after close should raise: ' .. tostring(e))\n"
        "end\n"
        "collectgarbage()\n"
        "local w2 = T.open(DIR .. '/lua/other.jsonl', 'r')\n"
        "local okn, en = pcall(w2.append, w2, 'log', '\"a\":1,\\n\"b\":2')\n"
        "assert(not okn and en:find('one line'), 'a newline in fields should raise: ' .. tostring(en))\n"
        "assert(w2:seq() == 0, 'nothing written after a refused append')\n"
        "w2:close()\n"
        "local ok, res = T.verify(p)\n"
        "assert(ok == true, 'verify should pass: ' .. tostring(res.reason))\n"
        "assert(res.lines == 3 and res.ended == true and res.bad_line == 0, 'result fields')\n"
        "assert(res.last_hash == H and res.reason == nil, 'last_hash should match the writer')\n"
        "local ok2, e = pcall(T.open, p, 'again')\n"
        "assert(not ok2 and e == 'transcript: cannot create ' .. p .. ': File exists', 'got: ' .. tostring(e))\n"
        "local f = assert(io.open(p, 'a')); f:write('{\"seq\":4'); f:close()\n"
        "ok, res = T.verify(p)\n"
        "assert(ok == false and res.bad_line == 4 and res.reason:find('truncated'), 'torn line')\n"
        "ok, res = T.verify(DIR .. '/none')\n"
        "assert(ok == nil and res.reason:find('cannot open'), 'missing file should give nil')\n"
        "assert(T.sha256('abc'):sub(1, 8) == 'ba7816bf', 'sha256')\n"
        "assert(#T.timestamp() == 24, 'timestamp')\n");
    lua_close(L);
}

/* report reads a transcript in one pass (a FIFO gives its lines once):
 * the lines come back with the verdict, past a bad line too; expect finds
 * the line whose hash the operator noted. */
static void test_lua_verify_reads_lines_once_and_finds_a_hash(void **state)
{
    fixture *f = *state;
    char h[RB_HASH_HEX + 1], code[2048];
    lua_State *L = new_state(f);

    write_chain(f->path, 3, 1, h);
    snprintf(code, sizeof code,
        "local p, h = '%s', '%s'\n"
        "local ok, res, lines = T.verify(p, { lines = true, expect = h })\n"
        "assert(ok == true and #lines == 3 and lines[1]:find('^{\"seq\":1,'), 'three lines')\n"
        "assert(res.expect_line == 3, 'expected hash on line 3, got ' .. tostring(res.expect_line))\n"
        "local f = assert(io.open(p, 'a')); f:write('not json\\n', 'more\\n'); f:close()\n"
        "ok, res, lines = T.verify(p, { lines = true, expect = h })\n"
        "assert(ok == false and res.bad_line == 4 and #lines == 5, 'bad line 4, all 5 lines kept')\n"
        "assert(res.expect_line == 3 and res.lines == 3, 'the hash is still line 3 of 3 verified')\n"
        "local two = select(2, T.verify(p, { expect = string.rep('a', 64) }))\n"
        "assert(two.expect_line == nil, 'an unknown hash is on no line')\n"
        "local okz, rz = T.verify('/dev/zero', { lines = true })\n"
        "assert(okz == nil and rz.reason:find('16 MiB'), 'bound: ' .. tostring(rz.reason))\n"
        "assert(not pcall(T.verify, p, { expect = 'abc' }), 'a short expect is a usage error')\n",
        f->path, h);
    run_lua(L, code);
    lua_close(L);
}

/* writer:event encodes and appends in one call: the line holds what
 * transcript.encode gives for the fields (redacted), a bad table raises
 * and writes nothing, an event recorded while the fields are encoded (a
 * __tostring) lands first with the chain in order, and a line that cannot
 * be written is returned, not raised. */
static void test_lua_writer_event(void **state)
{
    lua_State *L = new_state(*state);

    run_lua(L,
        "local p = DIR .. '/lua/ev.jsonl'\n"
        "local w = T.open(p, 'run-e')\n"
        "T.secret('hunter22')\n"
        "local f = { operator = 'me', password = 'pw1', note = 'key hunter22', argv = { 'mysql', '-pzz9' } }\n"
        "local members = T.encode(f)\n"
        "assert(w:event('run.start', f) == true, 'event should return true')\n"
        "assert(w:event('log') == true, 'an event without fields')\n"
        "local inner = { __tostring = function() assert(w:event('inner', { n = 1 })); return 'k' end }\n"
        "assert(w:event('outer', { [setmetatable({}, inner)] = 'x' }), 'outer event')\n"
        "assert(w:seq() == 4, 'four lines, got ' .. w:seq())\n"
        "local ok, e = pcall(w.event, w, 'bad', { 1, 2 })\n"
        "assert(not ok and e:find('named members'), 'an array raises: ' .. tostring(e))\n"
        "local boom = { __tostring = function() error('boom') end }\n"
        "ok, e = pcall(w.event, w, 'bad', { [setmetatable({}, boom)] = 1 })\n"
        "assert(not ok and tostring(e):find('boom'), 'a failing __tostring raises: ' .. tostring(e))\n"
        "ok, e = pcall(w.event, w, 'bad', 'a string')\n"
        "assert(not ok and e:find('table expected'), 'fields must be a table: ' .. tostring(e))\n"
        "local big = {}\n"
        "for i = 1, 300 do big['k' .. i] = string.rep('a', 65536) end\n"
        "local a, why, long = w:event('huge', big)\n"
        "assert(a == nil and long == true and why ~= nil, 'a line over 16 MiB is returned as too long')\n"
        "assert(w:seq() == 4, 'nothing written for the refused events, got ' .. w:seq())\n"
        "w:close()\n"
        "a, why, long = w:event('late', {})\n"
        "assert(a == nil and why:find('closed') and long == false, 'closed: ' .. tostring(why))\n"
        "local okv, res, lines = T.verify(p, { lines = true })\n"
        "assert(okv == true and res.lines == 4, 'the chain verifies: ' .. tostring(res.reason))\n"
        "assert(lines[1]:find(',\"event\":\"run.start\",' .. members .. ',', 1, true), 'members: ' .. lines[1])\n"
        "assert(not lines[1]:find('pw1') and not lines[1]:find('hunter22') and not lines[1]:find('zz9'), lines[1])\n"
        "assert(lines[2]:find('\"event\":\"log\",\"prev\"', 1, true), 'no fields: ' .. lines[2])\n"
        "assert(lines[3]:find('\"event\":\"inner\"', 1, true), 'inner first: ' .. lines[3])\n"
        "assert(lines[4]:find('\"event\":\"outer\"', 1, true), 'outer second: ' .. lines[4])\n");
    lua_close(L);
}

/* runbook.redact is the module the screen uses; the transcript's copies of
 * its functions share its state's secrets. */
static void test_lua_redact_module(void **state)
{
    lua_State *L = new_state(*state);

    luaL_requiref(L, "runbook.redact", luaopen_runbook_redact, 0);
    lua_setglobal(L, "R");
    run_lua(L,
        "R.secret('s3cr3t-value')\n"
        "assert(R.redact('is s3cr3t-value') == 'is ***', 'redact.redact: ' .. R.redact('is s3cr3t-value'))\n"
        "assert(T.redact('is s3cr3t-value') == 'is ***', 'the transcript sees the same secrets')\n"
        "assert(R.line_redactor():line('-----BEGIN PRIVATE KEY-----') ~= nil, 'line_redactor')\n");
    lua_close(L);
}

static void test_lua_secret_and_redact(void **state)
{
    lua_State *L = new_state(*state);

    run_lua(L,
        "assert(T.redact('postgres://u:pw@h/db') == 'postgres://u:***@h/db', 'URL password')\n"
        "assert(T.secret('hunter2') == 'hunter2', 'secret returns its value')\n"
        "T.secret('hunter2'); T.secret('')\n"
        "assert(T.redact('pw is hunter2!') == 'pw is ***!', 'registered secret')\n"
        "assert(T.redact(42) == 42 and T.redact(nil) == nil, 'non-strings unchanged')\n"
        "assert(T.redact('a\\0hunter2\\0b') == 'a\\0***\\0b', 'binary-safe')\n");
    /* the redactor belongs to the state: another state knows no secrets */
    lua_State *L2 = new_state(*state);
    run_lua(L2, "assert(T.redact('hunter2') == 'hunter2', 'secrets are per state')\n");
    lua_close(L2);
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_chain_verifies_and_reports_end),
        T(test_tap_is_told_each_line_as_written_and_the_close),
        T(test_chain_without_run_end_is_not_ended),
        T(test_line_format_matches_header),
        T(test_edited_middle_line_is_named),
        T(test_removed_line_is_named),
        T(test_removed_first_line_is_named),
        T(test_swapped_lines_are_detected),
        T(test_truncated_last_line_is_detected),
        T(test_final_line_without_newline_is_intact),
        T(test_empty_file_is_not_a_transcript),
        T(test_text_file_is_not_a_transcript),
        T(test_endless_line_is_refused_at_the_bound),
        T(test_line_over_the_bound_is_named),
        T(test_append_refuses_a_line_over_the_bound),
        T(test_lua_verify_reads_lines_once_and_finds_a_hash),
        T(test_missing_file_is_an_error),
        T(test_seq_gap_is_detected),
        T(test_failed_append_leaves_whole_lines),
        T(test_file_mode_is_0600_despite_umask),
        T(test_open_refuses_an_existing_file),
        T(test_open_says_which_directory_failed),
        T(test_sha256_known_vectors),
        T(test_timestamp_is_utc_with_ms),
        T(test_lua_writer_and_verify),
        T(test_lua_writer_event),
        T(test_lua_redact_module),
        T(test_lua_secret_and_redact),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
