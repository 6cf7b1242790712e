/*
 * test_jit: Graph -> LoopProgram -> JIT kernel, end to end. Small specs of every op family
 * (elementwise with broadcasting and NaN, the transcendental unaries, reductions, softmax,
 * convolutions, linear, matmul, mha, pools, upsampling, the seed block at small dims) are
 * scheduled at 4, 8 and 16 lanes, compiled with jit_compile, created with random weights through
 * the fuse_rt_kernel_info the JIT returns and run; every output must match interp_run within
 * 1e-4 * max(1, max |ref|). Thread pools of 2 and 3 must give results bit-identical to one
 * thread, and so must the kernels compiled on 1, 2 or 3 threads. Also: create errors,
 * jit_emit_llvm's text, the info's descriptors, and streaming stores at every alignment.
 * In a build without LLVM the binary only reports that it has nothing to test.
 */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#ifdef FUSE_WITH_LLVM

#include "arena.h"
#include "fuse_rt.h"
#include "graph.h"
#include "interp.h"
#include "jit.h"
#include "loop.h"
#include "schedule.h"
#include "test_support.h"
#include "util.h"

typedef struct Case {
    const char *name;
    const char *spec;
    const char *dims;
    const char *entry; /* NULL: the only graph */
} Case;

/* Compiles c at vl lanes through the JIT and checks it against interp; with `threads`, also
 * that pools of 2 and 3 threads give bit-identical results. */
static void check_case(const Case *c, uint32_t vl, bool threads)
{
    TestCompile t;
    if (!test_compile(&t, c->spec, c->entry, c->dims))
        fail_msg("%s: %s", c->name, test_diagnostics(&t));
    LoopProgram *p = schedule_graph(&t.cx, t.graph, vl);
    assert_non_null(p);
    assert_true(loop_verify(p, stderr));
    Jit *jit = jit_compile(&t.cx, p, NULL);
    if (!jit)
        fail_msg("%s: jit_compile: %s", c->name, test_diagnostics(&t));
    const Graph *g = t.graph;
    TestData d;
    test_data_new(&d, g, 12345);
    test_data_interp(&d, g);
    const fuse_rt_kernel_info *info = jit_kernel_info(jit);
    test_data_run(info, g, &d, 1);
    char what[128];
    snprintf(what, sizeof what, "%s (vl %u)", c->name, vl);
    test_data_compare(g, &d, what);
    if (threads) {
        float **one = calloc(g->noutputs + 1, sizeof(float *));
        for (uint32_t o = 0; o < g->noutputs; o++) {
            size_t n = (size_t)shape_numel(&g->outputs[o]->shape);
            one[o] = malloc(n * sizeof(float) + 4);
            memcpy(one[o], d.got[o], n * sizeof(float));
        }
        for (int th = 2; th <= 3; th++) {
            test_data_run(info, g, &d, th);
            for (uint32_t o = 0; o < g->noutputs; o++) {
                size_t n = (size_t)shape_numel(&g->outputs[o]->shape);
                if (memcmp(one[o], d.got[o], n * sizeof(float)) != 0)
                    fail_msg("%s (vl %u): %d threads differ from 1", c->name, vl, th);
            }
        }
        for (uint32_t o = 0; o < g->noutputs; o++)
            free(one[o]);
        free(one);
    }
    test_data_free(&d, g);
    jit_free(jit);
    test_compile_free(&t);
}

static void run_cases(const Case *cases, size_t n)
{
    static const uint32_t widths[] = {4, 8, 16};
    for (size_t i = 0; i < n; i++)
        for (size_t w = 0; w < countof(widths); w++)
            check_case(&cases[i], widths[w], false);
}

#define G(sig, body) "fuse 1\ngraph g(" sig " {\n" body "\n}\n"

