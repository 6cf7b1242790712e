/*
 * test_fusion: the fusion planner (schedule_plan.c) and the fused lowering. Small graphs check
 * each rule by the number of run kernels the schedule makes of the graph as built (no graph
 * passes) and by the notes --explain-fusion gives where a fusion is declined. Every case is also
 * compiled (graph as built) by the JIT at 4, 8 and 16 lanes and by the C backend at 8 lanes
 * (checking every access, prefetches included), run on 1, 2 and 3 threads, and must agree with
 * the interpreter within the conformance tolerance and be bit-identical across the thread
 * counts.
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
#include "loop.h"
#include "schedule.h"
#include "test_support.h"
#include "util.h"

#define G(sig, body) "fuse 1\ngraph g(" sig " {\n" body "\n}\n"

typedef struct Case {
    const char *name;
    const char *spec;
    uint32_t kernels; /* run kernels of the graph as built */
    const char *note; /* a substring of the explain notes, or NULL */
} Case;

/* ---- numerics ---- */

/* got of every output, copied. */
static float **snapshot(const Graph *g, const TestData *d)
{
    float **copy = xcalloc(g->noutputs + 1, sizeof(float *));
    for (uint32_t o = 0; o < g->noutputs; o++) {
        size_t n = (size_t)shape_numel(&g->outputs[o]->shape);
        copy[o] = xmalloc(n * sizeof(float) + 4);
        memcpy(copy[o], d->got[o], n * sizeof(float));
    }
    return copy;
}

static void free_snapshot(const Graph *g, float **copy)
{
    for (uint32_t o = 0; o < g->noutputs; o++)
        free(copy[o]);
    free(copy);
}

/* One backend at one width: each thread count agrees with the interpreter, and all of them
 * produce the same bits. */
static void check_backend(TestCompile *t, TestData *d, Backend backend, uint32_t lanes,
                          const char *name)
{
    KernelOptions opt = {
        .backend = backend, .vector_lanes = lanes, .bounds_checks = backend == BACKEND_C};
    opt.passes.disabled = true;
    Compiled code;
    if (driver_compile_graph(&t->cx, t->graph, &opt, &code) != DRIVER_OK)
        fail_msg("%s: %s: %s", name, driver_backend_name(backend), test_diagnostics(t));
    float **first = NULL;
    for (int threads = 1; threads <= 3; threads++) {
        char what[256];
        snprintf(what, sizeof what, "%s, %s, %u lanes, %d threads", name,
                 driver_backend_name(backend), lanes, threads);
        test_data_run(code.info, t->graph, d, threads);
        test_data_compare(t->graph, d, what);
        if (!first) {
            first = snapshot(t->graph, d);
            continue;
        }
        for (uint32_t o = 0; o < t->graph->noutputs; o++) {
            size_t n = (size_t)shape_numel(&t->graph->outputs[o]->shape);
            if (memcmp(first[o], d->got[o], n * sizeof(float)) != 0)
                fail_msg("%s: output %u differs from the 1-thread run", what, o);
        }
    }
    free_snapshot(t->graph, first);
    driver_release(&code);
}

static void check_numerics(const Case *c)
{
    TestCompile t;
    if (!test_compile(&t, c->spec, NULL, NULL))
        fail_msg("%s: %s", c->name, test_diagnostics(&t));
    TestData d;
    test_data_new(&d, t.graph, 77);
    test_data_interp(&d, t.graph);
#ifdef FUSE_WITH_LLVM
    static const uint32_t widths[] = {4, 8, 16};
    for (size_t w = 0; w < countof(widths); w++)
        check_backend(&t, &d, BACKEND_JIT, widths[w], c->name);
#endif
    check_backend(&t, &d, BACKEND_C, 8, c->name);
    test_data_free(&d, t.graph);
    test_compile_free(&t);
}

/* ---- structure ---- */

/* Schedules the graph as built, with notes; checks the run kernels and the note. */
static LoopProgram *schedule_case(TestCompile *t, const Case *c, uint32_t lanes)
{
    if (!test_compile(t, c->spec, NULL, NULL))
        fail_msg("%s: %s", c->name, test_diagnostics(t));
    t->cx.explain_fusion = true;
    LoopProgram *p = schedule_graph(&t->cx, t->graph, lanes);
    assert_non_null(p);
    if (getenv("FUSION_DUMP")) {
        loop_dump(p, stderr);
        fprintf(stderr, "%s", test_diagnostics(t));
    }
    if (!loop_verify(p, stderr))
        fail_msg("%s: loop_verify failed", c->name);
    return p;
}

/* schedule_case at 8 lanes, with the case's number of run kernels. */
static LoopProgram *schedule_counted(TestCompile *t, const Case *c)
{
    LoopProgram *p = schedule_case(t, c, 8);
    if (p->nkernels != c->kernels)
        fail_msg("%s: %u run kernels, want %u", c->name, p->nkernels, c->kernels);
    return p;
}

static void check_case(const Case *c)
{
    TestCompile t;
    schedule_counted(&t, c);
    if (c->note && !strstr(test_diagnostics(&t), c->note))
        fail_msg("%s: no note \"%s\" in:\n%s", c->name, c->note, test_diagnostics(&t));
    if (!c->note && strstr(test_diagnostics(&t), "not fused"))
        fail_msg("%s: unexpected notes:\n%s", c->name, test_diagnostics(&t));
    test_compile_free(&t);
    check_numerics(c);
}

static void run_cases(const Case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        print_message("%s\n", cases[i].name);
        check_case(&cases[i]);
    }
}

/* ---- the rules ---- */

