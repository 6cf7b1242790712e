/*
 * test_rt_parallel: the thread pool's contract (fuse_rt.h): every index of [0, n) is visited
 * exactly once; chunk t is exactly [t*n/T, (t+1)*n/T) and runs with thread == t, chunk 0 on the
 * caller and the others on workers; empty chunks are skipped; a pool survives many calls, long
 * idle gaps (workers asleep) and slow chunks (caller asleep); NULL and one-thread pools run
 * serially; invalid thread counts are FUSE_RT_EINVAL. CI runs it under ThreadSanitizer, which
 * checks that the pool orders every access it promises to.
 */
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fuse_rt.h"

#define MAX_T 8

__extension__ typedef unsigned __int128 u128;

/* What one call saw: each thread writes only its own slot and its own indices. */
typedef struct Record {
    int *hits; /* [n]: times each index was visited (NULL: not recorded) */
    struct {
        int calls;
        int64_t begin, end;
        pthread_t self;
    } chunk[1024];
} Record;

static void record_task(void *ctx, int64_t begin, int64_t end, int thread)
{
    Record *r = ctx;
    r->chunk[thread].calls++;
    r->chunk[thread].begin = begin;
    r->chunk[thread].end = end;
    r->chunk[thread].self = pthread_self();
    if (r->hits)
        for (int64_t i = begin; i < end; i++)
            r->hits[i]++;
}

/* floor(t*n/T) computed in 128 bits, independently of the pool's formula. */
static int64_t want_begin(int64_t n, int t, int T)
{
    return (int64_t)((u128)(uint64_t)n * (u128)(unsigned)t / (u128)(unsigned)T);
}

/* One call over n with the pool (T threads): checks coverage, chunk bounds and threads. */
static void check_call(fuse_rt_pool *pool, int64_t n, int T, bool track_hits)
{
    Record *r = calloc(1, sizeof *r);
    assert_non_null(r);
    if (track_hits) {
        r->hits = calloc((size_t)(n > 0 ? n : 1), sizeof *r->hits);
        assert_non_null(r->hits);
    }
    fuse_rt_parallel_for(pool, n, record_task, r);
    for (int t = 0; t < T; t++) {
        int64_t b = want_begin(n, t, T), e = want_begin(n, t + 1, T);
        if (b == e) {
            assert_int_equal(r->chunk[t].calls, 0);
            continue;
        }
        assert_int_equal(r->chunk[t].calls, 1);
        assert_int_equal(r->chunk[t].begin, b);
        assert_int_equal(r->chunk[t].end, e);
        // Chunk 0 runs on the caller, every other chunk on a worker of its own.
        assert_int_equal(pthread_equal(r->chunk[t].self, pthread_self()) != 0, t == 0);
        for (int u = 0; u < t; u++)
            if (r->chunk[u].calls)
                assert_false(pthread_equal(r->chunk[u].self, r->chunk[t].self));
    }
    if (track_hits)
        for (int64_t i = 0; i < n; i++)
            assert_int_equal(r->hits[i], 1);
    free(r->hits);
    free(r);
}

static void test_every_index_once(void **state)
{
    (void)state;
    static const int64_t ns[] = {0, 1, 2, 3, 5, 7, 8, 9, 63, 64, 65, 1000, 7919, 100003};
    static const int ts[] = {1, 2, 3, 4, 8};
    for (size_t a = 0; a < sizeof ts / sizeof ts[0]; a++) {
        fuse_rt_pool *pool = NULL;
        assert_int_equal(fuse_rt_pool_create(ts[a], &pool, NULL, 0), FUSE_RT_OK);
        assert_non_null(pool);
        assert_int_equal(fuse_rt_pool_threads(pool), ts[a]);
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
            check_call(pool, ns[b], ts[a], true);
        fuse_rt_pool_destroy(pool);
    }
}

/* Chunk bounds near the top of the range: t*n would overflow 64 bits. */
static void test_huge_n(void **state)
{
    (void)state;
    static const int64_t ns[] = {(int64_t)1 << 62, ((int64_t)1 << 62) + 12345, INT64_MAX};
    static const int ts[] = {2, 3, 7, 8};
    for (size_t a = 0; a < sizeof ts / sizeof ts[0]; a++) {
        fuse_rt_pool *pool = NULL;
        assert_int_equal(fuse_rt_pool_create(ts[a], &pool, NULL, 0), FUSE_RT_OK);
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
            check_call(pool, ns[b], ts[a], false);
        fuse_rt_pool_destroy(pool);
    }
}

static void count_task(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    int *hits = ctx;
    for (int64_t i = begin; i < end; i++)
        hits[i]++;
}

static void test_many_calls(void **state)
{
    (void)state;
    enum { N = 37, CALLS = 10000 };
    int hits[N] = {0};
    fuse_rt_pool *pool = NULL;
    assert_int_equal(fuse_rt_pool_create(4, &pool, NULL, 0), FUSE_RT_OK);
    for (int c = 0; c < CALLS; c++)
        fuse_rt_parallel_for(pool, N, count_task, hits);
    for (int i = 0; i < N; i++)
        assert_int_equal(hits[i], CALLS);
    // n alternating between values that leave some chunks empty and values that do not.
    memset(hits, 0, sizeof hits);
    for (int c = 0; c < 1000; c++)
        fuse_rt_parallel_for(pool, 1 + c % 5, count_task, hits);
    for (int i = 0; i < 5; i++)
        assert_int_equal(hits[i], 1000 - (i == 0 ? 0 : 200 * i));
    fuse_rt_pool_destroy(pool);
}

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = us * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Workers asleep between calls (idle gaps longer than their spin), then a caller asleep while
 * slow chunks finish. */
