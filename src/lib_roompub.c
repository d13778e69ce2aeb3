/*
 * lib_roompub.c: the incident room's publisher (docs/room.md).
 *
 *   roompub.start(writer, opts) -> pub      opts: backend ("postgres" |
 *       "redis"), run, heartbeat (s), io_timeout (s), and for postgres
 *       url, for redis host, port, user, password, db
 *   pub:note{runbook=, target=, operator=, host=, started=, step=, state=}
 *       the run's summary (a key set to false is cleared)
 *   pub:news() -> kind ("down" | "refused" | "back"), text | nil   (refused: the login)
 *   pub:finish(seconds) -> published, written, why the store is away ("" when
 *       it is not)                              (then the thread ends)
 *   pub:stats() -> {written, published, connected, identity}
 *
 * Every line the transcript writer puts in the file is published to the
 * store by a thread of its own, with a connection of its own: the Lua main
 * thread blocks in its own waits (a prompt, a process), and a publisher it
 * drove would stall with it.  The writer only tells the thread (the tap:
 * a mutex, two counters, a wake-up when the thread waits for lines; never
 * a wait on the store); the
 * thread reads the lines back from the file, which stays the record and
 * is the queue, so a store that is away for an hour costs no memory and a
 * line is never held twice.  On every (re)connect it asks the store for
 * the highest seq it holds for the run and publishes from the line after
 * it, so a store restarted empty, a batch whose reply was lost, or lines
 * written while it was away all end the same way: every line, once, in
 * order.  Every wait on the store is the thread's own poll, bounded
 * (io_timeout) and cut short at the run's end: a hung server delays the
 * thread, never the run.  The main thread learns of a store
 * that went away, or came back, through pub:news() and says so once.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <libpq-fe.h>

#include "runbook/host.h"
#include "runbook/transcript.h"

#define PUB_MT "runbook.roompub.pub"
#define BATCH_LINES 200             /* lines per INSERT / pipeline */
#define BATCH_BYTES (1 << 20)       /* bytes per batch, unless one line is longer */
#define MAX_NEWS 4
#define STOP_SLICE 0.1              /* how often a wait on the store looks for a stop */
/* After a batch, the next waits this long unless a whole one is ready:
 * a line after a quiet spell goes out at once, a burst (a loop of calls)
 * goes in batches, not in a round trip per line that competes with the
 * run for the CPU and the network. */
#define LINGER 0.0005
#define FILL_BYTES (2 << 20)        /* read ahead of the file per batch */
#define ERR_MAX 300

enum { F_RUNBOOK, F_TARGET, F_OPERATOR, F_HOST, F_STARTED, F_STEP, F_STATE, NFIELDS };
static const char *const field_names[NFIELDS] = {
    "runbook", "target", "operator", "host", "started", "step", "state"
};

enum backend { B_POSTGRES, B_REDIS };

struct news { char kind[8]; char text[ERR_MAX + 80]; };

/* One line of a batch: bytes inside the reader's buffer. */
struct line { const char *p; size_t len; long seq; };

struct pub {
    pthread_mutex_t mu;
    pthread_cond_t wake;            /* the thread: lines, a stop */
    pthread_cond_t moved;           /* finish: lines published */
    pthread_t thread;
    int refs;                       /* the Lua handle and the thread */
    /* under mu */
    long written, published;
    off_t written_bytes;
    int closing, stop, connected, ever_connected, down_told;
    int idle;                       /* the thread waits for lines: the tap wakes it */
    char *fields[NFIELDS];
    struct news news[MAX_NEWS];
    int nnews;
    char identity[128];
    char last_err[ERR_MAX];         /* why the store is away, while it is */
    /* fixed after start */
    enum backend backend;
    char *url, *host, *user, *password, *run, *path;
    int port, db;
    double beat, io_timeout;
    /* the thread's own */
    PGconn *pg;
    redisContext *rd;
    int fd;
    char *buf;
    size_t len, cap, off;           /* buf[off..len) is read, not yet published */
    off_t file_off;                 /* where buf[len] is in the file */
    double retry_at, next_beat, backoff, last_publish;
    struct line batch[BATCH_LINES];
    char err[ERR_MAX];
};

/* The Lua handle: the publisher and the writer it taps (NULL once either
 * is gone; the writer tells the tap when it closes). */
struct handle { struct pub *p; rb_transcript *t; int started; };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set_err(struct pub *p, const char *what, const char *why)
{
    char *w = p->err;

    snprintf(p->err, sizeof p->err, "%s: %s", what, why ? why : "unknown error");
    /* One line: libpq's messages hold "\n\t" and end in a newline. */
    for (const char *c = p->err; *c; c++) {
        int blank = *c == '\n' || *c == '\t' || *c == ' ';
        if (!blank || (w > p->err && w[-1] != ' '))
            *w++ = blank ? ' ' : *c;
    }
    while (w > p->err && w[-1] == ' ')
        w--;
    *w = '\0';
}