static void elementwise_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"relu", G("x: f32[2,3,5,7]) -> f32[2,3,5,7]", "return relu(x)"), NULL, NULL},
        {"bcast_gate", G("x: f32[2,5,7,9], g: f32[2,5,1,1]) -> f32[2,5,7,9]", "return x * g"), NULL,
         NULL},
        {"bcast_row",
         G("x: f32[2,3,5,7], r: f32[7]) -> f32[2,3,5,7]", "return max(x, r) - min(r, x)"), NULL,
         NULL},
        {"bcast_both",
         G("p: f32[2,1,7,1], q: f32[1,5,1,9]) -> f32[2,5,7,9]", "return p * q + p / 3"), NULL,
         NULL},
        {"big_1d", G("x: f32[40000]) -> f32[40000]", "return 2 * x + 1"), NULL, NULL},
        {"nan_relu", G("x: f32[2,3,5,7]) -> f32[2,3,5,7]", "return relu(sqrt(x))"), NULL, NULL},
        {"nan_minmax", G("x: f32[2,37]) -> f32[2,37]", "return max(sqrt(x), x) + min(x, sqrt(x))"),
         NULL, NULL},
        {"nan_amax", G("x: f32[2,3,5,7]) -> f32[2,3]", "return amax(sqrt(x + 1.5), axes=[2,3])"),
         NULL, NULL},
        {"nan_softmax", G("x: f32[4,37]) -> f32[4,37]", "return softmax(sqrt(x + 1.9), axis=1)"),
         NULL, NULL},
        {"concat",
         G("a: f32[2,3,5], b: f32[2,3,4]) -> f32[2,3,14]", "return concat(a, b, a * 0, axis=-1)"),
         NULL, NULL},
        {"permute", G("x: f32[2,3,5,7]) -> f32[2,5,7,3]", "return permute(x, perm=[0,2,3,1])"),
         NULL, NULL},
    };
    run_cases(cases, countof(cases));
}

static void unary_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"exp", G("x: f32[3,37]) -> f32[3,37]", "return exp(x * 40)"), NULL, NULL},
        {"tanh", G("x: f32[3,37]) -> f32[3,37]", "return tanh(x * 5) + tanh(x * 0.2)"), NULL, NULL},
        {"sigmoid", G("x: f32[3,37]) -> f32[3,37]", "return sigmoid(x * 50) + sigmoid(x)"), NULL,
         NULL},
        {"gelu", G("x: f32[2,17]) -> f32[2,17]", "return gelu(x * 3) + gelu(x, approximate=tanh)"),
         NULL, NULL},
        {"unary_chain",
         G("x: f32[3,37]) -> f32[3,37]",
           "return sigmoid(x) + tanh(x) * exp(x) - silu(x) + abs(neg(x))"),
         NULL, NULL},
        {"sqrt_rsqrt",
         G("x: f32[1,1]) -> f32[1,1]", "return sqrt(abs(x) + 0.1) + rsqrt(abs(x) + 1)"), NULL,
         NULL},
    };
    run_cases(cases, countof(cases));
}

static void reduce_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"mean_hw", G("x: f32[2,3,5,7]) -> f32[2,3]", "return mean(x, axes=[2,3])"), NULL, NULL},
        {"mean_c", G("x: f32[2,3,5,7]) -> f32[2,5,7]", "return mean(x, axes=[1])"), NULL, NULL},
        {"sum_long", G("x: f32[4,33]) -> f32[4]", "return sum(x, axes=[1])"), NULL, NULL},
        {"amax_c", G("x: f32[2,3,5,7]) -> f32[2,1,5,7]", "return amax(x, axes=[1], keepdim=true)"),
         NULL, NULL},
        {"amin_3", G("x: f32[2,3,5,37]) -> f32[2,3,5]", "return amin(x, axes=[3])"), NULL, NULL},
        {"softmax_last", G("x: f32[2,3,5,7]) -> f32[2,3,5,7]", "return softmax(20 * x, axis=-1)"),
         NULL, NULL},
        {"softmax_axis1", G("x: f32[2,3,5,7]) -> f32[2,3,5,7]", "return softmax(x, axis=1)"), NULL,
         NULL},
        {"layernorm", G("x: f32[3,37]) -> f32[3,37]", "return layernorm(x, eps=1e-3) @ln"), NULL,
         NULL},
        {"batchnorm2d", G("x: f32[2,5,7,9]) -> f32[2,5,7,9]", "return batchnorm2d(x) @bn"), NULL,
         NULL},
    };
    run_cases(cases, countof(cases));
}

