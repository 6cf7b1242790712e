/*
 * stream_bound: what this machine's memory allows for the memory-bound workloads, measured
 * with the simplest loops that move the same bytes (no fusec involved): the floor under W3 and
 * W4 that no code generator can beat.
 *
 *   cc -O2 -march=native -pthread bench/stream_bound.c -o /tmp/stream_bound && /tmp/stream_bound
 *
 * An argument sets the input's size in MiB (128 by default); the build's own copy, built
 * without -march, runs in `ctest -R bench/stream_bound` at 4 MiB and checks what each pattern
 * wrote. Each pattern runs on 2 threads (static halves), 1 warm-up and 21 timed calls, and prints
 * the median and the minimum:
 *   read       sum 128 MiB                                      (W4's pool, SE's first pass)
 *   scale      y = x * g: read 128 MiB, stream 128 MiB          (W4's second pass)
 *   two_outs   a = h + g, m = h * g: read 128 MiB, stream 2 x 128 MiB  (W3 without up(l))
 *   se         read, then scale, in one call                    (W4: both passes)
 *   se_back    the same, the scale from the end of each half back: it starts on the lines
 *              the read left last, which may still be in L3
 * Streaming stores are the non-temporal stores fusec emits for large sweeps (AVX here, plain
 * stores where the compiler offers no AVX).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

#define THREADS 2
#define RUNS    21

typedef enum { READ, SCALE, TWO_OUTS, SE, SE_BACK } Pattern;

static int64_t elems; /* of the input, a multiple of 32 * THREADS */
static float *in, *out0, *out1;
static Pattern pattern; /* what work() does: READ, SCALE (backward with `backward`) or TWO_OUTS */
static int backward;
static float sums[THREADS];

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *work(void *arg)
{
    int64_t t = (int64_t)(size_t)arg, lo = t * (elems / THREADS), hi = lo + elems / THREADS;
    float sum = 0.0f;
#ifdef __AVX__
    __m256 g = _mm256_set1_ps(1.5f), s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t n = 0; n < hi - lo; n += 32) {
        int64_t i = backward ? hi - 32 - n : lo + n;
        __m256 a = _mm256_load_ps(in + i), b = _mm256_load_ps(in + i + 8);
        __m256 c = _mm256_load_ps(in + i + 16), d = _mm256_load_ps(in + i + 24);
        if (pattern == READ) {
            s0 = _mm256_add_ps(s0, a), s1 = _mm256_add_ps(s1, b);
            s2 = _mm256_add_ps(s2, c), s3 = _mm256_add_ps(s3, d);
            continue;
        }
        _mm256_stream_ps(out0 + i, _mm256_mul_ps(a, g));
        _mm256_stream_ps(out0 + i + 8, _mm256_mul_ps(b, g));
        _mm256_stream_ps(out0 + i + 16, _mm256_mul_ps(c, g));
        _mm256_stream_ps(out0 + i + 24, _mm256_mul_ps(d, g));
        if (pattern == TWO_OUTS) {
            _mm256_stream_ps(out1 + i, _mm256_add_ps(a, g));
            _mm256_stream_ps(out1 + i + 8, _mm256_add_ps(b, g));
            _mm256_stream_ps(out1 + i + 16, _mm256_add_ps(c, g));
            _mm256_stream_ps(out1 + i + 24, _mm256_add_ps(d, g));
        }
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (int k = 0; k < 8; k++)
        sum += lanes[k];
#else
    for (int64_t n = 0; n < hi - lo; n++) {
        int64_t i = backward ? hi - 1 - n : lo + n;
        if (pattern == READ)
            sum += in[i];
        else
            out0[i] = in[i] * 1.5f;
        if (pattern == TWO_OUTS)
            out1[i] = in[i] + 1.5f;
    }
#endif
    sums[t] = sum; /* keeps the reads */
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One pass of work() as `p` on every thread. */
static void pass(Pattern p, int back)
{
    pattern = p, backward = back;
    pthread_t th[THREADS];
    for (int64_t i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, work, (void *)(size_t)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
}

static void measure(Pattern p, const char *name, double mib)
{
    double ms[RUNS + 1];
    for (int r = 0; r <= RUNS; r++) {
        double t0 = now();
        if (p == SE || p == SE_BACK)
            pass(READ, 0);
        pass(p == SE || p == SE_BACK ? SCALE : p, p == SE_BACK);
        ms[r] = (now() - t0) * 1e3;
    }
    qsort(ms + 1, RUNS, sizeof *ms, by_value); /* ms[0]: the warm-up */
    double med = ms[1 + RUNS / 2];
    printf("%-9s %6.0f MiB  median %6.2f ms (%5.1f GB/s)  min %6.2f ms  [%g]\n", name, mib, med,
           mib * 1.048576 / med, ms[1], (double)(sums[0] + sums[1]));
}

/* Whether the last call wrote what the pattern computes. */
static int wrote_right(Pattern p)
{
    for (int64_t i = 0; i < elems; i++) {
        if (p != READ && out0[i] != in[i] * 1.5f)
            return 0;
        if (p == TWO_OUTS && out1[i] != in[i] + 1.5f)
            return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    long mib = argc > 1 ? strtol(argv[1], NULL, 10) : 128;
    if (mib < 1 || mib > 8192) {
        fprintf(stderr, "usage: stream_bound [MiB, 1 to 8192]\n");
        return 2;
    }
    elems = (int64_t)mib << 18; /* floats */
    size_t bytes = (size_t)elems * sizeof(float);
    in = aligned_alloc(64, bytes), out0 = aligned_alloc(64, bytes), out1 = aligned_alloc(64, bytes);
    if (!in || !out0 || !out1) {
        fprintf(stderr, "stream_bound: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < elems; i++)
        in[i] = (float)(i & 1023) * (1.0f / 1024);
    memset(out0, 0, bytes); /* the pages exist before timing, as fusec's reused outputs */
    memset(out1, 0, bytes);
    printf("2 threads, medians of %d calls\n", RUNS);
    static const struct {
        Pattern p;
        const char *name;
        int moves; /* input sizes moved */
    } patterns[] = {{READ, "read", 1},
                    {SCALE, "scale", 2},
                    {TWO_OUTS, "two_outs", 3},
                    {SE, "se", 3},
                    {SE_BACK, "se_back", 3}};
    int bad = 0;
    for (size_t k = 0; k < sizeof patterns / sizeof *patterns; k++) {
        memset(out0, 0, bytes); /* what the pattern writes, not what the last one did */
        measure(patterns[k].p, patterns[k].name, (double)(mib * patterns[k].moves));
        if (!wrote_right(patterns[k].p)) {
            fprintf(stderr, "stream_bound: %s wrote wrong values\n", patterns[k].name);
            bad = 1;
        }
    }
    free(in), free(out0), free(out1);
    return bad;
}
