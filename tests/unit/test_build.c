/*
 * test_build: build_graph (compiler/build.c, dims.c, shape.c) through test_compile: the shape
 * of every op (PyTorch semantics, odd cases included), lowering of sugar ops, upsample ratios,
 * dim binding (--dim over defaults, defaults after overrides, Python arithmetic), block
 * inlining (unification, shadowing, compile-time parameters, scopes), `for` unrolling, weight
 * keys (--prefix, shared scopes), and the exact text of representative build diagnostics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "front.h"
#include "graph.h"
#include "test_support.h"

/* ---- Helpers ---- */

/* Compiles src; fails the test, printing the diagnostics, if no graph was built. */
static Graph *build_ok(TestCompile *t, const char *src, const char *dims)
{
    if (!test_compile(t, src, NULL, dims)) {
        print_message("%s\n---\n%s", src, test_diagnostics(t));
        fail_msg("the spec did not build");
    }
    return t->graph;
}

/* `return expr` in a graph with inputs `params` must build with result type f32[result]
 * (build checks the declared result type, so success means the shape is right). */
static void expect_shape(const char *params, const char *expr, const char *result)
{
    char src[4096];
    snprintf(src, sizeof src, "fuse 1\ngraph g(%s) -> f32[%s] {\n    return %s\n}\n", params,
             result, expr);
    TestCompile t;
    build_ok(&t, src, NULL);
    test_compile_free(&t);
}

/* The spec must fail to build, with exactly these diagnostics. */
static void expect_diag(const char *src, const char *dims, const char *want)
{
    TestCompile t;
    assert_false(test_compile(&t, src, NULL, dims));
    const char *got = test_diagnostics(&t);
    if (strcmp(got, want) != 0)
        print_message("--- want\n%s--- got\n%s", want, got);
    assert_string_equal(got, want);
    test_compile_free(&t);
}

/* The nth node (from 0) of a kind. */
static const Node *nth_op(const Graph *g, OpKind kind, uint32_t nth)
{
    for (uint32_t i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->kind == kind && nth-- == 0)
            return g->nodes[i];
    fail_msg("no node %u of kind %s", nth, op_info[kind].name);
    return NULL;
}

static void assert_shape(const Shape *s, const char *want)
{
    char buf[SHAPE_TEXT_MAX];
    assert_string_equal(shape_format(s, buf, sizeof buf), want);
}

/* The parameter with this key; fails if there is none. */
static const Node *param(const Graph *g, const char *key)
{
    const Node *p = graph_find_param(g, key);
    if (!p)
        fail_msg("no parameter '%s'", key);
    return p;
}

/* ---- Shapes of ops ---- */

static void upsample_shapes(void **state)
{
    (void)state;
    expect_shape("x: f32[1,3,8,8]", "upsample(x, size=[16, 24])", "1,3,16,24");
    expect_shape("x: f32[1,3,8,8]", "upsample(x, size=5, mode=bilinear)", "1,3,5,5");
    expect_shape("x: f32[1,3,7,7]", "upsample(x, scale=1.5)", "1,3,10,10");
    expect_shape("x: f32[1,3,8,8]", "upsample(x, scale=[2, 0.5], mode=\"bilinear\")", "1,3,16,4");
    expect_shape("x: f32[1,3,3,3]", "upsample(x, scale=2)", "1,3,6,6");
}

/* The ratio PyTorch computes (graph.h): in/out for size=, 1/s for scale=, (in-1)/(out-1) with
 * align_corners, all in f32. */
static void upsample_ratios(void **state)
{
    (void)state;
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(x: f32[1,1,2,7]) -> (a: f32[1,1,82,17], "
                        "b: f32[1,1,82,17], c: f32[1,1,3,10], d: f32[1,1,1,1]) {\n"
                        "  a = upsample(x, size=[82, 17], mode=bilinear)\n"
                        "  b = upsample(x, size=[82, 17], mode=bilinear, align_corners=true)\n"
                        "  c = upsample(x, scale=1.5)\n"
                        "  d = upsample(x, size=1, mode=bilinear, align_corners=true)\n"
                        "  return a, b, c, d\n}\n",
                        NULL);
    const Node *a = nth_op(g, OP_UPSAMPLE, 0), *b = nth_op(g, OP_UPSAMPLE, 1);
    const Node *c = nth_op(g, OP_UPSAMPLE, 2), *d = nth_op(g, OP_UPSAMPLE, 3);
    assert_true(a->attr.upsample.bilinear && !a->attr.upsample.align_corners);
    assert_true(a->attr.upsample.ratio_h == (float)2 / (float)82);
    assert_true(a->attr.upsample.ratio_w == (float)7 / (float)17);
    assert_false(a->attr.upsample.from_scale);
    assert_true(b->attr.upsample.align_corners);
    assert_true(b->attr.upsample.ratio_h == (float)1 / (float)81);
    assert_true(b->attr.upsample.ratio_w == (float)6 / (float)16);
    assert_false(c->attr.upsample.bilinear);
    assert_true(c->attr.upsample.from_scale);
    assert_true(c->attr.upsample.scale_h == 1.5f);
    assert_true(c->attr.upsample.ratio_h == (float)(1.0 / 1.5));
    assert_true(c->attr.upsample.ratio_w == (float)(1.0 / 1.5));
    assert_true(d->attr.upsample.ratio_h == 0.0f); /* out == 1 with align_corners */
    test_compile_free(&t);
}