static void elementwise_chains(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"chain",
         G("x: f32[2,3,5,19], y: f32[2,3,5,19]) -> f32[2,3,5,19]",
           "z = relu(x * 2 + y)\nreturn z - 0.5 * tanh(z)"),
         1, NULL},
        {"broadcast_operands",
         G("x: f32[2,3,5,19], b: f32[19], c: f32[3,1,1]) -> f32[2,3,5,19]",
           "return silu(x + b) * c + gelu(x, approximate=tanh)"),
         1, NULL},
        {"layout",
         G("x: f32[2,5,6,3]) -> f32[2,3,5,6]", "return exp(permute(x, perm=[0,3,1,2])) * 2 + 1"), 1,
         NULL},
        {"squeeze_view",
         G("x: f32[4,6], y: f32[4,1,6]) -> f32[4,1,6]", "return view(abs(x), shape=[4,1,6]) + y"),
         1, NULL},
        {"graph_output_stays",
         G("x: f32[3,17]) -> (a: f32[3,17], b: f32[3,17])", "y = x * 3\nreturn y, relu(y)"), 2,
         "mul not fused into relu: it is a graph output"},
        {"broadcast_declined",
         G("x: f32[2,3,4,9], g: f32[2,3,1,1]) -> f32[2,3,4,9]", "return x * sigmoid(g)"), 2,
         "sigmoid not fused into mul: mul broadcasts it"},
        {"two_consumers", /* siblings: one kernel stores both and computes exp once */
         G("x: f32[3,17]) -> (a: f32[3,17], b: f32[3,17])", "y = exp(x)\nreturn relu(y), y * 2"), 1,
         NULL},
        {"two_consumers_broadcast", /* the add's space is larger: no siblings */
         G("x: f32[3,17], z: f32[2,3,17]) -> (a: f32[3,17], b: f32[2,3,17])",
           "y = exp(x)\nreturn relu(y), y + z"),
         3, "exp not fused into relu: it has 2 uses"},
        {"softmax_reads_memory",
         G("x: f32[3,17]) -> f32[3,17]", "return softmax(relu(x), axis=-1)"), 2,
         "relu not fused into softmax: softmax reads its inputs from memory"},
    };
    run_cases(cases, countof(cases));
}

static void contraction_epilogues(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"conv1x1_relu",
         G("x: f32[2,6,9,11]) -> f32[2,8,9,11]", "return relu(conv2d(x, out=8, kernel=1) @c)"), 1,
         NULL},
        {"conv3x3_bn_relu",
         G("x: f32[1,5,7,13]) -> f32[1,8,7,13]",
           "return relu(batchnorm2d(conv2d(x, out=8, kernel=3, padding=1) @c) @bn)"),
         1, NULL},
        {"conv_residual",
         G("x: f32[1,8,6,10]) -> f32[1,8,6,10]",
           "return silu(conv2d(x, out=8, kernel=1, groups=2) @c + x)"),
         1, NULL},
        {"linear_gelu",
         G("x: f32[2,5,16]) -> f32[2,5,24]", "return gelu(linear(x, out=24) @fc) * 0.5"), 1, NULL},
        {"matmul_bias",
         G("a: f32[3,5,7], b: f32[7,20], c: f32[20]) -> f32[3,5,20]",
           "return tanh(matmul(a, b) + c)"),
         1, NULL},
        {"matmul_vector", G("a: f32[3,5,16], v: f32[16]) -> f32[3,5]", "return matmul(a, v) - 0.1"),
         1, NULL},
        {"conv_two_uses",
         G("x: f32[1,6,9,11]) -> (a: f32[1,8,9,11], b: f32[1,8,9,11])",
           "c = conv2d(x, out=8, kernel=1) @c\nreturn relu(c), c + 1"),
         2, "relu not fused into conv2d: its users are siblings, and an epilogue stores one value"},
        {"residual_blocks",
         "fuse 1\nblock cb(x: f32[N, C, H, W]) -> f32[N, C, H, W] {\n"
         "  return relu(batchnorm2d(conv2d(x, out=C, kernel=3, padding=1, bias=false) @conv) @bn)\n"
         "}\ngraph g(x: f32[2, 4, 5, 6]) -> f32[2, 4, 5, 6] {\n"
         "  for i in 0..2 {\n    x = cb(x) @b.{i} + x\n  }\n  return x\n}\n",
         2, "the group's contraction reads it from memory"},
        {"one_contraction_per_kernel",
         G("x: f32[1,6,9,11]) -> f32[1,8,9,11]",
           "return conv2d(x, out=8, kernel=1) @a + conv2d(x, out=8, kernel=1) @b"),
         2, "the kernel already has a contraction"},
    };
    run_cases(cases, countof(cases));
}

static void upsample_in_consumer(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"bilinear",
         G("h: f32[1,4,8,12], l: f32[1,4,4,6]) -> f32[1,4,8,12]",
           "return h + upsample(l, size=[8, 12], mode=bilinear)"),
         1, NULL},
        {"bilinear_align_corners_odd",
         G("h: f32[2,3,9,13], l: f32[2,3,4,5]) -> f32[2,3,9,13]",
           "return h * upsample(l, size=[9, 13], mode=bilinear, align_corners=true)"),
         1, NULL},
        {"nearest_scale",
         G("h: f32[1,2,6,9], l: f32[1,2,4,6]) -> f32[1,2,6,9]",
           "return relu(h - upsample(l, scale=1.5))"),
         1, NULL},
        {"seed_rewritten",
         G("h: f32[1,16,8,12], l: f32[1,16,4,6]) -> f32[1,8,8,12]",
           "z = conv2d(l, out=8, kernel=1) @zl\n"
           "return relu(conv2d(h, out=8, kernel=1) @zh + upsample(z, size=[8, 12], "
           "mode=bilinear))"),
         2, "conv2d not fused into upsample: upsample reads it at interpolated positions"},
        {"upsample_output",
         G("l: f32[1,3,5,7]) -> f32[1,3,10,14]", "return upsample(l, scale=2, mode=bilinear)"), 1,
         NULL},
        /* wide enough for packed column panels, the next block's prefetch and x2 interior
         * vectors built by shuffles at 8 and 16 lanes; an odd width leaves tails */
        {"seed_rewritten_x2",
         G("h: f32[2,16,6,70], l: f32[2,16,3,35]) -> f32[2,16,6,70]",
           "z = conv2d(l, out=16, kernel=1) @zl\n"
           "return relu(conv2d(h, out=16, kernel=1) @zh + upsample(z, size=[6, 70], "
           "mode=bilinear))"),
         2, "conv2d not fused into upsample: upsample reads it at interpolated positions"},
    };
    run_cases(cases, countof(cases));
}

/* Elementwise consumers of one space that share an input are one kernel storing each (sibling
 * fusion); an upsample they both read is computed in it, its x2 rows built once per image row
 * into per-thread scratch (by shuffles), never stored whole; an upsample alone builds its rows
 * the same way, straight into its output. */
