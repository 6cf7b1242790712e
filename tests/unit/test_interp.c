/*
 * test_interp: the reference interpreter, op by op. Graphs are built by hand through the graph
 * API (no parser), and results are compared with values worked out by hand from the op's
 * definition, or with a naive formula written here in a different shape than interp.c's
 * (an explicitly padded input for conv, step-by-step matrices for attention).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"
#include "graph.h"
#include "interp.h"
#include "util.h"

/* ---- building graphs by hand ------------------------------------------------------- */

static const Span nowhere = {0, 0};

static Shape shape_of(uint32_t rank, const int64_t *dims)
{
    Shape s;
    memset(&s, 0, sizeof s);
    s.rank = rank;
    for (uint32_t i = 0; i < rank; i++)
        s.dim[i] = dims[i];
    return s;
}

/* SHAPE(2, 3, 4): the Shape [2,3,4]. */
#define SHAPE(...)                                                                                 \
    shape_of((uint32_t)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),                 \
             (const int64_t[]){__VA_ARGS__})

static Node *input(Graph *g, const char *name, Shape s)
{
    return graph_add_input(g, name, &s, nowhere);
}

static Node *param(Graph *g, const char *key, Shape s)
{
    return graph_add_param(g, key, &s, INIT_SMALL, nowhere);
}

static Node *op1(Graph *g, OpKind kind, Node *x, Shape s)
{
    return graph_add_node(g, kind, &x, 1, &s, nowhere);
}

static Node *op2(Graph *g, OpKind kind, Node *a, Node *b, Shape s)
{
    Node *ins[2] = {a, b};
    return graph_add_node(g, kind, ins, 2, &s, nowhere);
}

static Node *opn(Graph *g, OpKind kind, Node *const *ins, uint32_t n, Shape s)
{
    return graph_add_node(g, kind, ins, n, &s, nowhere);
}

static Graph *new_graph(void **state)
{
    return graph_new(*state, "t");
}

static int setup(void **state)
{
    *state = arena_new(0);
    return 0;
}

static int teardown(void **state)
{
    arena_free(*state);
    return 0;
}

/* ---- running and comparing --------------------------------------------------------- */

static void run_ok(const Graph *g, const float *const *params, const float *const *inputs,
                   float *const *outputs)
{
    char err[256] = "";
    assert_true(graph_verify(g, stderr));
    if (!interp_run(g, params, inputs, outputs, err, sizeof err))
        fail_msg("interp_run failed: %s", err);
}

/* Runs a graph with one output. */
static void run1(const Graph *g, const float *const *params, const float *const *inputs, float *out)
{
    float *outs[1] = {out};
    run_ok(g, params, inputs, outs);
}

/* |got - want| <= 1e-5 * max(1, |want|); NaN must meet NaN. */
static void check_close(float got, double want)
{
    bool got_nan = isnan(got);
    if (isnan(want)) {
        assert_true(got_nan);
        return;
    }
    assert_false(got_nan);
    float tol = (float)(1e-5 * fmax(1.0, fabs(want)));
    float w = (float)want;
    assert_float_equal(got, w, tol);
}

static void check_all(const float *got, const double *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_close(got[i], want[i]);
}

/* Deterministic values in [-1, 1] that are not round numbers. */
static float wobble(int64_t i)
{
    return (float)sin(0.7 * (double)i + 0.3);
}

static void fill(float *x, size_t n, int64_t seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = wobble((int64_t)i * 13 + seed);
}

/* ---- elementwise --------------------------------------------------------------------- */

static void unary_ops(void **state)
{
    static const float x[6] = {-2.0f, -0.5f, 0.0f, 0.5f, 1.0f, 4.0f};
    static const struct {
        OpKind kind;
        bool gelu_tanh;
        double want[6];
    } cases[] = {
        {OP_RELU, false, {0, 0, 0, 0.5, 1, 4}},
        {OP_SIGMOID, false, {0.119202922, 0.377540669, 0.5, 0.622459331, 0.731058579, 0.982013790}},
        {OP_TANH, false, {-0.964027580, -0.462117157, 0, 0.462117157, 0.761594156, 0.999329300}},
        {OP_EXP, false, {0.135335283, 0.606530660, 1, 1.648721271, 2.718281828, 54.59815003}},
        {OP_SQRT, false, {NAN, NAN, 0, 0.707106781, 1, 2}},
        {OP_RSQRT, false, {NAN, NAN, INFINITY, 1.414213562, 1, 0.5}},
        {OP_SILU, false, {-0.238405844, -0.188770334, 0, 0.311229666, 0.731058579, 3.928055160}},
        {OP_ABS, false, {2, 0.5, 0, 0.5, 1, 4}},
        {OP_NEG, false, {2, 0.5, 0, -0.5, -1, -4}},
        /* 0.5 x (1 + erf(x / sqrt 2)) */
        {OP_GELU, false, {-0.045500264, -0.154268775, 0, 0.345731225, 0.841344746, 3.999873297}},
        /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
        {OP_GELU, true, {-0.045402306, -0.154285989, 0, 0.345714011, 0.841191990, 3.999929819}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Graph *g = new_graph(state);
        Node *in = input(g, "x", SHAPE(6));
        Node *y = op1(g, cases[c].kind, in, SHAPE(6));
        y->attr.gelu.tanh = cases[c].gelu_tanh;
        graph_add_output(g, "y", y);
        const float *ins[1] = {x};
        float out[6];
        run1(g, NULL, ins, out);
        for (int i = 0; i < 6; i++) {
            if (isinf(cases[c].want[i])) {
                bool pos_inf = isinf(out[i]) && out[i] > 0;
                assert_true(pos_inf);
            } else
                check_close(out[i], cases[c].want[i]);
        }
    }
}

/* [2,3,1,1] * [1,3,4,5] -> [2,3,4,5]: out[n,c,h,w] = a[n,c] * b[c,h,w]. */
static void broadcast_4d(void **state)
{
    Graph *g = new_graph(state);
    Node *a = input(g, "a", SHAPE(2, 3, 1, 1));
    Node *b = input(g, "b", SHAPE(1, 3, 4, 5));
    graph_add_output(g, "y", op2(g, OP_MUL, a, b, SHAPE(2, 3, 4, 5)));
    float av[6], bv[60], out[120];
    double want[120];
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            av[n * 3 + c] = (float)(n * 10 + c + 1);
    for (int c = 0; c < 3; c++)
        for (int h = 0; h < 4; h++)
            for (int w = 0; w < 5; w++)
                bv[(c * 4 + h) * 5 + w] = (float)(c * 100 + h * 10 + w);
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int h = 0; h < 4; h++)
                for (int w = 0; w < 5; w++)
                    want[((n * 3 + c) * 4 + h) * 5 + w] =
                        (double)(n * 10 + c + 1) * (double)(c * 100 + h * 10 + w);
    const float *ins[2] = {av, bv};
    run1(g, NULL, ins, out);
    check_all(out, want, 120);
}