static void concat_shapes(void **state)
{
    (void)state;
    const char *p = "a: f32[2,3,4], b: f32[2,5,4], c: f32[2,1,4]";
    expect_shape(p, "concat(a, b, c, axis=1)", "2,9,4");
    expect_shape(p, "concat(a, b, axis=-2)", "2,8,4");
    expect_shape(p, "concat(a, axis=0)", "2,3,4");
    expect_shape("a: f32[2,3], b: f32[2,3]", "concat(a, b, axis=-1)", "2,6");
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(a: f32[2,3], b: f32[2,3]) -> f32[2,6] {\n"
                        "  return concat(a, b, axis=-1)\n}\n",
                        NULL);
    assert_int_equal(nth_op(g, OP_CONCAT, 0)->attr.concat.axis, 1);
    test_compile_free(&t);
}

static void conv2d_shapes(void **state)
{
    (void)state;
    const char *x = "x: f32[2,4,8,8]";
    expect_shape(x, "conv2d(x, out=6, kernel=3) @c", "2,6,6,6");
    expect_shape(x, "conv2d(x, out=6, kernel=3, padding=1) @c", "2,6,8,8");
    expect_shape(x, "conv2d(x, out=6, kernel=3, stride=2, padding=1) @c", "2,6,4,4");
    expect_shape(x, "conv2d(x, out=6, kernel=3, dilation=2) @c", "2,6,4,4");
    expect_shape(x, "conv2d(x, out=6, kernel=[1, 3], padding=[0, 1]) @c", "2,6,8,8");
    expect_shape(x, "conv2d(x, out=6, kernel=2, stride=[3, 2]) @c", "2,6,3,4");
    expect_shape("x: f32[1,1,7,5]", "conv2d(x, out=1, kernel=3, stride=2, dilation=[2, 1]) @c",
                 "1,1,2,2");
    expect_shape(x, "conv2d(x, out=8, kernel=8) @c", "2,8,1,1");
}

static void conv2d_weights(void **state)
{
    (void)state;
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(x: f32[2,4,8,8]) -> (a: f32[2,6,8,8], b: f32[2,6,8,8]) {\n"
                        "  a = conv2d(x, out=6, kernel=3, padding=1, groups=2) @grouped\n"
                        "  b = conv2d(x, out=6, kernel=1, bias=false) @plain\n"
                        "  return a, b\n}\n",
                        NULL);
    assert_shape(&param(g, "grouped.weight")->shape, "[6,2,3,3]");
    assert_shape(&param(g, "grouped.bias")->shape, "[6]");
    assert_int_equal(param(g, "grouped.weight")->attr.param.init, INIT_FAN_IN);
    assert_shape(&param(g, "plain.weight")->shape, "[6,4,1,1]");
    assert_null(graph_find_param(g, "plain.bias"));
    const Node *a = nth_op(g, OP_CONV2D, 0), *b = nth_op(g, OP_CONV2D, 1);
    assert_int_equal(a->ninputs, 3);
    assert_int_equal(b->ninputs, 2);
    assert_int_equal(a->attr.conv.groups, 2);
    assert_int_equal(a->attr.conv.pad_w, 1);
    assert_false(b->attr.conv.bias);
    test_compile_free(&t);
}

static void norm_shapes_and_weights(void **state)
{
    (void)state;
    expect_shape("x: f32[2,4,8,8]", "batchnorm2d(x) @bn", "2,4,8,8");
    expect_shape("x: f32[2,4]", "batchnorm1d(x) @bn", "2,4");
    expect_shape("x: f32[2,4,9]", "batchnorm1d(x, eps=0.001) @bn", "2,4,9");
    expect_shape("x: f32[2,5,7]", "layernorm(x) @ln", "2,5,7");
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(x: f32[2,4,8,8], y: f32[3,7]) -> (a: f32[2,4,8,8], "
                        "b: f32[3,7]) {\n"
                        "  a = batchnorm2d(x, eps=1e-3) @bn\n  b = layernorm(y) @ln\n"
                        "  return a, b\n}\n",
                        NULL);
    const char *slots[] = {"weight", "bias", "running_mean", "running_var"};
    const ParamInit inits[] = {INIT_NEAR_ONE, INIT_SMALL, INIT_SMALL, INIT_POSITIVE};
    const Node *bn = nth_op(g, OP_BATCHNORM, 0);
    for (uint32_t i = 0; i < 4; i++) {
        char key[64];
        snprintf(key, sizeof key, "bn.%s", slots[i]);
        assert_ptr_equal(bn->inputs[i + 1], param(g, key));
        assert_shape(&param(g, key)->shape, "[4]");
        assert_int_equal(param(g, key)->attr.param.init, inits[i]);
    }
    assert_true(bn->attr.norm.eps == 1e-3f);
    assert_shape(&param(g, "ln.weight")->shape, "[7]");
    assert_int_equal(param(g, "ln.weight")->attr.param.init, INIT_NEAR_ONE);
    assert_int_equal(param(g, "ln.bias")->attr.param.init, INIT_SMALL);
    assert_true(nth_op(g, OP_LAYERNORM, 0)->attr.norm.eps == 1e-5f);
    test_compile_free(&t);
}

