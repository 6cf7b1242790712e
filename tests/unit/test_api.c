/*
 * test_api: the compiler library (fusec.h, libfusec.so) used as a program uses it, through its
 * public headers only: specs from strings and files, dim bindings, weights from caller buffers
 * and from a safetensors file, both code generators, errors returned as values for every bad
 * spec, option and file (never a crash, never output on stderr), and modules compiled and run
 * from several threads at once.
 */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
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
#include "fusec.h"

#define countof(a) (sizeof(a) / sizeof((a)[0]))

static const char relu_spec[] = "fuse 1\n"
                                "dim N = 4\n"
                                "graph g(x: f32[N]) -> f32[N] {\n"
                                "    return relu(x) * 2 + 1\n"
                                "}\n";

static const char linear_spec[] = "fuse 1\n"
                                  "graph lin(x: f32[2, 3]) -> f32[2, 2] {\n"
                                  "    return linear(x, out=2) @fc\n"
                                  "}\n";

static fusec_module *compile_ok(const char *spec, const fusec_options *opt)
{
    char err[4096] = "x";
    fusec_module *m = NULL;
    int rc = fusec_compile_string(spec, strlen(spec), "test.fuse", opt, &m, err, sizeof err);
    if (rc != FUSE_RT_OK)
        fail_msg("compile failed (%d): %s", rc, err);
    assert_non_null(m);
    assert_string_equal(err, "");
    return m;
}

/* Compiles spec expecting failure with `code`; returns the diagnostics. */
static const char *compile_fails(const char *spec, size_t len, const char *name,
                                 const fusec_options *opt, int code)
{
    static char err[4096];
    fusec_module *m = (fusec_module *)&err; /* must be reset to NULL */
    int rc = fusec_compile_string(spec, len, name, opt, &m, err, sizeof err);
    if (rc != code)
        fail_msg("expected code %d, got %d: %s", code, rc, err);
    assert_null(m);
    assert_true(strstr(err, "error") != NULL);
    return err;
}

/* Creates an instance with `weights`, runs it once on x, destroys it. */
static void run_once(const fuse_rt_kernel_info *info, const fuse_rt_weight *weights, size_t n,
                     const float *x, float *y)
{
    char err[FUSE_RT_ERR_MAX];
    fuse_rt_kernel *k = NULL;
    if (info->create(weights, n, NULL, &k, err, sizeof err) != FUSE_RT_OK)
        fail_msg("create: %s", err);
    const float *inputs[1] = {x};
    float *outputs[1] = {y};
    if (info->run(k, inputs, outputs, err, sizeof err) != FUSE_RT_OK)
        fail_msg("run: %s", err);
    info->destroy(k);
}

static void string_spec_runs(void **state)
{
    (void)state;
    fusec_module *m = compile_ok(relu_spec, NULL);
    const fuse_rt_kernel_info *info = fusec_module_info(m);
    assert_int_equal(info->abi_version, FUSE_RT_ABI_VERSION);
    assert_string_equal(info->name, "g");
    assert_int_equal(info->ninputs, 1);
    assert_int_equal(info->inputs[0].shape[0], 4);
    assert_true(fusec_module_compile_ms(m) > 0);
    float x[4] = {-1.5f, 0.0f, 0.25f, 3.0f}, y[4];
    run_once(info, NULL, 0, x, y);
    const float want[4] = {1.0f, 1.0f, 1.5f, 7.0f};
    for (int i = 0; i < 4; i++)
        assert_float_equal(y[i], want[i], 0.0f);
    fusec_module_free(m);
    fusec_module_free(NULL);
}

static void dims_bind_shapes(void **state)
{
    (void)state;
    const int64_t sizes[] = {1, 7, 33, 100};
    for (size_t s = 0; s < countof(sizes); s++) {
        fusec_dim dim = {"N", sizes[s]};
        fusec_options opt = {.dims = &dim, .ndims = 1};
        fusec_module *m = compile_ok(relu_spec, &opt);
        const fuse_rt_kernel_info *info = fusec_module_info(m);
        assert_int_equal(info->outputs[0].shape[0], sizes[s]);
        float x[100], y[100];
        for (int64_t i = 0; i < sizes[s]; i++)
            x[i] = (float)i - 3.0f;
        run_once(info, NULL, 0, x, y);
        for (int64_t i = 0; i < sizes[s]; i++)
            assert_float_equal(y[i], (x[i] > 0 ? x[i] : 0) * 2 + 1, 0.0f);
        fusec_module_free(m);
    }
}