/* 0.5 * x (a scalar is rank 0), and [3] - [2,3] (lower rank aligned at the end). */
static void broadcast_scalar_and_rank(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(2, 3));
    Node *v = input(g, "v", SHAPE(3));
    Node *half = graph_add_scalar(g, 0.5f, nowhere);
    graph_add_output(g, "p", op2(g, OP_MUL, half, x, SHAPE(2, 3)));
    graph_add_output(g, "q", op2(g, OP_SUB, v, x, SHAPE(2, 3)));
    graph_add_output(g, "r", op2(g, OP_DIV, x, half, SHAPE(2, 3)));
    float xv[6] = {1, 2, 3, 4, 5, 6}, vv[3] = {10, 20, 30};
    float p[6], q[6], rr[6];
    const float *ins[2] = {xv, vv};
    float *outs[3] = {p, q, rr};
    run_ok(g, NULL, ins, outs);
    check_all(p, (const double[]){0.5, 1, 1.5, 2, 2.5, 3}, 6);
    check_all(q, (const double[]){9, 18, 27, 6, 15, 24}, 6);
    check_all(rr, (const double[]){2, 4, 6, 8, 10, 12}, 6);
}

static void min_max_add(void **state)
{
    Graph *g = new_graph(state);
    Node *a = input(g, "a", SHAPE(4));
    Node *b = input(g, "b", SHAPE(4));
    graph_add_output(g, "mn", op2(g, OP_MIN, a, b, SHAPE(4)));
    graph_add_output(g, "mx", op2(g, OP_MAX, a, b, SHAPE(4)));
    graph_add_output(g, "s", op2(g, OP_ADD, a, b, SHAPE(4)));
    float av[4] = {1, -2, 3, -0.5f}, bv[4] = {2, -3, 3, 0.25f}, mn[4], mx[4], s[4];
    const float *ins[2] = {av, bv};
    float *outs[3] = {mn, mx, s};
    run_ok(g, NULL, ins, outs);
    check_all(mn, (const double[]){1, -3, 3, -0.5}, 4);
    check_all(mx, (const double[]){2, -2, 3, 0.25}, 4);
    check_all(s, (const double[]){3, -5, 6, -0.25}, 4);
}

/* NaN survives relu, max/min on either side, amax/amin and maxpool, as in torch. */
static void nan_propagates(void **state)
{
    Graph *g = new_graph(state);
    Node *a = input(g, "a", SHAPE(1, 1, 2, 2));
    Node *b = input(g, "b", SHAPE(1, 1, 2, 2));
    graph_add_output(g, "relu", op1(g, OP_RELU, a, SHAPE(1, 1, 2, 2)));
    graph_add_output(g, "max_ab", op2(g, OP_MAX, a, b, SHAPE(1, 1, 2, 2)));
    graph_add_output(g, "max_ba", op2(g, OP_MAX, b, a, SHAPE(1, 1, 2, 2)));
    graph_add_output(g, "min_ab", op2(g, OP_MIN, a, b, SHAPE(1, 1, 2, 2)));
    Node *amax = op1(g, OP_AMAX, a, SHAPE(1, 1, 2));
    amax->attr.reduce.axes[3] = true;
    graph_add_output(g, "amax", amax);
    Node *amin = op1(g, OP_AMIN, a, SHAPE(1, 1, 2));
    amin->attr.reduce.axes[3] = true;
    graph_add_output(g, "amin", amin);
    Node *pool = op1(g, OP_MAXPOOL2D, a, SHAPE(1, 1, 1, 2));
    pool->attr.pool.kh = 2;
    pool->attr.pool.kw = 1;
    pool->attr.pool.stride_h = 2;
    pool->attr.pool.stride_w = 1;
    graph_add_output(g, "pool", pool);

    /* a = [[NaN, 1], [5, -1]], b = 0 */
    float av[4] = {NAN, 1, 5, -1}, bv[4] = {0, 0, 0, 0};
    float relu[4], max_ab[4], max_ba[4], min_ab[4], am[2], an[2], pl[2];
    const float *ins[2] = {av, bv};
    float *outs[7] = {relu, max_ab, max_ba, min_ab, am, an, pl};
    run_ok(g, NULL, ins, outs);
    check_all(relu, (const double[]){NAN, 1, 5, 0}, 4);
    check_all(max_ab, (const double[]){NAN, 1, 5, 0}, 4);
    check_all(max_ba, (const double[]){NAN, 1, 5, 0}, 4);
    check_all(min_ab, (const double[]){NAN, 0, 0, -1}, 4);
    check_all(am, (const double[]){NAN, 5}, 2);
    check_all(an, (const double[]){NAN, -1}, 2);
    check_all(pl, (const double[]){NAN, 1}, 2);
}

/* ---- upsample ------------------------------------------------------------------------ */

static Node *upsample(Graph *g, Node *x, Shape out, bool bilinear, bool align, float rh, float rw)
{
    Node *u = op1(g, OP_UPSAMPLE, x, out);
    u->attr.upsample.bilinear = bilinear;
    u->attr.upsample.align_corners = align;
    u->attr.upsample.ratio_h = rh;
    u->attr.upsample.ratio_w = rw;
    return u;
}

/* [[1,2],[3,4]] to 4x4. align_corners=false, ratio 1/2: src = max((d+0.5)/2 - 0.5, 0) =
 * 0, 0.25, 0.75, 1.25 -> weights of (x0, x1): (1,0), (.75,.25), (.25,.75), (0,1) (i1 clamps
 * to 1 for the last). align_corners=true, ratio 1/3: src = d/3, so value = 1 + w/3 + 2h/3. */
static void upsample_bilinear(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(1, 1, 2, 2));
    graph_add_output(g, "half", upsample(g, x, SHAPE(1, 1, 4, 4), true, false, 0.5f, 0.5f));
    graph_add_output(g, "corners",
                     upsample(g, x, SHAPE(1, 1, 4, 4), true, true, 1.0f / 3.0f, 1.0f / 3.0f));
    float xv[4] = {1, 2, 3, 4}, half[16], corners[16];
    const float *ins[1] = {xv};
    float *outs[2] = {half, corners};
    run_ok(g, NULL, ins, outs);
    check_all(half,
              (const double[]){1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3,
                               3.25, 3.75, 4},
              16);
    double want[16];
    for (int h = 0; h < 4; h++)
        for (int w = 0; w < 4; w++)
            want[h * 4 + w] = 1.0 + w / 3.0 + 2.0 * h / 3.0;
    check_all(corners, want, 16);
}

