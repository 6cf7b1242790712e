/*
 * bench: kernel timing and the FMA peak (see bench.h).
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "driver.h"
#include "loop.h"

/* Independent FMA chains per thread: enough to cover the FMA latency on both pipes. */
#define PEAK_CHAINS 12
#define PEAK_STEPS  4000000

double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

bool bench_time_runs(const fuse_rt_kernel_info *info, fuse_rt_kernel *k, const float *const *inputs,
                     float *const *outputs, long runs, double *ms, char *err, size_t errlen)
{
    for (long r = -1; r < runs; r++) { /* r == -1: the warm-up call */
        double t0 = bench_now_ms();
        if (info->run(k, inputs, outputs, err, errlen) != FUSE_RT_OK)
            return false;
        if (r >= 0)
            ms[r] = bench_now_ms() - t0;
    }
    qsort(ms, (size_t)runs, sizeof(double), compare_doubles);
    return true;
}

/* The peak kernel in loop IR: parallel over `threads` chunks, each running PEAK_CHAINS vector
 * accumulators through PEAK_STEPS dependent FMAs (acc = acc * a + b stays bounded), then
 * storing their sum so nothing is dead. */
static LoopProgram *peak_program(Ctx *cx, int threads, uint32_t lanes)
{
    LoopProgram *p = loop_program_new(cx->loop_arena, "fma_peak");
    p->vector_lanes = lanes;
    p->origin = "the FMA peak measured by fusec bench";
    LoopBuffer *out = loop_add_buffer(p, "out", BUF_OUTPUT, 0, (int64_t)threads * lanes);
    out->rank = 1;
    out->shape[0] = out->elems;
    LoopKernel *k = loop_add_kernel(p, "fma_peak", "independent FMA chains", false);
    LoopType i64 = {LT_I64, 1}, vec = {LT_F32, lanes};
    LoopVar *t = loop_var(p, k, "t", i64), *step = loop_var(p, k, "step", i64);
    LoopStmt *body = ls_block(p), *inner = ls_block(p);
    LoopVar *acc[PEAK_CHAINS];
    LoopExpr *a = lx_broadcast(p, lx_const_f(p, 0.999999f), lanes);
    LoopExpr *b = lx_broadcast(p, lx_const_f(p, 1e-6f), lanes);
    LoopExpr *sum = NULL;
    for (int c = 0; c < PEAK_CHAINS; c++) {
        char name[16];
        snprintf(name, sizeof name, "acc%d", c);
        acc[c] = loop_var(p, k, name, vec);
        LoopExpr *init = lx_broadcast(p, lx_const_f(p, (float)c * 0.01f), lanes);
        ls_append(p, body, ls_decl(p, acc[c], init));
        ls_append(p, inner, ls_assign(p, acc[c], lx_fma(p, lx_var(p, acc[c]), a, b)));
    }
    ls_append(p, body,
              ls_for(p, step, lx_const_i(p, 0), lx_const_i(p, PEAK_STEPS), 1, FOR_SERIAL, inner));
    for (int c = 0; c < PEAK_CHAINS; c++)
        sum = sum ? lx_binary(p, LOP_ADD, sum, lx_var(p, acc[c])) : lx_var(p, acc[c]);
    LoopExpr *at = lx_binary(p, LOP_MUL, lx_var(p, t), lx_const_i(p, lanes));
    ls_append(p, body, ls_store(p, out, at, sum));
    ls_append(p, k->body,
              ls_for(p, t, lx_const_i(p, 0), lx_const_i(p, threads), 1, FOR_PARALLEL, body));
    return p;
}

double bench_fma_peak_gflops(Ctx *cx, fuse_rt_pool *pool, const KernelOptions *opt,
                             uint32_t vector_lanes)
{
    int threads = fuse_rt_pool_threads(pool);
    LoopProgram *p = peak_program(cx, threads, vector_lanes);
    if (!loop_verify(p, stderr))
        fuse_panic(__FILE__, __LINE__, "the FMA peak program does not verify");
    KernelOptions peak_opt = *opt;
    peak_opt.bounds_checks = false;
    Compiled kernel;
    if (driver_compile(cx, p, &peak_opt, &kernel) != DRIVER_OK) {
        driver_release(&kernel);
        return -1;
    }
    char err[FUSE_RT_ERR_MAX] = "";
    fuse_rt_kernel *k = NULL;
    float *out = fuse_rt_alloc((size_t)threads * vector_lanes * sizeof(float));
    double best = -1;
    fuse_rt_weight no_weights[1] = {{NULL, NULL, 0, NULL}};
    if (out && kernel.info->create(no_weights, 0, pool, &k, err, sizeof err) == FUSE_RT_OK) {
        double ms[3];
        float *outputs[1] = {out};
        const float *no_inputs[1] = {NULL};
        if (bench_time_runs(kernel.info, k, no_inputs, outputs, 3, ms, err, sizeof err)) {
            double flops = 2.0 * PEAK_CHAINS * PEAK_STEPS * vector_lanes * threads;
            best = flops / ms[0] / 1e6;
        }
        kernel.info->destroy(k);
    }
    if (best < 0)
        diag_report_file(cx->diag, DIAG_ERROR, NULL, "cannot measure the FMA peak: %s", err);
    fuse_rt_free(out);
    driver_release(&kernel);
    return best;
}