static void conv_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"conv1x1",
         G("x: f32[2,7,13,17]) -> f32[2,8,13,17]", "return conv2d(x, out=8, kernel=1) @c"), NULL,
         NULL},
        {"conv1x1_dot",
         G("x: f32[2,40,1,1]) -> f32[2,6,1,1]", "return conv2d(x, out=6, kernel=1) @c"), NULL,
         NULL},
        {"conv3_pad1",
         G("x: f32[2,3,13,17]) -> f32[2,4,13,17]",
           "return conv2d(x, out=4, kernel=3, padding=1) @c"),
         NULL, NULL},
        {"conv3_wide",
         G("x: f32[1,2,9,40]) -> f32[1,16,9,40]",
           "return conv2d(x, out=16, kernel=3, padding=1) @c"),
         NULL, NULL},
        {"conv_groups",
         G("x: f32[2,4,13,17]) -> f32[2,6,7,9]",
           "return conv2d(x, out=6, kernel=3, stride=2, padding=2, dilation=2, groups=2) @c"),
         NULL, NULL},
        {"conv_depthwise",
         G("x: f32[1,4,9,29]) -> f32[1,4,9,29]",
           "return conv2d(x, out=4, kernel=[3,5], padding=[1,2], groups=4) @c"),
         NULL, NULL},
        {"conv1x1_stride2",
         G("x: f32[1,3,9,9]) -> f32[1,2,5,5]", "return conv2d(x, out=2, kernel=1, stride=2) @c"),
         NULL, NULL},
        /* strides past the kernel, a kernel too wide to unroll: each tap's phase and offset
         * computed in the loop */
        {"conv_patchify",
         G("x: f32[2,3,45,50]) -> f32[2,12,3,4]",
           "return conv2d(x, out=12, kernel=[11,13], stride=[14,12], padding=[1,2], groups=3) @c"),
         NULL, NULL},
        {"conv_stride3_dilated",
         G("x: f32[1,4,17,23]) -> f32[1,8,5,7]",
           "return conv2d(x, out=8, kernel=3, stride=3, padding=1, dilation=2) @c"),
         NULL, NULL},
        /* one output channel a group: tiles of 8 vectors, a short remainder split in two
         * (17 vectors: 8 + 4 + 5) or replacing the only whole tile (12: 6 + 6), a last part */
        {"conv_one_channel_tiles",
         G("x: f32[1,2,6,137]) -> f32[1,1,6,137]",
           "return conv2d(x, out=1, kernel=5, padding=4, dilation=2) @c"),
         NULL, NULL},
        {"conv_depthwise_wide",
         G("x: f32[2,3,5,100]) -> f32[2,3,5,100]",
           "return conv2d(x, out=3, kernel=3, padding=1, groups=3) @c"),
         NULL, NULL},
    };
    run_cases(cases, countof(cases));
}

static void contraction_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"linear4", G("x: f32[2,3,5,13]) -> f32[2,3,5,37]", "return linear(x, out=37) @fc"), NULL,
         NULL},
        {"linear_dot", G("x: f32[2,3,40]) -> f32[2,3,3]", "return linear(x, out=3) @fc"), NULL,
         NULL},
        {"matmul_2d", G("a: f32[5,7], b: f32[7,3]) -> f32[5,3]", "return matmul(a, b)"), NULL,
         NULL},
        {"matmul_wide", G("a: f32[8,7], b: f32[7,53]) -> f32[8,53]", "return matmul(a, b)"), NULL,
         NULL},
        {"matmul_bcast",
         G("a: f32[2,1,5,7], b: f32[3,7,4]) -> f32[2,3,5,4]", "return matmul(a, b)"), NULL, NULL},
        {"matmul_dot_t", G("a: f32[2,5,40], b: f32[2,40,3]) -> f32[2,5,3]", "return matmul(a, b)"),
         NULL, NULL},
        {"mha",
         G("q: f32[2,5,12], k: f32[2,7,12], v: f32[2,7,12]) -> f32[2,5,12]",
           "return mha(q, k, v, heads=3) @attn"),
         NULL, NULL},
        {"mha_wide", G("x: f32[1,19,32]) -> f32[1,19,32]", "return mha(x, x, x, heads=1) @attn"),
         NULL, NULL},
        /* enough query tiles that pairs of them take each key block in turn */
        {"mha_query_groups",
         G("x: f32[2,64,32]) -> f32[2,64,32]", "return mha(x, x, x, heads=4) @attn"), NULL, NULL},
        {"attention_query_groups",
         G("q: f32[2,256,16], k: f32[2,96,16], v: f32[2,96,8]) -> f32[2,256,8]",
           "return matmul(softmax(matmul(q, transpose(k, dims=[1, 2])) * 0.25, axis=-1), v)"),
         NULL, NULL},
    };
    run_cases(cases, countof(cases));
}

