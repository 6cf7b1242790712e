/*
 * test_rt_kernel: fuse_rt_bind_weights and fuse_rt_kernel_create_from_file against a fake
 * compiled kernel (a fuse_rt_kernel_info whose create() binds its two params and records what it
 * got). Covers found, missing, shape and rank mismatches, extra and duplicate weights, tables
 * large enough to take the sorted path, ABI mismatches, and safetensors files written here: F32
 * entries beside an I64 num_batches_tracked, prefixes with and without '.', a used F64 entry,
 * missing keys and a missing file. Files live in a mkdtemp directory.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fuse_rt.h"

#define countof(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the fake kernel: conv.weight [4,2,1,1] and conv.bias [4] ---- */

struct fuse_rt_kernel {
    float w[8], b[4]; /* copies of the bound weights */
    fuse_rt_pool *pool;
};

/* What the last create() saw. create() has no context argument, so this is file state; each
 * test starts by clearing it. */
static struct {
    int calls;
    size_t nweights;
    const float *data[2];
    fuse_rt_pool *pool;
    int fail_with; /* nonzero: create() fails with this code after binding */
} seen;

static const fuse_rt_tensor_desc fake_params[] = {
    {.name = "conv.weight", .rank = 4, .shape = {4, 2, 1, 1}},
    {.name = "conv.bias", .rank = 1, .shape = {4}},
};

static int fake_create(const fuse_rt_weight *weights, size_t nweights, fuse_rt_pool *pool,
                       fuse_rt_kernel **out, char *err, size_t errlen);

static void fake_destroy(fuse_rt_kernel *k)
{
    free(k);
}

static const fuse_rt_kernel_info fake_info = {
    .abi_version = FUSE_RT_ABI_VERSION,
    .name = "fake",
    .nparams = 2,
    .params = fake_params,
    .create = fake_create,
    .destroy = fake_destroy,
};

static int fake_create(const fuse_rt_weight *weights, size_t nweights, fuse_rt_pool *pool,
                       fuse_rt_kernel **out, char *err, size_t errlen)
{
    seen.calls++;
    seen.nweights = nweights;
    seen.pool = pool;
    *out = NULL;
    int rc = fuse_rt_bind_weights(&fake_info, weights, nweights, seen.data, err, errlen);
    if (rc)
        return rc;
    if (seen.fail_with) {
        snprintf(err, errlen, "fake: create failed on purpose");
        return seen.fail_with;
    }
    fuse_rt_kernel *k = calloc(1, sizeof *k);
    assert_non_null(k);
    memcpy(k->w, seen.data[0], sizeof k->w);
    memcpy(k->b, seen.data[1], sizeof k->b);
    k->pool = pool;
    *out = k;
    return FUSE_RT_OK;
}

static const int64_t shape_w[] = {4, 2, 1, 1}, shape_b[] = {4};
static const float values_w[8] = {1, 2, 3, 4, 5, 6, 7, 8}, values_b[4] = {-1, -2, -3, -4};

/* rc must be `want`, and err one line that starts with `who` and ": " and contains `substr`. */
static void check_err(int rc, int want, const char *err, const char *who, const char *substr)
{
    size_t n = strlen(who);
    if (rc != want || strncmp(err, who, n) != 0 || strncmp(err + n, ": ", 2) != 0 ||
        strchr(err, '\n') || !strstr(err, substr)) {
        print_error("want rc %d with '%s: ...%s...'\n got rc %d: %s\n", want, who, substr, rc, err);
        fail();
    }
}

/* ---- fuse_rt_bind_weights ---- */

static void test_bind_found(void **state)
{
    (void)state;
    static const int64_t other[] = {9, 9, 9};
    const fuse_rt_weight table[] = {
        {.key = "bn.weight", .data = values_b, .rank = 3, .shape = other},
        {.key = "conv.bias", .data = values_b, .rank = 1, .shape = shape_b},
        {.key = NULL, .data = NULL, .rank = 0, .shape = NULL}, /* ignored */
        {.key = "conv.weight", .data = values_w, .rank = 4, .shape = shape_w},
        {.key = "conv.weight.extra", .data = NULL, .rank = 12, .shape = NULL},
    };
    const float *data[2] = {NULL, NULL};
    char err[FUSE_RT_ERR_MAX] = "";
    assert_int_equal(fuse_rt_bind_weights(&fake_info, table, countof(table), data, err, sizeof err),
                     FUSE_RT_OK);
    assert_ptr_equal(data[0], values_w);
    assert_ptr_equal(data[1], values_b);
    assert_string_equal(err, "");
}