static void siblings(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"add_mul",
         G("a: f32[2,3,5,19], b: f32[2,3,5,19]) -> (s: f32[2,3,5,19], p: f32[2,3,5,19])",
           "return a + b, a * b"),
         1, NULL},
        {"three_siblings",
         G("a: f32[3,40], b: f32[3,40]) -> (s: f32[3,40], p: f32[3,40], m: f32[3,40])",
           "return a + b, a * b, relu(a - 1)"),
         1, NULL},
        /* %1 = a + 1 is read by softmax, which the kernel of a * 2 + softmax reads: storing %1
         * from that kernel would write it after softmax reads it */
        {"sibling_read_before",
         G("a: f32[3,17]) -> f32[3,17]", "s = softmax(a + 1, axis=-1)\nreturn a * 2 + s"), 3,
         "add not fused into softmax: softmax reads its inputs from memory"},
        {"upsample_x2_siblings", /* x2 interior vectors at 8 and 16 lanes, an odd width's tail */
         G("h: f32[2,3,6,70], l: f32[2,3,3,35]) -> (s: f32[2,3,6,70], p: f32[2,3,6,70])",
           "u = upsample(l, size=[6, 70], mode=bilinear)\nreturn h + u, h * u"),
         1, NULL},
        {"upsample_nearest_siblings",
         G("h: f32[1,2,6,40], l: f32[1,2,3,20]) -> (s: f32[1,2,6,40], p: f32[1,2,6,40])",
           "u = upsample(l, scale=2)\nreturn h - u, relu(h) * u"),
         1, NULL},
        {"upsample_alone_x2",
         G("l: f32[2,3,4,35]) -> f32[2,3,8,70]", "return upsample(l, scale=2, mode=bilinear)"), 1,
         NULL},
        {"upsample_alone_nearest_x2",
         G("l: f32[2,3,4,37]) -> f32[2,3,8,74]", "return upsample(l, scale=2)"), 1, NULL},
    };
    run_cases(cases, countof(cases));
    /* the x2 upsample is never stored: one row of 70 per thread */
    TestCompile t;
    LoopProgram *p = schedule_case(&t, &cases[3], 8);
    assert_int_equal(p->nkernels, 1);
    assert_int_equal(p->scratch_bytes, 0);
    bool row = false;
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const LoopBuffer *b = p->buffers[i];
        assert_true(b->kind != BUF_SCRATCH);
        if (b->kind == BUF_THREAD) {
            assert_int_equal(b->elems, 70);
            row = true;
        }
    }
    assert_true(row);
    test_compile_free(&t);
}

static void reductions_in_producer(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"global_pool_of_conv",
         G("x: f32[2,6,9,11]) -> (y: f32[2,8,9,11], m: f32[2,8])",
           "y = relu(conv2d(x, out=8, kernel=1) @c)\nreturn y, mean(y, axes=[2, 3])"),
         1, NULL},
        {"pools_of_expression",
         G("x: f32[2,6,7,9]) -> (a: f32[2,6,1,1], b: f32[2,6,1,1])",
           "e = exp(x) * 0.5\nreturn mean(e, axes=[2, 3], keepdim=true), "
           "amax(e, axes=[2, 3], keepdim=true)"),
         1, NULL},
        {"channel_mean_max",
         G("x: f32[2,6,5,11], g: f32[2,6,1,1]) -> (y: f32[2,6,5,11], a: f32[2,1,5,11], "
           "m: f32[2,1,5,11])",
           "y = x * g\nreturn y, mean(y, axes=[1], keepdim=true), amax(y, axes=[1], keepdim=true)"),
         1, NULL},
        {"channel_mean_of_conv",
         G("x: f32[1,6,12,40]) -> f32[1,12,40]", "return mean(conv2d(x, out=16, kernel=1) @c, "
                                                 "axes=[1])"),
         1, NULL},
        {"row_sum_of_linear",
         G("x: f32[3,5,16]) -> f32[3,5]", "return sum(relu(linear(x, out=24) @fc), axes=[-1])"), 1,
         NULL},
        {"reduction_of_input", G("x: f32[2,6,7,9]) -> f32[2,6]", "return mean(x, axes=[2, 3])"), 1,
         NULL},
        {"middle_axes_declined",
         G("x: f32[2,6,7,9]) -> f32[2,9]", "return sum(exp(x), axes=[1, 2])"), 2,
         "its axes are neither trailing nor a single axis"},
        {"cbam_spatial",
         G("x: f32[1,6,5,11], g: f32[1,6,1,1]) -> f32[1,6,5,11]",
           "y = x * g\n"
           "s = concat(mean(y, axes=[1], keepdim=true), amax(y, axes=[1], keepdim=true), axis=1)\n"
           "return y * sigmoid(conv2d(s, out=1, kernel=3, padding=1, bias=false) @sa)"),
         3, "sigmoid not fused into mul: mul broadcasts it"},
        {"concat_in_place",
         G("a: f32[2,3,4,9], b: f32[2,5,4,9]) -> f32[2,8,4,9]",
           "return concat(relu(a), b * 2, axis=1)"),
         2, NULL},
        {"se_block",
         G("x: f32[1,16,6,10]) -> f32[1,16,6,10]",
           "y = mean(x, axes=[2, 3])\ny = relu(linear(y, out=4, bias=false) @fc.0)\n"
           "y = sigmoid(linear(y, out=16, bias=false) @fc.2)\n"
           "return x * view(y, shape=[1, 16, 1, 1])"),
         4, "sigmoid not fused into mul: mul broadcasts it"},
    };
    run_cases(cases, countof(cases));
}

/* A 1x1 conv over a channel concat, or a linear over a concat along its last axis, reads the
 * parts where they are: the concat has no buffer and runs no kernel (a part computed in the
 * graph is stored once, at its own size). Sizes that take the packed column blocks with a
 * partial last one, partial pools per column block, a map narrower than a vector, row blocks
 * of a linear with a row reduction. */
static void concat_read_in_place(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"three_parts",
         G("a: f32[2,5,37,61], b: f32[2,3,37,61], c: f32[2,7,37,61]) -> f32[2,16,37,61]",
           "return relu(conv2d(concat(a, relu(b), c, axis=1), out=16, kernel=1) @c1)"),
         2, NULL},
        {"global_pool",
         G("a: f32[2,9,23,61], b: f32[2,4,23,61]) -> (y: f32[2,16,23,61], m: f32[2,16])",
           "y = conv2d(concat(a, b, axis=1), out=16, kernel=1, bias=false) @c1\n"
           "return y, mean(y, axes=[2, 3])"),
         2, NULL},
        {"channel_mean",
         G("a: f32[1,6,12,40], b: f32[1,10,12,40]) -> f32[1,12,40]",
           "return mean(conv2d(concat(a, b, axis=1), out=16, kernel=1) @c, axes=[1])"),
         1, NULL},
        {"narrow_map",
         G("a: f32[3,4,1,3], b: f32[3,12,1,3]) -> f32[3,8,1,3]",
           "return conv2d(concat(b, a, axis=1), out=8, kernel=1) @c1 * 2"),
         1, NULL},
        {"linear_parts",
         G("a: f32[2,37,24], b: f32[2,37,8], c: f32[2,37,5]) -> f32[2,37,20]",
           "return gelu(linear(concat(a, relu(b), c, axis=2), out=20) @fc)"),
         2, NULL},
        {"linear_row_mean",
         G("a: f32[3,48], b: f32[3,16]) -> (y: f32[3,32], m: f32[3])",
           "y = linear(concat(b, a, axis=-1), out=32, bias=false) @fc\n"
           "return y, mean(y, axes=[1])"),
         1, NULL},
    };
    for (size_t i = 0; i < countof(cases); i++) {
        print_message("%s\n", cases[i].name);
        TestCompile t;
        LoopProgram *p = schedule_counted(&t, &cases[i]);
        const Node *cat = NULL;
        for (uint32_t k = 0; k < t.graph->nnodes; k++)
            if (t.graph->nodes[k]->kind == OP_CONCAT)
                cat = t.graph->nodes[k];
        assert_non_null(cat);
        int64_t concat_bytes = shape_numel(&cat->shape) * (int64_t)sizeof(float);
        if (p->scratch_bytes * 2 >= concat_bytes)
            fail_msg("%s: %lld B of scratch for a concat of %lld B", cases[i].name,
                     (long long)p->scratch_bytes, (long long)concat_bytes);
        test_compile_free(&t);
        check_numerics(&cases[i]);
    }
}