static void pool_and_upsample_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"avgpool",
         G("x: f32[2,3,13,17]) -> f32[2,3,7,9]",
           "return avgpool2d(x, kernel=3, stride=2, padding=1)"),
         NULL, NULL},
        {"maxpool",
         G("x: f32[2,3,13,17]) -> f32[2,3,7,9]",
           "return maxpool2d(x, kernel=3, stride=2, padding=1)"),
         NULL, NULL},
        {"nearest_size",
         G("x: f32[2,3,7,9]) -> f32[2,3,17,20]", "return upsample(x, size=[17,20])"), NULL, NULL},
        {"nearest_46_111",
         G("x: f32[1,2,14,9]) -> f32[1,2,46,111]", "return upsample(x, size=[46,111])"), NULL,
         NULL},
        {"bilinear_ac_false",
         G("x: f32[2,3,7,13]) -> f32[2,3,17,20]",
           "return upsample(x, size=[17,20], mode=bilinear)"),
         NULL, NULL},
        {"bilinear_ac_true",
         G("x: f32[2,3,7,13]) -> f32[2,3,17,20]",
           "return upsample(x, size=[17,20], mode=bilinear, align_corners=true)"),
         NULL, NULL},
    };
    run_cases(cases, countof(cases));
}

/* ---- the math expansions to <= 2 ulp (as test_emit_c checks the C generator's) ---- */

#define I64 ((LoopType){LT_I64, 1})

static LoopBuffer *add_buf(LoopProgram *p, const char *name, LoopBufferKind kind, uint32_t index,
                           int64_t elems)
{
    LoopBuffer *b = loop_add_buffer(p, name, kind, index, elems);
    b->rank = 1;
    b->shape[0] = elems;
    return b;
}

/* y = op(x): a parallel loop of `lanes`-wide vectors, then a scalar tail. */
static LoopProgram *unary_program(Arena *a, LoopOp op, uint32_t lanes, int64_t n)
{
    LoopProgram *p = loop_program_new(a, "un");
    LoopBuffer *x = add_buf(p, "x", BUF_INPUT, 0, n);
    LoopBuffer *y = add_buf(p, "y", BUF_OUTPUT, 0, n);
    LoopKernel *k = loop_add_kernel(p, "apply", "y = op(x), vectors then a scalar tail", false);
    int64_t nv = lanes > 1 ? n / lanes * lanes : 0;
    if (nv) {
        LoopVar *i = loop_var(p, k, "i", I64);
        LoopStmt *body = ls_block(p);
        LoopExpr *v = lx_unary(p, op, lx_load(p, x, lx_var(p, i), lanes));
        ls_append(p, body, ls_store(p, y, lx_var(p, i), v));
        ls_append(p, k->body,
                  ls_for(p, i, lx_const_i(p, 0), lx_const_i(p, nv), lanes, FOR_PARALLEL, body));
    }
    LoopVar *j = loop_var(p, k, "j", I64);
    LoopStmt *body = ls_block(p);
    ls_append(p, body,
              ls_store(p, y, lx_var(p, j), lx_unary(p, op, lx_load(p, x, lx_var(p, j), 1))));
    ls_append(p, k->body, ls_for(p, j, lx_const_i(p, nv), lx_const_i(p, n), 1, FOR_SERIAL, body));
    return p;
}

/* A hand-built loop program, verified and JIT-compiled (the caller frees jit and cx). */
typedef struct HandJit {
    Diag diag;
    Ctx cx;
    Jit *jit;
} HandJit;

static void hand_jit(HandJit *h, const LoopProgram *p)
{
    assert_true(loop_verify(p, stderr));
    diag_init(&h->diag, NULL, stderr);
    ctx_init(&h->cx, NULL, &h->diag);
    h->jit = jit_compile(&h->cx, p, NULL);
    assert_non_null(h->jit);
}