static void test_bind_missing(void **state)
{
    (void)state;
    const fuse_rt_weight table[] = {
        {.key = "conv.weight", .data = values_w, .rank = 4, .shape = shape_w},
        {.key = "conv.bia", .data = values_b, .rank = 1, .shape = shape_b},
    };
    const float *data[2];
    char err[FUSE_RT_ERR_MAX] = "";
    int rc = fuse_rt_bind_weights(&fake_info, table, countof(table), data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "fake", "weight 'conv.bias' is missing");
    assert_non_null(strstr(err, "f32[4]"));
    assert_null(data[0]); /* nothing half-bound */
    assert_null(data[1]);
    rc = fuse_rt_bind_weights(&fake_info, NULL, 0, data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "fake", "weight 'conv.weight' is missing");
}

static void test_bind_shape_mismatch(void **state)
{
    (void)state;
    static const int64_t wrong[] = {4, 3, 1, 1};
    const fuse_rt_weight table[] = {
        {.key = "conv.weight", .data = values_w, .rank = 4, .shape = wrong},
        {.key = "conv.bias", .data = values_b, .rank = 1, .shape = shape_b},
    };
    const float *data[2];
    char err[FUSE_RT_ERR_MAX] = "";
    int rc = fuse_rt_bind_weights(&fake_info, table, countof(table), data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "fake",
              "weight 'conv.weight' has shape [4,3,1,1]; the kernel needs [4,2,1,1]");
}

static void test_bind_rank_mismatch(void **state)
{
    (void)state;
    static const int64_t two[] = {4, 2}, four[] = {4, 1, 1, 1};
    fuse_rt_weight table[] = {
        {.key = "conv.weight", .data = values_w, .rank = 2, .shape = two},
        {.key = "conv.bias", .data = values_b, .rank = 1, .shape = shape_b},
    };
    const float *data[2];
    char err[FUSE_RT_ERR_MAX] = "";
    int rc = fuse_rt_bind_weights(&fake_info, table, countof(table), data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "fake",
              "weight 'conv.weight' has shape [4,2]; the kernel needs [4,2,1,1]");
    table[0] =
        (fuse_rt_weight){.key = "conv.weight", .data = values_w, .rank = 4, .shape = shape_w};
    table[1] = (fuse_rt_weight){.key = "conv.bias", .data = values_b, .rank = 0, .shape = NULL};
    rc = fuse_rt_bind_weights(&fake_info, table, countof(table), data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "fake",
              "weight 'conv.bias' has shape []; the kernel needs [4]");
    table[1] = (fuse_rt_weight){.key = "conv.bias", .data = values_b, .rank = 4, .shape = four};
    rc = fuse_rt_bind_weights(&fake_info, table, countof(table), data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "fake",
              "weight 'conv.bias' has shape [4,1,1,1]; the kernel needs [4]");
    table[1] = (fuse_rt_weight){.key = "conv.bias", .data = values_b, .rank = 1, .shape = NULL};
    rc = fuse_rt_bind_weights(&fake_info, table, countof(table), data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "fake", "weight 'conv.bias' has rank 1 but no shape");
    table[1] = (fuse_rt_weight){.key = "conv.bias", .data = NULL, .rank = 1, .shape = shape_b};
    rc = fuse_rt_bind_weights(&fake_info, table, countof(table), data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "fake", "weight 'conv.bias' has no data");
}

static void test_bind_duplicate(void **state)
{
    (void)state;
    const fuse_rt_weight table[] = {
        {.key = "conv.weight", .data = values_w, .rank = 4, .shape = shape_w},
        {.key = "conv.bias", .data = values_b, .rank = 1, .shape = shape_b},
        {.key = "conv.weight", .data = values_w, .rank = 4, .shape = shape_w},
    };
    const float *data[2];
    char err[FUSE_RT_ERR_MAX] = "";
    int rc = fuse_rt_bind_weights(&fake_info, table, countof(table), data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "fake", "weight 'conv.weight' appears more than once");
    // An unused key may repeat.
    const fuse_rt_weight twice[] = {table[0], table[1], {.key = "x"}, {.key = "x"}};
    assert_int_equal(fuse_rt_bind_weights(&fake_info, twice, countof(twice), data, NULL, 0),
                     FUSE_RT_OK);
}