static void forget(char **s)
{
    if (*s)
        explicit_bzero(*s, strlen(*s));
    free(*s);
    *s = NULL;
}

static void pub_free(struct pub *p)
{
    char **owned[] = { &p->url, &p->host, &p->user, &p->password, &p->run, &p->path };
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        forget(owned[i]);
    for (int i = 0; i < NFIELDS; i++)
        free(p->fields[i]);
    free(p->buf);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->moved);
    free(p);
}

/* The last of the Lua handle and the thread to let go frees it: a thread
 * stuck in a hung server's reply at exit is left behind, not waited for. */
static void pub_unref(struct pub *p)
{
    pthread_mutex_lock(&p->mu);
    int last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (last)
        pub_free(p);
}

/* Called by the notice makers with mu held; the oldest goes when full. */
static void add_news(struct pub *p, const char *kind, const char *fmt, const char *arg, long n)
{
    if (p->nnews == MAX_NEWS) {
        memmove(p->news, p->news + 1, sizeof p->news[0] * (MAX_NEWS - 1));
        p->nnews--;
    }
    struct news *w = &p->news[p->nnews++];
    snprintf(w->kind, sizeof w->kind, "%s", kind);
    if (arg)
        snprintf(w->text, sizeof w->text, fmt, arg);
    else
        snprintf(w->text, sizeof w->text, fmt, n);
}

/* ---- the tap: on the writer's thread, never waiting ------------------- */