static const float fc_weight[6] = {1, 2, 3, -1, 0.5f, 0}, fc_bias[2] = {0.25f, -2};
static const float lin_x[6] = {1, -1, 2, 0.5f, 4, -3};

static void check_linear(const float *y)
{
    for (int r = 0; r < 2; r++)
        for (int o = 0; o < 2; o++) {
            float want = fc_bias[o];
            for (int i = 0; i < 3; i++)
                want += lin_x[r * 3 + i] * fc_weight[o * 3 + i];
            assert_float_equal(y[r * 2 + o], want, 1e-5f);
        }
}

static void weights_from_buffers(void **state)
{
    (void)state;
    fusec_module *m = compile_ok(linear_spec, NULL);
    const fuse_rt_kernel_info *info = fusec_module_info(m);
    assert_int_equal(info->nparams, 2);
    int64_t wshape[2] = {2, 3}, bshape[1] = {2};
    fuse_rt_weight w[2] = {{"fc.bias", fc_bias, 1, bshape}, {"fc.weight", fc_weight, 2, wshape}};
    float y[4];
    run_once(info, w, 2, lin_x, y);
    check_linear(y);
    /* a weight of the wrong shape is an error from create, not a crash */
    fuse_rt_weight bad[2] = {{"fc.bias", fc_bias, 1, bshape}, {"fc.weight", fc_weight, 1, bshape}};
    char err[FUSE_RT_ERR_MAX];
    fuse_rt_kernel *k = NULL;
    assert_int_not_equal(info->create(bad, 2, NULL, &k, err, sizeof err), FUSE_RT_OK);
    assert_non_null(strstr(err, "fc.weight"));
    fusec_module_free(m);
}

/* A safetensors file with `model.fc.weight` and `model.fc.bias`. */
static void write_safetensors(const char *path)
{
    const char header[] = "{\"model.fc.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],"
                          "\"data_offsets\":[0,24]},\"model.fc.bias\":{\"dtype\":\"F32\","
                          "\"shape\":[2],\"data_offsets\":[24,32]}}";
    uint64_t n = sizeof header - 1;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(&n, 8, 1, f), 1);
    assert_int_equal(fwrite(header, 1, n, f), n);
    assert_int_equal(fwrite(fc_weight, sizeof(float), 6, f), 6);
    assert_int_equal(fwrite(fc_bias, sizeof(float), 2, f), 2);
    assert_int_equal(fclose(f), 0);
}

static void weights_from_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/fusec-api-XXXXXX", path[64], spec_path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    snprintf(spec_path, sizeof spec_path, "%s/lin.fuse", dir);
    write_safetensors(path);
    FILE *f = fopen(spec_path, "wb");
    assert_non_null(f);
    fputs(linear_spec, f);
    assert_int_equal(fclose(f), 0);

    char err[4096];
    fusec_module *m = NULL;
    assert_int_equal(fusec_compile_file(spec_path, NULL, &m, err, sizeof err), FUSE_RT_OK);
    const fuse_rt_kernel_info *info = fusec_module_info(m);
    fuse_rt_kernel *k = NULL;
    if (fuse_rt_kernel_create_from_file(info, path, "model", NULL, &k, err, sizeof err))
        fail_msg("%s", err);
    const float *inputs[1] = {lin_x};
    float y[4], *outputs[1] = {y};
    assert_int_equal(info->run(k, inputs, outputs, err, sizeof err), FUSE_RT_OK);
    check_linear(y);
    info->destroy(k);
    /* the wrong prefix: every key is missing, and the message says which */
    assert_int_not_equal(
        fuse_rt_kernel_create_from_file(info, path, "other", NULL, &k, err, sizeof err), 0);
    assert_non_null(strstr(err, "other.fc."));
    fusec_module_free(m);
    unlink(path);
    unlink(spec_path);
    rmdir(dir);
}