/* Max ulp error of op over the sample at `lanes`, JIT-compiled, on a 2-thread pool. */
static int64_t math_error(LoopOp op, uint32_t lanes, float range, int64_t n)
{
    Arena *a = arena_new(1 << 16);
    HandJit h;
    hand_jit(&h, unary_program(a, op, lanes, n));
    arena_free(a); /* the Jit needs nothing of the program any more */
    const fuse_rt_kernel_info *info = jit_kernel_info(h.jit);
    float *x = test_math_inputs(range, n);
    float *y = malloc((size_t)n * sizeof *y);
    char err[FUSE_RT_ERR_MAX] = "";
    fuse_rt_pool *pool = NULL;
    assert_int_equal(fuse_rt_pool_create(2, &pool, err, sizeof err), 0);
    fuse_rt_kernel *k = NULL;
    assert_int_equal(info->create(NULL, 0, pool, &k, err, sizeof err), 0);
    const float *in[] = {x};
    float *out[] = {y};
    assert_int_equal(info->run(k, in, out, err, sizeof err), 0);
    int64_t worst = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t d = test_ulp_distance(y[i], (float)test_math_reference(op, (double)x[i]));
        if (d > worst) {
            worst = d;
            if (d > 2)
                fprintf(stderr, "%s(%a) = %a, want %a (%lld ulp)\n", loop_op_name(op), (double)x[i],
                        (double)y[i], test_math_reference(op, (double)x[i]), (long long)d);
        }
    }
    info->destroy(k);
    fuse_rt_pool_destroy(pool);
    jit_free(h.jit);
    ctx_free(&h.cx);
    free(x);
    free(y);
    return worst;
}

static void math_ulp(void **state)
{
    (void)state;
    static const LoopOp ops[] = {LOP_EXP, LOP_SIGMOID, LOP_TANH};
    static const float ranges[] = {100.0f, 100.0f, 100.0f};
    for (size_t o = 0; o < countof(ops); o++) {
        assert_true(math_error(ops[o], 16, ranges[o], (1 << 18) + 7) <= 2);
        assert_true(math_error(ops[o], 8, ranges[o], 100003) <= 2);
        assert_true(math_error(ops[o], 4, ranges[o], 100003) <= 2);
        assert_true(math_error(ops[o], 1, ranges[o], 100003) <= 2);
    }
    /* NEG, ABS, SQRT, FLOOR are exact */
    static const LoopOp exact[] = {LOP_NEG, LOP_ABS, LOP_SQRT, LOP_FLOOR};
    for (size_t o = 0; o < countof(exact); o++)
        assert_int_equal(math_error(exact[o], 16, 50.0f, 1003), 0);
}

/* The seed's block (examples/concat_conv.fuse) at small dims, and on 2- and 3-thread pools. */
static void seed_block_and_threads(void **state)
{
    (void)state;
    char *text = test_read_file(FUSE_EXAMPLES_DIR "/concat_conv.fuse");
    static const uint32_t widths[] = {4, 8, 16};
    const Case cases[] = {
        {"seed_block", text, "C=16,H=18,W=22", "fuse_hl"},
        {"seed_dim_reduction", text, "C=8,H=6,W=10", "dim_reduction"},
        {"softmax_threads", G("x: f32[4,37,19]) -> f32[4,37,19]", "return softmax(x, axis=1)"),
         NULL, NULL},
        {"conv_threads",
         G("x: f32[2,3,13,17]) -> f32[2,4,13,17]",
           "return relu(conv2d(x, out=4, kernel=3, padding=1) @c)"),
         NULL, NULL},
    };
    for (size_t i = 0; i < countof(cases); i++)
        for (size_t w = 0; w < countof(widths); w++)
            check_case(&cases[i], widths[w], true);
    free(text);
}

static Jit *compile_spec(TestCompile *t, const char *spec, uint32_t vl, const JitOptions *opt)
{
    if (!test_compile(t, spec, NULL, NULL))
        fail_msg("%s", test_diagnostics(t));
    LoopProgram *p = schedule_graph(&t->cx, t->graph, vl);
    assert_non_null(p);
    Jit *jit = jit_compile(&t->cx, p, opt);
    assert_non_null(jit);
    return jit;
}

/* The kernels compiled on 1, 2 or 3 threads (one module per thread) compute the same bits:
 * the seed block's program has several prepare and run kernels to split. */