static void linear_shapes(void **state)
{
    (void)state;
    expect_shape("x: f32[2,3,16]", "linear(x, out=8) @fc", "2,3,8");
    expect_shape("x: f32[16]", "linear(x, out=8, bias=false) @fc", "8");
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(x: f32[2,16]) -> f32[2,8] {\n"
                        "  return linear(x, out=8) @fc\n}\n",
                        NULL);
    assert_shape(&param(g, "fc.weight")->shape, "[8,16]");
    assert_shape(&param(g, "fc.bias")->shape, "[8]");
    assert_int_equal(param(g, "fc.bias")->attr.param.init, INIT_FAN_IN);
    test_compile_free(&t);
}

static void mha_shapes_and_weights(void **state)
{
    (void)state;
    expect_shape("q: f32[2,5,8], k: f32[2,7,8]", "mha(q, k, k, heads=2) @attn", "2,5,8");
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(q: f32[2,5,8], k: f32[2,7,8]) -> (a: f32[2,5,8], "
                        "b: f32[2,5,8]) {\n"
                        "  a = mha(q, k, k, heads=4) @attn\n"
                        "  b = mha(q, k, k, heads=1, bias=false) @nob\n"
                        "  return a, b\n}\n",
                        NULL);
    const Node *a = nth_op(g, OP_MHA, 0), *b = nth_op(g, OP_MHA, 1);
    assert_int_equal(a->ninputs, 7);
    assert_int_equal(b->ninputs, 5);
    assert_int_equal(a->attr.mha.heads, 4);
    assert_ptr_equal(a->inputs[3], param(g, "attn.in_proj_weight"));
    assert_ptr_equal(a->inputs[4], param(g, "attn.in_proj_bias"));
    assert_ptr_equal(a->inputs[5], param(g, "attn.out_proj.weight"));
    assert_ptr_equal(a->inputs[6], param(g, "attn.out_proj.bias"));
    assert_shape(&param(g, "attn.in_proj_weight")->shape, "[24,8]");
    assert_shape(&param(g, "attn.in_proj_bias")->shape, "[24]");
    assert_shape(&param(g, "attn.out_proj.weight")->shape, "[8,8]");
    assert_shape(&param(g, "attn.out_proj.bias")->shape, "[8]");
    assert_ptr_equal(b->inputs[3], param(g, "nob.in_proj_weight"));
    assert_ptr_equal(b->inputs[4], param(g, "nob.out_proj.weight"));
    test_compile_free(&t);
}

static void param_op(void **state)
{
    (void)state;
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(x: f32[2,3]) -> f32[2,3] {\n"
                        "  return x + param(shape=[3]) @scale + param(shape=[2, 3]) @b.shift\n}\n",
                        NULL);
    assert_shape(&param(g, "scale")->shape, "[3]");
    assert_shape(&param(g, "b.shift")->shape, "[2,3]");
    assert_int_equal(param(g, "scale")->attr.param.init, INIT_FAN_IN);
    assert_int_equal(g->nparams, 2);
    test_compile_free(&t);
}

static void elementwise_shapes(void **state)
{
    (void)state;
    const char *ops[] = {"relu",  "sigmoid", "tanh", "exp", "sqrt",
                         "rsqrt", "silu",    "abs",  "neg", "gelu"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        char expr[64];
        snprintf(expr, sizeof expr, "%s(x)", ops[i]);
        expect_shape("x: f32[2,3]", expr, "2,3");
    }
    expect_shape("x: f32[2,3]", "gelu(x, approximate=tanh)", "2,3");
    expect_shape("a: f32[4,1,3], b: f32[5,1]", "min(a, b)", "4,5,3");
    expect_shape("a: f32[4,1,3], b: f32[3]", "max(a, b)", "4,1,3");
    expect_shape("a: f32[2,3,4,5], g: f32[2,3,1,1]", "a * g + a / g - g", "2,3,4,5");
    expect_shape("a: f32[2,3]", "-a * 0.5 + 1", "2,3");
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(x: f32[2]) -> f32[2] {\n"
                        "  return gelu(x, approximate=\"tanh\") - -x\n}\n",
                        NULL);
    assert_true(nth_op(g, OP_GELU, 0)->attr.gelu.tanh);
    assert_int_equal(graph_count_op(g, OP_NEG), 1);
    test_compile_free(&t);
}

static void reduce_shapes(void **state)
{
    (void)state;
    const char *x = "x: f32[2,3,4,5]";
    expect_shape(x, "mean(x, axes=[2, 3])", "2,3");
    expect_shape(x, "sum(x, axes=-1)", "2,3,4");
    expect_shape(x, "amax(x, axes=[1, -1], keepdim=true)", "2,1,4,1");
    expect_shape(x, "amin(x, axes=0)", "3,4,5");
    expect_shape(x, "view(sum(x, axes=[0, 1, 2, 3]), shape=[1])", "1");
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(x: f32[2,3,4]) -> f32[2,1,4] {\n"
                        "  return mean(x, axes=-2, keepdim=true)\n}\n",
                        NULL);
    const Node *m = nth_op(g, OP_MEAN, 0);
    assert_true(m->attr.reduce.axes[1] && !m->attr.reduce.axes[0] && !m->attr.reduce.axes[2]);
    assert_true(m->attr.reduce.keepdim);
    test_compile_free(&t);
}

