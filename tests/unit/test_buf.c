/* Unit tests for src/buf.c: growth keeps the bytes, the cap is never
 * passed, a failed allocation or mapping leaves the buffer as it was, and
 * the move to a mapping.  realloc and mmap are wrapped at link time
 * (tests/CMakeLists.txt) so a test can make the next one fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "runbook/buf.h"

void *__real_realloc(void *p, size_t n);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);

static int fail_reallocs;       /* the next realloc from buf.c fails */
static int fail_mmaps;
static int reallocs, mmaps;     /* calls seen */

void *__wrap_realloc(void *p, size_t n)
{
    reallocs++;
    if (fail_reallocs) {
        fail_reallocs = 0;
        return NULL;
    }
    return __real_realloc(p, n);
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    mmaps++;
    if (fail_mmaps) {
        fail_mmaps = 0;
        return MAP_FAILED;
    }
    return __real_mmap(addr, len, prot, flags, fd, off);
}

static int setup(void **state)
{
    (void)state;
    fail_reallocs = fail_mmaps = 0;
    reallocs = mmaps = 0;
    return 0;
}

/* n more bytes of "0123456789012...", the digit of each its offset's last,
 * appended in pieces of step (at most 64). */
static void fill(rb_buf *b, size_t n, size_t step)
{
    char piece[80];
    for (size_t i = 0; i < sizeof piece; i++)
        piece[i] = (char)('0' + i % 10);
    for (size_t done = 0; done < n; done += step) {
        size_t k = n - done < step ? n - done : step;
        assert_int_equal(rb_buf_add(b, piece + b->len % 10, k), 0);
    }
}

static void check_digits(const rb_buf *b)
{
    for (size_t i = 0; i < b->len; i++)
        if (b->p[i] != (char)('0' + i % 10))
            fail_msg("byte %zu: expected '%c', got '%c'", i, '0' + (int)(i % 10), b->p[i]);
}

static void growth_doubles_and_keeps_the_bytes(void **state)
{
    (void)state;
    rb_buf b = RB_BUF_INIT(RB_BUF_NOCAP);
    assert_int_equal(rb_buf_add(&b, "", 0), 0);
    assert_null(b.p);                               /* nothing to hold yet */
    fill(&b, 100000, 7);
    assert_int_equal(b.len, 100000);
    check_digits(&b);
    if (b.cap < 100000 || b.cap > 2 * 100000)
        fail_msg("expected a capacity within twice the length, got %zu", b.cap);
    if (reallocs > 12)
        fail_msg("expected growth by doubling (about 9 reallocs), saw %d", reallocs);
    assert_false(rb_buf_failed(&b));
    rb_buf_free(&b);
    rb_buf_free(&b);                                /* twice is safe */
    assert_null(b.p);
}

static void reserve_gives_room_in_place(void **state)
{
    (void)state;
    rb_buf b = RB_BUF_INIT(RB_BUF_NOCAP);
    char *dst = rb_buf_reserve(&b, 5000);
    assert_non_null(dst);
    memcpy(dst, "hello", 5);
    b.len += 5;
    assert_true(b.cap - b.len >= 4995);
    assert_string_equal(rb_buf_cstr(&b), "hello");
    assert_int_equal(b.len, 5);                     /* the NUL is not counted */
    rb_buf_free(&b);
}

static void the_cap_is_never_passed(void **state)
{
    (void)state;
    rb_buf b;
    rb_buf_init(&b, 1000);
    fill(&b, 990, 10);
    assert_int_equal(rb_buf_add(&b, "0123456789ab", 11), -1);
    assert_true(b.over);
    assert_false(b.oom);
    assert_int_equal(b.len, 990);                   /* nothing of it was appended */
    check_digits(&b);
    assert_int_equal(rb_buf_add(&b, "0123456789", 10), 0);  /* up to the cap still fits */
    assert_int_equal(b.len, 1000);
    assert_true(b.cap <= 1000);
    assert_null(rb_buf_reserve(&b, 1));
    assert_null(rb_buf_cstr(&b));                   /* no room for a NUL either */
    assert_true(rb_buf_failed(&b));
    rb_buf_reset(&b);
    assert_false(rb_buf_failed(&b));
    assert_int_equal(b.len, 0);
    rb_buf_free(&b);
}

static void a_huge_request_is_over_not_an_overflow(void **state)
{
    (void)state;
    rb_buf b = RB_BUF_INIT(RB_BUF_NOCAP);
    fill(&b, 10, 10);
    assert_null(rb_buf_reserve(&b, SIZE_MAX - 5));  /* len + n would wrap */
    assert_true(b.over);
    assert_int_equal(b.len, 10);
    rb_buf_free(&b);
}

static void out_of_memory_leaves_the_buffer_as_it_was(void **state)
{
    (void)state;
    rb_buf b = RB_BUF_INIT(RB_BUF_NOCAP);
    fill(&b, 200, 10);
    char *before = b.p;
    size_t cap = b.cap;
    fail_reallocs = 1;
    assert_null(rb_buf_reserve(&b, cap));
    assert_true(b.oom);
    assert_false(b.over);
    assert_ptr_equal(b.p, before);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.len, 200);
    check_digits(&b);
    assert_int_equal(rb_buf_add(&b, "0123456789", 10), 0);  /* still usable */
    assert_true(b.oom);                             /* and says so until reset */
    check_digits(&b);
    rb_buf_free(&b);
}

static void past_map_after_it_moves_once_to_a_mapping(void **state)
{
    (void)state;
    rb_buf b;
    rb_buf_init(&b, 4u << 20);
    b.map_after = 64 * 1024;
    fill(&b, 64 * 1024, 64);
    assert_false(b.mapped);
    assert_int_equal(mmaps, 0);
    fill(&b, 3u << 20, 64);                         /* the bytes so far come along */
    assert_true(b.mapped);
    assert_int_equal(b.cap, 4u << 20);
    assert_int_equal(mmaps, 1);
    check_digits(&b);
    rb_buf_free(&b);
    assert_false(b.mapped);
}

static void a_failed_mapping_is_out_of_memory(void **state)
{
    (void)state;
    rb_buf b;
    rb_buf_init(&b, 1u << 20);
    b.map_after = 4096;
    fill(&b, 4000, 40);
    fail_mmaps = 1;
    assert_null(rb_buf_reserve(&b, 8192));
    assert_true(b.oom);
    assert_false(b.mapped);
    assert_int_equal(b.len, 4000);
    check_digits(&b);
    rb_buf_free(&b);
}

static void take_hands_the_bytes_over(void **state)
{
    (void)state;
    rb_buf b = RB_BUF_INIT(RB_BUF_NOCAP);
    rb_buf_str(&b, "run-1");
    rb_buf_cstr(&b);
    char *s = rb_buf_take(&b);
    assert_string_equal(s, "run-1");
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    free(s);
    rb_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(growth_doubles_and_keeps_the_bytes, setup),
        cmocka_unit_test_setup(reserve_gives_room_in_place, setup),
        cmocka_unit_test_setup(the_cap_is_never_passed, setup),
        cmocka_unit_test_setup(a_huge_request_is_over_not_an_overflow, setup),
        cmocka_unit_test_setup(out_of_memory_leaves_the_buffer_as_it_was, setup),
        cmocka_unit_test_setup(past_map_after_it_moves_once_to_a_mapping, setup),
        cmocka_unit_test_setup(a_failed_mapping_is_out_of_memory, setup),
        cmocka_unit_test_setup(take_hands_the_bytes_over, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
