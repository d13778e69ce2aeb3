/*
 * The transcript: a hash-chained JSON Lines writer, its verifier, and the
 * Lua module "runbook.transcript" over both (its secret/redact functions
 * come from src/redact.c).  See include/runbook/transcript.h for the line
 * format and the hash rule.
 */
#include "runbook/buf.h"
#include "runbook/host.h"
#include "runbook/loop.h"
#include "runbook/redact.h"
#include "runbook/transcript.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <nettle/sha2.h>

#define VSTATE_MT   "runbook.transcript.reading"
#define WRITER_MT   "runbook.transcript.writer"

#define HASH_MEMBER ",\"hash\":\""
#define PREV_MEMBER "\"prev\":\""
#define SEQ_PREFIX  "{\"seq\":"
/* ,"hash":"<hex>"} and "prev":"<hex>", the fixed-size tails of every line */
#define HASH_TAIL_LEN (sizeof HASH_MEMBER - 1 + RB_HASH_HEX + 2)
#define PREV_TAIL_LEN (sizeof PREV_MEMBER - 1 + RB_HASH_HEX + 1)

struct rb_transcript {
    int fd;
    long seq;                          /* lines written so far */
    off_t size;                        /* bytes written so far */
    off_t synced;                      /* bytes on disk at the last fsync */
    int owed;                          /* an fsync is owed (rb_transcript_owe) */
    int sync_errno;                    /* an owed fsync failed: every later write fails */
    char *path;
    char *run;                         /* run id, already JSON-escaped */
    char last_hash[RB_HASH_HEX + 1];
    rb_buf line;                       /* the line being built, kept for the next */
    rb_transcript_tap tap;             /* told of each line written (the room's publisher) */
    void *tap_ud;
};

/* What a buffer may keep between events: one huge event does not hold
 * its megabytes for the rest of the run. */
#define KEEP_MAX (256 * 1024)

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- hashing and time ------------------------------------------------ */

/* Nettle's SHA-256 (SHA-NI where the CPU has it, as libcrypto's): the
 * binary linked libcrypto for this one function, and its loading and
 * relocation cost every command, --version included, 2.5 M instructions
 * (about 2 ms) at start, and OpenSSL 3's EVP_MD_fetch 5.3 M more on the
 * first hash (its config file, providers and name tables).  libnettle
 * loads in a tenth of that. */
static int sha256_hex(const void *data, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char digest[SHA256_DIGEST_SIZE];
    struct sha256_ctx c;

    sha256_init(&c);
    sha256_update(&c, len, data);
    sha256_digest(&c, sizeof digest, digest);
    for (unsigned int i = 0; i < SHA256_DIGEST_SIZE; i++) {
        out[2 * i] = digits[digest[i] >> 4];
        out[2 * i + 1] = digits[digest[i] & 0xf];
    }
    out[RB_HASH_HEX] = '\0';
    return 0;
}

void rb_sha256_hex(const void *data, size_t len, char *out)
{
    (void)sha256_hex(data, len, out);
}

void rb_transcript_timestamp(char *buf, size_t len)
{
    /* The date and time to the second are formatted once a second: a busy
     * run writes thousands of events in it. */
    static time_t last = -1;
    static char secs[32];
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != last) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(secs, sizeof secs, "%Y-%m-%dT%H:%M:%S", &tm);
        last = ts.tv_sec;
    }
    /* the milliseconds by hand: this runs for every line */
    long ms = ts.tv_nsec / 1000000;
    size_t n = strlen(secs);
    if (len < n + 6) {
        if (len > 0)
            buf[0] = '\0';
        return;
    }
    memcpy(buf, secs, n);
    buf[n] = '.';
    buf[n + 1] = (char)('0' + ms / 100);
    buf[n + 2] = (char)('0' + ms / 10 % 10);
    buf[n + 3] = (char)('0' + ms % 10);
    buf[n + 4] = 'Z';
    buf[n + 5] = '\0';
}

/* ---- building a line ------------------------------------------------- */

/* Buffers that build a line are checked once at the end (rb_buf_failed),
 * so building one stays a straight sequence of appends. */
static void keep_or_free(rb_buf *b)
{
    if (b->cap > KEEP_MAX)
        rb_buf_free(b);
    else
        rb_buf_reset(b);
}