/* 5000 weights, 300 of them used (in an order unrelated to the table's): the sorted path. */
static void test_bind_many(void **state)
{
    (void)state;
    enum { NW = 5000, NP = 300 };
    static char keys[NW][24];
    static int64_t shapes[NW][2];
    static float values[NW];
    static fuse_rt_weight table[NW + 1];
    static fuse_rt_tensor_desc params[NP];
    for (int i = 0; i < NW; i++) {
        snprintf(keys[i], sizeof keys[i], "layer%d.weight", i);
        shapes[i][0] = 1 + i % 7;
        shapes[i][1] = 3;
        values[i] = (float)i;
        table[i] =
            (fuse_rt_weight){.key = keys[i], .data = &values[i], .rank = 2, .shape = shapes[i]};
    }
    for (int j = 0; j < NP; j++) {
        int i = (j * 2903 + 11) % NW; /* 2903 is prime, so the i are distinct */
        params[j] = (fuse_rt_tensor_desc){.name = keys[i], .rank = 2, .shape = {1 + i % 7, 3}};
    }
    fuse_rt_kernel_info info = {
        .abi_version = FUSE_RT_ABI_VERSION, .name = "many", .nparams = NP, .params = params};
    static const float *data[NP];
    char err[FUSE_RT_ERR_MAX] = "";
    int rc = fuse_rt_bind_weights(&info, table, NW, data, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    for (int j = 0; j < NP; j++)
        assert_ptr_equal(data[j], &values[(j * 2903 + 11) % NW]);

    // A missing key, a wrong shape and a duplicate, each found through the index.
    params[7].name = "layer5000.weight";
    rc = fuse_rt_bind_weights(&info, table, NW, data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "many", "weight 'layer5000.weight' is missing");
    params[7] = (fuse_rt_tensor_desc){.name = keys[4999], .rank = 2, .shape = {4, 3}};
    rc = fuse_rt_bind_weights(&info, table, NW, data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "many",
              "weight 'layer4999.weight' has shape [2,3]; the kernel needs [4,3]");
    params[7] = (fuse_rt_tensor_desc){.name = keys[4999], .rank = 2, .shape = {2, 3}};
    table[NW] = table[4999];
    rc = fuse_rt_bind_weights(&info, table, NW + 1, data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "many", "weight 'layer4999.weight' appears more than once");
}

static void test_bind_no_params(void **state)
{
    (void)state;
    fuse_rt_kernel_info info = {.abi_version = FUSE_RT_ABI_VERSION, .name = "none"};
    assert_int_equal(fuse_rt_bind_weights(&info, NULL, 0, NULL, NULL, 0), FUSE_RT_OK);
}

static void test_abi_mismatch(void **state)
{
    (void)state;
    fuse_rt_kernel_info info = fake_info;
    info.abi_version = FUSE_RT_ABI_VERSION + 1;
    const fuse_rt_weight table[] = {
        {.key = "conv.weight", .data = values_w, .rank = 4, .shape = shape_w},
        {.key = "conv.bias", .data = values_b, .rank = 1, .shape = shape_b},
    };
    const float *data[2];
    char err[FUSE_RT_ERR_MAX] = "", want[64];
    snprintf(want, sizeof want, "kernel 'fake' was built for runtime ABI %d",
             FUSE_RT_ABI_VERSION + 1);
    int rc = fuse_rt_bind_weights(&info, table, countof(table), data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "fuse_rt_bind_weights", want);
    memset(&seen, 0, sizeof seen);
    fuse_rt_kernel *k = (fuse_rt_kernel *)&err;
    rc = fuse_rt_kernel_create_from_file(&info, "/nonexistent", NULL, NULL, &k, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "fuse_rt_kernel_create_from_file", want);
    assert_null(k);
    assert_int_equal(seen.calls, 0);
    rc = fuse_rt_bind_weights(NULL, table, countof(table), data, err, sizeof err);
    check_err(rc, FUSE_RT_EINVAL, err, "fuse_rt_bind_weights", "NULL kernel info");
}

/* ---- fuse_rt_kernel_create_from_file ---- */

typedef struct Dir {
    char path[64];
} Dir;

static int setup(void **state)
{
    Dir *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    strcpy(d->path, "/tmp/fuse_rt_kernel_XXXXXX");
    if (!mkdtemp(d->path)) {
        free(d);
        return -1;
    }
    memset(&seen, 0, sizeof seen);
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    Dir *d = *state;
    DIR *dir = opendir(d->path);
    if (dir) {
        char p[512];
        for (struct dirent *de; (de = readdir(dir)) != NULL;) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", d->path, de->d_name);
            unlink(p);
        }
        closedir(dir);
    }
    rmdir(d->path);
    free(d);
    return 0;
}