static void compile_threads_agree(void **state)
{
    (void)state;
    char *text = test_read_file(FUSE_EXAMPLES_DIR "/concat_conv.fuse");
    TestCompile t;
    if (!test_compile(&t, text, "fuse_hl", "C=16,H=18,W=22"))
        fail_msg("%s", test_diagnostics(&t));
    LoopProgram *p = schedule_graph(&t.cx, t.graph, 8);
    assert_non_null(p);
    assert_true(p->nprepare + p->nkernels >= 3);
    const Graph *g = t.graph;
    size_t n = (size_t)shape_numel(&g->outputs[0]->shape);
    float *first = malloc(n * sizeof(float) + 4);
    for (uint32_t threads = 1; threads <= 3; threads++) {
        JitOptions opt = {.compile_threads = threads};
        Jit *jit = jit_compile(&t.cx, p, &opt);
        if (!jit)
            fail_msg("%u compile threads: %s", threads, test_diagnostics(&t));
        TestData d;
        test_data_new(&d, g, 777);
        test_data_run(jit_kernel_info(jit), g, &d, 1);
        if (threads == 1) {
            test_data_interp(&d, g);
            test_data_compare(g, &d, "seed block, 1 compile thread");
            memcpy(first, d.got[0], n * sizeof(float));
        } else if (memcmp(first, d.got[0], n * sizeof(float)) != 0) {
            fail_msg("%u compile threads differ from 1", threads);
        }
        test_data_free(&d, g);
        jit_free(jit);
    }
    free(first);
    test_compile_free(&t);
    free(text);
}

static void create_errors(void **state)
{
    (void)state;
    TestCompile t;
    Jit *jit = compile_spec(
        &t, G("x: f32[1,3,5,5]) -> f32[1,2,5,5]", "return conv2d(x, out=2, kernel=1) @c"), 8, NULL);
    const fuse_rt_kernel_info *info = jit_kernel_info(jit);
    char err[FUSE_RT_ERR_MAX] = "";
    fuse_rt_kernel *k = (fuse_rt_kernel *)&err; /* must be reset to NULL */
    float w[6] = {0};
    int64_t shape[4] = {2, 3, 1, 1};
    fuse_rt_weight only_weight = {"c.weight", w, 4, shape};
    int rc = info->create(&only_weight, 1, NULL, &k, err, sizeof err);
    assert_int_equal(rc, FUSE_RT_EINVAL);
    assert_null(k);
    assert_non_null(strstr(err, "c.bias"));
    int64_t bad[4] = {2, 3, 3, 1};
    fuse_rt_weight wrong_shape = {"c.weight", w, 4, bad};
    rc = info->create(&wrong_shape, 1, NULL, &k, err, sizeof err);
    assert_int_equal(rc, FUSE_RT_EINVAL);
    assert_true(err[0] != '\0');
    assert_int_equal(info->create(NULL, 0, NULL, NULL, err, sizeof err), FUSE_RT_EINVAL);
    /* run with a NULL input is an error, not a crash */
    float bias[2] = {0};
    int64_t bshape[1] = {2};
    fuse_rt_weight both[2] = {{"c.weight", w, 4, shape}, {"c.bias", bias, 1, bshape}};
    assert_int_equal(info->create(both, 2, NULL, &k, err, sizeof err), 0);
    const float *ins[1] = {NULL};
    float out[50];
    float *outs[1] = {out};
    assert_int_equal(info->run(k, ins, outs, err, sizeof err), FUSE_RT_EINVAL);
    assert_non_null(strstr(err, "input"));
    info->destroy(k);
    info->destroy(NULL);
    jit_free(jit);
    test_compile_free(&t);
}

/* A row of equal values normalizes to exactly 0, so layernorm returns its bias exactly (as
 * PyTorch does), at every vector width and for rows that fill vectors or not. */
