/*
 * runner: the part of the example programs that does not depend on where the kernel came from.
 * Given any fuse_rt_kernel_info (generated at build time, or compiled at run time through
 * fusec.h), it binds the weights from a safetensors file, fills the inputs with deterministic
 * random values, times --runs calls and optionally saves inputs and outputs as .npy.
 */
#ifndef FUSE_EXAMPLE_RUNNER_H
#define FUSE_EXAMPLE_RUNNER_H

#include "fuse_rt.h"

typedef struct RunnerOptions {
    const char *weights;  /* WEIGHTS.safetensors (required) */
    const char *prefix;   /* --prefix P: key prefix ("" by default) */
    const char *save_dir; /* --save DIR: write every input and output as DIR/NAME.npy */
    int threads;          /* --threads N (1) */
    int runs;             /* --runs N (10) */
} RunnerOptions;

#define RUNNER_USAGE "WEIGHTS.safetensors [--prefix P] [--threads N] [--runs N] [--save DIR]"

void runner_defaults(RunnerOptions *o);

/* Takes argv[*i] (and its value, advancing *i) if it is one of the runner's arguments.
 * Returns 1 if taken, 0 if not the runner's, -1 if its value is missing or malformed. */
int runner_take_arg(RunnerOptions *o, int argc, char **argv, int *i);

/* Runs the kernel as described above; prints the median time. Returns 0, or 1 after printing
 * the error prefixed with `tool`. */
int runner_run(const char *tool, const fuse_rt_kernel_info *info, const RunnerOptions *o);

#endif