static void softmax_and_layout_shapes(void **state)
{
    (void)state;
    const char *x = "x: f32[2,3,4,5]";
    expect_shape(x, "softmax(x, axis=-1)", "2,3,4,5");
    expect_shape(x, "permute(x, perm=[0, 2, 3, 1])", "2,4,5,3");
    expect_shape(x, "permute(x, perm=[-1, 0, 1, 2])", "5,2,3,4");
    expect_shape(x, "view(x, shape=[6, -1])", "6,20");
    expect_shape(x, "view(x, shape=[-1])", "120");
    expect_shape(x, "flatten(x)", "120");
    expect_shape(x, "flatten(x, start=1)", "2,60");
    expect_shape(x, "flatten(x, start=1, end=2)", "2,12,5");
    expect_shape(x, "flatten(x, start=-2, end=-1)", "2,3,20");
    expect_shape(x, "transpose(x, dims=[1, -1])", "2,5,4,3");
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(x: f32[2,3,4]) -> (a: f32[2,4,3], b: f32[2,12], "
                        "c: f32[2,3,4]) {\n"
                        "  a = transpose(x, dims=[-1, 1])\n  b = flatten(x, start=1)\n"
                        "  c = softmax(x, axis=-2)\n  return a, b, c\n}\n",
                        NULL);
    const Node *p = nth_op(g, OP_PERMUTE, 0);
    assert_int_equal(p->attr.permute.perm[0], 0);
    assert_int_equal(p->attr.permute.perm[1], 2);
    assert_int_equal(p->attr.permute.perm[2], 1);
    assert_int_equal(graph_count_op(g, OP_VIEW), 1);
    assert_int_equal(nth_op(g, OP_SOFTMAX, 0)->attr.softmax.axis, 1);
    test_compile_free(&t);
}

static void matmul_shapes(void **state)
{
    (void)state;
    expect_shape("a: f32[2,3], b: f32[3,4]", "matmul(a, b)", "2,4");
    expect_shape("a: f32[3], b: f32[3,4]", "matmul(a, b)", "4");
    expect_shape("a: f32[2,3], b: f32[3]", "matmul(a, b)", "2");
    expect_shape("a: f32[5,1,2,3], b: f32[4,3,6]", "matmul(a, b)", "5,4,2,6");
    expect_shape("a: f32[7,2,3], b: f32[3]", "matmul(a, b)", "7,2");
    expect_shape("a: f32[3], b: f32[7,3,2]", "matmul(a, b)", "7,2");
    /* 1-d . 1-d is a 0-d dot product */
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(a: f32[3], b: f32[3]) -> f32[1] {\n"
                        "  d = matmul(a, b)\n  return view(d, shape=[1])\n}\n",
                        NULL);
    assert_int_equal(nth_op(g, OP_MATMUL, 0)->shape.rank, 0);
    test_compile_free(&t);
}

static void pool_shapes(void **state)
{
    (void)state;
    const char *x = "x: f32[1,2,8,9]";
    expect_shape(x, "maxpool2d(x, kernel=2)", "1,2,4,4");
    expect_shape(x, "avgpool2d(x, kernel=3, stride=1, padding=1)", "1,2,8,9");
    expect_shape(x, "avgpool2d(x, kernel=[2, 3], stride=[2, 3])", "1,2,4,3");
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(x: f32[1,1,8,8]) -> f32[1,1,4,4] {\n"
                        "  return maxpool2d(x, kernel=2)\n}\n",
                        NULL);
    const Node *p = nth_op(g, OP_MAXPOOL2D, 0);
    assert_int_equal(p->attr.pool.stride_h, 2);
    assert_int_equal(p->attr.pool.stride_w, 2);
    test_compile_free(&t);
}

/* ---- Dims ---- */

static const char dims_spec[] = "fuse 1\n"
                                "dim Hl = H // 2, N = 1\n"
                                "dim H = 512\n"
                                "graph g(x: f32[N, Hl]) -> f32[N, Hl] {\n  return x\n}\n";

static void dims_defaults_and_overrides(void **state)
{
    (void)state;
    TestCompile t;
    Graph *g = build_ok(&t, dims_spec, NULL);
    assert_shape(&g->inputs[0]->shape, "[1,256]");
    test_compile_free(&t);
    g = build_ok(&t, dims_spec, "H=1024");
    assert_shape(&g->inputs[0]->shape, "[1,512]"); /* the default after the override */
    test_compile_free(&t);
    g = build_ok(&t, dims_spec, "H=1024,Hl=7,N=3");
    assert_shape(&g->inputs[0]->shape, "[3,7]"); /* --dim beats the default */
    test_compile_free(&t);
}

