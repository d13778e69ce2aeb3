/*
 * A growing byte buffer: the one grower of the host's C buffers (exec's
 * capture, http's body and headers, a transcript line, the line reader of
 * verify, the output sink, arrays of fixed-size records).
 *
 * It grows by doubling, never past its cap (`max`), and says why an
 * append failed: `over` when it would have passed the cap, `oom` when an
 * allocation failed.  Both stay set until rb_buf_reset, so a caller that
 * builds a line in many appends checks once at the end.  Past `map_after`
 * bytes (when set), it moves once to an anonymous mapping of all `max`
 * bytes, whose pages come as they are touched, in huge pages where the
 * kernel has them: exec's 32 MiB capture spent as long faulting fresh
 * 4 KiB pages in as doing the rest of its work.
 *
 *     rb_buf b = RB_BUF_INIT(RB_BUF_NOCAP);
 *     rb_buf_add(&b, "x", 1); ...; if (rb_buf_failed(&b)) ...; rb_buf_free(&b);
 */
#ifndef RUNBOOK_BUF_H
#define RUNBOOK_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RB_BUF_NOCAP 0          /* max: no cap but memory (a zeroed rb_buf has none) */
#define RB_BUF_FIRST 256        /* the first allocation, unless more is needed */

typedef struct rb_buf {
    char *p;                /* NULL until the first append */
    size_t len, cap;
    size_t max;             /* the cap: len never passes it; 0 none */
    size_t map_after;       /* 0, or the size past which it moves to a mapping of max bytes */
    unsigned char over;     /* an append would have passed max */
    unsigned char oom;      /* an allocation failed */
    unsigned char mapped;   /* p is a mapping of cap bytes, not malloc'ed */
} rb_buf;

#define RB_BUF_INIT(max) { NULL, 0, 0, (max), 0, 0, 0, 0 }

/* An empty buffer that never holds more than max bytes (0: no cap). */
void rb_buf_init(rb_buf *b, size_t max);

/* Grow b to hold len + n bytes.  Returns 0, or -1 with over or oom set
 * (b unchanged otherwise).  Use rb_buf_reserve or rb_buf_add instead. */
int rb_buf_grow(rb_buf *b, size_t n);

/* Room for n more bytes at b->p + b->len (the caller then adds what it
 * wrote to b->len), or NULL when over the cap or out of memory. */
static inline char *rb_buf_reserve(rb_buf *b, size_t n)
{
    if (n > b->cap - b->len && rb_buf_grow(b, n) != 0)
        return NULL;
    return b->p + b->len;
}

/* Append s[0..n).  Returns 0, or -1 (nothing appended). */
static inline int rb_buf_add(rb_buf *b, const void *s, size_t n)
{
    if (n > b->cap - b->len && rb_buf_grow(b, n) != 0)
        return -1;
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* Append the C string s. */
static inline int rb_buf_str(rb_buf *b, const char *s)
{
    return rb_buf_add(b, s, strlen(s));
}

/* Append v in decimal.  Returns 0, or -1 (nothing appended).  The
 * transcript writes a few integers on every line (seq, sizes, counts):
 * snprintf's format parsing cost more than the digits. */
static inline int rb_buf_int(rb_buf *b, long long v)
{
    char d[24];
    size_t i = sizeof d;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        d[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0)
        d[--i] = '-';
    return rb_buf_add(b, d + i, sizeof d - i);
}

/* Whether an append failed since the last reset. */
static inline int rb_buf_failed(const rb_buf *b)
{
    return b->over || b->oom;
}

/* The bytes followed by a NUL (not counted in len), or NULL when there is
 * no room for it. */
char *rb_buf_cstr(rb_buf *b);

/* Empty b, keeping its memory, and forget a failure. */
void rb_buf_reset(rb_buf *b);

/* Hand the bytes over to the caller, who frees them (free(); never for a
 * mapped buffer: NULL then); b is left empty. */
char *rb_buf_take(rb_buf *b);

/* Release the memory; b is left empty, its cap kept.  Safe to call twice. */
void rb_buf_free(rb_buf *b);

#endif
