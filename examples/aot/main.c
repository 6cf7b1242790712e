/*
 * aot: runs the seed's fusion block (examples/concat_conv.fuse, graph fuse_hl) through a kernel
 * that fusec generated while this program was built (fusec_add_kernel in CMakeLists.txt).
 *
 *   aot_concat_conv WEIGHTS.safetensors [--prefix P] [--threads N] [--runs N] [--save DIR]
 *
 * Loads the weights (the state_dict of the seed's DimReduction module, saved with
 * safetensors.torch.save_file), fills the inputs with deterministic random values, runs the
 * kernel --runs times and prints the median time. --save writes h.npy, l.npy and out.npy.
 *
 * Everything kernel-specific comes from fuse_k_fuse_hl_info: switching to a JIT-compiled
 * kernel changes only the line that obtains it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuse_hl.h"
#include "fuse_rt.h"

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

static int save(const char *dir, const fuse_rt_tensor_desc *t, const float *data)
{
    char path[4096], err[FUSE_RT_ERR_MAX];
    snprintf(path, sizeof path, "%s/%s.npy", dir, t->name);
    if (fuse_rt_npy_write(path, data, t->rank, t->shape, err, sizeof err) != FUSE_RT_OK) {
        fprintf(stderr, "aot: %s\n", err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const fuse_rt_kernel_info *info = &fuse_k_fuse_hl_info; /* or a JIT-compiled kernel */
    const char *weights = NULL, *prefix = "", *save_dir = NULL;
    int threads = 1, runs = 10;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc)
            prefix = argv[++i];
        else if (strcmp(argv[i], "--save") == 0 && i + 1 < argc)
            save_dir = argv[++i];
        else if (!weights && argv[i][0] != '-')
            weights = argv[i];
        else {
            fprintf(stderr,
                    "usage: %s WEIGHTS.safetensors [--prefix P] [--threads N] "
                    "[--runs N] [--save DIR]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!weights || threads < 1 || runs < 1) {
        fprintf(stderr, "usage: %s WEIGHTS.safetensors [--threads N>=1] [--runs N>=1]\n", argv[0]);
        return 2;
    }

    char err[FUSE_RT_ERR_MAX];
    fuse_rt_pool *pool = NULL;
    fuse_rt_kernel *kernel = NULL;
    if ((threads > 1 && fuse_rt_pool_create(threads, &pool, err, sizeof err) != FUSE_RT_OK) ||
        fuse_rt_kernel_create_from_file(info, weights, prefix, pool, &kernel, err, sizeof err) !=
            FUSE_RT_OK) {
        fprintf(stderr, "aot: %s\n", err);
        fuse_rt_pool_destroy(pool);
        return 1;
    }

    float *inputs[FUSE_K_FUSE_HL_NUM_INPUTS], *outputs[FUSE_K_FUSE_HL_NUM_OUTPUTS];
    for (uint32_t i = 0; i < info->ninputs; i++) {
        inputs[i] = fuse_rt_alloc((size_t)numel(&info->inputs[i]) * sizeof(float));
        fill_random(inputs[i], numel(&info->inputs[i]), 0x9e3779b97f4a7c15ULL + i);
    }
    for (uint32_t i = 0; i < info->noutputs; i++)
        outputs[i] = fuse_rt_alloc((size_t)numel(&info->outputs[i]) * sizeof(float));

    double *ms = calloc((size_t)runs, sizeof(double));
    int status = 0;
    for (int r = 0; r <= runs && status == 0; r++) { /* run 0 warms up, untimed */
        double t0 = now_ms();
        if (info->run(kernel, (const float *const *)inputs, outputs, err, sizeof err) != 0) {
            fprintf(stderr, "aot: %s\n", err);
            status = 1;
        }
        if (r > 0)
            ms[r - 1] = now_ms() - t0;
    }
    if (status == 0) {
        qsort(ms, (size_t)runs, sizeof(double), compare_doubles);
        double median = ms[runs / 2];
        printf("%s: %d runs on %d thread%s: median %.3f ms, %.1f GFLOP/s\n", info->name, runs,
               threads, threads == 1 ? "" : "s", median, info->flops / median / 1e6);
    }
    for (uint32_t i = 0; status == 0 && save_dir && i < info->ninputs; i++)
        status = save(save_dir, &info->inputs[i], inputs[i]);
    for (uint32_t i = 0; status == 0 && save_dir && i < info->noutputs; i++)
        status = save(save_dir, &info->outputs[i], outputs[i]);

    for (uint32_t i = 0; i < info->ninputs; i++)
        fuse_rt_free(inputs[i]);
    for (uint32_t i = 0; i < info->noutputs; i++)
        fuse_rt_free(outputs[i]);
    free(ms);
    info->destroy(kernel);
    fuse_rt_pool_destroy(pool);
    return status;
}