/* PyTorch copies an axis whose size does not change, whatever the ratio (scale=1.3 on 3). */
static void upsample_same_size_copies(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(1, 1, 1, 3));
    float r = (float)(1.0 / 1.3);
    graph_add_output(g, "bl", upsample(g, x, SHAPE(1, 1, 1, 3), true, false, 1.0f, r));
    graph_add_output(g, "nn", upsample(g, x, SHAPE(1, 1, 1, 3), false, false, 1.0f, r));
    float xv[3] = {0, 1, 2}, bl[3], nn[3];
    const float *ins[1] = {xv};
    float *outs[2] = {bl, nn};
    run_ok(g, NULL, ins, outs);
    check_all(bl, (const double[]){0, 1, 2}, 3);
    check_all(nn, (const double[]){0, 1, 2}, 3);
}

/* Legacy nearest: src = min(floor(f32(dst) * ratio), in-1).
 * H 3 -> 2 (ratio 1.5): 0, 1. W 2 -> 5 (ratio 0.4): 0, 0.4, 0.8, 1.2, 1.6 -> 0, 0, 0, 1, 1. */
static void upsample_nearest(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(1, 1, 3, 2));
    graph_add_output(g, "y", upsample(g, x, SHAPE(1, 1, 2, 5), false, false, 1.5f, 0.4f));
    float xv[6] = {0, 1, 10, 11, 20, 21}, out[10];
    const float *ins[1] = {xv};
    run1(g, NULL, ins, out);
    check_all(out, (const double[]){0, 0, 0, 1, 1, 10, 10, 10, 11, 11}, 10);
}

/* The f32 product decides the index: 14 -> 20 has ratio f32(0.7) = 0.699999988; at dst 10
 * the exact product 6.99999988 rounds to 7.0f, so the source is 7 (PyTorch agrees). An exact
 * 2x is dst / 2 even when the ratio from scale=2.01 is below 1/2 (PyTorch's nearest_idx). */
static void upsample_nearest_f32_index(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(1, 1, 1, 14));
    Node *x3 = input(g, "x3", SHAPE(1, 1, 1, 3));
    graph_add_output(g, "y", upsample(g, x, SHAPE(1, 1, 1, 20), false, false, 1.0f, 0.7f));
    graph_add_output(g, "d",
                     upsample(g, x3, SHAPE(1, 1, 1, 6), false, false, 1.0f, (float)(1 / 2.01)));
    float xv[14], x3v[3] = {0, 1, 2}, out[20], dbl[6];
    for (int i = 0; i < 14; i++)
        xv[i] = (float)i;
    const float *ins[2] = {xv, x3v};
    float *outs[2] = {out, dbl};
    run_ok(g, NULL, ins, outs);
    check_all(
        out, (const double[]){0, 0, 1, 2, 2, 3, 4, 4, 5, 6, 7, 7, 8, 9, 9, 10, 11, 11, 12, 13}, 20);
    check_all(dbl, (const double[]){0, 0, 1, 1, 2, 2}, 6);
}

/* ---- concat, permute, view ----------------------------------------------------------- */

static void concat_axes(void **state)
{
    Graph *g = new_graph(state);
    Node *a = input(g, "a", SHAPE(2, 1, 2));
    Node *b = input(g, "b", SHAPE(2, 2, 2));
    Node *c = input(g, "c", SHAPE(2, 1, 2));
    Node *abc[3] = {a, b, c};
    Node *mid = opn(g, OP_CONCAT, abc, 3, SHAPE(2, 4, 2));
    mid->attr.concat.axis = 1;
    graph_add_output(g, "mid", mid);
    Node *ab[2] = {a, c};
    Node *first = opn(g, OP_CONCAT, ab, 2, SHAPE(4, 1, 2));
    first->attr.concat.axis = 0;
    graph_add_output(g, "first", first);
    Node *last = opn(g, OP_CONCAT, ab, 2, SHAPE(2, 1, 4));
    last->attr.concat.axis = 2;
    graph_add_output(g, "last", last);

    float av[4] = {1, 2, 3, 4}, bv[8] = {10, 11, 12, 13, 14, 15, 16, 17}, cv[4] = {-1, -2, -3, -4};
    float m[16], f[8], l[8];
    const float *ins[3] = {av, bv, cv};
    float *outs[3] = {m, f, l};
    run_ok(g, NULL, ins, outs);
    check_all(m, (const double[]){1, 2, 10, 11, 12, 13, -1, -2, 3, 4, 14, 15, 16, 17, -3, -4}, 16);
    check_all(f, (const double[]){1, 2, 3, 4, -1, -2, -3, -4}, 8);
    check_all(l, (const double[]){1, 2, -1, -2, 3, 4, -3, -4}, 8);
}

/* x[i,j,k] = 12i + 4j + k; perm [2,0,1]: out[k,i,j] = x[i,j,k]. */
static void permute_rank3(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(2, 3, 4));
    Node *p = op1(g, OP_PERMUTE, x, SHAPE(4, 2, 3));
    p->attr.permute.perm[0] = 2;
    p->attr.permute.perm[1] = 0;
    p->attr.permute.perm[2] = 1;
    graph_add_output(g, "y", p);
    float xv[24], out[24];
    double want[24];
    for (int i = 0; i < 24; i++)
        xv[i] = (float)i;
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                want[(k * 2 + i) * 3 + j] = 12 * i + 4 * j + k;
    const float *ins[1] = {xv};
    run1(g, NULL, ins, out);
    check_all(out, want, 24);
}

static void view_keeps_order(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(2, 6));
    Node *v = op1(g, OP_VIEW, x, SHAPE(3, 4));
    graph_add_output(g, "y", op1(g, OP_VIEW, op1(g, OP_NEG, v, SHAPE(3, 4)), SHAPE(12)));
    float xv[12], out[12];
    double want[12];
    for (int i = 0; i < 12; i++) {
        xv[i] = (float)i;
        want[i] = -i;
    }
    const float *ins[1] = {xv};
    run1(g, NULL, ins, out);
    check_all(out, want, 12);
}

/* ---- conv2d -------------------------------------------------------------------------- */

static void set_conv(Node *c, int64_t out, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                     int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups)
{
    c->attr.conv.out = out;
    c->attr.conv.kh = kh;
    c->attr.conv.kw = kw;
    c->attr.conv.stride_h = sh;
    c->attr.conv.stride_w = sw;
    c->attr.conv.pad_h = ph;
    c->attr.conv.pad_w = pw;
    c->attr.conv.dil_h = dh;
    c->attr.conv.dil_w = dw;
    c->attr.conv.groups = groups;
    c->attr.conv.bias = c->ninputs > 2;
}