static void c_backend_matches_default(void **state)
{
    (void)state;
    fusec_options c_opt = {.backend = "c"};
    fusec_module *a = compile_ok(linear_spec, &c_opt), *b = compile_ok(linear_spec, NULL);
    int64_t wshape[2] = {2, 3}, bshape[1] = {2};
    fuse_rt_weight w[2] = {{"fc.weight", fc_weight, 2, wshape}, {"fc.bias", fc_bias, 1, bshape}};
    float ya[4], yb[4];
    run_once(fusec_module_info(a), w, 2, lin_x, ya);
    run_once(fusec_module_info(b), w, 2, lin_x, yb);
    check_linear(ya);
    check_linear(yb);
    fusec_module_free(a);
    fusec_module_free(b);
}

static void spec_errors_are_values(void **state)
{
    (void)state;
    static const char undefined[] = "fuse 1\ngraph g(x: f32[4]) -> f32[4] {\n    return x + y\n}\n";
    const char *err =
        compile_fails(undefined, strlen(undefined), "mine.fuse", NULL, FUSE_RT_EFORMAT);
    assert_non_null(strstr(err, "mine.fuse:3:16: error: "));
    assert_non_null(strstr(err, "'y'"));
    assert_non_null(strstr(err, "^"));
    err = compile_fails("fuse 1\ngraph (", 14, NULL, NULL, FUSE_RT_EFORMAT);
    assert_non_null(strstr(err, "<string>:2:"));
    err = compile_fails("", 0, NULL, NULL, FUSE_RT_EFORMAT);
    /* several graphs and no entry, or an entry that names none: EINVAL */
    static const char two[] = "fuse 1\ngraph a(x: f32[2]) -> f32[2] {\n    return x\n}\n"
                              "graph b(x: f32[2]) -> f32[2] {\n    return -x\n}\n";
    err = compile_fails(two, strlen(two), NULL, NULL, FUSE_RT_EINVAL);
    assert_non_null(strstr(err, "2 graphs (a, b)"));
    fusec_options entry_c = {.entry = "c"};
    err = compile_fails(two, strlen(two), NULL, &entry_c, FUSE_RT_EINVAL);
    assert_non_null(strstr(err, "no graph named 'c'"));
    fusec_options entry_b = {.entry = "b"};
    fusec_module_free(compile_ok(two, &entry_b));
    /* a dim the file lacks, and one that breaks the shapes */
    fusec_dim q = {"Q", 3}, zero = {"N", 0};
    fusec_options bad_dim = {.dims = &q, .ndims = 1}, zero_dim = {.dims = &zero, .ndims = 1};
    err = compile_fails(relu_spec, strlen(relu_spec), NULL, &bad_dim, FUSE_RT_EFORMAT);
    assert_non_null(strstr(err, "no dim 'Q'"));
    compile_fails(relu_spec, strlen(relu_spec), NULL, &zero_dim, FUSE_RT_EFORMAT);
    /* NUL bytes inside the text are the spec's problem, not a truncation */
    static const char nul[] = "fuse 1\n\0graph";
    compile_fails(nul, sizeof nul - 1, NULL, NULL, FUSE_RT_EFORMAT);
}

static void option_errors_are_values(void **state)
{
    (void)state;
    size_t n = strlen(relu_spec);
    fusec_options interp = {.backend = "interp"}, nonsense = {.backend = "gpu"};
    assert_non_null(strstr(compile_fails(relu_spec, n, NULL, &interp, FUSE_RT_EINVAL), "interp"));
    assert_non_null(strstr(compile_fails(relu_spec, n, NULL, &nonsense, FUSE_RT_EINVAL), "gpu"));
    fusec_options lanes = {.vector_lanes = 5};
    compile_fails(relu_spec, n, NULL, &lanes, FUSE_RT_EINVAL);
    fusec_options no_dims = {.ndims = 2};
    compile_fails(relu_spec, n, NULL, &no_dims, FUSE_RT_EINVAL);
    fusec_dim unnamed = {NULL, 3};
    fusec_options unnamed_dim = {.dims = &unnamed, .ndims = 1};
    compile_fails(relu_spec, n, NULL, &unnamed_dim, FUSE_RT_EINVAL);
    char err[64];
    assert_int_equal(fusec_compile_string(relu_spec, n, NULL, NULL, NULL, err, sizeof err),
                     FUSE_RT_EINVAL);
    fusec_module *m;
    assert_int_equal(fusec_compile_string(NULL, 5, NULL, NULL, &m, err, sizeof err),
                     FUSE_RT_EINVAL);
    assert_int_equal(fusec_compile_file(NULL, NULL, &m, err, sizeof err), FUSE_RT_EINVAL);
    assert_int_equal(fusec_compile_file("/nonexistent/spec.fuse", NULL, &m, err, sizeof err),
                     FUSE_RT_EIO);
    assert_non_null(strstr(err, "/nonexistent/spec.fuse"));
    assert_int_equal(fusec_compile_file("/tmp", NULL, &m, err, sizeof err), FUSE_RT_EIO);
    assert_null(fusec_module_info(NULL));
    assert_non_null(strstr(fusec_version(), FUSEC_VERSION));
}

