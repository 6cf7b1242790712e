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
 * Everything kernel-specific comes from fuse_k_fuse_hl_info: examples/jit runs the same block
 * through a kernel compiled at run time, and differs only in how it obtains the info.
 */
#include <stdio.h>

#include "fuse_hl.h"
#include "fuse_rt.h"
#include "runner.h"

int main(int argc, char **argv)
{
    const fuse_rt_kernel_info *info = &fuse_k_fuse_hl_info;
    RunnerOptions opt;
    runner_defaults(&opt);
    for (int i = 1; i < argc; i++)
        if (runner_take_arg(&opt, argc, argv, &i) != 1) {
            fprintf(stderr, "usage: %s " RUNNER_USAGE "\n", argv[0]);
            return 2;
        }
    if (!opt.weights) {
        fprintf(stderr, "usage: %s " RUNNER_USAGE "\n", argv[0]);
        return 2;
    }
    return runner_run("aot", info, &opt);
}
