/*
 * bench: what `fusec bench` measures (LANGUAGE.md §5): the median time of a compiled kernel
 * over repeated calls, and the machine's FMA peak at the same thread count, measured with a
 * kernel produced by the same code generator.
 */
#ifndef FUSE_BENCH_H
#define FUSE_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "driver.h"
#include "fuse_rt.h"

/* Timings of `runs` calls of run(), after one untimed warm-up call; sorted ascending.
 * Returns false with the kernel's message in err if a call fails. */
bool bench_time_runs(const fuse_rt_kernel_info *info, fuse_rt_kernel *k, const float *const *inputs,
                     float *const *outputs, long runs, double *ms, char *err, size_t errlen);

/* The FMA throughput of this machine in GFLOP/s on `pool` (NULL: one thread): a kernel of
 * independent vector FMA chains, `vector_lanes` wide, compiled by the same code generator as
 * the kernel it is compared with (opt). Returns a negative value after reporting an error to
 * cx->diag. */
double bench_fma_peak_gflops(Ctx *cx, fuse_rt_pool *pool, const KernelOptions *opt,
                             uint32_t vector_lanes);

/* Monotonic wall-clock time in milliseconds. */
double bench_now_ms(void);

#endif
