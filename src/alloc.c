/*
 * alloc.c: the Lua state's allocator.  See host.h.
 *
 * Small blocks are malloc's, as with luaL_newstate.  A block of BIG bytes
 * or more (a command's captured output pushed as a string, a big result
 * table, a luaL_Buffer) gets a mapping of its own, aligned to a huge page
 * and advised MADV_HUGEPAGE: writing 32 MiB into fresh 4 KiB pages from
 * malloc cost about 100 ms on these VMs (a trap per page), and about 4 ms
 * in 2 MiB pages.  The kernel's THP mode here is "madvise", so without the
 * advice no block gets them.
 *
 * Which kind a block is follows from its size alone: Lua passes the
 * block's size with every call (osize), and a block is mapped exactly when
 * that size is at least BIG.  So nothing is kept per block.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <lauxlib.h>

#include "runbook/host.h"

#define BIG ((size_t)2 << 20)
#define HUGE_PAGE ((size_t)2 << 20)
#define PAGE ((size_t)4096)

/* The length mapped for a block of n >= BIG bytes: whole pages, so the
 * block's last, partial huge page costs only the 4 KiB pages it touches. */
static size_t mapped(size_t n)
{
    return (n + PAGE - 1) & ~(PAGE - 1);
}

/* n >= BIG bytes starting on a huge-page boundary (an over-long mapping
 * trimmed at both ends), or NULL. */
static void *map_big(size_t n)
{
    size_t len = mapped(n), extra = HUGE_PAGE - PAGE;
    char *m = mmap(NULL, len + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    char *start = (char *)(((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    size_t head = (size_t)(start - m);
    if (head > 0)
        munmap(m, head);
    if (extra > head)
        munmap(start + len, extra - head);
    madvise(start, len, MADV_HUGEPAGE);     /* a hint: 4 KiB pages without it */
    return start;
}

/* A mapped block of osize bytes resized to nsize (both >= BIG).  Shrinking
 * unmaps the tail in place and cannot fail, as Lua requires; growing may
 * move the block (mremap: no copy). */
static void *remap_big(void *p, size_t osize, size_t nsize)
{
    size_t olen = mapped(osize), nlen = mapped(nsize);
    if (nlen == olen)
        return p;
    if (nlen < olen) {
        munmap((char *)p + nlen, olen - nlen);
        return p;
    }
    void *q = mremap(p, olen, nlen, MREMAP_MAYMOVE);
    return q == MAP_FAILED ? NULL : q;
}

/* A block moving between the two kinds: a copy of its first
 * min(osize, nsize) bytes, the old block released. */
static void *move_block(void *p, size_t osize, size_t nsize)
{
    void *q = nsize >= BIG ? map_big(nsize) : malloc(nsize);
    if (q == NULL && nsize < osize) {
        /* Lua assumes a shrink never fails; malloc of under 2 MiB failing
         * while 2 MiB are about to be freed leaves nothing to go on */
        fputs("runbook: out of memory\n", stderr);
        abort();
    }
    if (q == NULL)
        return NULL;
    if (p != NULL) {
        memcpy(q, p, osize < nsize ? osize : nsize);
        if (osize >= BIG)
            munmap(p, mapped(osize));
        else
            free(p);
    }
    return q;
}

void *rb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (ptr == NULL)
        osize = 0;              /* osize then tells the kind of object */
    if (nsize == 0) {
        if (osize >= BIG)
            munmap(ptr, mapped(osize));
        else
            free(ptr);
        return NULL;
    }
    if (osize < BIG && nsize < BIG)
        return realloc(ptr, nsize);
    if (osize >= BIG && nsize >= BIG)
        return remap_big(ptr, osize, nsize);
    return move_block(ptr, osize, nsize);
}

static int panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "runbook: unprotected error: %s\n", msg ? msg : "(not a string)");
    return 0;                   /* then Lua aborts */
}

/* Fault in the first HEAP_START bytes of the heap with one madvise.
 * Left to itself the heap grows by 132 KiB at a time and each fresh page
 * costs a trap when malloc first writes it: a one-step run took about
 * 85 of them, at 11-12 us each on these VMs against 0.8-1.2 us a page
 * populated (see the README's design section).  M_TOP_PAD makes the
 * heap's next growth (and every later one) HEAP_START longer than asked;
 * blocks just under malloc's mmap threshold are taken until it grows,
 * the pages from the first of them to the new break are populated and
 * the blocks freed.  The pages stay: free trims the heap's top down to
 * the pad, never below.  On a kernel before 5.14 madvise refuses
 * MADV_POPULATE_WRITE and the pages fault as they come. */
#define HEAP_START ((size_t)512 << 10)
#define PROBE ((size_t)120 << 10)       /* under the 128 KiB mmap threshold: from the heap */
#define PROBES 8

static void heap_prefault(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return;                     /* ASan's malloc is not glibc's heap: nothing to fault in */
#endif
    if (mallopt(M_TOP_PAD, (int)HEAP_START) == 0)
        return;
    void *probe[PROBES];
    char *brk0 = sbrk(0);
    char *hi = brk0;
    int n = 0;
    while (n < PROBES && hi == brk0 && (probe[n] = malloc(PROBE)) != NULL) {
        n++;
        hi = sbrk(0);
    }
    if (n > 0 && hi != brk0 && hi != (char *)-1) {
        char *lo = (char *)(((uintptr_t)probe[0] + PAGE - 1) & ~(uintptr_t)(PAGE - 1));
        if (hi > lo && (size_t)(hi - lo) <= HEAP_START + PROBES * PROBE)
            (void)madvise(lo, (size_t)(hi - lo), MADV_POPULATE_WRITE);
    }
    while (n > 0)
        free(probe[--n]);
}

lua_State *rb_newstate(void)
{
    heap_prefault();
    lua_State *L = lua_newstate(rb_alloc, NULL);
    if (L != NULL) {
        lua_atpanic(L, panic);  /* warnings stay off, as luaL_newstate leaves them */
        /* Start-up only loads modules, whose objects all stay: a collection
         * then frees nothing and cost 7% of a one-step run's instructions.
         * runbook.cli restarts it before the command runs. */
        lua_gc(L, LUA_GCSTOP);
    }
    return L;
}

#if !defined(__SANITIZE_ADDRESS__)
/* The allocator of a state being closed at the process's end: blocks are
 * allocated and resized as ever, for the finalizers that still run, but
 * not freed one by one (see rb_closestate). */
static void *alloc_closing(void *ud, void *ptr, size_t osize, size_t nsize)
{
    if (nsize == 0)
        return NULL;
    return rb_alloc(ud, ptr, osize, nsize);
}
#endif

void rb_closestate(lua_State *L)
{
#if !defined(__SANITIZE_ADDRESS__)
    lua_setallocf(L, alloc_closing, NULL);
#endif
    lua_close(L);
}