/* One entry of a test file; F32 entries hold base, base + 1, ... */
typedef struct Spec {
    const char *key, *dtype;
    size_t elem_size;
    uint32_t rank;
    int64_t shape[4];
    float base;
} Spec;

static const Spec file_specs[] = {
    {"model.bn.num_batches_tracked", "I64", 8, 0, {0}, 0},
    {"model.conv.weight", "F32", 4, 4, {4, 2, 1, 1}, 10},
    {"model.conv.bias", "F32", 4, 1, {4}, 20},
    {"model.unused", "F64", 8, 1, {2}, 0},
    {"conv.weight", "F64", 8, 4, {4, 2, 1, 1}, 0},
    {"conv.bias", "F32", 4, 1, {4}, 0},
    {"wrong.conv.weight", "F32", 4, 4, {4, 3, 1, 1}, 0},
    {"wrong.conv.bias", "F32", 4, 1, {4}, 0},
    {"half.conv.weight", "F32", 4, 4, {4, 2, 1, 1}, 0},
};

/* Writes the file_specs as a safetensors file (header padded to 8 bytes, as safetensors does)
 * into the test directory; returns its path in buf. */
static const char *write_file(void **state, char *buf, size_t size)
{
    const Dir *d = *state;
    snprintf(buf, size, "%s/weights.safetensors", d->path);
    char header[4096];
    size_t h = (size_t)snprintf(header, sizeof header, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t offset = 0, sizes[countof(file_specs)];
    for (size_t i = 0; i < countof(file_specs); i++) {
        const Spec *s = &file_specs[i];
        size_t count = 1;
        h += (size_t)snprintf(header + h, sizeof header - h,
                              ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", s->key, s->dtype);
        for (uint32_t dim = 0; dim < s->rank; dim++) {
            h += (size_t)snprintf(header + h, sizeof header - h, "%s%" PRId64, dim ? "," : "",
                                  s->shape[dim]);
            count *= (size_t)s->shape[dim];
        }
        sizes[i] = count * s->elem_size;
        h += (size_t)snprintf(header + h, sizeof header - h, "],\"data_offsets\":[%zu,%zu]}",
                              offset, offset + sizes[i]);
        offset += sizes[i];
    }
    h += (size_t)snprintf(header + h, sizeof header - h, "}");
    assert_true(h < sizeof header - 8);
    while (h % 8)
        header[h++] = ' ';
    unsigned char *bytes = calloc(1, 8 + h + offset);
    assert_non_null(bytes);
    for (int k = 0; k < 8; k++)
        bytes[k] = (unsigned char)((uint64_t)h >> (8 * k));
    memcpy(bytes + 8, header, h);
    unsigned char *data = bytes + 8 + h;
    for (size_t i = 0; i < countof(file_specs); i++) {
        if (strcmp(file_specs[i].dtype, "F32") == 0)
            for (size_t k = 0; k < sizes[i] / 4; k++) {
                float v = file_specs[i].base + (float)k;
                memcpy(data + 4 * k, &v, 4);
            }
        data += sizes[i];
    }
    FILE *f = fopen(buf, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, 8 + h + offset, f), 8 + h + offset);
    assert_int_equal(fclose(f), 0);
    free(bytes);
    return buf;
}

static void test_file_prefix(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX] = "";
    write_file(state, path, sizeof path);
    fuse_rt_pool *pool = NULL;
    assert_int_equal(fuse_rt_pool_create(1, &pool, NULL, 0), FUSE_RT_OK);
    static const char *const prefixes[] = {"model", "model."};
    for (size_t p = 0; p < countof(prefixes); p++) {
        memset(&seen, 0, sizeof seen);
        fuse_rt_kernel *k = NULL;
        int rc = fuse_rt_kernel_create_from_file(&fake_info, path, prefixes[p], pool, &k, err,
                                                 sizeof err);
        if (rc)
            fail_msg("prefix '%s': %s", prefixes[p], err);
        assert_non_null(k);
        assert_int_equal(seen.calls, 1);
        assert_int_equal(seen.nweights, 2);
        assert_ptr_equal(seen.pool, pool);
        assert_ptr_equal(k->pool, pool);
        for (int i = 0; i < 8; i++)
            assert_true(k->w[i] == 10.0f + (float)i);
        for (int i = 0; i < 4; i++)
            assert_true(k->b[i] == 20.0f + (float)i);
        fake_info.destroy(k);
    }
    fuse_rt_pool_destroy(pool);
}