/* x = 1..9 as 3x3, a 2x2 kernel of ones, bias 0.5: sums of 2x2 windows. */
static void conv2d_by_hand(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(1, 1, 3, 3));
    Node *ins3[3] = {x, param(g, "w", SHAPE(1, 1, 2, 2)), param(g, "b", SHAPE(1))};
    Node *c = opn(g, OP_CONV2D, ins3, 3, SHAPE(1, 1, 2, 2));
    set_conv(c, 1, 2, 2, 1, 1, 0, 0, 1, 1, 1);
    graph_add_output(g, "y", c);
    float xv[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, wv[4] = {1, 1, 1, 1}, bv[1] = {0.5f}, out[4];
    const float *ins[1] = {xv};
    const float *params[2] = {wv, bv};
    run1(g, params, ins, out);
    check_all(out, (const double[]){12.5, 16.5, 24.5, 28.5}, 4);
}

/* out[n,o,y,x] = bias[o] + sum over c < C/G, i, j of w[o,c,i,j] * xp[n, g*C/G + c,
 * y*sh + i*dh, x*sw + j*dw] with xp the input explicitly padded with zeros. */
static void conv2d_reference(const float *x, const float *w, const float *b, int64_t nb, int64_t c,
                             int64_t h, int64_t wd, int64_t o, int64_t kh, int64_t kw, int64_t sh,
                             int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                             int64_t groups, double *out)
{
    int64_t hp = h + 2 * ph, wp = wd + 2 * pw;
    double *xp = calloc((size_t)(nb * c * hp * wp), sizeof(double));
    assert_non_null(xp);
    for (int64_t n = 0; n < nb; n++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t y = 0; y < h; y++)
                for (int64_t xx = 0; xx < wd; xx++)
                    xp[((n * c + ch) * hp + y + ph) * wp + xx + pw] =
                        x[((n * c + ch) * h + y) * wd + xx];
    int64_t oh = (hp - dh * (kh - 1) - 1) / sh + 1, ow = (wp - dw * (kw - 1) - 1) / sw + 1;
    int64_t cg = c / groups, og = o / groups;
    for (int64_t n = 0; n < nb; n++)
        for (int64_t oc = 0; oc < o; oc++)
            for (int64_t y = 0; y < oh; y++)
                for (int64_t xx = 0; xx < ow; xx++) {
                    double s = b ? b[oc] : 0.0;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t i = 0; i < kh; i++)
                            for (int64_t j = 0; j < kw; j++)
                                s +=
                                    (double)w[((oc * cg + ci) * kh + i) * kw + j] *
                                    xp[((n * c + (oc / og) * cg + ci) * hp + y * sh + i * dh) * wp +
                                       xx * sw + j * dw];
                    out[((n * o + oc) * oh + y) * ow + xx] = s;
                }
    free(xp);
}

/* groups=2, stride (2,1), padding (1,2), dilation (2,1), bias, batch 2. */
static void conv2d_general(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(2, 4, 5, 6));
    Node *ins3[3] = {x, param(g, "w", SHAPE(6, 2, 3, 2)), param(g, "b", SHAPE(6))};
    /* H: (5 + 2 - 2*2 - 1) / 2 + 1 = 2; W: (6 + 4 - 1 - 1) / 1 + 1 = 9 */
    Node *c = opn(g, OP_CONV2D, ins3, 3, SHAPE(2, 6, 2, 9));
    set_conv(c, 6, 3, 2, 2, 1, 1, 2, 2, 1, 2);
    graph_add_output(g, "y", c);
    float xv[240], wv[72], bv[6], out[216];
    double want[216];
    fill(xv, 240, 1);
    fill(wv, 72, 2);
    fill(bv, 6, 3);
    conv2d_reference(xv, wv, bv, 2, 4, 5, 6, 6, 3, 2, 2, 1, 1, 2, 2, 1, 2, want);
    const float *ins[1] = {xv};
    const float *params[2] = {wv, bv};
    run1(g, params, ins, out);
    check_all(out, want, 216);
}

/* No bias, a 1x3 kernel with stride (1,2) and padding (0,1); and a depthwise 3x3. */
static void conv2d_no_bias_and_depthwise(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(1, 3, 4, 4));
    Node *ins2[2] = {x, param(g, "w", SHAPE(2, 3, 1, 3))};
    Node *c = opn(g, OP_CONV2D, ins2, 2, SHAPE(1, 2, 4, 2));
    set_conv(c, 2, 1, 3, 1, 2, 0, 1, 1, 1, 1);
    graph_add_output(g, "y", c);
    Node *insd[3] = {x, param(g, "dw", SHAPE(3, 1, 3, 3)), param(g, "db", SHAPE(3))};
    Node *d = opn(g, OP_CONV2D, insd, 3, SHAPE(1, 3, 4, 4));
    set_conv(d, 3, 3, 3, 1, 1, 1, 1, 1, 1, 3);
    graph_add_output(g, "d", d);
    float xv[48], wv[18], dwv[27], dbv[3], out[16], dout[48];
    double want[16], dwant[48];
    fill(xv, 48, 4);
    fill(wv, 18, 5);
    fill(dwv, 27, 6);
    fill(dbv, 3, 7);
    conv2d_reference(xv, wv, NULL, 1, 3, 4, 4, 2, 1, 3, 1, 2, 0, 1, 1, 1, 1, want);
    conv2d_reference(xv, dwv, dbv, 1, 3, 4, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1, 3, dwant);
    const float *ins[1] = {xv};
    const float *params[3] = {wv, dwv, dbv};
    float *outs[2] = {out, dout};
    run_ok(g, params, ins, outs);
    check_all(out, want, 16);
    check_all(dout, dwant, 48);
}

/* ---- normalization ------------------------------------------------------------------- */

static Node *batchnorm(Graph *g, Node *x, const char *scope, int64_t c, float eps)
{
    char key[64];
    Node *ins[5] = {x};
    static const char *const slots[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "%s.%s", scope, slots[i]);
        ins[i + 1] = param(g, key, SHAPE(c));
    }
    Node *bn = opn(g, OP_BATCHNORM, ins, 5, x->shape);
    bn->attr.norm.eps = eps;
    return bn;
}

/* [N, C, L] with eps = 1 and var + eps = 4, 9, 1, so the scales are exact:
 * c0: (x - 1) / 2;  c1: (x + 1) / 3 * 2 + 1;  c2: -x + 0.5. */
