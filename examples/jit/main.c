/*
 * jit: compiles a .fuse spec at run time, for dims chosen when the program runs, and runs it:
 * the seed's fusion block at any resolution without rebuilding anything.
 *
 *   jit_concat_conv SPEC.fuse WEIGHTS.safetensors [--entry GRAPH] [--dim NAME=VALUE]...
 *                   [--prefix P] [--threads N] [--runs N] [--save DIR]
 *
 * e.g. jit_concat_conv examples/concat_conv.fuse dimred.safetensors --entry fuse_hl \
 *          --dim H=720 --dim W=1280
 *
 * fusec_compile_file (fusec.h) turns the spec into a fuse_rt_kernel_info, the same structure a
 * kernel generated at build time provides (examples/aot); from there on the program is the
 * same as that one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuse_rt.h"
#include "fusec.h"
#include "runner.h"

#define MAX_DIMS 16

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s SPEC.fuse " RUNNER_USAGE " [--entry GRAPH] [--dim NAME=VALUE]...\n",
            argv0);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        return usage(argv[0]);
    const char *spec = argv[1];
    fusec_dim dims[MAX_DIMS];
    fusec_options copt = {.dims = dims};
    RunnerOptions opt;
    runner_defaults(&opt);
    for (int i = 2; i < argc; i++) {
        int taken = runner_take_arg(&opt, argc, argv, &i);
        if (taken == 1)
            continue;
        if (taken == 0 && strcmp(argv[i], "--entry") == 0 && i + 1 < argc) {
            copt.entry = argv[++i];
        } else if (taken == 0 && strcmp(argv[i], "--dim") == 0 && i + 1 < argc &&
                   copt.ndims < MAX_DIMS) {
            char *name = argv[++i], *eq = strchr(name, '=');
            if (!eq)
                return usage(argv[0]);
            *eq = '\0';
            dims[copt.ndims++] = (fusec_dim){name, strtoll(eq + 1, NULL, 10)};
        } else {
            return usage(argv[0]);
        }
    }
    if (!opt.weights)
        return usage(argv[0]);

    char err[4096];
    fusec_module *module;
    if (fusec_compile_file(spec, &copt, &module, err, sizeof err) != FUSE_RT_OK) {
        fputs(err, stderr); /* the compiler's diagnostics, as `fusec check` prints them */
        return 1;
    }
    const fuse_rt_kernel_info *info = fusec_module_info(module);
    printf("%s: compiled in %.1f ms (%s)\n", info->name, fusec_module_compile_ms(module),
           fusec_version());
    int status = runner_run("jit", info, &opt);
    fusec_module_free(module);
    return status;
}