/* The inside of a JSON string.  Bytes >= 0x80 pass through: run ids and
 * event names are the host's own, and UTF-8 is valid JSON as it is. */
static void add_json_inside(rb_buf *b, const char *s)
{
    char esc[8];

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            rb_buf_add(b, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            rb_buf_add(b, esc, 6);
        } else {
            rb_buf_add(b, s, 1);
        }
    }
}

/* prev, then the line without its hash member: exactly the bytes hashed. */
static void build_hashed_part(const rb_transcript *t, rb_buf *b, const char *event,
                              const char *fields, size_t n)
{
    char ts[32];

    rb_transcript_timestamp(ts, sizeof ts);
    rb_buf_add(b, t->last_hash, RB_HASH_HEX);
    rb_buf_str(b, SEQ_PREFIX);
    rb_buf_int(b, t->seq + 1);
    rb_buf_str(b, ",\"ts\":\"");
    rb_buf_str(b, ts);
    rb_buf_str(b, "\",\"run\":\"");
    rb_buf_str(b, t->run);
    rb_buf_str(b, "\",\"event\":\"");
    add_json_inside(b, event);
    rb_buf_str(b, "\",");
    if (n > 0) {
        rb_buf_add(b, fields, n);
        rb_buf_str(b, ",");
    }
    rb_buf_str(b, PREV_MEMBER);
    rb_buf_add(b, t->last_hash, RB_HASH_HEX);
    rb_buf_str(b, "\"}");
}

/* ---- the writer ------------------------------------------------------ */

/* mkdir -p of everything before the last '/'.  A component that already
 * exists as a directory is fine even when mkdir says EACCES or EROFS. */
static int make_parents(const char *path, char *err, size_t errlen)
{
    char *dir = strdup(path);
    struct stat st;

    if (!dir) {
        set_err(err, errlen, "transcript: out of memory");
        return -1;
    }
    for (char *p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST
            && !(stat(dir, &st) == 0 && S_ISDIR(st.st_mode))) {
            set_err(err, errlen, "transcript: cannot create directory %s: %s",
                    dir, strerror(errno));
            free(dir);
            return -1;
        }
        *p = '/';
    }
    free(dir);
    return 0;
}

static rb_transcript *writer_new(const char *path, const char *run_id)
{
    rb_transcript *t = calloc(1, sizeof *t);
    rb_buf run = RB_BUF_INIT(RB_BUF_NOCAP);

    if (!t)
        return NULL;
    t->fd = -1;
    memset(t->last_hash, '0', RB_HASH_HEX);
    add_json_inside(&run, run_id);
    t->run = rb_buf_cstr(&run) ? rb_buf_take(&run) : NULL;
    rb_buf_free(&run);
    t->path = strdup(path);
    if (!t->run || !t->path) {
        rb_transcript_close(t);
        return NULL;
    }
    return t;
}

rb_transcript *rb_transcript_open(const char *path, const char *run_id,
                                  char *err, size_t errlen)
{
    rb_transcript *t;

    if (!path || !*path || !run_id) {
        set_err(err, errlen, "transcript: no path or run id given");
        return NULL;
    }
    /* Allocate first, so running out of memory leaves no empty file behind. */
    if (!(t = writer_new(path, run_id))) {
        set_err(err, errlen, "transcript: out of memory");
        return NULL;
    }
    /* O_EXCL: a transcript is never reused or overwritten; O_APPEND: each
     * line lands whole at the end even if someone else opens the file.
     * The directories are made only when they are missing: the usual run
     * finds them there, and a mkdir of each of its parents costs a
     * system call apiece. */
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC;
    t->fd = open(path, flags, 0600);
    if (t->fd < 0 && (errno == ENOENT || errno == ENOTDIR)) {   /* to say which directory */
        if (make_parents(path, err, errlen) != 0) {
            rb_transcript_close(t);
            return NULL;
        }
        t->fd = open(path, flags, 0600);
    }
    if (t->fd < 0) {
        set_err(err, errlen, "transcript: cannot create %s: %s", path, strerror(errno));
        rb_transcript_close(t);
        return NULL;
    }
    /* The umask may have left the mode stricter than asked; make it exact. */
    if (fchmod(t->fd, 0600) != 0) {
        set_err(err, errlen, "transcript: cannot set mode 0600 on %s: %s",
                path, strerror(errno));
        unlink(path);
        rb_transcript_close(t);
        return NULL;
    }
    return t;
}