static void batchnorm_by_hand(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(2, 3, 2));
    graph_add_output(g, "y", batchnorm(g, x, "bn", 3, 1.0f));
    float xv[12] = {1, 5, 2, -4, 3, -1, -3, 1, -1, 5, 0, 2};
    float w[3] = {1, 2, -1}, b[3] = {0, 1, 0.5f}, mean[3] = {1, -1, 0}, var[3] = {3, 8, 0};
    float out[12];
    const float *ins[1] = {xv};
    const float *params[4] = {w, b, mean, var};
    run1(g, params, ins, out);
    check_all(out, (const double[]){0, 2, 3, -1, -2.5, 1.5, -2, 0, 1, 5, 0.5, -1.5}, 12);
}

/* [N, C] and [N, C, H, W] with eps = 1e-5, against the formula. */
static void batchnorm_ranks(void **state)
{
    Graph *g = new_graph(state);
    Node *x2 = input(g, "x2", SHAPE(3, 2));
    Node *x4 = input(g, "x4", SHAPE(2, 2, 2, 3));
    graph_add_output(g, "y2", batchnorm(g, x2, "a", 2, 1e-5f));
    graph_add_output(g, "y4", batchnorm(g, x4, "a", 2, 1e-5f)); /* shared weights */
    float x2v[6], x4v[24], w[2] = {0.5f, 2}, b[2] = {-1, 0.25f}, mean[2] = {0.1f, -0.2f};
    float var[2] = {0.5f, 2}, y2[6], y4[24];
    double want2[6], want4[24];
    fill(x2v, 6, 8);
    fill(x4v, 24, 9);
    for (int i = 0; i < 6; i++) {
        int ch = i % 2;
        want2[i] = ((double)x2v[i] - mean[ch]) / sqrt((double)var[ch] + 1e-5f) * w[ch] + b[ch];
    }
    for (int i = 0; i < 24; i++) {
        int ch = (i / 6) % 2;
        want4[i] = ((double)x4v[i] - mean[ch]) / sqrt((double)var[ch] + 1e-5f) * w[ch] + b[ch];
    }
    const float *ins[2] = {x2v, x4v};
    const float *params[4] = {w, b, mean, var};
    float *outs[2] = {y2, y4};
    run_ok(g, params, ins, outs);
    check_all(y2, want2, 6);
    check_all(y4, want4, 24);
}

/* x [2,2,3] = 1..12; W = [[1,0,-1],[.5,.5,.5]], b = [.25,-1]:
 * y = (x0 - x2 + .25, (x0 + x1 + x2) / 2 - 1) per row; without bias, the same minus b. */
static void linear_rank3(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(2, 2, 3));
    Node *w = param(g, "w", SHAPE(2, 3));
    Node *ins3[3] = {x, w, param(g, "b", SHAPE(2))};
    Node *l = opn(g, OP_LINEAR, ins3, 3, SHAPE(2, 2, 2));
    l->attr.linear.out = 2;
    l->attr.linear.bias = true;
    graph_add_output(g, "y", l);
    Node *ins2[2] = {x, w};
    Node *nb = opn(g, OP_LINEAR, ins2, 2, SHAPE(2, 2, 2));
    nb->attr.linear.out = 2;
    graph_add_output(g, "nb", nb);
    float xv[12], wv[6] = {1, 0, -1, 0.5f, 0.5f, 0.5f}, bv[2] = {0.25f, -1}, out[8], out2[8];
    for (int i = 0; i < 12; i++)
        xv[i] = (float)(i + 1);
    const float *ins[1] = {xv};
    const float *params[2] = {wv, bv};
    float *outs[2] = {out, out2};
    run_ok(g, params, ins, outs);
    check_all(out, (const double[]){-1.75, 2, -1.75, 6.5, -1.75, 11, -1.75, 15.5}, 8);
    check_all(out2, (const double[]){-2, 3, -2, 7.5, -2, 12, -2, 16.5}, 8);
}

/* Row [1,2,3,4]: mean 2.5, biased variance 1.25. Row [2,2,2,2]: normalizes to 0 -> bias. */
static void layernorm_rows(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(2, 4));
    Node *ins3[3] = {x, param(g, "w", SHAPE(4)), param(g, "b", SHAPE(4))};
    Node *ln = opn(g, OP_LAYERNORM, ins3, 3, SHAPE(2, 4));
    ln->attr.norm.eps = 1e-5f;
    graph_add_output(g, "y", ln);
    float xv[8] = {1, 2, 3, 4, 2, 2, 2, 2}, w[4] = {1, 2, 1, 1}, b[4] = {0, 0, 1, -1}, out[8];
    double inv = 1.0 / sqrt(1.25 + (double)1e-5f);
    double want[8] = {-1.5 * inv, -0.5 * inv * 2, 0.5 * inv + 1, 1.5 * inv - 1, 0, 0, 1, -1};
    const float *ins[1] = {xv};
    const float *params[2] = {w, b};
    run1(g, params, ins, out);
    check_all(out, want, 8);
}

/* ---- attention ----------------------------------------------------------------------- */

enum { MN = 2, ML = 2, MS = 3, ME = 4, MH = 2, MD = ME / MH };

/* nn.MultiheadAttention step by step, with fixed-size matrices. */
static void mha_reference(const float *q, const float *k, const float *v, const float *in_w,
                          const float *in_b, const float *out_w, const float *out_b,
                          double y[MN][ML][ME])
{
    double qp[MN][ML][ME], kp[MN][MS][ME], vp[MN][MS][ME], cat[MN][ML][ME];
    for (int n = 0; n < MN; n++) {
        /* 1. project: rows 0..E-1 of in_proj for q, E..2E-1 for k, 2E..3E-1 for v */
        for (int e = 0; e < ME; e++) {
            for (int i = 0; i < ML; i++) {
                qp[n][i][e] = in_b[e];
                for (int t = 0; t < ME; t++)
                    qp[n][i][e] += (double)q[(n * ML + i) * ME + t] * in_w[e * ME + t];
            }
            for (int j = 0; j < MS; j++) {
                kp[n][j][e] = in_b[ME + e];
                vp[n][j][e] = in_b[2 * ME + e];
                for (int t = 0; t < ME; t++) {
                    kp[n][j][e] += (double)k[(n * MS + j) * ME + t] * in_w[(ME + e) * ME + t];
                    vp[n][j][e] += (double)v[(n * MS + j) * ME + t] * in_w[(2 * ME + e) * ME + t];
                }
            }
        }
        for (int h = 0; h < MH; h++) {
            /* 2. scores of head h, scaled by 1/sqrt(D), softmax over the keys */
            double sc[ML][MS];
            for (int i = 0; i < ML; i++) {
                double total = 0;
                for (int j = 0; j < MS; j++) {
                    double dot = 0;
                    for (int t = h * MD; t < (h + 1) * MD; t++)
                        dot += qp[n][i][t] * kp[n][j][t];
                    sc[i][j] = exp(dot / sqrt((double)MD));
                    total += sc[i][j];
                }
                for (int j = 0; j < MS; j++)
                    sc[i][j] /= total;
            }
            /* 3. weighted values into the head's slice of the concatenation */
            for (int i = 0; i < ML; i++)
                for (int t = h * MD; t < (h + 1) * MD; t++) {
                    cat[n][i][t] = 0;
                    for (int j = 0; j < MS; j++)
                        cat[n][i][t] += sc[i][j] * vp[n][j][t];
                }
        }
        /* 4. out_proj */
        for (int i = 0; i < ML; i++)
            for (int e = 0; e < ME; e++) {
                y[n][i][e] = out_b[e];
                for (int t = 0; t < ME; t++)
                    y[n][i][e] += cat[n][i][t] * out_w[e * ME + t];
            }
    }
}