static void error_buffer_truncates(void **state)
{
    (void)state;
    static const char bad[] = "fuse 1\ngraph g(x: f32[4]) -> f32[4] {\n    return x + y\n}\n";
    char err[16];
    memset(err, 'z', sizeof err);
    fusec_module *m;
    assert_int_equal(fusec_compile_string(bad, strlen(bad), NULL, NULL, &m, err, 8),
                     FUSE_RT_EFORMAT);
    assert_int_equal(strlen(err), 7);
    assert_int_equal(err[8], 'z');
    assert_int_equal(fusec_compile_string(bad, strlen(bad), NULL, NULL, &m, NULL, 0),
                     FUSE_RT_EFORMAT);
}

/* Arbitrary bytes: never a crash, always a value. */
static void hostile_bytes(void **state)
{
    (void)state;
    uint64_t s = 42;
    char text[300], err[512];
    static const char alphabet[] = "fuse 1\ngraph g(x: f32[N, 4]) -> { return conv2d x @ ; }\0[]=,";
    for (int round = 0; round < 300; round++) {
        size_t len = (size_t)(round % 290);
        for (size_t i = 0; i < len; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            text[i] = round % 2 ? (char)(s >> 56) : alphabet[(s >> 33) % (sizeof alphabet - 1)];
        }
        fusec_module *m = NULL;
        int rc = fusec_compile_string(text, len, NULL, NULL, &m, err, sizeof err);
        assert_true(rc == FUSE_RT_EFORMAT || rc == FUSE_RT_EINVAL);
        assert_null(m);
    }
}

/* Several threads compile the same graph at their own dims and run it, at the same time. */
typedef struct Worker {
    int64_t n;
    int ok;
    char err[256];
} Worker;

static void *worker_main(void *arg)
{
    Worker *w = arg;
    fusec_dim dim = {"N", w->n};
    fusec_options opt = {.dims = &dim, .ndims = 1};
    fusec_module *m = NULL;
    if (fusec_compile_string(relu_spec, strlen(relu_spec), NULL, &opt, &m, w->err, sizeof w->err) !=
        FUSE_RT_OK)
        return NULL;
    const fuse_rt_kernel_info *info = fusec_module_info(m);
    float *x = malloc((size_t)w->n * sizeof(float)), *y = malloc((size_t)w->n * sizeof(float));
    for (int64_t i = 0; i < w->n; i++)
        x[i] = (float)(i % 7) - 3.0f;
    fuse_rt_kernel *k = NULL;
    const float *in[1] = {x};
    float *out[1] = {y};
    if (info->create(NULL, 0, NULL, &k, w->err, sizeof w->err) == FUSE_RT_OK &&
        info->run(k, in, out, w->err, sizeof w->err) == FUSE_RT_OK) {
        w->ok = 1;
        for (int64_t i = 0; i < w->n; i++)
            if (y[i] != (x[i] > 0 ? x[i] : 0) * 2 + 1)
                w->ok = 0;
    }
    if (k)
        info->destroy(k);
    free(x);
    free(y);
    fusec_module_free(m);
    return NULL;
}

static void concurrent_compiles(void **state)
{
    (void)state;
    Worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (Worker){.n = 100 + 37 * i};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        if (!w[i].ok)
            fail_msg("worker %d: %s", i, w[i].err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(string_spec_runs),
        cmocka_unit_test(dims_bind_shapes),
        cmocka_unit_test(weights_from_buffers),
        cmocka_unit_test(weights_from_file),
        cmocka_unit_test(c_backend_matches_default),
        cmocka_unit_test(spec_errors_are_values),
        cmocka_unit_test(option_errors_are_values),
        cmocka_unit_test(error_buffer_truncates),
        cmocka_unit_test(hostile_bytes),
        cmocka_unit_test(concurrent_compiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