static void tap(void *ud, long seq, const char *line, size_t len)
{
    struct pub *p = ud;

    if (line == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->written = seq;
    p->written_bytes += (off_t)len + 1;
    /* A thread that waits for a deadline of its own (a linger, a retry)
     * looks at the counters then: waking it for every line of a burst
     * cost a context switch per line. */
    if (p->idle) {
        p->idle = 0;
        pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->mu);
}

/* ---- reading the lines back from the transcript ------------------------ */

static void rewind_reader(struct pub *p)
{
    p->len = p->off = 0;
    p->file_off = 0;
}

/* Read on from the file, up to what the writer has finished (limit), to
 * about FILL_BYTES ahead or at least one whole line: a store away for an
 * hour of a long run is caught up a batch at a time, not all in memory.
 * -1 when the file cannot be read. */
static int fill(struct pub *p, off_t limit)
{
    if (p->off > 0) {
        memmove(p->buf, p->buf + p->off, p->len - p->off);
        p->len -= p->off;
        p->off = 0;
    }
    while (p->file_off < limit && (p->len < FILL_BYTES || !memchr(p->buf, '\n', p->len))) {
        size_t want = (size_t)(limit - p->file_off);
        if (want > FILL_BYTES)
            want = FILL_BYTES;
        if (p->cap - p->len < want) {
            char *nb = realloc(p->buf, p->len + want);
            if (!nb)
                return -1;
            p->buf = nb;
            p->cap = p->len + want;
        }
        ssize_t n = pread(p->fd, p->buf + p->len, want, p->file_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p->len += (size_t)n;
        p->file_off += n;
    }
    return 0;
}

static long line_seq(const char *s, size_t n)
{
    static const char prefix[] = "{\"seq\":";
    if (n < sizeof prefix || memcmp(s, prefix, sizeof prefix - 1) != 0)
        return 0;
    return strtol(s + sizeof prefix - 1, NULL, 10);
}

/* The next lines after seq `after`, up to the batch bounds; the lines up
 * to `after` (already in the store) are passed over.  Returns the count;
 * *end is where the batch ends in buf. */
static int take_batch(struct pub *p, long after, struct line *out, size_t *end)
{
    int n = 0;
    size_t bytes = 0, at = p->off;

    *end = p->off;
    while (n < BATCH_LINES && at < p->len) {
        char *nl = memchr(p->buf + at, '\n', p->len - at);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (p->buf + at));
        long seq = line_seq(p->buf + at, len);
        if (seq > after) {
            if (n > 0 && bytes + len > BATCH_BYTES)
                break;
            out[n++] = (struct line){ p->buf + at, len, seq };
            bytes += len;
        }
        at += len + 1;
        *end = at;
    }
    return n;
}

/* ---- waiting on the store ------------------------------------------------- */

static int stopping(struct pub *p)
{
    pthread_mutex_lock(&p->mu);
    int stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

/* Wait for fd within the deadline, a slice at a time, so the end of the
 * run (stop) is seen at once even while a store hangs: the thread then
 * ends before the process does, never during its exit.  0 when ready. */
static int wait_fd(struct pub *p, int fd, short ev, double deadline)
{
    for (;;) {
        double left = deadline - now_s();
        if (stopping(p) || left <= 0)
            return -1;
        if (left > STOP_SLICE)
            left = STOP_SLICE;
        struct pollfd pfd = { fd, ev, 0 };
        int r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* ---- PostgreSQL ---------------------------------------------------------- */

static const char PG_SCHEMA[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(7243011);"  /* two first runs at once; the same lock and tables as stdlib/runbook/room_inbox.lua's SCHEMA */
    "CREATE SCHEMA IF NOT EXISTS runbook_room;"
    "CREATE TABLE IF NOT EXISTS runbook_room.lines (run text, seq bigint, line text not null,"
    " at timestamptz default now(), primary key (run, seq));"
    "CREATE TABLE IF NOT EXISTS runbook_room.runs (run text primary key, runbook text,"
    " target text, operator text, host text, identity text, started timestamptz,"
    " updated timestamptz, step text, state text, alive timestamptz, beat real);"
    "COMMIT";

static int pg_poll(struct pub *p, short ev, double deadline)
{
    return wait_fd(p, PQsocket(p->pg), ev, deadline);
}

/* Send, then read every result within io_timeout; returns the last
 * result (the caller clears it) or NULL with p->err set. */
static PGresult *pg_run(struct pub *p, const char *sql, int n, const char *const *values)
{
    double deadline = now_s() + p->io_timeout;
    int sent = n == 0 && !values ? PQsendQuery(p->pg, sql)
                                  : PQsendQueryParams(p->pg, sql, n, NULL, values, NULL, NULL, 0);
    int pending = sent ? 1 : -1;
    while (sent && pending > 0) {
        if ((pending = PQflush(p->pg)) > 0 && pg_poll(p, POLLOUT | POLLIN, deadline) != 0)
            pending = -1;
        else if (pending > 0 && !PQconsumeInput(p->pg))
            pending = -1;
    }
    while (pending == 0 && PQisBusy(p->pg)) {
        if (pg_poll(p, POLLIN, deadline) != 0 || !PQconsumeInput(p->pg))
            pending = -1;
    }
    if (pending != 0) {
        set_err(p, "postgres", PQstatus(p->pg) == CONNECTION_OK ? "no reply in time" : PQerrorMessage(p->pg));
        return NULL;
    }
    PGresult *last = NULL, *r;
    while ((r = PQgetResult(p->pg)) != NULL) {
        PQclear(last);
        last = r;
    }
    ExecStatusType st = last ? PQresultStatus(last) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return last;
    set_err(p, "postgres", last ? PQresultErrorMessage(last) : PQerrorMessage(p->pg));
    PQclear(last);
    return NULL;
}

/* Run sql, keep the first value of its first row (NULL: none) in out. */
static int pg_value(struct pub *p, const char *sql, int n, const char *const *values,
                    char *out, size_t outlen)
{
    PGresult *r = pg_run(p, sql, n, values);
    if (!r)
        return -1;
    out[0] = '\0';
    if (PQntuples(r) > 0 && PQnfields(r) > 0 && !PQgetisnull(r, 0, 0))
        snprintf(out, outlen, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

static int pg_connect(struct pub *p, char *identity, size_t idlen)
{
    char ct[16];
    snprintf(ct, sizeof ct, "%d", (int)(p->io_timeout + 0.999));
    const char *keys[] = { "dbname", "connect_timeout", "fallback_application_name", NULL };
    const char *vals[] = { p->url, ct, "runbook-room", NULL };
    double deadline = now_s() + p->io_timeout;
    p->pg = PQconnectStartParams(keys, vals, 1);
    PostgresPollingStatusType st = p->pg && PQstatus(p->pg) != CONNECTION_BAD
        ? PGRES_POLLING_WRITING : PGRES_POLLING_FAILED;
    while (st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) {
        if (pg_poll(p, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline) != 0) {
            set_err(p, "postgres", "no answer in time");
            return -1;
        }
        st = PQconnectPoll(p->pg);
    }
    if (st != PGRES_POLLING_OK || PQsetnonblocking(p->pg, 1) != 0) {
        set_err(p, "postgres", p->pg ? PQerrorMessage(p->pg) : "out of memory");
        return -1;
    }
    char have[8];
    if (pg_value(p, "SELECT to_regclass('runbook_room.lines') IS NOT NULL AND "
                 "to_regclass('runbook_room.runs') IS NOT NULL", 0, NULL, have, sizeof have) != 0)
        return -1;
    if (strcmp(have, "t") != 0) {
        PGresult *r = pg_run(p, PG_SCHEMA, 0, NULL);
        if (!r)
            return -1;
        PQclear(r);
    }
    return pg_value(p, "SELECT session_user", 0, NULL, identity, idlen);
}

static long pg_max_seq(struct pub *p)
{
    const char *v[] = { p->run };
    char out[32];
    if (pg_value(p, "SELECT coalesce(max(seq), 0) FROM runbook_room.lines WHERE run = $1",
                 1, v, out, sizeof out) != 0)
        return -1;
    return strtol(out, NULL, 10);
}

#define PG_UPSERT \
    "up AS (INSERT INTO runbook_room.runs AS r (run, runbook, target, operator, host, identity," \
    " started, updated, step, state, alive, beat) VALUES ($1, $2, $3, $4, $5, $6," \
    " $7::timestamptz, now(), $8, $9, now(), $10::real) ON CONFLICT (run) DO UPDATE SET" \
    " runbook = excluded.runbook, target = excluded.target, operator = excluded.operator," \
    " host = excluded.host, identity = excluded.identity, started = excluded.started," \
    " updated = now(), step = excluded.step, state = excluded.state, alive = now()," \
    " beat = excluded.beat RETURNING 1) SELECT pg_notify('runbook_room', $1)"
#define PG_FIXED 10                 /* the parameters before the lines' */

/* The lines, the summary and the notification in one statement: one round
 * trip, one transaction, so the store never holds half a batch. */
static int pg_publish(struct pub *p, const struct line *ls, int n, char *const *fields,
                      const char *beat)
{
    const char *vals[PG_FIXED + 2 * BATCH_LINES];
    char seqs[BATCH_LINES][24];
    size_t cap = 200 + (size_t)n * 40 + sizeof PG_UPSERT;
    char *sql = malloc(cap);
    if (!sql) {
        set_err(p, "postgres", "out of memory");
        return -1;
    }
    size_t at = (size_t)snprintf(sql, cap, "WITH ins AS (INSERT INTO runbook_room.lines (run, seq, line) VALUES ");
    vals[0] = p->run;
    for (int i = 0; i < NFIELDS; i++)
        vals[1 + (i < F_STARTED ? i : i + 1)] = fields[i];
    vals[5] = p->identity;
    vals[9] = beat;
    for (int i = 0; i < n; i++) {
        snprintf(seqs[i], sizeof seqs[i], "%ld", ls[i].seq);
        vals[PG_FIXED + 2 * i] = seqs[i];
        vals[PG_FIXED + 2 * i + 1] = ls[i].p;
        at += (size_t)snprintf(sql + at, cap - at, "%s($1, $%d::bigint, $%d)", i ? ", " : "",
                               PG_FIXED + 2 * i + 1, PG_FIXED + 2 * i + 2);
    }
    snprintf(sql + at, cap - at, " ON CONFLICT DO NOTHING RETURNING 1), " PG_UPSERT);
    PGresult *r = pg_run(p, sql, PG_FIXED + 2 * n, vals);
    free(sql);
    PQclear(r);
    return r ? 0 : -1;
}

static int pg_beat(struct pub *p)
{
    const char *v[] = { p->run };
    PGresult *r = pg_run(p, "UPDATE runbook_room.runs SET alive = now() WHERE run = $1", 1, v);
    PQclear(r);
    return r ? 0 : -1;
}

/* ---- Redis ---------------------------------------------------------------- */

static void rd_failed(struct pub *p)
{
    set_err(p, "redis", p->rd->errstr[0] ? p->rd->errstr : "connection lost");
}

/* Send what the context holds, within the deadline. */
static int rd_flush(struct pub *p, double deadline)
{
    int done = 0;
    while (!done) {
        if (redisBufferWrite(p->rd, &done) != REDIS_OK) {
            rd_failed(p);
            return -1;
        }
        if (!done && wait_fd(p, p->rd->fd, POLLOUT, deadline) != 0) {
            set_err(p, "redis", "no answer in time");
            return -1;
        }
    }
    return 0;
}

/* The next reply (the caller frees it), within the deadline; NULL with
 * p->err set when the connection failed or the reply did not come. */
static redisReply *rd_read(struct pub *p, double deadline)
{
    void *r = NULL;
    for (;;) {
        if (redisGetReplyFromReader(p->rd, &r) != REDIS_OK) {
            rd_failed(p);
            return NULL;
        }
        if (r)
            return r;
        if (wait_fd(p, p->rd->fd, POLLIN, deadline) != 0) {
            set_err(p, "redis", "no reply in time");
            return NULL;
        }
        if (redisBufferRead(p->rd) != REDIS_OK) {
            rd_failed(p);
            return NULL;
        }
    }
}

/* One command; the reply (the caller frees it), NULL with p->err set for
 * a transport failure or an error reply. */
static redisReply *rd_cmd(struct pub *p, int argc, const char **argv, const size_t *lens)
{
    double deadline = now_s() + p->io_timeout;
    redisReply *r = NULL;
    if (redisAppendCommandArgv(p->rd, argc, argv, lens) != REDIS_OK)
        rd_failed(p);
    else if (rd_flush(p, deadline) == 0)
        r = rd_read(p, deadline);
    if (r && r->type == REDIS_REPLY_ERROR) {
        set_err(p, "redis", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int rd_do(struct pub *p, int argc, const char **argv)
{
    redisReply *r = rd_cmd(p, argc, argv, NULL);
    freeReplyObject(r);
    return r ? 0 : -1;
}

static int rd_connect(struct pub *p, char *identity, size_t idlen)
{
    char db[16];
    int soerr = 0;
    socklen_t soerrlen = sizeof soerr;
    p->rd = redisConnectNonBlock(p->host, p->port);
    if (!p->rd || p->rd->err) {
        set_err(p, "redis", p->rd ? p->rd->errstr : "out of memory");
        return -1;
    }
    if (wait_fd(p, p->rd->fd, POLLOUT, now_s() + p->io_timeout) != 0) {
        set_err(p, "redis", "no answer in time");
        return -1;
    }
    if (getsockopt(p->rd->fd, SOL_SOCKET, SO_ERROR, &soerr, &soerrlen) != 0 || soerr != 0) {
        set_err(p, "redis", strerror(soerr ? soerr : errno));
        return -1;
    }
    const char *auth[] = { "AUTH", p->user ? p->user : p->password, p->password };
    if (p->password && rd_do(p, p->user ? 3 : 2, auth) != 0)
        return -1;
    snprintf(db, sizeof db, "%d", p->db);
    const char *sel[] = { "SELECT", db };
    if (p->db != 0 && rd_do(p, 2, sel) != 0)
        return -1;
    const char *who[] = { "ACL", "WHOAMI" };
    redisReply *r = rd_cmd(p, 2, who, NULL);
    if (!r)
        return -1;
    snprintf(identity, idlen, "%s", r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS
             ? r->str : "?");
    freeReplyObject(r);
    return 0;
}

static void rd_key(struct pub *p, char *out, size_t n, const char *kind)
{
    snprintf(out, n, "runbook:room:%s:%s", kind, p->run);
}

/* The seq field of the stream's last entry; 0 for an empty stream. */
static long rd_max_seq(struct pub *p)
{
    char key[300];
    rd_key(p, key, sizeof key, "run");
    const char *argv[] = { "XREVRANGE", key, "+", "-", "COUNT", "1" };
    redisReply *r = rd_cmd(p, 6, argv, NULL);
    long seq = 0;
    if (!r)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->elements == 2) {
        redisReply *f = r->element[0]->element[1];
        for (size_t i = 0; i + 1 < f->elements; i += 2)
            if (strcmp(f->element[i]->str, "seq") == 0)
                seq = strtol(f->element[i + 1]->str, NULL, 10);
    }
    freeReplyObject(r);
    return seq;
}

/* HSET of the summary (the fields that are set), then ZADD. */
static void rd_summary(struct pub *p, char *const *fields, const char *beat, const char *t)
{
    const char *argv[4 + 2 * (NFIELDS + 5)];
    char key[300];
    int n = 0;
    rd_key(p, key, sizeof key, "info");
    argv[n++] = "HSET";
    argv[n++] = key;
    const char *fixed[][2] = { { "run", p->run }, { "identity", p->identity }, { "updated", t },
                               { "alive", t }, { "beat", beat } };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        argv[n++] = fixed[i][0];
        argv[n++] = fixed[i][1];
    }
    for (int i = 0; i < NFIELDS; i++)
        if (fields[i]) {
            argv[n++] = field_names[i];
            argv[n++] = fields[i];
        }
    redisAppendCommandArgv(p->rd, n, argv, NULL);
    const char *z[] = { "ZADD", "runbook:room:runs", t, p->run };
    redisAppendCommandArgv(p->rd, 4, z, NULL);
}

/* -1 (p->err set) for an error reply, or an EXEC holding one. */
static int rd_reply_error(struct pub *p, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        set_err(p, "redis", r->str);
        return -1;
    }
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_ERROR) {
            set_err(p, "redis", r->element[i]->str);
            return -1;
        }
    return 0;
}

/* One pipelined MULTI/EXEC: an XADD per line, the summary.  A command the
 * server refuses aborts the whole (EXECABORT), so the stream never gets a
 * line after a missing one. */
static int rd_publish(struct pub *p, const struct line *ls, int n, char *const *fields,
                      const char *beat)
{
    char key[300], seq[24], t[32];
    rd_key(p, key, sizeof key, "run");
    snprintf(t, sizeof t, "%.3f", wall_s());
    redisAppendCommand(p->rd, "MULTI");
    for (int i = 0; i < n; i++) {
        snprintf(seq, sizeof seq, "%ld", ls[i].seq);
        const char *argv[] = { "XADD", key, "*", "seq", seq, "line", ls[i].p };
        size_t lens[] = { 4, strlen(key), 1, 3, strlen(seq), 4, ls[i].len };
        redisAppendCommandArgv(p->rd, 7, argv, lens);
    }
    rd_summary(p, fields, beat, t);
    redisAppendCommand(p->rd, "EXEC");
    double deadline = now_s() + p->io_timeout;
    if (rd_flush(p, deadline) != 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < n + 4; i++) {
        redisReply *r = rd_read(p, deadline);
        if (!r)
            return -1;
        if (rc == 0)
            rc = rd_reply_error(p, r);
        freeReplyObject(r);
    }
    return rc;
}

static int rd_beat(struct pub *p)
{
    char key[300], t[32];
    rd_key(p, key, sizeof key, "info");
    snprintf(t, sizeof t, "%.3f", wall_s());
    const char *argv[] = { "HSET", key, "alive", t };
    return rd_do(p, 4, argv);
}

/* ---- the publisher thread ------------------------------------------------- */

struct ops {
    int (*connect)(struct pub *p, char *identity, size_t idlen);
    long (*max_seq)(struct pub *p);
    int (*publish)(struct pub *p, const struct line *ls, int n, char *const *fields,
                   const char *beat);
    int (*beat)(struct pub *p);
};

static const struct ops backends[] = {
    [B_POSTGRES] = { pg_connect, pg_max_seq, pg_publish, pg_beat },
    [B_REDIS] = { rd_connect, rd_max_seq, rd_publish, rd_beat },
};

static void close_store(struct pub *p)
{
    if (p->pg)
        PQfinish(p->pg);
    if (p->rd)
        redisFree(p->rd);
    p->pg = NULL;
    p->rd = NULL;
}

/* Whether the store refused the login: a wrong password does not mend
 * itself in seconds, so it is tried again only every half minute (not
 * every 2 s, a login failure each for the server's log). */
static int refused_login(const char *err)
{
    return strstr(err, "password authentication failed") || strstr(err, "WRONGPASS") ||
           strstr(err, "NOAUTH") || strstr(err, "no password supplied");
}

/* The store failed: close, say so once (until it is back), retry later. */
static void store_drop(struct pub *p)
{
    close_store(p);
    pthread_mutex_lock(&p->mu);
    p->connected = 0;
    snprintf(p->last_err, sizeof p->last_err, "%s", p->err);
    if (!p->down_told)
        add_news(p, refused_login(p->err) ? "refused" : "down", "%s", p->err, 0);
    p->down_told = 1;
    double cap = p->closing ? 0.5 : refused_login(p->err) ? 30.0 : 2.0;
    p->backoff = p->backoff <= 0 ? 0.25 : p->backoff * 2 > cap ? cap : p->backoff * 2;
    p->retry_at = now_s() + p->backoff;
    pthread_mutex_unlock(&p->mu);
}

/* Connect, learn who the store says we are and what it holds of the run:
 * publishing goes on from the line after that, read again from the file. */
static void store_connect(struct pub *p)
{
    char identity[sizeof p->identity];
    const struct ops *o = &backends[p->backend];
    long have = -1;

    if (o->connect(p, identity, sizeof identity) == 0)
        have = o->max_seq(p);
    if (have < 0) {
        store_drop(p);
        return;
    }
    rewind_reader(p);
    pthread_mutex_lock(&p->mu);
    snprintf(p->identity, sizeof p->identity, "%s", identity);
    p->connected = p->ever_connected = 1;
    p->published = have;
    p->backoff = 0;
    if (p->down_told)
        add_news(p, "back", "%ld", NULL, p->written > have ? p->written - have : 0);
    p->down_told = 0;
    p->next_beat = 0;
    pthread_cond_broadcast(&p->moved);
    pthread_mutex_unlock(&p->mu);
}

static void copy_fields(struct pub *p, char **out, off_t *limit, char *beat, size_t beatlen)
{
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < NFIELDS; i++)
        out[i] = p->fields[i] ? strdup(p->fields[i]) : NULL;
    *limit = p->written_bytes;
    pthread_mutex_unlock(&p->mu);
    snprintf(beat, beatlen, "%g", p->beat);
}

/* The next batch from the file to the store. */
static void publish_some(struct pub *p)
{
    struct line *ls = p->batch;
    char *fields[NFIELDS], beat[32];
    off_t limit;
    size_t end;

    copy_fields(p, fields, &limit, beat, sizeof beat);
    int n = -1;
    if (fill(p, limit) == 0)
        n = take_batch(p, p->published, ls, &end);
    else
        set_err(p, "transcript", strerror(errno ? errno : EIO));
    for (int i = 0; i < n; i++)
        ((char *)ls[i].p)[ls[i].len] = '\0';    /* libpq's text parameters end in NUL */
    int rc = n < 0 ? -1 : n == 0 ? 0 : backends[p->backend].publish(p, ls, n, fields, beat);
    for (int i = 0; i < NFIELDS; i++)
        free(fields[i]);
    if (rc != 0) {
        store_drop(p);
        return;
    }
    p->off = end;
    pthread_mutex_lock(&p->mu);
    if (n > 0)
        p->published = ls[n - 1].seq;
    else if (p->written > p->published && p->off == p->len && p->file_off >= limit)
        p->published = p->written;          /* nothing left to read: the store had it all */
    p->last_publish = now_s();
    p->next_beat = p->last_publish + p->beat;
    pthread_cond_broadcast(&p->moved);
    pthread_mutex_unlock(&p->mu);
}

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, double until)
{
    struct timespec ts;
    if (until > now_s() + 3600)
        until = now_s() + 3600;
    ts.tv_sec = (time_t)until;
    ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
    pthread_cond_timedwait(cv, mu, &ts);
}

enum work { W_EXIT, W_CONNECT, W_PUBLISH, W_BEAT };

static enum work wait_for_work(struct pub *p)
{
    enum work w;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        double until;
        if (p->stop) {
            w = W_EXIT;
            break;
        }
        if (!p->connected) {
            if (now_s() >= p->retry_at) {
                w = W_CONNECT;
                break;
            }
            until = p->retry_at;
        } else if (p->written > p->published && (now_s() >= p->last_publish + LINGER
                   || p->written - p->published >= BATCH_LINES || p->closing)) {
            w = W_PUBLISH;
            break;
        } else if (p->written > p->published) {
            until = p->last_publish + LINGER;
        } else if (now_s() >= p->next_beat) {
            w = W_BEAT;
            break;
        } else {
            until = p->next_beat;
        }
        p->idle = p->connected && p->written <= p->published;
        timed_wait(&p->wake, &p->mu, until);
    }
    pthread_mutex_unlock(&p->mu);
    return w;
}

static void *pub_main(void *arg)
{
    struct pub *p = arg;
    enum work w;

    while ((w = wait_for_work(p)) != W_EXIT) {
        if (w == W_CONNECT) {
            store_connect(p);
        } else if (w == W_PUBLISH) {
            publish_some(p);
        } else if (backends[p->backend].beat(p) != 0) {
            store_drop(p);
        } else {
            pthread_mutex_lock(&p->mu);
            p->next_beat = now_s() + p->beat;
            pthread_mutex_unlock(&p->mu);
        }
    }
    close_store(p);
    if (p->fd >= 0)
        close(p->fd);
    pub_unref(p);
    return NULL;
}

/* ---- Lua ------------------------------------------------------------------ */

static void tap_handle(void *ud, long seq, const char *line, size_t len)
{
    struct handle *h = ud;
    if (line == NULL) {
        h->t = NULL;            /* the writer is closing: never touch it again */
        return;
    }
    if (h->p)
        tap(h->p, seq, line, len);
}

static char *opt_string(lua_State *L, int idx, const char *key, int required)
{
    lua_getfield(L, idx, key);
    const char *s = lua_tostring(L, -1);
    if (!s && required)
        luaL_error(L, "roompub.start: option %s is required", key);
    char *copy = s ? strdup(s) : NULL;
    lua_pop(L, 1);
    return copy;
}

static double opt_number(lua_State *L, int idx, const char *key, double dflt)
{
    lua_getfield(L, idx, key);
    double v = luaL_optnumber(L, -1, dflt);
    lua_pop(L, 1);
    return v;
}

/* The options into p; raises on a missing or bad one (p is then freed by
 * the caller's handle __gc, which owns it already). */
static void read_options(lua_State *L, struct pub *p)
{
    static const char *const names[] = { "postgres", "redis", NULL };
    lua_getfield(L, 2, "backend");
    p->backend = (enum backend)luaL_checkoption(L, -1, NULL, names);
    lua_pop(L, 1);
    p->run = opt_string(L, 2, "run", 1);
    p->beat = opt_number(L, 2, "heartbeat", 5);
    p->io_timeout = opt_number(L, 2, "io_timeout", 3);
    luaL_argcheck(L, p->beat > 0 && p->io_timeout > 0, 2, "heartbeat and io_timeout must be positive");
    if (p->backend == B_POSTGRES) {
        p->url = opt_string(L, 2, "url", 1);
        return;
    }
    p->host = opt_string(L, 2, "host", 1);
    p->user = opt_string(L, 2, "user", 0);
    p->password = opt_string(L, 2, "password", 0);
    p->port = (int)opt_number(L, 2, "port", 6379);
    p->db = (int)opt_number(L, 2, "db", 0);
}

static struct pub *pub_new(void)
{
    struct pub *p = calloc(1, sizeof *p);
    pthread_condattr_t ca;
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &ca);
    pthread_cond_init(&p->moved, &ca);
    pthread_condattr_destroy(&ca);
    p->refs = 1;
    p->fd = -1;
    return p;
}

/* The thread takes no signal: Ctrl-C and SIGTERM are the loop's. */
static int start_thread(struct pub *p)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    p->refs = 2;
    int rc = pthread_create(&p->thread, NULL, pub_main, p);
    if (rc != 0)
        p->refs = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* roompub.start(writer, opts) -> pub */
static int l_start(lua_State *L)
{
    rb_transcript *t = rb_transcript_check(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_argcheck(L, t != NULL, 1, "the transcript is closed");
    struct handle *h = lua_newuserdatauv(L, sizeof *h, 0);
    memset(h, 0, sizeof *h);
    luaL_setmetatable(L, PUB_MT);
    if (!(h->p = pub_new()))
        return luaL_error(L, "roompub: out of memory");
    read_options(L, h->p);
    struct pub *p = h->p;
    struct stat st;
    p->path = strdup(rb_transcript_path(t));
    p->fd = p->path ? open(p->path, O_RDONLY | O_CLOEXEC) : -1;
    if (p->fd < 0 || fstat(p->fd, &st) != 0)
        return luaL_error(L, "roompub: cannot read the transcript back: %s", strerror(errno));
    p->written = rb_transcript_seq(t);
    p->written_bytes = st.st_size;
    if (start_thread(p) != 0)
        return luaL_error(L, "roompub: cannot start the publisher thread");
    h->started = 1;
    h->t = t;
    rb_transcript_set_tap(t, tap_handle, h);
    return 1;
}

static struct pub *check_pub(lua_State *L)
{
    struct handle *h = luaL_checkudata(L, 1, PUB_MT);
    if (!h->p)
        luaL_error(L, "roompub: the publisher is finished");
    return h->p;
}

/* pub:note{field = string | false}: the summary the next batch carries. */
static int l_note(lua_State *L)
{
    struct pub *p = check_pub(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < NFIELDS; i++) {
        lua_getfield(L, 2, field_names[i]);
        if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TBOOLEAN) {
            const char *s = lua_tostring(L, -1);
            free(p->fields[i]);
            p->fields[i] = s ? strdup(s) : NULL;
        }
        lua_pop(L, 1);
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static int l_news(lua_State *L)
{
    struct pub *p = check_pub(L);
    struct news n;
    pthread_mutex_lock(&p->mu);
    int have = p->nnews > 0;
    if (have) {
        n = p->news[0];
        memmove(p->news, p->news + 1, sizeof p->news[0] * (size_t)--p->nnews);
    }
    pthread_mutex_unlock(&p->mu);
    if (!have)
        return 0;
    lua_pushstring(L, n.kind);
    lua_pushstring(L, n.text);
    return 2;
}

static void push_int_field(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static int l_stats(lua_State *L)
{
    struct pub *p = check_pub(L);
    pthread_mutex_lock(&p->mu);
    lua_createtable(L, 0, 4);
    push_int_field(L, "written", p->written);
    push_int_field(L, "published", p->published);
    lua_pushboolean(L, p->connected);
    lua_setfield(L, -2, "connected");
    lua_pushstring(L, p->identity);
    lua_setfield(L, -2, "identity");
    pthread_mutex_unlock(&p->mu);
    return 1;
}

/* Wait up to `seconds` for the store to have every line, then end the
 * thread (a thread stuck on a hung server is left to end on its own). */
static void finish(struct handle *h, double seconds, long *published, long *written,
                   char *why, size_t whylen)
{
    struct pub *p = h->p;
    if (h->t)
        rb_transcript_set_tap(h->t, NULL, NULL);
    h->t = NULL;
    h->p = NULL;
    pthread_mutex_lock(&p->mu);
    p->closing = 1;
    p->retry_at = 0;                        /* one more try now, not after the backoff */
    /* A store that is away (or was never reached) gets a second, not the
     * whole bound: waiting longer at every run's end would only delay it. */
    if (!p->connected && (p->down_told || !p->ever_connected) && seconds > 1)
        seconds = 1;
    double deadline = now_s() + seconds;
    while (p->published < p->written && now_s() < deadline) {
        pthread_cond_signal(&p->wake);
        timed_wait(&p->moved, &p->mu, deadline);
    }
    *published = p->published < p->written ? p->published : p->written;
    *written = p->written;
    snprintf(why, whylen, "%s", p->connected ? "" : p->last_err[0] ? p->last_err : "no answer yet");
    p->stop = 1;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->mu);
    /* The thread sees the stop within STOP_SLICE, even in a hung store's
     * wait; only a name lookup (getaddrinfo) cannot be cut short, and a
     * thread stuck in one is left behind rather than waited for. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 500 * 1000 * 1000;
    if (ts.tv_nsec >= 1000 * 1000 * 1000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000 * 1000 * 1000;
    }
    if (pthread_timedjoin_np(p->thread, NULL, &ts) != 0)
        pthread_detach(p->thread);
    pub_unref(p);
}

static int l_finish(lua_State *L)
{
    struct handle *h = luaL_checkudata(L, 1, PUB_MT);
    double seconds = luaL_optnumber(L, 2, 5);
    long published = 0, written = 0;
    char why[ERR_MAX] = "";
    if (h->p && h->started)
        finish(h, seconds, &published, &written, why, sizeof why);
    lua_pushinteger(L, published);
    lua_pushinteger(L, written);
    lua_pushstring(L, why);
    return 3;
}

static int l_gc(lua_State *L)
{
    struct handle *h = luaL_checkudata(L, 1, PUB_MT);
    long a, b;
    char why[ERR_MAX];
    if (h->p && h->started)
        finish(h, 0, &a, &b, why, sizeof why);
    else if (h->p)
        pub_unref(h->p);
    h->p = NULL;
    return 0;
}

int luaopen_runbook_roompub(lua_State *L)
{
    static const luaL_Reg funcs[] = { { "start", l_start }, { NULL, NULL } };
    static const luaL_Reg methods[] = {
        { "note", l_note }, { "news", l_news }, { "stats", l_stats }, { "finish", l_finish },
        { NULL, NULL },
    };
    rb_class(L, PUB_MT, l_gc, NULL, methods);
    luaL_newlib(L, funcs);
    return 1;
}