static void dims_python_arithmetic(void **state)
{
    (void)state;
    TestCompile t;
    Graph *g =
        build_ok(&t,
                 "fuse 1\ndim A = -7 // 2 + 10, B = -7 % 3, C = 7 % -3 + 5, D = -(2 - 5) * 2\n"
                 "graph g(x: f32[A, B, C, D]) -> f32[A, B, C, D] {\n  return x\n}\n",
                 NULL);
    assert_shape(&g->inputs[0]->shape, "[6,2,3,6]");
    test_compile_free(&t);
}

static void dims_without_default(void **state)
{
    (void)state;
    const char *src = "fuse 1\ndim T, U = T * 2\ngraph g(x: f32[U]) -> f32[U] {\n"
                      "  return x\n}\n";
    TestCompile t;
    Graph *g = build_ok(&t, src, "T=5");
    assert_shape(&g->inputs[0]->shape, "[10]");
    test_compile_free(&t);
    expect_diag(src, NULL,
                "test.fuse:3:16: error: dim 'U' has no value: it depends on 'T', which has no "
                "default; give it with --dim T=N\n"
                "    3 | graph g(x: f32[U]) -> f32[U] {\n"
                "      |                ^\n"
                "test.fuse:2:5: note: 'T' is declared here without a default\n"
                "    2 | dim T, U = T * 2\n"
                "      |     ^\n");
}

static void dims_errors(void **state)
{
    (void)state;
    expect_diag("fuse 1\ndim H = 4, Z = H // (H - 4)\ngraph g(x: f32[H]) -> f32[H] {\n"
                "  return x\n}\n",
                NULL,
                "test.fuse:2:18: error: division by zero in 'H // (H - 4)': (H - 4) is 0\n"
                "    2 | dim H = 4, Z = H // (H - 4)\n"
                "      |                  ^~\n");
    expect_diag("fuse 1\ndim H = 4, Hl = H // 8\ngraph g(x: f32[H]) -> f32[H] {\n"
                "  return x\n}\n",
                NULL,
                "test.fuse:2:12: error: dim 'Hl' must be at least 1, but H // 8 is 0\n"
                "    2 | dim H = 4, Hl = H // 8\n"
                "      |            ^~~~~~~~~~~\n");
    expect_diag("fuse 1\ndim A = B, B = A + 1\ngraph g(x: f32[A]) -> f32[A] {\n"
                "  return x\n}\n",
                NULL,
                "test.fuse:2:5: error: dims defined in a cycle: A -> B -> A\n"
                "    2 | dim A = B, B = A + 1\n"
                "      |     ^~~~~\n");
    expect_diag("fuse 1\ndim H = 4\ngraph g(x: f32[H]) -> f32[H] {\n  return x\n}\n", "H=0",
                "fusec: error: --dim H=0: a dim must be at least 1\n");
    expect_diag("fuse 1\ndim Hx = 4\ngraph g(x: f32[Hx]) -> f32[Hx] {\n  return x\n}\n", "Hy=2",
                "fusec: error: --dim Hy=2: the file has no dim 'Hy'; did you mean 'Hx'?\n");
    expect_diag("fuse 1\ndim H = 4611686018427387904\ngraph g(x: f32[H * 4]) -> f32[1] {\n"
                "  return x\n}\n",
                NULL,
                "test.fuse:3:18: error: integer overflow: 4611686018427387904 * 4 does not fit "
                "in 64 bits\n"
                "    3 | graph g(x: f32[H * 4]) -> f32[1] {\n"
                "      |                  ^\n");
    expect_diag("fuse 1\ngraph g(x: f32[1048576, 1048576, 2]) -> f32[1] {\n  return x\n}\n", NULL,
                "test.fuse:2:12: error: f32[1048576,1048576,2] has more than 2^40 elements\n"
                "    2 | graph g(x: f32[1048576, 1048576, 2]) -> f32[1] {\n"
                "      |            ^~~~~~~~~~~~~~~~~~~~~~~~\n");
}

static void requires(void **state)
{
    (void)state;
    const char *src = "fuse 1\ndim H = 6\nrequire H % 2 == 0, H >= 4\n"
                      "graph g(x: f32[H]) -> f32[H] {\n  return x\n}\n";
    TestCompile t;
    build_ok(&t, src, NULL);
    test_compile_free(&t);
    expect_diag(src, "H=3",
                "test.fuse:3:9: error: requirement 'H % 2 == 0' failed: H % 2 is 1\n"
                "    3 | require H % 2 == 0, H >= 4\n"
                "      |         ^~~~~~~~~~\n"
                "test.fuse:3:21: error: requirement 'H >= 4' failed: H is 3\n"
                "    3 | require H % 2 == 0, H >= 4\n"
                "      |                     ^~~~~~\n");
}

/* ---- Blocks ---- */

static void block_unification_shadows_file_dims(void **state)
{
    (void)state;
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ndim C = 3, N = 1\n"
                        "block f(x: f32[N, C]) -> f32[N, C] {\n"
                        "  return linear(x, out=C) @fc\n}\n"
                        "graph g(x: f32[2, 16]) -> f32[2, 16] {\n  return f(x) @f\n}\n",
                        NULL);
    assert_shape(&param(g, "f.fc.weight")->shape, "[16,16]");
    test_compile_free(&t);
}