/* A pointwise group read only by a 1x1 conv is computed while the conv packs its column
 * blocks (image rows): no kernel and no buffer of its own. Rows of 38 (a panel of 24, then a
 * vector and 6 scalars left), an x2 bilinear upsample built per channel row, a broadcast
 * operand, a channel mean of the conv; and a row narrower than a panel, where the group keeps
 * its kernel. */
static void input_packed_by_conv(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"up_add",
         G("h: f32[2,32,24,38], l: f32[2,32,12,19]) -> f32[2,16,24,38]",
           "u = upsample(l, scale=2, mode=bilinear, align_corners=false)\n"
           "return relu(conv2d(h + u, out=16, kernel=1) @c)"),
         1, NULL},
        {"broadcast_gate",
         G("x: f32[1,8,6,27], g: f32[1,8,1,1]) -> f32[1,16,6,27]",
           "return conv2d(relu(x * g), out=16, kernel=1, bias=false) @c"),
         1, NULL},
        {"channel_mean",
         G("x: f32[1,8,2,40]) -> f32[1,2,40]",
           "return mean(conv2d(tanh(x) + 1, out=16, kernel=1) @c, axes=[1])"),
         1, NULL},
        {"narrow_rows",
         G("x: f32[1,8,9,5]) -> f32[1,16,9,5]", "return conv2d(exp(x), out=16, kernel=1) @c"), 2,
         NULL},
    };
    for (size_t i = 0; i < countof(cases); i++) {
        print_message("%s\n", cases[i].name);
        TestCompile t;
        LoopProgram *p = schedule_counted(&t, &cases[i]);
        int64_t in_bytes = shape_numel(&t.graph->inputs[0]->shape) * (int64_t)sizeof(float);
        if (cases[i].kernels == 1 && p->scratch_bytes * 2 >= in_bytes)
            fail_msg("%s: %lld B of scratch for an input of %lld B", cases[i].name,
                     (long long)p->scratch_bytes, (long long)in_bytes);
        test_compile_free(&t);
        check_numerics(&cases[i]);
    }
}

/* A 1x1 conv summing more terms than a packed block holds (KC_MAX, 256) runs its column
 * blocks in k blocks, the sums so far kept in the output: 600 terms as 3 blocks of 200, 513
 * as 3 of 171, the blocks crossing the concat parts read in place, column and row (channel)
 * reductions and an upsample in the epilogue (image-row blocks) applied after the last block
 * only, a partial last column block. The packed block is a k block's, not all k's. */
static void k_blocks(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"plain",
         G("x: f32[2,600,37,29]) -> f32[2,16,37,29]",
           "return relu(batchnorm2d(conv2d(x, out=16, kernel=1) @c) @bn)"),
         1, NULL},
        {"concat_parts",
         G("a: f32[1,250,23,41], b: f32[1,130,23,41], c: f32[1,220,23,41]) -> f32[1,16,23,41]",
           "return conv2d(concat(a, relu(b), c, axis=1), out=16, kernel=1) @c1"),
         2, NULL},
        {"global_pool",
         G("x: f32[2,513,19,53]) -> (y: f32[2,16,19,53], m: f32[2,16])",
           "y = conv2d(x, out=16, kernel=1, bias=false) @c\n"
           "return y, mean(y, axes=[2, 3])"),
         2, NULL},
        {"channel_mean",
         G("x: f32[1,520,12,40]) -> f32[1,12,40]",
           "return mean(conv2d(x, out=16, kernel=1) @c, axes=[1])"),
         1, NULL},
        {"upsampled_epilogue",
         G("x: f32[1,600,8,300], l: f32[1,16,4,150]) -> f32[1,16,8,300]",
           "u = upsample(l, scale=2, mode=bilinear, align_corners=false)\n"
           "return conv2d(x, out=16, kernel=1) @c + u"),
         1, NULL},
    };
    for (size_t i = 0; i < countof(cases); i++) {
        print_message("%s\n", cases[i].name);
        TestCompile t;
        LoopProgram *p = schedule_counted(&t, &cases[i]);
        int64_t k = 0; /* the conv's terms: its input channels */
        for (uint32_t j = 0; j < t.graph->nnodes; j++)
            if (t.graph->nodes[j]->kind == OP_CONV2D)
                k = t.graph->nodes[j]->inputs[0]->shape.dim[1];
        int64_t packed = 0; /* the thread's packed block of B, in floats */
        for (uint32_t j = 0; j < p->nbuffers; j++)
            if (p->buffers[j]->kind == BUF_THREAD && !strncmp(p->buffers[j]->name, "panel", 5))
                packed = p->buffers[j]->elems;
        if (packed <= 0 || packed * 2 > k * 240) /* 8 lanes: a block is 10 panels of 24 */
            fail_msg("%s: a packed block of %lld floats for %lld terms", cases[i].name,
                     (long long)packed, (long long)k);
        test_compile_free(&t);
        check_numerics(&cases[i]);
    }
}

/* Prefetches of the column block after this one found under `s`: in the k loops of the tiles
 * (a loop whose body updates accumulators with fmas), and in loops of prefetches alone (a
 * burst before the tiles). */
