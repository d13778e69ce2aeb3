/* buf.c: the growing byte buffer (include/runbook/buf.h). */
#include "runbook/buf.h"

#include <stdlib.h>
#include <sys/mman.h>

void rb_buf_init(rb_buf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

/* The one move to a mapping: all of max at once, so it never moves again. */
static int move_to_mapping(rb_buf *b)
{
    char *m = mmap(NULL, b->max, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        b->oom = 1;
        return -1;
    }
    madvise(m, b->max, MADV_HUGEPAGE);      /* a hint: 4 KiB pages without it */
    if (b->len > 0)
        memcpy(m, b->p, b->len);
    free(b->p);
    b->p = m;
    b->cap = b->max;
    b->mapped = 1;
    return 0;
}

int rb_buf_grow(rb_buf *b, size_t n)
{
    size_t max = b->max ? b->max : SIZE_MAX;
    if (n > max - b->len) {
        b->over = 1;
        return -1;
    }
    size_t need = b->len + n;
    if (need <= b->cap)
        return 0;
    if (b->map_after > 0 && b->max > 0 && need > b->map_after && !b->mapped)
        return move_to_mapping(b);
    size_t cap = b->cap ? b->cap : RB_BUF_FIRST;
    while (cap < need)
        cap = cap > max / 2 ? max : cap * 2;
    if (cap > max)
        cap = max;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

char *rb_buf_cstr(rb_buf *b)
{
    if (rb_buf_reserve(b, 1) == NULL)
        return NULL;
    b->p[b->len] = '\0';
    return b->p;
}

void rb_buf_reset(rb_buf *b)
{
    b->len = 0;
    b->over = 0;
    b->oom = 0;
}

char *rb_buf_take(rb_buf *b)
{
    char *p = b->mapped ? NULL : b->p;
    if (b->mapped)
        rb_buf_free(b);
    b->p = NULL;
    b->len = b->cap = 0;
    rb_buf_reset(b);
    return p;
}

void rb_buf_free(rb_buf *b)
{
    if (b->mapped)
        munmap(b->p, b->cap);
    else
        free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->mapped = 0;
    rb_buf_reset(b);
}