/* One write(2) normally suffices; the loop is for EINTR and short writes.
 * If the line only partly reached the file, cut it back off so the file
 * keeps whole lines only, as the header promises. */
static int write_all(rb_transcript *t, const char *p, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t w = write(t->fd, p + done, n - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        int e = w == 0 ? EIO : errno;
        if (done > 0 && ftruncate(t->fd, t->size) != 0) {
            /* Nothing more to do: verify will report the torn line. */
        }
        errno = e;
        return -1;
    }
    t->size += (off_t)n;
    return 0;
}

/* Append one event whose members are fields[0..n), known to hold no raw
 * newline: the line is built in t->line, kept for the next event. */
static int append_members(rb_transcript *t, const char *event, const char *fields, size_t n)
{
    rb_buf *b = &t->line;
    char hash[RB_HASH_HEX + 1];
    int rc = -1, e = ENOMEM;

    if (t->sync_errno) {
        errno = t->sync_errno;
        return -1;
    }
    build_hashed_part(t, b, event, fields, n);
    if (rb_buf_failed(b))
        goto done;
    if (sha256_hex(b->p, b->len, hash) != 0) {
        e = EIO;
        goto done;
    }
    b->len--;   /* the hash member goes before the closing brace */
    rb_buf_str(b, HASH_MEMBER);
    rb_buf_str(b, hash);
    rb_buf_str(b, "\"}\n");
    if (rb_buf_failed(b))
        goto done;
    /* verify refuses longer lines: never write one it would refuse. */
    if (b->len - RB_HASH_HEX - 1 > RB_TRANSCRIPT_LINE_MAX) {
        e = EMSGSIZE;
        goto done;
    }
    rc = write_all(t, b->p + RB_HASH_HEX, b->len - RB_HASH_HEX);
    e = errno;
    if (rc == 0) {
        memcpy(t->last_hash, hash, sizeof hash);
        t->seq++;
        if (t->tap)
            t->tap(t->tap_ud, t->seq, b->p + RB_HASH_HEX, b->len - RB_HASH_HEX - 1);
    }
done:
    keep_or_free(b);
    errno = e;
    return rc;
}

int rb_transcript_append(rb_transcript *t, const char *event, const char *fields_json)
{
    if (!fields_json)
        fields_json = "";
    /* A raw newline in the fields would split the line and break the chain. */
    if (!t || t->fd < 0 || !event || strchr(fields_json, '\n')) {
        errno = EINVAL;
        return -1;
    }
    return append_members(t, event, fields_json, strlen(fields_json));
}

/* fsync unless nothing was written since the last; a failure sticks. */
static int sync_now(rb_transcript *t)
{
    if (t->sync_errno) {
        errno = t->sync_errno;
        return -1;
    }
    if (t->synced == t->size)
        return 0;
    if (fsync(t->fd) != 0) {
        t->sync_errno = errno;
        return -1;
    }
    t->synced = t->size;
    return 0;
}

static void forget_owed(rb_transcript *t)
{
    if (t->owed) {
        t->owed = 0;
        rb_loop_before_block(NULL, NULL);
    }
}

int rb_transcript_sync(rb_transcript *t)
{
    if (!t || t->fd < 0) {
        errno = EINVAL;
        return -1;
    }
    forget_owed(t);
    return sync_now(t);
}

/* The loop is about to block: the owed fsync is done now (a failure is
 * kept for the next write or sync to report). */
static void settle_before_block(void *ud)
{
    rb_transcript *t = ud;
    t->owed = 0;
    sync_now(t);
}

void rb_transcript_owe(rb_transcript *t)
{
    if (!t || t->fd < 0)
        return;
    t->owed = 1;
    rb_loop_before_block(settle_before_block, t);
}

const char *rb_transcript_last_hash(const rb_transcript *t)
{
    return t->last_hash;
}

long rb_transcript_seq(const rb_transcript *t)
{
    return t->seq;
}

void rb_transcript_set_tap(rb_transcript *t, rb_transcript_tap fn, void *ud)
{
    t->tap = fn;
    t->tap_ud = ud;
}

