/*
 * test_util: the small containers of util.h that the rest leans on. PtrMap: every key put is
 * found with its last value through growth (thousands of keys, colliding ones included), a clear
 * forgets them all at once, and the map is usable again after it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util.h"

enum { KEYS = 5000 };

static void ptrmap_finds_what_was_put(void **state)
{
    (void)state;
    static char block[KEYS];
    PtrMap m = {0};
    uint32_t v = 7;
    assert_false(ptrmap_get(&m, block, &v)); /* empty: nothing, value untouched */
    assert_int_equal(v, 7);
    for (uint32_t i = 0; i < KEYS; i++)
        ptrmap_put(&m, block + i, i);
    for (uint32_t i = 0; i < KEYS; i += 2)
        ptrmap_put(&m, block + i, i + 1000000); /* replaced, not added */
    assert_int_equal(m.n, KEYS);
    for (uint32_t i = 0; i < KEYS; i++) {
        assert_true(ptrmap_get(&m, block + i, &v));
        assert_int_equal(v, i % 2 ? i : i + 1000000);
    }
    assert_false(ptrmap_get(&m, &v, &v));
    ptrmap_free(&m);
}

static void ptrmap_clear_forgets_everything(void **state)
{
    (void)state;
    static char block[KEYS];
    PtrMap m = {0};
    ptrmap_clear(&m); /* clearing an empty map is harmless */
    for (int round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < KEYS; i += 3)
            ptrmap_put(&m, block + i, (uint32_t)round);
        uint32_t v = 0;
        assert_true(ptrmap_get(&m, block + 3, &v));
        assert_int_equal(v, (uint32_t)round);
        ptrmap_clear(&m);
        assert_int_equal(m.n, 0);
        for (uint32_t i = 0; i < KEYS; i++)
            assert_false(ptrmap_get(&m, block + i, &v));
    }
    ptrmap_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ptrmap_finds_what_was_put),
        cmocka_unit_test(ptrmap_clear_forgets_everything),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