static void block_dim_expressions(void **state)
{
    (void)state;
    const char *src = "fuse 1\n"
                      "block f(a: f32[N, C], b: f32[N, C * 2], c: f32[K]; K: int) -> f32[N, C] {\n"
                      "  return a\n}\n"
                      "graph g(a: f32[2, 3], b: f32[2, 6], c: f32[5]) -> f32[2, 3] {\n"
                      "  return f(a, b, c, K=5)\n}\n";
    TestCompile t;
    build_ok(&t, src, NULL);
    test_compile_free(&t);
}

static void block_conflict_diagnostic(void **state)
{
    (void)state;
    expect_diag("fuse 1\n"
                "block f(l: f32[N, Cl], h: f32[N, Cl]) -> f32[N, Cl] {\n  return l + h\n}\n"
                "graph g(a: f32[1, 128], b: f32[1, 64]) -> f32[1, 128] {\n"
                "  return f(a, b)\n}\n",
                NULL,
                "test.fuse:6:15: error: in this call of 'f', 'Cl' is 64 from argument 'h' "
                "(f32[1,64]) but 128 from argument 'l'\n"
                "    6 |   return f(a, b)\n"
                "      |               ^\n"
                "test.fuse:2:19: note: 'Cl' was bound to 128 by argument 'l'\n"
                "    2 | block f(l: f32[N, Cl], h: f32[N, Cl]) -> f32[N, Cl] {\n"
                "      |                   ^~\n");
}

static void block_const_params(void **state)
{
    (void)state;
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ndim C = 8\n"
                        "block f(x: f32[N, C]; r: int = 4, eps: float = 0.5, b: bool = true) {\n"
                        "  y = linear(x, out=C // r, bias=b) @fc\n"
                        "  return layernorm(y, eps=eps) @ln * eps\n}\n"
                        "graph g(x: f32[2, C]) -> (a: f32[2, 2], b: f32[2, 4]) {\n"
                        "  a = f(x) @one\n  b = f(x, r=2, eps=0.25, b=false) @two\n"
                        "  return a, b\n}\n",
                        NULL);
    assert_shape(&param(g, "one.fc.weight")->shape, "[2,8]");
    assert_non_null(graph_find_param(g, "one.fc.bias"));
    assert_shape(&param(g, "two.fc.weight")->shape, "[4,8]");
    assert_null(graph_find_param(g, "two.fc.bias"));
    assert_true(nth_op(g, OP_LAYERNORM, 0)->attr.norm.eps == 0.5f);
    assert_true(nth_op(g, OP_LAYERNORM, 1)->attr.norm.eps == 0.25f);
    assert_true(nth_op(g, OP_SCALAR, 1)->attr.scalar.value == 0.25f);
    test_compile_free(&t);
}

static void block_default_uses_pattern_var(void **state)
{
    (void)state;
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\nblock f(x: f32[N, C]; out: int = C * 2) -> f32[N, out] {\n"
                        "  return linear(x, out=out) @fc\n}\n"
                        "graph g(x: f32[2, 3]) -> f32[2, 6] {\n  return f(x) @f\n}\n",
                        NULL);
    assert_shape(&param(g, "f.fc.weight")->shape, "[6,3]");
    test_compile_free(&t);
}

static void block_scopes(void **state)
{
    (void)state;
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\n"
                        "block inner(x: f32[N, C]) { return linear(x, out=C) @fc }\n"
                        "block outer(x: f32[N, C]) { return inner(inner(x) @a) }\n"
                        "graph g(x: f32[2, 3]) -> f32[2, 3] {\n  return outer(x) @top.mid\n}\n",
                        NULL);
    assert_int_equal(g->nparams, 4);
    assert_string_equal(g->params[0]->attr.param.key, "top.mid.a.fc.weight");
    assert_string_equal(g->params[2]->attr.param.key, "top.mid.fc.weight");
    test_compile_free(&t);
}

/* ---- Loops, rebinding, scopes, prefix ---- */

static void for_unrolls_with_scopes(void **state)
{
    (void)state;
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(x: f32[1, 4]) -> f32[1, 4] {\n"
                        "  for i in 0..3 {\n"
                        "    x = relu(linear(x, out=4) @layers.{i}.fc)\n"
                        "    x = x * param(shape=[4]) @layer{i + 1}\n"
                        "  }\n  return x\n}\n",
                        NULL);
    assert_int_equal(graph_count_op(g, OP_LINEAR), 3);
    assert_non_null(graph_find_param(g, "layers.0.fc.weight"));
    assert_non_null(graph_find_param(g, "layers.2.fc.bias"));
    assert_non_null(graph_find_param(g, "layer1"));
    assert_non_null(graph_find_param(g, "layer3"));
    assert_null(graph_find_param(g, "layer0"));
    /* the output is the last iteration's value */
    assert_int_equal(g->outputs[0]->kind, OP_MUL);
    assert_ptr_equal(g->outputs[0], g->nodes[g->nnodes - 1]);
    test_compile_free(&t);
}