static void count_prefetches(const LoopStmt *s, bool in_k_loop, int *in_tiles, int *in_bursts)
{
    switch (s->kind) {
    case LOOP_FOR: {
        const LoopStmt *b = s->loop.body;
        bool fmas = false, only_prefetches = b->block.n > 0;
        for (uint32_t i = 0; i < b->block.n; i++) {
            const LoopStmt *t = b->block.stmts[i];
            fmas = fmas || (t->kind == LOOP_ASSIGN && t->assign.value->kind == LEXPR_FMA);
            only_prefetches = only_prefetches && t->kind == LOOP_PREFETCH;
        }
        *in_bursts += only_prefetches;
        count_prefetches(b, in_k_loop || fmas, in_tiles, in_bursts);
        return;
    }
    case LOOP_BLOCK:
        for (uint32_t i = 0; i < s->block.n; i++)
            count_prefetches(s->block.stmts[i], in_k_loop, in_tiles, in_bursts);
        return;
    case LOOP_IF:
        count_prefetches(s->branch.then_body, in_k_loop, in_tiles, in_bursts);
        if (s->branch.else_body)
            count_prefetches(s->branch.else_body, in_k_loop, in_tiles, in_bursts);
        return;
    case LOOP_PREFETCH:
        *in_tiles += in_k_loop;
        return;
    default:
        return;
    }
}

/* A 1x1 conv over many columns packs each column block for its row blocks; the next block's
 * rows are prefetched a line every few terms from within the tiles' k loops (a burst of
 * hundreds of prefetches before the tiles stalled the core), in bounds: the C kernels of
 * check_numerics check every prefetch address. Whole blocks and a partial last one (23 x 45
 * columns in blocks of 240: two spans of tiles), two batches, a concat read in place (a
 * prefetch per part), the last k block of a longer sum (the earlier ones still prefetch in a
 * burst), a prologue computed while packing (h at the next image row). */
static void tile_prefetch(void **state)
{
    (void)state;
    static const struct {
        Case c;
        int sites;  /* prefetches in k loops: per part of B, per span of whole panels */
        int bursts; /* loops of prefetches alone */
    } cases[] = {
        {{"plain",
          G("x: f32[2,64,23,45]) -> f32[2,32,23,45]",
            "return relu(conv2d(x, out=32, kernel=1) @c)"),
          1, NULL},
         2,
         0},
        {{"concat_parts",
          G("a: f32[1,40,23,45], b: f32[1,24,23,45]) -> f32[1,32,23,45]",
            "return conv2d(concat(a, b, axis=1), out=32, kernel=1) @c"),
          1, NULL},
         4,
         0},
        {{"k_blocks",
          G("x: f32[1,300,37,29]) -> f32[1,16,37,29]", "return conv2d(x, out=16, kernel=1) @c"), 1,
          NULL},
         2,
         1},
        {{"prologue",
          G("h: f32[2,32,8,80], l: f32[2,32,4,40]) -> f32[2,32,8,80]",
            "u = upsample(l, scale=2, mode=bilinear)\n"
            "return relu(conv2d(h + u, out=32, kernel=1) @c)"),
          1, NULL},
         1,
         0},
    };
    for (size_t i = 0; i < countof(cases); i++) {
        const Case *c = &cases[i].c;
        print_message("%s\n", c->name);
        TestCompile t;
        LoopProgram *p = schedule_counted(&t, c);
        int in_tiles = 0, in_bursts = 0;
        count_prefetches(p->kernels[0]->body, false, &in_tiles, &in_bursts);
        if (in_tiles != cases[i].sites)
            fail_msg("%s: %d prefetches in the tiles' k loops, want %d", c->name, in_tiles,
                     cases[i].sites);
        if (in_bursts != cases[i].bursts)
            fail_msg("%s: %d loops of prefetches alone, want %d", c->name, in_bursts,
                     cases[i].bursts);
        test_compile_free(&t);
        check_numerics(c);
    }
}

/* A linear's weight is packed as panels at create time and each panel swept by a chunk of row
 * blocks: 600 terms in 3 k blocks of 200 (the sums so far kept in the output), columns past
 * the whole panels, a last chunk of fewer row blocks (37 blocks of 2 rows), an epilogue
 * reading the input, batch axes flattened into the rows. */
static void weight_panels(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"k_blocks_gelu",
         G("x: f32[2,37,600]) -> f32[2,37,40]", "return gelu(linear(x, out=40) @fc)"), 1, NULL},
        {"residual", G("x: f32[1,100,96]) -> f32[1,100,96]", "return linear(x, out=96) @fc + x"), 1,
         NULL},
        {"scaled_no_bias",
         G("x: f32[3,5,7,72]) -> f32[3,5,7,50]", "return linear(x, out=50, bias=false) @fc * 0.5"),
         1, NULL},
    };
    for (size_t i = 0; i < countof(cases); i++) {
        print_message("%s\n", cases[i].name);
        TestCompile t;
        LoopProgram *p = schedule_counted(&t, &cases[i]);
        bool panels = false;
        for (uint32_t j = 0; j < p->nbuffers; j++)
            panels = panels ||
                     (p->buffers[j]->kind == BUF_PREPARED && strstr(p->buffers[j]->name, "_nr"));
        if (!panels)
            fail_msg("%s: the weight is not packed as panels", cases[i].name);
        test_compile_free(&t);
        check_numerics(&cases[i]);
    }
}

/* ---- attention blocks in their common spellings ---- */

/* One spelling of an attention block on x [2, 16, 7, 11]: after the graph passes, as the
 * command line compiles it, the block must take `kernels` run kernels, read x in `x_passes`
 * of them, and hold no x-sized intermediate; and it must compute what the interpreter does. */
typedef struct Spelling {
    const char *name;
    const char *body;
    uint32_t kernels, x_passes;
} Spelling;

#define SPELLING_SIG     "x: f32[2,16,7,11]) -> f32[2,16,7,11]"
#define SPELLING_X_BYTES (2 * 16 * 7 * 11 * 4)

/* Kernels of p that load graph input 0. */
static uint32_t passes_over_input(const LoopProgram *p)
{
    const LoopBuffer *x = NULL;
    for (uint32_t i = 0; i < p->nbuffers; i++)
        if (p->buffers[i]->kind == BUF_INPUT && p->buffers[i]->index == 0)
            x = p->buffers[i];
    assert_non_null(x);
    uint32_t n = 0;
    for (uint32_t k = 0; k < p->nkernels; k++) {
        LoopUses u = loop_uses(p, p->kernels[k], p->kernels[k]->body, false);
        n += u.loaded[x->id];
        loop_uses_free(&u);
    }
    return n;
}