static void test_sleeping_paths(void **state)
{
    (void)state;
    fuse_rt_pool *pool = NULL;
    assert_int_equal(fuse_rt_pool_create(3, &pool, NULL, 0), FUSE_RT_OK);
    for (int c = 0; c < 5; c++) {
        sleep_us(5000);
        check_call(pool, 100, 3, true);
    }
    fuse_rt_pool_destroy(pool);
}

static void slow_task(void *ctx, int64_t begin, int64_t end, int thread)
{
    if (thread > 0)
        sleep_us(3000);
    count_task(ctx, begin, end, thread);
}

static void test_slow_chunks(void **state)
{
    (void)state;
    int hits[12] = {0};
    fuse_rt_pool *pool = NULL;
    assert_int_equal(fuse_rt_pool_create(4, &pool, NULL, 0), FUSE_RT_OK);
    for (int c = 0; c < 5; c++)
        fuse_rt_parallel_for(pool, 12, slow_task, hits);
    for (int i = 0; i < 12; i++)
        assert_int_equal(hits[i], 5);
    fuse_rt_pool_destroy(pool);
}

static void test_serial(void **state)
{
    (void)state;
    assert_int_equal(fuse_rt_pool_threads(NULL), 1);
    check_call(NULL, 0, 1, true);
    check_call(NULL, 1, 1, true);
    check_call(NULL, 1000, 1, true);
    fuse_rt_pool *pool = NULL;
    assert_int_equal(fuse_rt_pool_create(1, &pool, NULL, 0), FUSE_RT_OK);
    assert_int_equal(fuse_rt_pool_threads(pool), 1);
    check_call(pool, 0, 1, true);
    check_call(pool, 999, 1, true);
    fuse_rt_pool_destroy(pool);
    fuse_rt_pool_destroy(NULL);
}

/* n < 0 is an empty loop, like n == 0. */
static void test_negative_n(void **state)
{
    (void)state;
    Record r = {0};
    fuse_rt_pool *pool = NULL;
    assert_int_equal(fuse_rt_pool_create(2, &pool, NULL, 0), FUSE_RT_OK);
    fuse_rt_parallel_for(pool, -5, record_task, &r);
    fuse_rt_parallel_for(NULL, -5, record_task, &r);
    assert_int_equal(r.chunk[0].calls + r.chunk[1].calls, 0);
    fuse_rt_pool_destroy(pool);
}

static void test_create_destroy_loop(void **state)
{
    (void)state;
    for (int i = 0; i < 200; i++) {
        int T = 1 + i % MAX_T;
        fuse_rt_pool *pool = NULL;
        assert_int_equal(fuse_rt_pool_create(T, &pool, NULL, 0), FUSE_RT_OK);
        if (i % 3 != 0)
            check_call(pool, 10 + i, T, true);
        fuse_rt_pool_destroy(pool);
    }
}

/* The largest pool the API allows: 1023 workers each running one chunk. */
static void test_max_threads(void **state)
{
    (void)state;
    fuse_rt_pool *pool = NULL;
    assert_int_equal(fuse_rt_pool_create(1024, &pool, NULL, 0), FUSE_RT_OK);
    assert_int_equal(fuse_rt_pool_threads(pool), 1024);
    check_call(pool, 3000, 1024, true);
    fuse_rt_pool_destroy(pool);
}

static void test_invalid_threads(void **state)
{
    (void)state;
    static const int bad[] = {0, -1, 1025, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[FUSE_RT_ERR_MAX] = "";
        fuse_rt_pool *pool = (fuse_rt_pool *)&err; /* must be overwritten with NULL */
        assert_int_equal(fuse_rt_pool_create(bad[i], &pool, err, sizeof err), FUSE_RT_EINVAL);
        assert_null(pool);
        assert_non_null(strstr(err, "fuse_rt_pool_create: "));
        assert_non_null(strstr(err, "1 to 1024"));
        assert_null(strchr(err, '\n'));
        assert_int_equal(fuse_rt_pool_create(bad[i], &pool, NULL, 0), FUSE_RT_EINVAL);
    }
    assert_int_equal(fuse_rt_pool_create(2, NULL, NULL, 0), FUSE_RT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_index_once), cmocka_unit_test(test_huge_n),
        cmocka_unit_test(test_many_calls),       cmocka_unit_test(test_sleeping_paths),
        cmocka_unit_test(test_slow_chunks),      cmocka_unit_test(test_serial),
        cmocka_unit_test(test_negative_n),       cmocka_unit_test(test_create_destroy_loop),
        cmocka_unit_test(test_max_threads),      cmocka_unit_test(test_invalid_threads),
    };
    return cmocka_run_group_tests_name("rt_parallel", tests, NULL, NULL);
}
