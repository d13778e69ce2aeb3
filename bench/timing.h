/* bench/timing.h: what every C baseline of bench/ needs, so each measures
 * the same way: a monotonic clock in seconds and a comparison for qsort. */
#ifndef RB_BENCH_TIMING_H
#define RB_BENCH_TIMING_H

#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