static void check_spelling(const Spelling *sp)
{
    char spec[2048];
    snprintf(spec, sizeof spec, G(SPELLING_SIG, "%s"), sp->body);
    TestCompile t;
    if (!test_compile(&t, spec, NULL, NULL))
        fail_msg("%s: %s", sp->name, test_diagnostics(&t));
    KernelOptions opt = {.backend = driver_default_backend(), .vector_lanes = 8};
    LoopProgram *p = driver_lower(&t.cx, t.graph, &opt);
    if (!p)
        fail_msg("%s: %s", sp->name, test_diagnostics(&t));
    if (getenv("FUSION_DUMP"))
        loop_dump(p, stderr);
    if (p->nkernels != sp->kernels)
        fail_msg("%s: %u run kernels, want %u", sp->name, p->nkernels, sp->kernels);
    uint32_t passes = passes_over_input(p);
    if (passes != sp->x_passes)
        fail_msg("%s: %u kernels read x, want %u", sp->name, passes, sp->x_passes);
    if (p->scratch_bytes >= SPELLING_X_BYTES)
        fail_msg("%s: %lld bytes of scratch, an x-sized intermediate", sp->name,
                 (long long)p->scratch_bytes);
    TestData d;
    test_data_new(&d, t.graph, 91);
    test_data_interp(&d, t.graph);
    Compiled code;
    if (driver_compile(&t.cx, p, &opt, &code) != DRIVER_OK)
        fail_msg("%s: %s", sp->name, test_diagnostics(&t));
    for (int threads = 1; threads <= 2; threads++) {
        char what[128];
        snprintf(what, sizeof what, "%s, %d threads", sp->name, threads);
        test_data_run(code.info, t.graph, &d, threads);
        test_data_compare(t.graph, &d, what);
    }
    driver_release(&code);
    test_data_free(&d, t.graph);
    test_compile_free(&t);
}

/* SE, CBAM's channel and spatial attention and BAM as users write them: the MLP as `linear` on
 * [N, C] or as 1x1 `conv2d` on [N, C, 1, 1], pools with or without keepdim, brought to shape
 * by `view` or `flatten`, the gate on either side. Every spelling of a block compiles to the
 * same kernels: the pools in one pass over x, the MLP, and the gate in a second pass; spatial
 * attention (the channel pools, the conv over them and the gate) one kernel in row bands. */
static void attention_spellings(void **state)
{
    (void)state;
    static const Spelling spellings[] = {
        {"se_linear",
         "y = mean(x, axes=[2, 3])\ny = relu(linear(y, out=4, bias=false) @fc.0)\n"
         "y = sigmoid(linear(y, out=16, bias=false) @fc.2)\n"
         "return x * view(y, shape=[2, 16, 1, 1])",
         4, 2},
        {"se_keepdim_view",
         "y = view(mean(x, axes=[-2, -1], keepdim=true), shape=[2, 16])\n"
         "y = relu(linear(y, out=4, bias=false) @fc.0)\n"
         "y = sigmoid(linear(y, out=16, bias=false) @fc.2)\n"
         "return view(y, shape=[2, 16, 1, 1]) * x",
         4, 2},
        {"se_keepdim_flatten",
         "y = flatten(mean(x, axes=[2, 3], keepdim=true), start=1)\n"
         "y = relu(linear(y, out=4) @fc.0)\ny = sigmoid(linear(y, out=16) @fc.2)\n"
         "return x * view(y, shape=[2, -1, 1, 1])",
         4, 2},
        {"se_conv",
         "y = mean(x, axes=[2, 3], keepdim=true)\n"
         "y = relu(conv2d(y, out=4, kernel=1, bias=false) @fc.0)\n"
         "return x * sigmoid(conv2d(y, out=16, kernel=1, bias=false) @fc.2)",
         4, 2},
        {"se_conv_view",
         "y = view(mean(x, axes=[2, 3]), shape=[2, 16, 1, 1])\n"
         "y = relu(conv2d(y, out=4, kernel=1) @fc.0)\n"
         "return sigmoid(conv2d(y, out=16, kernel=1) @fc.2) * x",
         4, 2},
        {"se_after_conv",
         "x = relu(conv2d(x, out=16, kernel=1) @conv)\n"
         "y = relu(linear(mean(x, axes=[2, 3]), out=4) @fc.0)\n"
         "return x * view(sigmoid(linear(y, out=16) @fc.2), shape=[2, 16, 1, 1])",
         4, 1},
        {"channel_attention_conv",
         "a = mean(x, axes=[2, 3], keepdim=true)\nm = amax(x, axes=[2, 3], keepdim=true)\n"
         "a = conv2d(relu(conv2d(a, out=4, kernel=1, bias=false) @fc.0), out=16, kernel=1, "
         "bias=false) @fc.2\n"
         "m = conv2d(relu(conv2d(m, out=4, kernel=1, bias=false) @fc.0), out=16, kernel=1, "
         "bias=false) @fc.2\n"
         "return x * sigmoid(a + m)",
         6, 2},
        {"channel_attention_linear",
         "a = mean(x, axes=[2, 3])\nm = view(amax(x, axes=[2, 3], keepdim=true), shape=[2, 16])\n"
         "a = linear(relu(linear(a, out=4, bias=false) @fc.0), out=16, bias=false) @fc.2\n"
         "m = linear(relu(linear(m, out=4, bias=false) @fc.0), out=16, bias=false) @fc.2\n"
         "return x * view(sigmoid(a + m), shape=[2, 16, 1, 1])",
         6, 2},
        {"spatial_attention_keepdim",
         "s = concat(mean(x, axes=[1], keepdim=true), amax(x, axes=[1], keepdim=true), axis=1)\n"
         "return x * sigmoid(conv2d(s, out=1, kernel=7, padding=3, bias=false) @conv1)",
         1, 1}, /* in row bands: x read once */
        {"spatial_attention_view",
         "a = view(mean(x, axes=[1]), shape=[2, 1, 7, 11])\n"
         "m = view(amax(x, axes=[-3]), shape=[2, 1, 7, 11])\n"
         "s = sigmoid(conv2d(concat(a, m, axis=1), out=1, kernel=7, padding=3, bias=false) "
         "@conv1)\n"
         "return s * x",
         1, 1},
        {"cbam",
         "a = mean(x, axes=[2, 3], keepdim=true)\nm = amax(x, axes=[2, 3], keepdim=true)\n"
         "a = conv2d(relu(conv2d(a, out=4, kernel=1, bias=false) @fc.0), out=16, kernel=1, "
         "bias=false) @fc.2\n"
         "m = conv2d(relu(conv2d(m, out=4, kernel=1, bias=false) @fc.0), out=16, kernel=1, "
         "bias=false) @fc.2\n"
         "y = x * sigmoid(a + m)\n"
         "s = concat(mean(y, axes=[1], keepdim=true), amax(y, axes=[1], keepdim=true), axis=1)\n"
         "return y * sigmoid(conv2d(s, out=1, kernel=7, padding=3, bias=false) @conv1)",
         6, 2}, /* the spatial half in row bands: one kernel */
        {"bam",
         "c = linear(mean(x, axes=[2, 3]), out=4) @fc_0\nc = relu(batchnorm1d(c) @bn_1)\n"
         "c = view(linear(c, out=16) @fc_final, shape=[2, 16, 1, 1])\n"
         "s = relu(batchnorm2d(conv2d(x, out=4, kernel=1) @reduce) @bn_reduce)\n"
         "s = relu(batchnorm2d(conv2d(s, out=4, kernel=3, padding=4, dilation=4) @di_0) @bn_0)\n"
         "s = relu(batchnorm2d(conv2d(s, out=4, kernel=3, padding=4, dilation=4) @di_1) @bn_1s)\n"
         "s = conv2d(s, out=1, kernel=1) @final\n"
         "return x * (1 + sigmoid(c + s))",
         11, 3}, /* 3 of them the small sigmoids of c and s (factor-sigmoid) */
    };
    for (size_t i = 0; i < countof(spellings); i++) {
        print_message("%s\n", spellings[i].name);
        check_spelling(&spellings[i]);
    }
}