static void mha_two_heads(void **state)
{
    Graph *g = new_graph(state);
    Node *ins[7] = {
        input(g, "q", SHAPE(MN, ML, ME)),        input(g, "k", SHAPE(MN, MS, ME)),
        input(g, "v", SHAPE(MN, MS, ME)),        param(g, "in_proj_weight", SHAPE(3 * ME, ME)),
        param(g, "in_proj_bias", SHAPE(3 * ME)), param(g, "out_proj.weight", SHAPE(ME, ME)),
        param(g, "out_proj.bias", SHAPE(ME))};
    Node *m = opn(g, OP_MHA, ins, 7, SHAPE(MN, ML, ME));
    m->attr.mha.heads = MH;
    m->attr.mha.bias = true;
    graph_add_output(g, "y", m);
    float q[MN * ML * ME], k[MN * MS * ME], v[MN * MS * ME], in_w[3 * ME * ME], in_b[3 * ME];
    float out_w[ME * ME], out_b[ME], out[MN * ML * ME];
    fill(q, countof(q), 10);
    fill(k, countof(k), 11);
    fill(v, countof(v), 12);
    fill(in_w, countof(in_w), 13);
    fill(in_b, countof(in_b), 14);
    fill(out_w, countof(out_w), 15);
    fill(out_b, countof(out_b), 16);
    double want[MN][ML][ME];
    mha_reference(q, k, v, in_w, in_b, out_w, out_b, want);
    const float *inputs[3] = {q, k, v};
    const float *params[4] = {in_w, in_b, out_w, out_b};
    run1(g, params, inputs, out);
    check_all(out, &want[0][0][0], countof(out));
}

/* bias=false (slots q, k, v, in_proj_weight, out_proj.weight) with identity projections and a
 * single key: the softmax is 1, so the output is v itself. */
static void mha_no_bias_single_key(void **state)
{
    Graph *g = new_graph(state);
    Node *ins[5] = {input(g, "q", SHAPE(2, 3, 2)), input(g, "k", SHAPE(2, 1, 2)),
                    input(g, "v", SHAPE(2, 1, 2)), param(g, "in_w", SHAPE(6, 2)),
                    param(g, "out_w", SHAPE(2, 2))};
    Node *m = opn(g, OP_MHA, ins, 5, SHAPE(2, 3, 2));
    m->attr.mha.heads = 2;
    graph_add_output(g, "y", m);
    float q[12], k[4] = {5, -5, 3, 3}, v[4] = {1, 2, 3, 4}, out[12];
    float in_w[12] = {1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1}, out_w[4] = {1, 0, 0, 1};
    fill(q, 12, 17);
    const float *inputs[3] = {q, k, v};
    const float *params[2] = {in_w, out_w};
    run1(g, params, inputs, out);
    check_all(out, (const double[]){1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4}, 12);
}

/* ---- reductions and softmax ---------------------------------------------------------- */

/* x[n,c,w] = 12n + 4c + w over [2,3,4]. */
static void reductions(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(2, 3, 4));
    Node *sum = op1(g, OP_SUM, x, SHAPE(1, 3, 1));
    sum->attr.reduce.axes[0] = sum->attr.reduce.axes[2] = true;
    sum->attr.reduce.keepdim = true;
    graph_add_output(g, "sum", sum);
    Node *mean = op1(g, OP_MEAN, x, SHAPE(2, 4));
    mean->attr.reduce.axes[1] = true;
    graph_add_output(g, "mean", mean);
    Node *amax = op1(g, OP_AMAX, x, shape_of(0, NULL));
    amax->attr.reduce.axes[0] = amax->attr.reduce.axes[1] = amax->attr.reduce.axes[2] = true;
    graph_add_output(g, "amax", amax);
    Node *amin = op1(g, OP_AMIN, x, SHAPE(2, 3, 1));
    amin->attr.reduce.axes[2] = true;
    amin->attr.reduce.keepdim = true;
    graph_add_output(g, "amin", amin);
    Node *mean12 = op1(g, OP_MEAN, x, SHAPE(2));
    mean12->attr.reduce.axes[1] = mean12->attr.reduce.axes[2] = true;
    graph_add_output(g, "mean12", mean12);

    float xv[24], s[3], m[8], mx[1], mn[6], m12[2];
    for (int i = 0; i < 24; i++)
        xv[i] = (float)i;
    const float *ins[1] = {xv};
    float *outs[5] = {s, m, mx, mn, m12};
    run_ok(g, NULL, ins, outs);
    /* sum over n, w of 12n + 4c + w = 32c + 4*12 + 2*(0+1+2+3) */
    check_all(s, (const double[]){60, 92, 124}, 3);
    check_all(m, (const double[]){4, 5, 6, 7, 16, 17, 18, 19}, 8); /* 12n + 4 + w */
    check_all(mx, (const double[]){23}, 1);
    check_all(mn, (const double[]){0, 4, 8, 12, 16, 20}, 6);
    check_all(m12, (const double[]){5.5, 17.5}, 2);
}