static void test_file_used_f64(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX] = "";
    write_file(state, path, sizeof path);
    static const char *const prefixes[] = {"", NULL};
    for (size_t p = 0; p < countof(prefixes); p++) {
        fuse_rt_kernel *k = NULL;
        int rc = fuse_rt_kernel_create_from_file(&fake_info, path, prefixes[p], NULL, &k, err,
                                                 sizeof err);
        check_err(rc, FUSE_RT_EDTYPE, err, path,
                  "weight 'conv.weight' has dtype F64; the kernel needs F32");
        assert_null(k);
        assert_int_equal(seen.calls, 0);
    }
}

static void test_file_mismatch(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX] = "";
    write_file(state, path, sizeof path);
    fuse_rt_kernel *k = NULL;
    int rc = fuse_rt_kernel_create_from_file(&fake_info, path, "wrong", NULL, &k, err, sizeof err);
    check_err(rc, FUSE_RT_EFORMAT, err, path,
              "weight 'wrong.conv.weight' has shape [4,3,1,1]; the kernel needs [4,2,1,1]");
    rc = fuse_rt_kernel_create_from_file(&fake_info, path, "half.", NULL, &k, err, sizeof err);
    check_err(rc, FUSE_RT_EFORMAT, err, path, "weight 'half.conv.bias' is missing");
    rc = fuse_rt_kernel_create_from_file(&fake_info, path, "nothing", NULL, &k, err, sizeof err);
    check_err(rc, FUSE_RT_EFORMAT, err, path, "weight 'nothing.conv.weight' is missing");
    assert_null(k);
    assert_int_equal(seen.calls, 0);
}

static void test_file_missing(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX] = "";
    const Dir *d = *state;
    snprintf(path, sizeof path, "%s/absent.safetensors", d->path);
    fuse_rt_kernel *k = (fuse_rt_kernel *)&err;
    int rc = fuse_rt_kernel_create_from_file(&fake_info, path, "model", NULL, &k, err, sizeof err);
    check_err(rc, FUSE_RT_EIO, err, path, "cannot open");
    assert_null(k);
    assert_int_equal(seen.calls, 0);
}

/* create()'s own failure comes back unchanged, with *out NULL. */
static void test_file_create_fails(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX] = "";
    write_file(state, path, sizeof path);
    seen.fail_with = FUSE_RT_ENOMEM;
    fuse_rt_kernel *k = NULL;
    int rc = fuse_rt_kernel_create_from_file(&fake_info, path, "model", NULL, &k, err, sizeof err);
    check_err(rc, FUSE_RT_ENOMEM, err, "fake", "create failed on purpose");
    assert_null(k);
    assert_int_equal(seen.calls, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bind_found),
        cmocka_unit_test(test_bind_missing),
        cmocka_unit_test(test_bind_shape_mismatch),
        cmocka_unit_test(test_bind_rank_mismatch),
        cmocka_unit_test(test_bind_duplicate),
        cmocka_unit_test(test_bind_many),
        cmocka_unit_test(test_bind_no_params),
        cmocka_unit_test(test_abi_mismatch),
        cmocka_unit_test_setup_teardown(test_file_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_used_f64, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_create_fails, setup, teardown),
    };
    return cmocka_run_group_tests_name("rt_kernel", tests, NULL, NULL);
}