static void for_rebinding_and_empty(void **state)
{
    (void)state;
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ndim K = 2\ngraph g(x: f32[3]) -> f32[3] {\n"
                        "  y = x\n  for i in K..K { y = relu(y) }\n"
                        "  for i in 0..K * 2 { y = y + i }\n  return y\n}\n",
                        NULL);
    assert_int_equal(graph_count_op(g, OP_RELU), 0);
    assert_int_equal(graph_count_op(g, OP_ADD), 4);
    assert_true(nth_op(g, OP_SCALAR, 3)->attr.scalar.value == 3.0f);
    test_compile_free(&t);
}

static void shared_scope(void **state)
{
    (void)state;
    TestCompile t;
    Graph *g = build_ok(&t,
                        "fuse 1\ngraph g(x: f32[1, 4]) -> f32[1, 4] {\n"
                        "  for i in 0..2 { x = linear(x, out=4) @shared }\n  return x\n}\n",
                        NULL);
    assert_int_equal(g->nparams, 2);
    const Node *a = nth_op(g, OP_LINEAR, 0), *b = nth_op(g, OP_LINEAR, 1);
    assert_ptr_equal(a->inputs[1], b->inputs[1]);
    test_compile_free(&t);
    expect_diag("fuse 1\ngraph g(x: f32[1, 4]) -> f32[1, 8] {\n"
                "  y = linear(x, out=4) @fc\n  return linear(y, out=8) @fc\n}\n",
                NULL,
                "test.fuse:4:10: error: weight 'fc.weight' must be f32[8,4] here, but its first "
                "use made it f32[4,4] (a scope used twice shares its weights)\n"
                "    4 |   return linear(y, out=8) @fc\n"
                "      |          ^~~~~~~~~~~~~~~~~~~~\n"
                "test.fuse:3:7: note: 'fc.weight' is first used here\n"
                "    3 |   y = linear(x, out=4) @fc\n"
                "      |       ^~~~~~~~~~~~~~~~~~~~\n");
}

static void prefix(void **state)
{
    (void)state;
    const char *src = "fuse 1\ngraph g(x: f32[1, 4]) -> f32[1, 4] {\n"
                      "  return linear(x, out=4) @conv_fuse.0\n}\n";
    const char *prefixes[] = {"model.neck", "model.neck.", "", NULL};
    const char *want[] = {"model.neck.conv_fuse.0.weight", "model.neck.conv_fuse.0.weight",
                          "conv_fuse.0.weight", "conv_fuse.0.weight"};
    for (size_t i = 0; i < 4; i++) {
        TestCompile t;
        Ast *ast = test_parse(&t, src); /* then the stages by hand, with a --prefix */
        assert_non_null(ast);
        t.cx.prefix = prefixes[i];
        assert_true(sema_check(&t.cx, ast));
        Graph *g = build_graph(&t.cx, ast);
        assert_non_null(g);
        assert_string_equal(g->params[0]->attr.param.key, want[i]);
        test_compile_free(&t);
    }
}

static void scalars_and_spans(void **state)
{
    (void)state;
    TestCompile t;
    const char *src = "fuse 1\ndim C = 3\ngraph g(x: f32[2, C]) -> f32[2, C] {\n"
                      "  return 0.1 * x + C / 2 - x\n}\n";
    Graph *g = build_ok(&t, src, NULL);
    assert_true(nth_op(g, OP_SCALAR, 0)->attr.scalar.value == 0.1f);
    assert_true(nth_op(g, OP_SCALAR, 1)->attr.scalar.value == 1.5f); /* folded: C / 2 */
    const Node *add = nth_op(g, OP_ADD, 0);
    assert_int_equal(add->span.hi - add->span.lo, 1);
    assert_int_equal(src[add->span.lo], '+');
    test_compile_free(&t);
}

/* ---- Diagnostics ---- */

static void broadcast_diagnostic(void **state)
{
    (void)state;
    expect_diag("fuse 1\ngraph g(x: f32[1, 64, 56, 56]) -> f32[1, 64, 56, 56] {\n"
                "  skip = conv2d(x, out=32, kernel=1) @skip\n"
                "  return x + skip\n}\n",
                NULL,
                "test.fuse:4:12: error: cannot add f32[1,64,56,56] and f32[1,32,56,56]\n"
                "    4 |   return x + skip\n"
                "      |            ^\n"
                "test.fuse:2:9: note: 'x' is f32[1,64,56,56]\n"
                "    2 | graph g(x: f32[1, 64, 56, 56]) -> f32[1, 64, 56, 56] {\n"
                "      |         ^\n"
                "test.fuse:3:3: note: 'skip' is f32[1,32,56,56]\n"
                "    3 |   skip = conv2d(x, out=32, kernel=1) @skip\n"
                "      |   ^~~~\n");
}

static void block_require_diagnostic(void **state)
{
    (void)state;
    expect_diag("fuse 1\nblock f(x: f32[C]) {\n  require C % 2 == 0\n  return x\n}\n"
                "graph g(x: f32[3]) -> f32[3] {\n  return f(x)\n}\n",
                NULL,
                "test.fuse:3:11: error: requirement 'C % 2 == 0' failed: C % 2 is 1\n"
                "    3 |   require C % 2 == 0\n"
                "      |           ^~~~~~~~~~\n"
                "test.fuse:7:10: note: in this call of block 'f'\n"
                "    7 |   return f(x)\n"
                "      |          ^~~~\n");
}