/* ---- row bands ---- */

/* The channel pools, the convs over them and the gate as one kernel over row bands, in shapes
 * that give several bands per image, a short last band, images in a batch, and convs of
 * different halos (a dilated 3x3 over the mean, a 5x5 over the max): the interpreter's numbers,
 * bit for bit the same on 1 and 2 threads, x read once by the band kernel. */
static void row_bands(void **state)
{
    (void)state;
    static const struct {
        const char *name, *spec;
        uint32_t kernels, x_passes;
    } cases[] = {
        {"cbam_tall",
         G("x: f32[2,5,61,19]) -> f32[2,5,61,19]",
           "g = sigmoid(conv2d(mean(x, axes=[2, 3], keepdim=true), out=5, kernel=1) @fc)\n"
           "y = x * g\n"
           "a = conv2d(mean(y, axes=[1], keepdim=true), out=1, kernel=3, padding=2, dilation=2) "
           "@sa\n"
           "m = conv2d(amax(y, axes=[1], keepdim=true), out=1, kernel=5, padding=2, bias=false) "
           "@sm\n"
           "return y * sigmoid(a + m)"),
         3, 2}, /* the pool, the gate's conv, the bands */
        {"spatial_wide",
         G("x: f32[1,3,40,70]) -> f32[1,3,40,70]",
           "s = concat(mean(x, axes=[1], keepdim=true), amax(x, axes=[1], keepdim=true), axis=1)\n"
           "return sigmoid(conv2d(s, out=1, kernel=7, padding=3) @conv1) * x + x"),
         1, 1},
    };
    for (size_t i = 0; i < countof(cases); i++) {
        TestCompile t;
        if (!test_compile(&t, cases[i].spec, NULL, NULL))
            fail_msg("%s: %s", cases[i].name, test_diagnostics(&t));
        KernelOptions opt = {.backend = driver_default_backend(), .vector_lanes = 8};
        LoopProgram *p = driver_lower(&t.cx, t.graph, &opt);
        if (!p)
            fail_msg("%s: %s", cases[i].name, test_diagnostics(&t));
        if (getenv("FUSION_DUMP"))
            loop_dump(p, stderr);
        bool banded = false;
        for (uint32_t k = 0; k < p->nkernels; k++)
            banded = banded || strstr(p->kernels[k]->name, "_bands") != NULL;
        if (!banded || p->nkernels != cases[i].kernels)
            fail_msg("%s: %u run kernels (want %u), row bands %s", cases[i].name, p->nkernels,
                     cases[i].kernels, banded ? "yes" : "no");
        if (passes_over_input(p) != cases[i].x_passes)
            fail_msg("%s: %u kernels read x, want %u", cases[i].name, passes_over_input(p),
                     cases[i].x_passes);
        TestData d;
        test_data_new(&d, t.graph, 17);
        test_data_interp(&d, t.graph);
        Compiled code;
        if (driver_compile(&t.cx, p, &opt, &code) != DRIVER_OK)
            fail_msg("%s: %s", cases[i].name, test_diagnostics(&t));
        int64_t n = shape_numel(&t.graph->outputs[0]->shape);
        float *one = malloc((size_t)n * sizeof *one);
        assert_non_null(one);
        for (int threads = 1; threads <= 2; threads++) {
            char what[128];
            snprintf(what, sizeof what, "%s, %d threads", cases[i].name, threads);
            test_data_run(code.info, t.graph, &d, threads);
            test_data_compare(t.graph, &d, what);
            if (threads == 1)
                memcpy(one, d.got[0], (size_t)n * sizeof *one);
            else if (memcmp(one, d.got[0], (size_t)n * sizeof *one) != 0)
                fail_msg("%s: 1 and 2 threads differ", cases[i].name);
        }
        free(one);
        driver_release(&code);
        test_data_free(&d, t.graph);
        test_compile_free(&t);
    }
}

/* ---- create time, the plan, memory ---- */

static bool stmt_has_unary(const LoopStmt *s, LoopOp op);

static bool expr_has_unary(const LoopExpr *e, LoopOp op)
{
    if (!e)
        return false;
    switch (e->kind) {
    case LEXPR_CONST_F:
    case LEXPR_CONST_I:
    case LEXPR_VAR:
    case LEXPR_IOTA:
        return false;
    case LEXPR_LOAD:
    case LEXPR_GATHER:
        return expr_has_unary(e->load.index, op);
    case LEXPR_UNARY:
        return e->op.op == op || expr_has_unary(e->op.a, op);
    default:
        return expr_has_unary(e->op.a, op) || expr_has_unary(e->op.b, op) ||
               (e->kind != LEXPR_CMP && expr_has_unary(e->op.c, op));
    }
}

static bool stmt_has_unary(const LoopStmt *s, LoopOp op)
{
    switch (s->kind) {
    case LOOP_BLOCK:
        for (uint32_t i = 0; i < s->block.n; i++)
            if (stmt_has_unary(s->block.stmts[i], op))
                return true;
        return false;
    case LOOP_FOR:
        return stmt_has_unary(s->loop.body, op);
    case LOOP_STORE:
        return expr_has_unary(s->store.value, op);
    case LOOP_IF:
        return stmt_has_unary(s->branch.then_body, op) ||
               (s->branch.else_body && stmt_has_unary(s->branch.else_body, op));
    case LOOP_DECL:
        return expr_has_unary(s->decl.init, op);
    case LOOP_ASSIGN:
        return expr_has_unary(s->assign.value, op);
    case LOOP_PREFETCH:
        return false;
    }
    return false;
}

