/*
 * test_differential: the three ways fusec computes a graph agree. Every graph of every example
 * and of the graph and loop goldens is built at random dims, run by the reference interpreter,
 * and compiled and run by the C backend and by the JIT (both through driver_compile, as the
 * command line and the embedding API do); each backend's outputs must be within the
 * conformance tolerance, 1e-4 * max(1, max |ref|), of the interpreter's. Every second C kernel
 * is generated with bounds checks, and in a sanitizer build the C kernels are compiled with the
 * same sanitizers (tests/CMakeLists.txt), so an out-of-bounds index at any of these shapes is
 * caught.
 *
 * Random dims: N (the batch) gets 1 to 3, every other file-level dim whose default is a literal
 * above 8 a random multiple of 4 in [4, 24], a dim without a default one in [2, 12]; derived
 * dims follow. A draw that a `require` rejects is redrawn. Each draw also picks the vector
 * width (4, 8 or 16 lanes), so graphs of fixed shapes still meet every tail case. The seed is
 * fixed, so a failure reproduces; FUSE_DIFF_SEED=N explores other draws.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "driver.h"
#include "test_support.h"
#include "util.h"

#define DRAWS_PER_GRAPH 2
#define MAX_REDRAWS     40
#define MAX_DIMS        16

static uint64_t rng_state;

static uint32_t next_random(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rng_state >> 33) % n);
}

/* One draw of the file's free dims, as "NAME=V,..." for test_compile. */
static void draw_dims(const Ast *ast, char *out, size_t outlen)
{
    size_t len = 0;
    out[0] = '\0';
    for (const Decl *d = ast->decls; d; d = d->next) {
        if (d->kind != DECL_DIM)
            continue;
        for (const DimDef *def = d->dim.defs; def; def = def->next) {
            int64_t v;
            bool literal = def->value && def->value->kind == EX_INT;
            if (!def->value)
                v = 2 + next_random(11);
            else if (literal && strcmp(def->name, "N") == 0)
                v = 1 + next_random(3);
            else if (literal && def->value->ival > 8)
                v = 4 + 4 * next_random(6);
            else
                continue; /* small or derived: keep the spec's own value */
            len += (size_t)snprintf(out + len, outlen - len, "%s%s=%lld", len ? "," : "", def->name,
                                    (long long)v);
        }
    }
}

/* Compiles g with one code generator and checks it against the interpreter's outputs. */
static void check_backend(TestCompile *t, TestData *d, Backend backend, uint32_t lanes,
                          bool bounds_checks, const char *what)
{
    KernelOptions opt = {.backend = backend, .vector_lanes = lanes, .bounds_checks = bounds_checks};
    Compiled code;
    if (driver_compile_graph(&t->cx, t->graph, &opt, &code) != DRIVER_OK)
        fail_msg("%s: %s: %s", what, driver_backend_name(backend), test_diagnostics(t));
    for (uint32_t o = 0; o < t->graph->noutputs; o++)
        memset(d->got[o], 0xff, (size_t)shape_numel(&t->graph->outputs[o]->shape) * sizeof(float));
    test_data_run(code.info, t->graph, d, 2);
    char label[512];
    snprintf(label, sizeof label, "%s, backend %s", what, driver_backend_name(backend));
    test_data_compare(t->graph, d, label);
    driver_release(&code);
}

/* Every graph of the spec at `path`, DRAWS_PER_GRAPH random draws each. */
static void check_spec(const char *path)
{
    char *text = test_read_file(path);
    TestCompile parsed;
    Ast *ast = test_parse(&parsed, text);
    if (!ast)
        fail_msg("%s: %s", path, test_diagnostics(&parsed));
    for (const Decl *g = ast->decls; g; g = g->next) {
        if (g->kind != DECL_GRAPH)
            continue;
        for (int draw = 0; draw < DRAWS_PER_GRAPH; draw++) {
            char dims[256], what[1024];
            TestCompile t;
            bool built = false;
            for (int tries = 0; tries < MAX_REDRAWS && !built; tries++) {
                draw_dims(ast, dims, sizeof dims);
                built = test_compile(&t, text, g->fn.name, dims[0] ? dims : NULL);
                if (!built)
                    test_compile_free(&t);
            }
            if (!built)
                fail_msg("%s: graph %s: no random dims satisfy its requires", path, g->fn.name);
            uint32_t lanes = 4u << next_random(3);
            snprintf(what, sizeof what, "%s: graph %s at %s, %u lanes", path, g->fn.name,
                     dims[0] ? dims : "its defaults", lanes);
            print_message("%s\n", what);
            TestData d;
            test_data_new(&d, t.graph, rng_state);
            test_data_interp(&d, t.graph);
            /* the second draw's C kernel checks every index it computes */
            check_backend(&t, &d, BACKEND_C, lanes, draw == 1, what);
#ifdef FUSE_WITH_LLVM
            check_backend(&t, &d, BACKEND_JIT, lanes, false, what);
#endif
            test_data_free(&d, t.graph);
            test_compile_free(&t);
        }
    }
    test_compile_free(&parsed);
    free(text);
}

static const char *const examples[] = {"add_mul",       "bam",  "cbam", "concat_conv",
                                       "concat_linear", "neck", "se",   "self_attention"};
static const char *const graph_goldens[] = {"block-inlining",   "for-scopes",
                                            "many-ops",         "named-outputs",
                                            "section1-example", "section1-dims-prefix"};
static const char *const loop_goldens[] = {"conv", "elementwise", "seed", "softmax"};

static void every_example(void **state)
{
    (void)state;
    for (size_t i = 0; i < countof(examples); i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.fuse", FUSE_EXAMPLES_DIR, examples[i]);
        check_spec(path);
    }
}

static void every_golden_graph(void **state)
{
    (void)state;
    for (size_t i = 0; i < countof(graph_goldens); i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/golden/graph/%s.fuse", FUSE_TEST_DATA_DIR,
                 graph_goldens[i]);
        check_spec(path);
    }
    for (size_t i = 0; i < countof(loop_goldens); i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/golden/loops/%s.fuse", FUSE_TEST_DATA_DIR, loop_goldens[i]);
        check_spec(path);
    }
}

int main(void)
{
    const char *seed = getenv("FUSE_DIFF_SEED");
    rng_state = seed ? strtoull(seed, NULL, 10) : 20261128u;
    print_message("seed %llu (set FUSE_DIFF_SEED to change it)\n", (unsigned long long)rng_state);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_example),
        cmocka_unit_test(every_golden_graph),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