static void op_shape_diagnostics(void **state)
{
    (void)state;
    expect_diag("fuse 1\ngraph g(x: f32[1, 3, 8, 8]) -> f32[1, 3, 8, 8] {\n"
                "  return conv2d(x, out=4, kernel=3, groups=2) @c\n}\n",
                NULL,
                "test.fuse:3:44: error: conv2d: 3 input channels are not divisible by groups=2\n"
                "    3 |   return conv2d(x, out=4, kernel=3, groups=2) @c\n"
                "      |                                            ^\n");
    expect_diag("fuse 1\ngraph g(x: f32[1, 3, 2, 2]) -> f32[1, 3, 2, 2] {\n"
                "  return maxpool2d(x, kernel=3)\n}\n",
                NULL,
                "test.fuse:3:30: error: maxpool2d: the kernel window (3) is larger than the "
                "padded input height (2)\n"
                "    3 |   return maxpool2d(x, kernel=3)\n"
                "      |                              ^\n");
    expect_diag("fuse 1\ngraph g(x: f32[2, 3]) -> f32[2, 3] {\n"
                "  return softmax(x, axis=2)\n}\n",
                NULL,
                "test.fuse:3:26: error: axis 2 is out of range for f32[2,3]: expected -2..1\n"
                "    3 |   return softmax(x, axis=2)\n"
                "      |                          ^\n");
    expect_diag("fuse 1\ngraph g(a: f32[2, 3], b: f32[4, 5]) -> f32[2, 5] {\n"
                "  return matmul(a, b)\n}\n",
                NULL,
                "test.fuse:3:10: error: cannot matmul f32[2,3] and f32[4,5]: the inner dims "
                "differ (3 vs 4)\n"
                "    3 |   return matmul(a, b)\n"
                "      |          ^~~~~~~~~~~~\n");
}

static void result_type_diagnostic(void **state)
{
    (void)state;
    expect_diag("fuse 1\ngraph g(x: f32[2, 3]) -> f32[2, 4] {\n  return x\n}\n", NULL,
                "test.fuse:3:10: error: graph 'g' returns f32[2,3], but its result type is "
                "f32[2,4]\n"
                "    3 |   return x\n"
                "      |          ^\n"
                "test.fuse:2:26: note: the result type is declared here as f32[2, 4]\n"
                "    2 | graph g(x: f32[2, 3]) -> f32[2, 4] {\n"
                "      |                          ^~~~~~~~~\n");
}

static void entry_selection(void **state)
{
    (void)state;
    const char *src = "fuse 1\ngraph one(x: f32[1]) -> f32[1] {\n  return x\n}\n"
                      "graph two(x: f32[2]) -> f32[2] {\n  return x\n}\n";
    TestCompile t;
    assert_true(test_compile(&t, src, "two", NULL));
    assert_string_equal(t.graph->name, "two");
    test_compile_free(&t);
    assert_false(test_compile(&t, src, "tow", NULL));
    assert_string_equal(test_diagnostics(&t),
                        "fusec: error: --entry tow: no graph named 'tow'; did you mean 'two'?\n");
    test_compile_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(upsample_shapes),
        cmocka_unit_test(upsample_ratios),
        cmocka_unit_test(concat_shapes),
        cmocka_unit_test(conv2d_shapes),
        cmocka_unit_test(conv2d_weights),
        cmocka_unit_test(norm_shapes_and_weights),
        cmocka_unit_test(linear_shapes),
        cmocka_unit_test(mha_shapes_and_weights),
        cmocka_unit_test(param_op),
        cmocka_unit_test(elementwise_shapes),
        cmocka_unit_test(reduce_shapes),
        cmocka_unit_test(softmax_and_layout_shapes),
        cmocka_unit_test(matmul_shapes),
        cmocka_unit_test(pool_shapes),
        cmocka_unit_test(dims_defaults_and_overrides),
        cmocka_unit_test(dims_python_arithmetic),
        cmocka_unit_test(dims_without_default),
        cmocka_unit_test(dims_errors),
        cmocka_unit_test(requires),
        cmocka_unit_test(block_unification_shadows_file_dims),
        cmocka_unit_test(block_dim_expressions),
        cmocka_unit_test(block_conflict_diagnostic),
        cmocka_unit_test(block_const_params),
        cmocka_unit_test(block_default_uses_pattern_var),
        cmocka_unit_test(block_scopes),
        cmocka_unit_test(for_unrolls_with_scopes),
        cmocka_unit_test(for_rebinding_and_empty),
        cmocka_unit_test(shared_scope),
        cmocka_unit_test(prefix),
        cmocka_unit_test(scalars_and_spans),
        cmocka_unit_test(broadcast_diagnostic),
        cmocka_unit_test(block_require_diagnostic),
        cmocka_unit_test(op_shape_diagnostics),
        cmocka_unit_test(result_type_diagnostic),
        cmocka_unit_test(entry_selection),
    };
    return cmocka_run_group_tests_name("build", tests, NULL, NULL);
}
