/*
 * test_rt_alloc: fuse_rt_alloc's contract: 64-byte alignment, 2 MiB alignment from 4 MiB,
 * size 0 gives a unique non-NULL block, impossible sizes give NULL, every byte is writable
 * (checked by ASan in CI), fuse_rt_free(NULL) is a no-op.
 */
#include <stdint.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "fuse_rt.h"

static void test_alignment(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 3, 63, 64, 65, 1000, 4096, 65536, ((size_t)4 << 20) - 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = fuse_rt_alloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        memset(p, 0xa5, sizes[i]);
        assert_int_equal(p[sizes[i] - 1], 0xa5);
        fuse_rt_free(p);
    }
}

static void test_huge(void **state)
{
    (void)state;
    static const size_t sizes[] = {(size_t)4 << 20, ((size_t)5 << 20) + 3, (size_t)16 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = fuse_rt_alloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % ((size_t)2 << 20), 0);
        memset(p, 0x5a, sizes[i]);
        assert_int_equal(p[sizes[i] - 1], 0x5a);
        fuse_rt_free(p);
    }
}

static void test_zero(void **state)
{
    (void)state;
    void *a = fuse_rt_alloc(0), *b = fuse_rt_alloc(0);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_int_equal((uintptr_t)a % 64, 0);
    fuse_rt_free(a);
    fuse_rt_free(b);
    fuse_rt_free(NULL);
}

static void test_impossible(void **state)
{
    (void)state;
    assert_null(fuse_rt_alloc(SIZE_MAX));
    assert_null(fuse_rt_alloc(SIZE_MAX - ((size_t)1 << 20)));
    assert_null(fuse_rt_alloc((size_t)PTRDIFF_MAX + 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_huge),
        cmocka_unit_test(test_zero),
        cmocka_unit_test(test_impossible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