static void softmax_axes(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(2, 3));
    Node *big = input(g, "big", SHAPE(2));
    Node *last = op1(g, OP_SOFTMAX, x, SHAPE(2, 3));
    last->attr.softmax.axis = 1;
    graph_add_output(g, "last", last);
    Node *first = op1(g, OP_SOFTMAX, x, SHAPE(2, 3));
    first->attr.softmax.axis = 0;
    graph_add_output(g, "first", first);
    Node *b = op1(g, OP_SOFTMAX, big, SHAPE(2));
    graph_add_output(g, "big", b);
    float xv[6] = {1, 2, 3, 1, 1, 1}, bv[2] = {1000, 1001}, l[6], f[6], bo[2];
    const float *ins[2] = {xv, bv};
    float *outs[3] = {l, f, bo};
    run_ok(g, NULL, ins, outs);
    /* e^-2, e^-1, 1 over their sum; a constant row is uniform */
    double z = exp(-2.0) + exp(-1.0) + 1.0;
    check_all(l, (const double[]){exp(-2.0) / z, exp(-1.0) / z, 1 / z, 1 / 3.0, 1 / 3.0, 1 / 3.0},
              6);
    /* columns (1,1), (2,1), (3,1): sigmoid of the difference */
    double s1 = 1 / (1 + exp(-1.0)), s2 = 1 / (1 + exp(-2.0));
    check_all(f, (const double[]){0.5, s1, s2, 0.5, 1 - s1, 1 - s2}, 6);
    check_all(bo, (const double[]){1 - s1, s1}, 2); /* no overflow: the max is subtracted */
    for (int r = 0; r < 2; r++)
        check_close(l[3 * r] + l[3 * r + 1] + l[3 * r + 2], 1.0);
    for (int c = 0; c < 3; c++)
        check_close(f[c] + f[3 + c], 1.0);
}

/* ---- matmul -------------------------------------------------------------------------- */

static void matmul_ranks(void **state)
{
    Graph *g = new_graph(state);
    Node *v3 = input(g, "v3", SHAPE(3));
    Node *w3 = input(g, "w3", SHAPE(3));
    Node *a = input(g, "a", SHAPE(2, 2));
    Node *b = input(g, "b", SHAPE(2, 2));
    Node *v2 = input(g, "v2", SHAPE(2));
    Node *ba = input(g, "ba", SHAPE(2, 1, 2, 3));
    Node *bb = input(g, "bb", SHAPE(3, 3, 2));
    graph_add_output(g, "dot", op2(g, OP_MATMUL, v3, w3, shape_of(0, NULL)));
    graph_add_output(g, "mm", op2(g, OP_MATMUL, a, b, SHAPE(2, 2)));
    graph_add_output(g, "vm", op2(g, OP_MATMUL, v2, b, SHAPE(2)));
    graph_add_output(g, "mv", op2(g, OP_MATMUL, a, v2, SHAPE(2)));
    graph_add_output(g, "bmm", op2(g, OP_MATMUL, ba, bb, SHAPE(2, 3, 2, 2)));
    graph_add_output(g, "vb", op2(g, OP_MATMUL, v3, bb, SHAPE(3, 2)));

    float v3v[3] = {1, 2, 3}, w3v[3] = {4, 5, 6}, av[4] = {1, 2, 3, 4}, bv[4] = {5, 6, 7, 8};
    float v2v[2] = {5, 6}, bav[12], bbv[18];
    float dot[1], mm[4], vm[2], mv[2], bmm[24], vb[6];
    fill(bav, 12, 18);
    fill(bbv, 18, 19);
    double want_bmm[24], want_vb[6];
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    double s = 0;
                    for (int p = 0; p < 3; p++)
                        s += (double)bav[(n * 2 + i) * 3 + p] * bbv[(c * 3 + p) * 2 + j];
                    want_bmm[((n * 3 + c) * 2 + i) * 2 + j] = s;
                }
    for (int c = 0; c < 3; c++)
        for (int j = 0; j < 2; j++)
            want_vb[c * 2 + j] = 1 * (double)bbv[(c * 3 + 0) * 2 + j] +
                                 2 * (double)bbv[(c * 3 + 1) * 2 + j] +
                                 3 * (double)bbv[(c * 3 + 2) * 2 + j];
    const float *ins[7] = {v3v, w3v, av, bv, v2v, bav, bbv};
    float *outs[6] = {dot, mm, vm, mv, bmm, vb};
    run_ok(g, NULL, ins, outs);
    check_close(dot[0], 32);
    check_all(mm, (const double[]){19, 22, 43, 50}, 4);
    check_all(vm, (const double[]){5 * 5 + 6 * 7, 5 * 6 + 6 * 8}, 2);
    check_all(mv, (const double[]){17, 39}, 2);
    check_all(bmm, want_bmm, 24);
    check_all(vb, want_vb, 6);
}

/* ---- pooling ------------------------------------------------------------------------- */

static Node *pool(Graph *g, OpKind kind, Node *x, Shape out, int64_t kh, int64_t kw, int64_t sh,
                  int64_t sw, int64_t ph, int64_t pw)
{
    Node *p = op1(g, kind, x, out);
    p->attr.pool.kh = kh;
    p->attr.pool.kw = kw;
    p->attr.pool.stride_h = sh;
    p->attr.pool.stride_w = sw;
    p->attr.pool.pad_h = ph;
    p->attr.pool.pad_w = pw;
    return p;
}

/* x = -(1..9) as 3x3, kernel 2, stride 2, padding 1: the windows hold {x00}, {x01,x02},
 * {x10,x20}, {x11,x12,x21,x22}. Average divides by 4 always (padding counts); max never
 * picks the padding (which would be 0 > every value). */
static void pools_with_padding(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(1, 1, 3, 3));
    graph_add_output(g, "avg", pool(g, OP_AVGPOOL2D, x, SHAPE(1, 1, 2, 2), 2, 2, 2, 2, 1, 1));
    graph_add_output(g, "max", pool(g, OP_MAXPOOL2D, x, SHAPE(1, 1, 2, 2), 2, 2, 2, 2, 1, 1));
    Node *y = input(g, "y", SHAPE(1, 2, 2, 4));
    graph_add_output(g, "avg12", pool(g, OP_AVGPOOL2D, y, SHAPE(1, 2, 2, 2), 1, 2, 1, 2, 0, 0));
    graph_add_output(g, "max12", pool(g, OP_MAXPOOL2D, y, SHAPE(1, 2, 2, 2), 1, 2, 1, 2, 0, 0));
    float xv[9], yv[16], avg[4], mx[4], avg12[8], max12[8];
    for (int i = 0; i < 9; i++)
        xv[i] = (float)-(i + 1);
    for (int i = 0; i < 16; i++)
        yv[i] = (float)(i % 2 ? i : -i);
    const float *ins[2] = {xv, yv};
    float *outs[4] = {avg, mx, avg12, max12};
    run_ok(g, NULL, ins, outs);
    check_all(avg, (const double[]){-0.25, -1.25, -2.75, -7}, 4);
    check_all(mx, (const double[]){-1, -2, -4, -5}, 4);
    /* pairs (-0,1), (-2,3), ... */
    check_all(avg12, (const double[]){0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5}, 8);
    check_all(max12, (const double[]){1, 3, 5, 7, 9, 11, 13, 15}, 8);
}

/* ---- outputs, memory ----------------------------------------------------------------- */

