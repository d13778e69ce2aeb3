/* bench/timing.h: what every C baseline of bench/ needs, so each measures
 * the same way: a monotonic clock in seconds, and the median of n times
 * printed in seconds as bench/common.sh reads it. */
#ifndef RB_BENCH_TIMING_H
#define RB_BENCH_TIMING_H

#include <stdio.h>
#include <stdlib.h>
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

/* Sorts t. */
static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp);
    return t[n / 2];
}

#endif