static void layernorm_constant_rows(void **state)
{
    (void)state;
    static const char *const specs[] = {
        G("x: f32[2,3,1]) -> f32[2,3,8]", "    y = concat(x, x, x, x, x, x, x, x, axis=2)\n"
                                          "    return layernorm(y) @ln"),
        G("x: f32[2,3,1]) -> f32[2,3,7]", "    y = concat(x, x, x, x, x, x, x, axis=-1)\n"
                                          "    return layernorm(y) @ln"),
    };
    static const uint32_t widths[] = {4, 8, 16};
    for (size_t i = 0; i < countof(specs); i++)
        for (size_t w = 0; w < countof(widths); w++) {
            TestCompile t;
            Jit *jit = compile_spec(&t, specs[i], widths[w], NULL);
            const fuse_rt_kernel_info *info = jit_kernel_info(jit);
            int64_t k = info->outputs[0].shape[2];
            float x[6], weight[8], bias[8], out[48];
            for (int j = 0; j < 6; j++)
                x[j] = 1.1f + 0.37f * (float)j; /* sums of several copies round in f32 */
            for (int j = 0; j < 8; j++) {
                weight[j] = 0.5f + 0.25f * (float)j;
                bias[j] = -0.3f + 0.1f * (float)j;
            }
            int64_t shape[1] = {k};
            fuse_rt_weight table[2] = {{"ln.weight", weight, 1, shape},
                                       {"ln.bias", bias, 1, shape}};
            char err[FUSE_RT_ERR_MAX] = "";
            fuse_rt_kernel *kern = NULL;
            assert_int_equal(info->create(table, 2, NULL, &kern, err, sizeof err), 0);
            const float *ins[1] = {x};
            float *outs[1] = {out};
            assert_int_equal(info->run(kern, ins, outs, err, sizeof err), 0);
            for (int64_t j = 0; j < 6 * k; j++)
                if (out[j] != bias[j % k])
                    fail_msg("spec %zu, vl %u: out[%lld] = %.9g, want the bias %.9g", i, widths[w],
                             (long long)j, (double)out[j], (double)bias[j % k]);
            info->destroy(kern);
            jit_free(jit);
            test_compile_free(&t);
        }
}

static void kernel_info_descriptors(void **state)
{
    (void)state;
    TestCompile t;
    Jit *jit = compile_spec(
        &t,
        "fuse 1\ngraph two(a: f32[2,3,5], b: f32[5]) -> (y: f32[2,3,4], z: f32[2,3,5]) "
        "{\n  return linear(a, out=4) @fc, a + b\n}\n",
        16, NULL);
    const fuse_rt_kernel_info *info = jit_kernel_info(jit);
    assert_int_equal(info->abi_version, FUSE_RT_ABI_VERSION);
    assert_string_equal(info->name, "two");
    assert_int_equal(info->ninputs, 2);
    assert_int_equal(info->noutputs, 2);
    assert_int_equal(info->nparams, 2);
    assert_string_equal(info->inputs[0].name, "a");
    assert_int_equal(info->inputs[0].rank, 3);
    assert_int_equal(info->inputs[0].shape[2], 5);
    assert_string_equal(info->inputs[1].name, "b");
    assert_int_equal(info->inputs[1].rank, 1);
    assert_int_equal(info->outputs[0].shape[2], 4);
    assert_int_equal(info->outputs[1].shape[2], 5);
    bool weight = false, bias = false;
    for (uint32_t i = 0; i < info->nparams; i++) {
        weight |= strcmp(info->params[i].name, "fc.weight") == 0 && info->params[i].rank == 2 &&
                  info->params[i].shape[0] == 4 && info->params[i].shape[1] == 5;
        bias |= strcmp(info->params[i].name, "fc.bias") == 0 && info->params[i].rank == 1;
    }
    assert_true(weight && bias);
    assert_true(info->flops > 0 && info->bytes > 0);
    assert_true(info->scratch_bytes >= 0 && info->thread_scratch_bytes >= 0);
    assert_non_null(info->create);
    assert_non_null(info->run);
    assert_non_null(info->destroy);
    /* the Jit owns its copies: the compile's arenas may go first */
    test_compile_free(&t);
    assert_string_equal(info->params[0].name[0] == 'f' ? "f" : "", "f");
    assert_string_equal(info->name, "two");
    jit_free(jit);
}