/* An output may be an input, a weight, a scalar, or the same node twice. */
static void outputs_of_every_kind(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(3));
    Node *p = param(g, "p", SHAPE(3));
    Node *r = op1(g, OP_RELU, x, SHAPE(3));
    graph_add_output(g, "x", x);
    graph_add_output(g, "r1", r);
    graph_add_output(g, "p", p);
    graph_add_output(g, "r2", r);
    graph_add_output(g, "s", graph_add_scalar(g, 2.5f, nowhere));
    float xv[3] = {-1, 0, 2}, pv[3] = {7, 8, 9}, ox[3], r1[3], op[3], r2[3], s[1];
    const float *ins[1] = {xv};
    const float *params[1] = {pv};
    float *outs[5] = {ox, r1, op, r2, s};
    run_ok(g, params, ins, outs);
    check_all(ox, (const double[]){-1, 0, 2}, 3);
    check_all(r1, (const double[]){0, 0, 2}, 3);
    check_all(op, (const double[]){7, 8, 9}, 3);
    check_all(r2, (const double[]){0, 0, 2}, 3);
    check_close(s[0], 2.5);
}

/* Values used long after they are made, and twice by one node, survive until their last use
 * (the sanitizer build catches a buffer freed too early). */
static void chain_with_reuse(void **state)
{
    Graph *g = new_graph(state);
    Node *x = input(g, "x", SHAPE(4));
    Node *a = op1(g, OP_RELU, x, SHAPE(4));
    Node *b = op1(g, OP_EXP, a, SHAPE(4));
    Node *c = op2(g, OP_ADD, a, b, SHAPE(4));
    Node *d = op2(g, OP_MUL, c, x, SHAPE(4));
    Node *e = op2(g, OP_MUL, d, d, SHAPE(4));
    graph_add_output(g, "e", e);
    graph_add_output(g, "a", a);
    float xv[4] = {-1, 0, 0.5f, 2}, eo[4], ao[4];
    double we[4], wa[4];
    for (int i = 0; i < 4; i++) {
        double xi = xv[i], ai = xi > 0 ? xi : 0, di = (ai + exp(ai)) * xi;
        wa[i] = ai;
        we[i] = di * di;
    }
    const float *ins[1] = {xv};
    float *outs[2] = {eo, ao};
    run_ok(g, NULL, ins, outs);
    check_all(eo, we, 4);
    check_all(ao, wa, 4);
}

/* [2^20, 1] + [1, 2^20] is 2^40 elements (4 TiB): a clean failure, not a crash. */
static void out_of_memory_is_reported(void **state)
{
    Graph *g = new_graph(state);
    Node *a = input(g, "a", SHAPE(1 << 20, 1));
    Node *b = input(g, "b", SHAPE(1, 1 << 20));
    Node *huge = op2(g, OP_ADD, a, b, SHAPE(1 << 20, 1 << 20));
    Node *s = op1(g, OP_SUM, huge, shape_of(0, NULL));
    s->attr.reduce.axes[0] = s->attr.reduce.axes[1] = true;
    graph_add_output(g, "s", s);
    float *av = calloc(1 << 20, sizeof(float)), *bv = calloc(1 << 20, sizeof(float)), out[1];
    assert_non_null(av);
    assert_non_null(bv);
    const float *ins[2] = {av, bv};
    float *outs[1] = {out};
    char err[256] = "";
    assert_true(graph_verify(g, stderr));
    assert_false(interp_run(g, NULL, ins, outs, err, sizeof err));
    assert_string_equal(err, "out of memory: intermediate %2 (add) needs 4.0 TiB");
    free(av);
    free(bv);
}

/* A node no output depends on is never computed, however large. */
static void dead_nodes_are_skipped(void **state)
{
    Graph *g = new_graph(state);
    Node *a = input(g, "a", SHAPE(1 << 20, 1));
    Node *b = input(g, "b", SHAPE(1, 1 << 20));
    op2(g, OP_ADD, a, b, SHAPE(1 << 20, 1 << 20));
    graph_add_output(g, "y", op1(g, OP_NEG, b, SHAPE(1, 1 << 20)));
    float *av = calloc(1 << 20, sizeof(float)), *bv = malloc((1 << 20) * sizeof(float));
    float *out = malloc((1 << 20) * sizeof(float));
    assert_non_null(av);
    assert_non_null(bv);
    assert_non_null(out);
    for (int i = 0; i < 1 << 20; i++)
        bv[i] = (float)i;
    const float *ins[2] = {av, bv};
    run1(g, NULL, ins, out);
    check_close(out[12345], -12345);
    free(av);
    free(bv);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(unary_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(broadcast_4d, setup, teardown),
        cmocka_unit_test_setup_teardown(broadcast_scalar_and_rank, setup, teardown),
        cmocka_unit_test_setup_teardown(min_max_add, setup, teardown),
        cmocka_unit_test_setup_teardown(nan_propagates, setup, teardown),
        cmocka_unit_test_setup_teardown(upsample_bilinear, setup, teardown),
        cmocka_unit_test_setup_teardown(upsample_same_size_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(upsample_nearest, setup, teardown),
        cmocka_unit_test_setup_teardown(upsample_nearest_f32_index, setup, teardown),
        cmocka_unit_test_setup_teardown(concat_axes, setup, teardown),
        cmocka_unit_test_setup_teardown(permute_rank3, setup, teardown),
        cmocka_unit_test_setup_teardown(view_keeps_order, setup, teardown),
        cmocka_unit_test_setup_teardown(conv2d_by_hand, setup, teardown),
        cmocka_unit_test_setup_teardown(conv2d_general, setup, teardown),
        cmocka_unit_test_setup_teardown(conv2d_no_bias_and_depthwise, setup, teardown),
        cmocka_unit_test_setup_teardown(batchnorm_by_hand, setup, teardown),
        cmocka_unit_test_setup_teardown(batchnorm_ranks, setup, teardown),
        cmocka_unit_test_setup_teardown(linear_rank3, setup, teardown),
        cmocka_unit_test_setup_teardown(layernorm_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(mha_two_heads, setup, teardown),
        cmocka_unit_test_setup_teardown(mha_no_bias_single_key, setup, teardown),
        cmocka_unit_test_setup_teardown(reductions, setup, teardown),
        cmocka_unit_test_setup_teardown(softmax_axes, setup, teardown),
        cmocka_unit_test_setup_teardown(matmul_ranks, setup, teardown),
        cmocka_unit_test_setup_teardown(pools_with_padding, setup, teardown),
        cmocka_unit_test_setup_teardown(outputs_of_every_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(chain_with_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(out_of_memory_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_nodes_are_skipped, setup, teardown),
    };
    return cmocka_run_group_tests_name("interp", tests, NULL, NULL);
}
