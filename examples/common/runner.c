/*
 * runner: see runner.h.
 */
#include "runner.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int64_t numel(const fuse_rt_tensor_desc *t)
{
    int64_t n = 1;
    for (uint32_t i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Deterministic values in [-1, 1). */
static void fill_random(float *data, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        data[i] = (float)((double)(seed >> 11) * 0x1.0p-52 - 1.0);
    }
}

static int save(const char *tool, const char *dir, const fuse_rt_tensor_desc *t, const float *data)
{
    char path[4096], err[FUSE_RT_ERR_MAX];
    snprintf(path, sizeof path, "%s/%s.npy", dir, t->name);
    if (fuse_rt_npy_write(path, data, t->rank, t->shape, err, sizeof err) != FUSE_RT_OK) {
        fprintf(stderr, "%s: %s\n", tool, err);
        return 1;
    }
    return 0;
}

void runner_defaults(RunnerOptions *o)
{
    *o = (RunnerOptions){.prefix = "", .threads = 1, .runs = 10};
}

int runner_take_arg(RunnerOptions *o, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    const char *value = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (strcmp(arg, "--threads") == 0 || strcmp(arg, "--runs") == 0) {
        int n = value ? atoi(value) : 0;
        if (n < 1)
            return -1;
        *(strcmp(arg, "--threads") == 0 ? &o->threads : &o->runs) = n;
    } else if (strcmp(arg, "--prefix") == 0 || strcmp(arg, "--save") == 0) {
        if (!value)
            return -1;
        *(strcmp(arg, "--prefix") == 0 ? &o->prefix : &o->save_dir) = value;
    } else if (arg[0] != '-' && !o->weights) {
        o->weights = arg;
        return 1;
    } else {
        return 0;
    }
    ++*i;
    return 1;
}

int runner_run(const char *tool, const fuse_rt_kernel_info *info, const RunnerOptions *o)
{
    char err[FUSE_RT_ERR_MAX];
    fuse_rt_pool *pool = NULL;
    fuse_rt_kernel *kernel = NULL;
    if ((o->threads > 1 && fuse_rt_pool_create(o->threads, &pool, err, sizeof err) != FUSE_RT_OK) ||
        fuse_rt_kernel_create_from_file(info, o->weights, o->prefix, pool, &kernel, err,
                                        sizeof err) != FUSE_RT_OK) {
        fprintf(stderr, "%s: %s\n", tool, err);
        fuse_rt_pool_destroy(pool);
        return 1;
    }

    float **inputs = calloc(info->ninputs + 1, sizeof(float *));
    float **outputs = calloc(info->noutputs + 1, sizeof(float *));
    double *ms = calloc((size_t)o->runs, sizeof(double));
    int status = inputs && outputs && ms ? 0 : 1;
    for (uint32_t i = 0; status == 0 && i < info->ninputs; i++) {
        inputs[i] = fuse_rt_alloc((size_t)numel(&info->inputs[i]) * sizeof(float));
        if (inputs[i])
            fill_random(inputs[i], numel(&info->inputs[i]), 0x9e3779b97f4a7c15ULL + i);
        else
            status = 1;
    }
    for (uint32_t i = 0; status == 0 && i < info->noutputs; i++)
        if (!(outputs[i] = fuse_rt_alloc((size_t)numel(&info->outputs[i]) * sizeof(float))))
            status = 1;
    if (status != 0)
        fprintf(stderr, "%s: out of memory\n", tool);

    for (int r = 0; r <= o->runs && status == 0; r++) { /* run 0 warms up, untimed */
        double t0 = now_ms();
        if (info->run(kernel, (const float *const *)inputs, outputs, err, sizeof err) != 0) {
            fprintf(stderr, "%s: %s\n", tool, err);
            status = 1;
        }
        if (r > 0)
            ms[r - 1] = now_ms() - t0;
    }
    if (status == 0) {
        qsort(ms, (size_t)o->runs, sizeof(double), compare_doubles);
        double median = ms[o->runs / 2];
        printf("%s: %d runs on %d thread%s: median %.3f ms, %.1f GFLOP/s\n", info->name, o->runs,
               o->threads, o->threads == 1 ? "" : "s", median, info->flops / median / 1e6);
    }
    for (uint32_t i = 0; status == 0 && o->save_dir && i < info->ninputs; i++)
        status = save(tool, o->save_dir, &info->inputs[i], inputs[i]);
    for (uint32_t i = 0; status == 0 && o->save_dir && i < info->noutputs; i++)
        status = save(tool, o->save_dir, &info->outputs[i], outputs[i]);

    for (uint32_t i = 0; inputs && i < info->ninputs; i++)
        fuse_rt_free(inputs[i]);
    for (uint32_t i = 0; outputs && i < info->noutputs; i++)
        fuse_rt_free(outputs[i]);
    free(inputs);
    free(outputs);
    free(ms);
    info->destroy(kernel);
    fuse_rt_pool_destroy(pool);
    return status;
}