/* Weight-only subgraphs run once at create time; run kernels only read their results, and a
 * weight no run kernel reads is not kept. */
static void create_time(void **state)
{
    (void)state;
    static const Case c = {
        "create_time",
        G("x: f32[2,6,5,7]) -> f32[2,6,5,7]",
          "g = sigmoid(param(shape=[6, 1, 1]) @gate) * 2\nreturn x * g + param(shape=[7]) @b"),
        1, NULL};
    TestCompile t;
    LoopProgram *p = schedule_case(&t, &c, 8);
    assert_int_equal(p->nkernels, 1);
    assert_true(p->nprepare >= 2);
    bool run_sigmoid = false, prep_sigmoid = false;
    for (uint32_t i = 0; i < p->nkernels; i++)
        run_sigmoid = run_sigmoid || stmt_has_unary(p->kernels[i]->body, LOP_SIGMOID);
    for (uint32_t i = 0; i < p->nprepare; i++)
        prep_sigmoid = prep_sigmoid || stmt_has_unary(p->prepare[i]->body, LOP_SIGMOID);
    assert_false(run_sigmoid);
    assert_true(prep_sigmoid);
    /* kept: the gate's result and b's copy; the gate weight and the sigmoid's own result are
     * create-time temporaries in scratch */
    uint32_t prepared = 0;
    for (uint32_t i = 0; i < p->nbuffers; i++)
        prepared += p->buffers[i]->kind == BUF_PREPARED;
    assert_int_equal(prepared, 2);
    assert_int_equal(p->prepared_bytes, 128);
    test_compile_free(&t);
    check_numerics(&c);
}

/* A matmul whose B is computed at create time (a Linear with a BatchNorm folded into its weight
 * becomes x @ permute(W')) transposes B for its dot products there too, once: no run kernel
 * copies it per call. */
static void weight_transpose_at_create_time(void **state)
{
    (void)state;
    static const Case c = {"folded_linear",
                           G("x: f32[3,20]) -> f32[3,6]",
                             "w = param(shape=[6, 20]) @w * 0.5\n"
                             "return relu(matmul(x, permute(w, perm=[1, 0])))"),
                           1, NULL};
    TestCompile t;
    LoopProgram *p = schedule_case(&t, &c, 8);
    assert_int_equal(p->nkernels, 1);
    bool prep_bt = false;
    for (uint32_t i = 0; i < p->nprepare; i++)
        prep_bt = prep_bt || strstr(p->prepare[i]->name, "matmul_bt") != NULL;
    assert_true(prep_bt);
    assert_null(strstr(p->kernels[0]->name, "_bt"));
    test_compile_free(&t);
    check_numerics(&c);
}

/* The plan as schedule.h shows it. */
static void plan_api(void **state)
{
    (void)state;
    TestCompile t;
    const char *spec = G("h: f32[1,4,8,8], l: f32[1,4,4,4]) -> f32[1,4,8,8]",
                         "w = param(shape=[4, 4, 1, 1]) @w\n"
                         "z = conv2d(l, out=4, kernel=1, bias=false) @zl\n"
                         "return relu(conv2d(h, out=4, kernel=1) @zh + upsample(z, size=[8, 8], "
                         "mode=bilinear) * view(sum(w, axes=[1, 2, 3]), shape=[1, 4, 1, 1]))");
    if (!test_compile(&t, spec, NULL, NULL))
        fail_msg("%s", test_diagnostics(&t));
    FusionPlan *fp = schedule_plan(&t.cx, t.graph);
    assert_int_equal(fp->nnodes, t.graph->nnodes);
    assert_int_equal(fp->ngroups, 2);
    int32_t last = fp->group_of[t.graph->outputs[0]->id];
    assert_int_equal(last, 1);
    assert_non_null(strstr(fp->group_name[1], "conv2d_relu"));
    for (uint32_t i = 0; i < t.graph->nnodes; i++) {
        const Node *n = t.graph->nodes[i];
        if (n->kind == OP_INPUT || n->kind == OP_PARAM || n->kind == OP_SCALAR)
            assert_int_equal(fp->group_of[i], -1);
        if (n->kind == OP_SUM) { /* weights only */
            assert_true(fp->prepared[i]);
            assert_int_equal(fp->group_of[i], -1);
        }
        if (n->kind == OP_UPSAMPLE || n->kind == OP_ADD || n->kind == OP_MUL)
            assert_int_equal(fp->group_of[i], last);
    }
    test_compile_free(&t);
}

/* Buffers whose lifetimes do not meet share bytes: softmax(softmax(softmax(softmax(x)))) needs
 * two intermediates at a time, not three. */
static void memory_plan(void **state)
{
    (void)state;
    static const Case c = {
        "memory",
        G("x: f32[5,31]) -> f32[5,31]",
          "a = softmax(x, axis=-1)\nb = softmax(a, axis=-1)\nd = softmax(b, axis=-1)\n"
          "return softmax(d, axis=-1)"),
        4, NULL};
    TestCompile t;
    LoopProgram *p = schedule_case(&t, &c, 8);
    assert_int_equal(p->nkernels, 4);
    int64_t one = (5 * 31 * 4 + 63) / 64 * 64, sum = 0;
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const LoopBuffer *b = p->buffers[i];
        if (b->kind != BUF_SCRATCH)
            continue;
        sum += one;
        assert_int_equal(b->offset % 64, 0);
        assert_true(b->offset + b->elems * 4 <= p->scratch_bytes);
    }
    assert_int_equal(sum, 3 * one);
    assert_int_equal(p->scratch_bytes, 2 * one);
    test_compile_free(&t);
    check_numerics(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(elementwise_chains),
        cmocka_unit_test(contraction_epilogues),
        cmocka_unit_test(upsample_in_consumer),
        cmocka_unit_test(siblings),
        cmocka_unit_test(reductions_in_producer),
        cmocka_unit_test(attention_spellings),
        cmocka_unit_test(row_bands),
        cmocka_unit_test(concat_read_in_place),
        cmocka_unit_test(input_packed_by_conv),
        cmocka_unit_test(k_blocks),
        cmocka_unit_test(tile_prefetch),
        cmocka_unit_test(weight_panels),
        cmocka_unit_test(create_time),
        cmocka_unit_test(weight_transpose_at_create_time),
        cmocka_unit_test(plan_api),
        cmocka_unit_test(memory_plan),
    };
    return cmocka_run_group_tests_name("fusion", tests, NULL, NULL);
}