static void emit_llvm_text(void **state)
{
    (void)state;
    TestCompile t;
    assert_true(
        test_compile(&t, G("x: f32[4,64]) -> f32[4,64]", "return gelu(x) * x + 1"), NULL, NULL));
    LoopProgram *p = schedule_graph(&t.cx, t.graph, 16);
    assert_non_null(p);
    JitOptions opt = {.cpu = "znver4", .features = "+avx512f,+avx512vl,+avx2,+fma"};
    StrBuf out = {0};
    assert_true(jit_emit_llvm(&t.cx, p, &opt, &out));
    assert_non_null(strstr(sb_str(&out), "fma"));
    assert_non_null(strstr(sb_str(&out), "<16 x float>"));
    assert_non_null(strstr(sb_str(&out), "define"));
    assert_null(strstr(sb_str(&out), "@llvm.exp.")); /* scalarized to libm calls */
    assert_null(strstr(sb_str(&out), "fast"));
    sb_free(&out);
    test_compile_free(&t);
}

/* Streaming stores write what plain ones do at every alignment of the output, on 1 and 3
 * threads; the module marks them non-temporal and fences them. */
static void streaming_stores(void **state)
{
    (void)state;
    static const uint32_t widths[] = {4, 8, 16};
    for (size_t w = 0; w < countof(widths); w++) {
        Arena *a = arena_new(1 << 16);
        LoopProgram *p = test_streaming_program(a, widths[w], 1003);
        HandJit h;
        hand_jit(&h, p);
        StrBuf text = {0};
        assert_true(jit_emit_llvm(&h.cx, p, NULL, &text));
        assert_non_null(strstr(sb_str(&text), "!nontemporal"));
        assert_non_null(strstr(sb_str(&text), "sfence"));
        sb_free(&text);
        const fuse_rt_kernel_info *info = jit_kernel_info(h.jit);
        char err[FUSE_RT_ERR_MAX] = "";
        fuse_rt_pool *pool = NULL;
        assert_int_equal(fuse_rt_pool_create(3, &pool, err, sizeof err), 0);
        fuse_rt_kernel *k1 = NULL, *k3 = NULL;
        assert_int_equal(info->create(NULL, 0, NULL, &k1, err, sizeof err), 0);
        assert_int_equal(info->create(NULL, 0, pool, &k3, err, sizeof err), 0);
        test_streaming_check(info, k1, 1003);
        test_streaming_check(info, k3, 1003);
        info->destroy(k1);
        info->destroy(k3);
        fuse_rt_pool_destroy(pool);
        jit_free(h.jit);
        ctx_free(&h.cx);
        arena_free(a);
    }
}

/* Max and min across lanes give the lane-order result bit for bit (NaN payloads and the sign of
 * tied zeros included), whatever order the generated code combines the lanes in. */
static void reduce_lane_order(void **state)
{
    (void)state;
    static const uint32_t widths[] = {4, 8, 16};
    for (size_t w = 0; w < countof(widths); w++) {
        Arena *a = arena_new(1 << 16);
        HandJit h;
        hand_jit(&h, test_reduce_program(a, widths[w]));
        const fuse_rt_kernel_info *info = jit_kernel_info(h.jit);
        char err[FUSE_RT_ERR_MAX] = "";
        fuse_rt_kernel *k = NULL;
        assert_int_equal(info->create(NULL, 0, NULL, &k, err, sizeof err), 0);
        test_reduce_check(info, k, widths[w]);
        info->destroy(k);
        jit_free(h.jit);
        ctx_free(&h.cx);
        arena_free(a);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(elementwise_ops),
        cmocka_unit_test(unary_ops),
        cmocka_unit_test(math_ulp),
        cmocka_unit_test(reduce_ops),
        cmocka_unit_test(conv_ops),
        cmocka_unit_test(contraction_ops),
        cmocka_unit_test(pool_and_upsample_ops),
        cmocka_unit_test(seed_block_and_threads),
        cmocka_unit_test(compile_threads_agree),
        cmocka_unit_test(create_errors),
        cmocka_unit_test(layernorm_constant_rows),
        cmocka_unit_test(kernel_info_descriptors),
        cmocka_unit_test(emit_llvm_text),
        cmocka_unit_test(streaming_stores),
        cmocka_unit_test(reduce_lane_order),
    };
    return cmocka_run_group_tests_name("jit", tests, NULL, NULL);
}

#else

int main(void)
{
    printf("test_jit: built without LLVM (FUSE_WITH_LLVM=OFF): nothing to test\n");
    return 0;
}

#endif