const char *rb_transcript_path(const rb_transcript *t)
{
    return t->path;
}

void rb_transcript_close(rb_transcript *t)
{
    if (!t)
        return;
    if (t->tap)
        t->tap(t->tap_ud, t->seq, NULL, 0);
    if (t->owed)
        rb_transcript_sync(t);
    if (t->fd >= 0)
        close(t->fd);
    free(t->path);
    free(t->run);
    rb_buf_free(&t->line);
    free(t);
}

/* ---- verify ---------------------------------------------------------- */

typedef struct line_parts {
    long seq;
    const char *prev;      /* 64 hex digits inside the line */
    const char *hash;      /* idem */
    size_t body_len;       /* bytes before ,"hash":... */
} line_parts;

/* State carried from one line to the next. */
typedef struct verifier {
    rb_buf scratch;        /* prev || body || "}" for hashing */
    rb_verify_result *res;
} verifier;

static int is_hex64(const char *s)
{
    for (int i = 0; i < RB_HASH_HEX; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* {"seq":N, with N a plain positive decimal. */
static int parse_seq(const char *line, size_t n, long *seq)
{
    size_t i = sizeof SEQ_PREFIX - 1;
    long v = 0;

    if (n <= i || memcmp(line, SEQ_PREFIX, i) != 0)
        return -1;
    for (; i < n && isdigit((unsigned char)line[i]) && v < 100000000000000L; i++)
        v = v * 10 + (line[i] - '0');
    if (i >= n || line[i] != ',' || v == 0)
        return -1;
    *seq = v;
    return 0;
}

/* Locate the members verify needs; NULL when found, else why not. */
static const char *split_line(const char *line, size_t n, line_parts *lp)
{
    const size_t hm = sizeof HASH_MEMBER - 1, pm = sizeof PREV_MEMBER - 1;

    if (n == 0)
        return "empty line";
    if (n < HASH_TAIL_LEN || memcmp(line + n - HASH_TAIL_LEN, HASH_MEMBER, hm) != 0
        || line[n - 2] != '"' || line[n - 1] != '}')
        return "line is truncated (no hash)";
    lp->hash = line + n - HASH_TAIL_LEN + hm;
    if (!is_hex64(lp->hash))
        return "hash is not 64 lower-case hex digits";
    lp->body_len = n - HASH_TAIL_LEN;
    if (parse_seq(line, lp->body_len, &lp->seq) != 0)
        return "line does not start with {\"seq\":<number>,";
    if (lp->body_len < PREV_TAIL_LEN + 1)
        return "no \"prev\" member just before the hash";
    lp->prev = line + lp->body_len - PREV_TAIL_LEN + pm;
    if (line[lp->body_len - PREV_TAIL_LEN - 1] != ','
        || memcmp(lp->prev - pm, PREV_MEMBER, pm) != 0
        || line[lp->body_len - 1] != '"' || !is_hex64(lp->prev))
        return "no \"prev\" member just before the hash";
    return NULL;
}

/* Recompute the hash from the line's own prev, so an edited line shows as
 * an edit and a dropped line shows as a broken link, not both. */
static int hash_matches(verifier *v, const char *line, const line_parts *lp)
{
    size_t need = RB_HASH_HEX + lp->body_len + 1;
    char hex[RB_HASH_HEX + 1];

    rb_buf_reset(&v->scratch);
    char *p = rb_buf_reserve(&v->scratch, need);
    if (!p)
        return -1;
    memcpy(p, lp->prev, RB_HASH_HEX);
    memcpy(p + RB_HASH_HEX, line, lp->body_len);
    p[need - 1] = '}';
    if (sha256_hex(p, need, hex) != 0)
        return -1;
    return memcmp(hex, lp->hash, RB_HASH_HEX) == 0;
}

/* The first ,"event":" is the real member: seq and ts hold no quotes, and
 * no unescaped quote can occur inside the run id's JSON string. */
static int is_run_end(const char *line, size_t n)
{
    static const char key[] = ",\"event\":\"", val[] = "run.end\"";
    const char *p = memmem(line, n, key, sizeof key - 1);

    if (!p)
        return 0;
    p += sizeof key - 1;
    return (size_t)(line + n - p) >= sizeof val - 1 && memcmp(p, val, sizeof val - 1) == 0;
}

static int bad(rb_verify_result *res, const char *fmt, ...)
{
    va_list ap;

    res->bad_line = res->lines + 1;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof res->reason, fmt, ap);
    va_end(ap);
    return 1;
}

/* 0 when the line is good (and res advanced), 1 when bad, -1 on error. */
static int verify_line(verifier *v, const char *line, size_t n)
{
    rb_verify_result *res = v->res;
    line_parts lp;
    const char *why = split_line(line, n, &lp);
    int ok;

    if (why && res->lines == 0)    /* the first line is no event at all */
        return n < sizeof SEQ_PREFIX - 1 || memcmp(line, SEQ_PREFIX, sizeof SEQ_PREFIX - 1)
            ? bad(res, "not a runbook transcript (the line does not start with {\"seq\":)")
            : bad(res, "not a runbook transcript: %s", why);
    if (why)
        return bad(res, "%s", why);
    if ((ok = hash_matches(v, line, &lp)) < 0) {
        snprintf(res->reason, sizeof res->reason, "cannot compute SHA-256 (out of memory?)");
        return -1;
    }
    if (!ok)
        return bad(res, "hash mismatch: line was edited");
    if (memcmp(lp.prev, res->last_hash, RB_HASH_HEX) != 0)
        return res->lines == 0
            ? bad(res, "prev is not 64 zeros: the first line was removed")
            : bad(res, "prev does not match line %ld's hash: a line was removed or reordered",
                  res->lines);
    if (lp.seq != res->lines + 1)
        return bad(res, "seq %ld expected, found %ld", res->lines + 1, lp.seq);
    res->lines++;
    memcpy(res->last_hash, lp.hash, RB_HASH_HEX);
    res->ended = is_run_end(line, lp.body_len);
    return 0;
}

/*
 * Reading lines with a bound: getline() would grow its buffer for as long
 * as no newline comes (/dev/zero, a FIFO that never ends, a 2 GB line), so
 * the reader keeps at most RB_TRANSCRIPT_LINE_MAX plus one chunk and
 * refuses a longer line.
 */
#define READ_CHUNK (64 * 1024)

typedef struct line_reader {
    FILE *f;
    rb_buf buf;            /* buf.p[pos..buf.len) is read but not yet returned */
    size_t pos;
    size_t scanned;        /* bytes after pos known to hold no newline */
    long lineno;           /* lines returned so far */
    int eof;
} line_reader;

static void reader_close(line_reader *r)
{
    if (r->f)
        fclose(r->f);
    r->f = NULL;
    rb_buf_free(&r->buf);
}

/* Room for one more chunk after the unread bytes, moved to the front. */
static int reader_fill(line_reader *r)
{
    rb_buf *b = &r->buf;
    if (r->pos > 0) {
        memmove(b->p, b->p + r->pos, b->len - r->pos);
        b->len -= r->pos;
        r->pos = 0;
    }
    char *dst = rb_buf_reserve(b, READ_CHUNK);
    if (!dst) {
        errno = ENOMEM;
        return -1;
    }
    size_t got = fread(dst, 1, b->cap - b->len, r->f);
    b->len += got;
    if (got == 0 && ferror(r->f))
        return -1;
    r->eof = got == 0;
    return 0;
}

/* 1 and the next line without its newline, 0 at the end, -1 with errno
 * (EMSGSIZE: the line is longer than the bound). */
static int reader_next(line_reader *r, const char **line, size_t *n)
{
    for (;;) {
        /* Only the bytes read since the last look are searched: a long
         * line costs one pass, not one per chunk. */
        char *p = r->buf.p + r->pos;
        char *nl = r->buf.len > r->pos + r->scanned
            ? memchr(p + r->scanned, '\n', r->buf.len - r->pos - r->scanned) : NULL;
        size_t avail = nl ? (size_t)(nl - p) : r->buf.len - r->pos;
        r->scanned = nl ? 0 : avail;
        if (avail > RB_TRANSCRIPT_LINE_MAX) {
            errno = EMSGSIZE;
            return -1;
        }
        if (nl || (r->eof && avail > 0)) {
            *line = p;
            *n = avail;
            r->pos += avail + (nl != NULL);
            r->scanned = 0;
            r->lineno++;
            return 1;
        }
        if (r->eof)
            return 0;
        if (reader_fill(r) != 0)
            return -1;
    }
}

/* One pass over a file: the reader, the chain check, and what the Lua
 * binding asks for on the way.  A userdata when Lua drives it, so an error
 * raised half-way still closes the file. */
typedef struct vstate {
    line_reader r;
    verifier v;
    rb_verify_result res;
    const char *expect;    /* a hash to look for, or NULL */
    long expect_line;      /* the verified line with that hash, 0 if none */
    int verdict;           /* 0 intact so far, 1 a bad line was found */
} vstate;

static void vstate_init(vstate *s)
{
    memset(s, 0, sizeof *s);
    s->v.res = &s->res;
    memset(s->res.last_hash, '0', RB_HASH_HEX);
}

static void vstate_close(vstate *s)
{
    reader_close(&s->r);
    rb_buf_free(&s->v.scratch);
}

static int vstate_open(vstate *s, const char *path)
{
    if (!(s->r.f = fopen(path, "re"))) {
        snprintf(s->res.reason, sizeof s->res.reason, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The next line, checked unless a bad one came before: 1 a line, 0 the
 * end, -1 cannot read or the line is over the bound (reason set). */
static int vstate_next(vstate *s, const char *path, const char **line, size_t *n)
{
    int got = reader_next(&s->r, line, n), rc;

    if (got < 0) {
        if (errno == EMSGSIZE)
            snprintf(s->res.reason, sizeof s->res.reason,
                     "%s:%ld: line longer than %zu MiB, the bound for a transcript line "
                     "(not a runbook transcript?)", path, s->r.lineno + 1,
                     RB_TRANSCRIPT_LINE_MAX >> 20);
        else
            snprintf(s->res.reason, sizeof s->res.reason, "cannot read %s: %s", path,
                     strerror(errno));
        return -1;
    }
    if (got == 0 || s->verdict)
        return got;
    if ((rc = verify_line(&s->v, *line, *n)) < 0)
        return -1;
    s->verdict = rc;
    if (!rc && s->expect && !s->expect_line && !memcmp(s->res.last_hash, s->expect, RB_HASH_HEX))
        s->expect_line = s->res.lines;
    return 1;
}

/* An empty file holds no run: it is not a transcript that verifies. */
static int vstate_verdict(vstate *s)
{
    if (!s->verdict && s->res.lines == 0) {
        snprintf(s->res.reason, sizeof s->res.reason, "empty file: not a runbook transcript");
        s->verdict = 1;
    }
    return s->verdict;
}

int rb_transcript_verify(const char *path, rb_verify_result *res)
{
    vstate s;
    const char *line;
    size_t n;
    int got = -1;

    vstate_init(&s);
    if (vstate_open(&s, path) == 0)
        while ((got = vstate_next(&s, path, &line, &n)) > 0 && !s.verdict)
            ;
    vstate_close(&s);
    if (got >= 0)
        vstate_verdict(&s);
    *res = s.res;
    return got < 0 ? -1 : s.verdict;
}

/* ---- Lua: the writer ------------------------------------------------- */

typedef struct writer {
    rb_transcript *t;      /* NULL once closed */
    rb_buf fields;         /* the members being encoded, kept for the next event */
    int encoding;          /* fields is in use (an event recorded while encoding one) */
} writer;

static rb_transcript *check_open(lua_State *L)
{
    writer *w = rb_self(L, WRITER_MT);

    if (!w->t)
        luaL_error(L, "attempt to use a closed transcript");
    return w->t;
}

rb_transcript *rb_transcript_check(lua_State *L, int idx)
{
    return ((writer *)luaL_checkudata(L, idx, WRITER_MT))->t;
}

static int l_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *run_id = luaL_checkstring(L, 2);
    char err[512];
    writer *w = lua_newuserdatauv(L, sizeof *w, 0);

    /* Closed until the file exists, so __gc is safe if anything raises. */
    memset(w, 0, sizeof *w);
    luaL_setmetatable(L, WRITER_MT);
    if (!(w->t = rb_transcript_open(path, run_id, err, sizeof err)))
        return luaL_error(L, "%s", err);
    return 1;
}

/* __gc, __close and :close(): clear the pointer first so a second call,
 * or __gc after an explicit close, finds nothing to do. */
static int l_close(lua_State *L)
{
    writer *w = luaL_checkudata(L, 1, WRITER_MT);
    rb_transcript *t = w->t;

    w->t = NULL;
    rb_transcript_close(t);
    if (!w->encoding)
        rb_buf_free(&w->fields);
    return 0;
}

static int l_append(lua_State *L)
{
    rb_transcript *t = check_open(L);
    const char *event = luaL_checkstring(L, 2);
    size_t len;
    const char *fields = luaL_optlstring(L, 3, "", &len);

    luaL_argcheck(L, strlen(fields) == len && !strchr(fields, '\n'), 3,
                  "fields_json must be one line of JSON members, without NUL bytes");
    if (rb_transcript_append(t, event, fields) != 0)
        return luaL_error(L, "transcript: write failed: %s", strerror(errno));
    return 0;
}

/* nil, why, too_long: a line that could not be written. */
static int event_failed(lua_State *L, const char *why, int too_long)
{
    lua_pushnil(L);
    lua_pushstring(L, why);
    lua_pushboolean(L, too_long);
    return 3;
}

/* writer:event(name, fields): encode and append in one crossing.  The
 * fields are encoded first, in a protected call (the walk may raise, and
 * may run a __tostring that records an event of its own: that one then
 * gets a buffer of its own and lands first, so the chain stays in order);
 * the line's seq and prev are taken after.  An encoding error is raised;
 * a write that fails is returned, for the caller to stop the run. */
static int l_event(lua_State *L)
{
    writer *w = rb_self(L, WRITER_MT);
    const char *event = luaL_checkstring(L, 2);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    if (!w->t)
        return event_failed(L, "attempt to use a closed transcript", 0);
    if (w->t->sync_errno)
        return event_failed(L, lua_pushfstring(L, "an owed fsync failed: %s", strerror(w->t->sync_errno)), 0);
    rb_buf own = RB_BUF_INIT(RB_BUF_NOCAP);
    rb_buf *fields = w->encoding ? &own : &w->fields;
    int outer = !w->encoding;
    w->encoding = 1;
    int status = rb_transcript_encode_protected(L, 3, fields);
    if (outer)
        w->encoding = 0;
    int rc = status == LUA_OK && w->t ? append_members(w->t, event, fields->p, fields->len) : -1;
    int e = errno;
    if (fields == &own || !w->t)
        rb_buf_free(fields);
    else
        keep_or_free(fields);
    if (status != LUA_OK)
        return lua_error(L);
    if (rc != 0)
        return event_failed(L, w->t ? strerror(e) : "attempt to use a closed transcript", e == EMSGSIZE);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_sync(lua_State *L)
{
    rb_transcript *t = check_open(L);

    if (rb_transcript_sync(t) != 0)
        return luaL_error(L, "transcript: sync of %s failed: %s", t->path, strerror(errno));
    return 0;
}

static int l_owe(lua_State *L)
{
    rb_transcript_owe(check_open(L));
    return 0;
}

static int l_hash(lua_State *L)
{
    lua_pushstring(L, rb_transcript_last_hash(check_open(L)));
    return 1;
}

static int l_seq(lua_State *L)
{
    lua_pushinteger(L, rb_transcript_seq(check_open(L)));
    return 1;
}

static int l_path(lua_State *L)
{
    lua_pushstring(L, check_open(L)->path);
    return 1;
}

static int l_tostring(lua_State *L)
{
    writer *w = luaL_checkudata(L, 1, WRITER_MT);

    if (w->t)
        lua_pushfstring(L, "transcript (%s)", w->t->path);
    else
        lua_pushliteral(L, "transcript (closed)");
    return 1;
}

/* ---- Lua: verify, helpers -------------------------------------------- */

/* reason is present only when something is wrong. */
static void push_result(lua_State *L, const rb_verify_result *res)
{
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, res->lines);
    lua_setfield(L, -2, "lines");
    lua_pushinteger(L, res->bad_line);
    lua_setfield(L, -2, "bad_line");
    if (res->reason[0]) {
        lua_pushstring(L, res->reason);
        lua_setfield(L, -2, "reason");
    }
    lua_pushstring(L, res->last_hash);
    lua_setfield(L, -2, "last_hash");
    lua_pushboolean(L, res->ended);
    lua_setfield(L, -2, "ended");
}

static int l_vstate_gc(lua_State *L)
{
    vstate_close(luaL_checkudata(L, 1, VSTATE_MT));
    return 0;
}

/* The verify options: {lines = true} also returns every line (kept going
 * past a bad one, up to RB_TRANSCRIPT_READ_MAX), {expect = HEX} finds the
 * line with that hash.  The options table keeps the expect string alive. */
static void verify_options(lua_State *L, vstate *s, int *collect)
{
    *collect = 0;
    if (lua_isnoneornil(L, 2))
        return;
    luaL_checktype(L, 2, LUA_TTABLE);
    *collect = lua_getfield(L, 2, "lines") != LUA_TNIL && lua_toboolean(L, -1);
    if (lua_getfield(L, 2, "expect") != LUA_TNIL) {
        size_t n;
        s->expect = luaL_checklstring(L, -1, &n);
        luaL_argcheck(L, n == RB_HASH_HEX, 2, "expect must be 64 hex digits");
    }
    lua_pop(L, 2);
}

/* Reads the file once: a FIFO or /dev/stdin gives its lines only once, so
 * report reads and checks them in the same pass. */
static int read_all(lua_State *L, vstate *s, const char *path, int collect, int lines_idx)
{
    const char *line;
    size_t n, total = 0;
    int got;

    while ((got = vstate_next(s, path, &line, &n)) > 0) {
        if (!collect) {
            if (s->verdict)
                break;
            continue;
        }
        if ((total += n + 1) > RB_TRANSCRIPT_READ_MAX) {
            snprintf(s->res.reason, sizeof s->res.reason,
                     "%s: larger than %zu MiB, the most of a transcript read into memory",
                     path, RB_TRANSCRIPT_READ_MAX >> 20);
            return -1;
        }
        lua_pushlstring(L, line, n);
        lua_rawseti(L, lines_idx, (lua_Integer)s->r.lineno);
    }
    return got;
}

static int l_verify(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int collect, got = -1;
    vstate *s;

    lua_settop(L, 2);
    s = lua_newuserdatauv(L, sizeof *s, 0);
    vstate_init(s);
    luaL_setmetatable(L, VSTATE_MT);
    verify_options(L, s, &collect);
    lua_newtable(L);                                    /* 4: the lines */
    if (vstate_open(s, path) == 0)
        got = read_all(L, s, path, collect, 4);
    vstate_close(s);
    if (got < 0)
        lua_pushnil(L);
    else
        lua_pushboolean(L, vstate_verdict(s) == 0);
    push_result(L, &s->res);
    if (s->expect_line) {
        lua_pushinteger(L, s->expect_line);
        lua_setfield(L, -2, "expect_line");
    }
    if (!collect)
        return 2;
    lua_pushvalue(L, 4);
    return 3;
}

static int l_timestamp(lua_State *L)
{
    char buf[32];

    rb_transcript_timestamp(buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

static int l_sha256(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char hex[RB_HASH_HEX + 1];

    if (sha256_hex(s, len, hex) != 0)
        return luaL_error(L, "transcript: SHA-256 failed");
    lua_pushstring(L, hex);
    return 1;
}

static const luaL_Reg writer_methods[] = {
    { "event", l_event },
    { "append", l_append },
    { "sync", l_sync },
    { "owe", l_owe },
    { "hash", l_hash },
    { "seq", l_seq },
    { "path", l_path },
    { "close", l_close },
    { NULL, NULL }
};

static const luaL_Reg funcs[] = {
    { "encode", rb_transcript_encode },
    { "open", l_open },
    { "verify", l_verify },
    { "timestamp", l_timestamp },
    { "sha256", l_sha256 },
    { NULL, NULL }
};

static void create_metatables(lua_State *L)
{
    rb_class(L, VSTATE_MT, l_vstate_gc, NULL, NULL);
    rb_class(L, WRITER_MT, l_close, l_tostring, writer_methods);
}

int luaopen_runbook_transcript(lua_State *L)
{
    create_metatables(L);
    luaL_newlib(L, funcs);
    rb_redact_openlib(L);       /* runbook.redact's, for the callers not moved to it yet */
    return 1;
}
