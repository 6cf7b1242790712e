/*
 * test_schedule: Graph -> LoopProgram. For every op (and odd shapes: 1x1, primes, widths below
 * and above the vector width) the program must pass loop_verify, keep weights out of run
 * kernels, use vectors where the schedule promises them, and compute what interp.c computes.
 * The last check runs the loop IR through a small evaluator written here (independent of the C
 * generator) that also fails on any out-of-bounds load or store.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "graph.h"
#include "interp.h"
#include "loop.h"
#include "schedule.h"
#include "test_support.h"
#include "util.h"

/* ---- a loop IR evaluator ----------------------------------------------------------- */

typedef struct Val {
    LoopType t;
    float f[16];
    int64_t i[16];
    bool b[16];
} Val;

typedef struct Eval {
    const LoopProgram *p;
    float **mem; /* by buffer id */
    Val *vars;   /* by var id of the running kernel */
    bool oob;    /* an access fell outside its buffer */
    char what[256];
} Eval;

static void check_access(Eval *ev, const LoopBuffer *b, int64_t at, uint32_t lanes)
{
    if (at < 0 || at + (int64_t)lanes > b->elems) {
        if (!ev->oob)
            snprintf(ev->what, sizeof ev->what, "%s[%lld x%u] outside f32[%lld]", b->name,
                     (long long)at, lanes, (long long)b->elems);
        ev->oob = true;
    }
}

static float nan_max(float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) ? a : b;
    return a > b ? a : b;
}

static float nan_min(float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) ? a : b;
    return a < b ? a : b;
}

static Val eval(Eval *ev, const LoopExpr *e);

static float unary_f(LoopOp op, float x)
{
    switch (op) {
    case LOP_NEG:
        return -x;
    case LOP_ABS:
        return fabsf(x);
    case LOP_SQRT:
        return sqrtf(x);
    case LOP_FLOOR:
        return floorf(x);
    case LOP_EXP:
        return expf(x);
    case LOP_TANH:
        return tanhf(x);
    case LOP_SIGMOID:
        return (float)(1.0 / (1.0 + exp(-(double)x)));
    default:
        fail_msg("unary op %d", (int)op);
    }
    return 0;
}

static float binary_f(LoopOp op, float a, float b)
{
    switch (op) {
    case LOP_ADD:
        return a + b;
    case LOP_SUB:
        return a - b;
    case LOP_MUL:
        return a * b;
    case LOP_DIV:
        return a / b;
    case LOP_MIN:
        return nan_min(a, b);
    case LOP_MAX:
        return nan_max(a, b);
    case LOP_LDEXP:
        return isnan(b) ? NAN : ldexpf(a, (int)b); /* NaN only where x is NaN */
    default:
        fail_msg("f32 binary op %d", (int)op);
    }
    return 0;
}

static int64_t binary_i(LoopOp op, int64_t a, int64_t b)
{
    switch (op) {
    case LOP_ADD:
        return a + b;
    case LOP_SUB:
        return a - b;
    case LOP_MUL:
        return a * b;
    case LOP_MIN:
        return a < b ? a : b;
    case LOP_MAX:
        return a > b ? a : b;
    case LOP_FLOORDIV:
        assert_true(b > 0);
        return a >= 0 ? a / b : -((-a + b - 1) / b);
    case LOP_MOD: {
        assert_true(b > 0);
        int64_t m = a % b;
        return m < 0 ? m + b : m;
    }
    default:
        fail_msg("i64 binary op %d", (int)op);
    }
    return 0;
}

static bool cmp_f(LoopCmp c, double a, double b)
{
    switch (c) {
    case LCMP_EQ:
        return a == b;
    case LCMP_NE:
        return a != b;
    case LCMP_LT:
        return a < b;
    case LCMP_LE:
        return a <= b;
    case LCMP_GT:
        return a > b;
    case LCMP_GE:
        return a >= b;
    }
    return false;
}

static Val eval_op(Eval *ev, const LoopExpr *e)
{
    Val r = {.t = e->type};
    uint32_t n = e->type.lanes;
    Val a = e->op.a ? eval(ev, e->op.a) : r;
    Val b = e->op.b ? eval(ev, e->op.b) : r;
    Val c = e->op.c && e->kind != LEXPR_CMP ? eval(ev, e->op.c) : r;
    for (uint32_t l = 0; l < n; l++) {
        switch (e->kind) {
        case LEXPR_UNARY:
            r.f[l] = unary_f(e->op.op, a.f[l]);
            break;
        case LEXPR_BINARY:
            if (e->type.scalar == LT_F32)
                r.f[l] = binary_f(e->op.op, a.f[l], b.f[l]);
            else if (e->type.scalar == LT_I64)
                r.i[l] = binary_i(e->op.op, a.i[l], b.i[l]);
            else
                r.b[l] = e->op.op == LOP_AND ? a.b[l] && b.b[l] : a.b[l] || b.b[l];
            break;
        case LEXPR_FMA:
            r.f[l] = fmaf(a.f[l], b.f[l], c.f[l]);
            break;
        case LEXPR_SELECT:
            r.f[l] = a.b[l] ? b.f[l] : c.f[l];
            r.i[l] = a.b[l] ? b.i[l] : c.i[l];
            break;
        case LEXPR_CMP:
            r.b[l] = a.t.scalar == LT_F32 ? cmp_f(e->op.cmp, a.f[l], b.f[l])
                                          : cmp_f(e->op.cmp, (double)a.i[l], (double)b.i[l]);
            break;
        case LEXPR_BROADCAST:
            r.f[l] = a.f[0];
            r.i[l] = a.i[0];
            r.b[l] = a.b[0];
            break;
        case LEXPR_CAST:
            if (e->type.scalar == LT_F32)
                r.f[l] = (float)a.i[l];
            else
                r.i[l] = (int64_t)a.f[l];
            break;
        default:
            fail_msg("expression kind %d", (int)e->kind);
        }
    }
    return r;
}

static Val eval(Eval *ev, const LoopExpr *e)
{
    Val r = {.t = e->type};
    switch (e->kind) {
    case LEXPR_CONST_F:
        r.f[0] = e->f;
        return r;
    case LEXPR_CONST_I:
        r.i[0] = e->i;
        return r;
    case LEXPR_VAR:
        return ev->vars[e->var->id];
    case LEXPR_LOAD: {
        int64_t at = eval(ev, e->load.index).i[0];
        check_access(ev, e->load.buf, at, e->type.lanes);
        if (!ev->oob)
            for (uint32_t l = 0; l < e->type.lanes; l++)
                r.f[l] = ev->mem[e->load.buf->id][at + l];
        return r;
    }
    case LEXPR_REDUCE: {
        Val a = eval(ev, e->op.a);
        r.f[0] = a.f[0];
        for (uint32_t l = 1; l < a.t.lanes; l++)
            r.f[0] = binary_f(e->op.op, r.f[0], a.f[l]);
        return r;
    }
    case LEXPR_IOTA:
        for (uint32_t l = 0; l < e->type.lanes; l++)
            r.i[l] = l;
        return r;
    case LEXPR_SHUFFLE: {
        Val a = eval(ev, e->op.a);
        for (uint32_t l = 0; l < e->type.lanes; l++)
            r.f[l] = a.f[e->op.sel[l]];
        return r;
    }
    case LEXPR_GATHER: {
        Val at = eval(ev, e->load.index);
        for (uint32_t l = 0; l < e->type.lanes && !ev->oob; l++) {
            check_access(ev, e->load.buf, at.i[l], 1);
            if (!ev->oob)
                r.f[l] = ev->mem[e->load.buf->id][at.i[l]];
        }
        return r;
    }
    default:
        return eval_op(ev, e);
    }
}

static void exec(Eval *ev, const LoopStmt *s)
{
    if (ev->oob)
        return;
    switch (s->kind) {
    case LOOP_BLOCK:
        for (uint32_t i = 0; i < s->block.n && !ev->oob; i++)
            exec(ev, s->block.stmts[i]);
        return;
    case LOOP_FOR: {
        int64_t lo = eval(ev, s->loop.lo).i[0], hi = eval(ev, s->loop.hi).i[0];
        Val *v = &ev->vars[s->loop.var->id];
        v->t = s->loop.var->type;
        for (int64_t i = lo; i < hi && !ev->oob; i += s->loop.step) {
            v->i[0] = i;
            exec(ev, s->loop.body);
        }
        return;
    }
    case LOOP_STORE: {
        int64_t at = eval(ev, s->store.index).i[0];
        Val x = eval(ev, s->store.value);
        check_access(ev, s->store.buf, at, x.t.lanes);
        if (!ev->oob)
            for (uint32_t l = 0; l < x.t.lanes; l++)
                ev->mem[s->store.buf->id][at + l] = x.f[l];
        return;
    }
    case LOOP_IF:
        if (eval(ev, s->branch.cond).b[0])
            exec(ev, s->branch.then_body);
        else if (s->branch.else_body)
            exec(ev, s->branch.else_body);
        return;
    case LOOP_DECL:
        ev->vars[s->decl.var->id] = eval(ev, s->decl.init);
        return;
    case LOOP_ASSIGN:
        ev->vars[s->assign.var->id] = eval(ev, s->assign.value);
        return;
    case LOOP_PREFETCH:
        return;
    }
}

static void run_kernel(Eval *ev, const LoopKernel *k)
{
    ev->vars = calloc(k->nvars + 1, sizeof(Val));
    exec(ev, k->body);
    free(ev->vars);
    ev->vars = NULL;
}

/* ---- helpers ----------------------------------------------------------------------- */

typedef struct Case {
    const char *name;
    const char *spec;
    const char *dims;
} Case;

/* Uniform in [-2, 2) from a 64-bit LCG. */
static float frand(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*state >> 40) / (double)(1ull << 24)) * 4.0f - 2.0f;
}

/* Visits every expression of a statement tree; `fn` returns true to stop. */
typedef bool (*ExprFn)(const LoopExpr *e, const void *ctx);

static bool any_expr(const LoopExpr *e, ExprFn fn, const void *ctx)
{
    if (!e)
        return false;
    if (fn(e, ctx))
        return true;
    switch (e->kind) {
    case LEXPR_CONST_F:
    case LEXPR_CONST_I:
    case LEXPR_VAR:
        return false;
    case LEXPR_LOAD:
        return any_expr(e->load.index, fn, ctx);
    case LEXPR_CMP:
        return any_expr(e->op.a, fn, ctx) || any_expr(e->op.b, fn, ctx);
    default:
        return any_expr(e->op.a, fn, ctx) || any_expr(e->op.b, fn, ctx) ||
               any_expr(e->op.c, fn, ctx);
    }
}

static bool any_in_stmt(const LoopStmt *s, ExprFn fn, const void *ctx)
{
    switch (s->kind) {
    case LOOP_BLOCK:
        for (uint32_t i = 0; i < s->block.n; i++)
            if (any_in_stmt(s->block.stmts[i], fn, ctx))
                return true;
        return false;
    case LOOP_FOR:
        return any_expr(s->loop.lo, fn, ctx) || any_expr(s->loop.hi, fn, ctx) ||
               any_in_stmt(s->loop.body, fn, ctx);
    case LOOP_STORE:
        return any_expr(s->store.index, fn, ctx) || any_expr(s->store.value, fn, ctx);
    case LOOP_IF:
        return any_expr(s->branch.cond, fn, ctx) || any_in_stmt(s->branch.then_body, fn, ctx) ||
               (s->branch.else_body && any_in_stmt(s->branch.else_body, fn, ctx));
    case LOOP_DECL:
        return any_expr(s->decl.init, fn, ctx);
    case LOOP_ASSIGN:
        return any_expr(s->assign.value, fn, ctx);
    case LOOP_PREFETCH:
        return any_expr(s->prefetch.index, fn, ctx);
    }
    return false;
}

static bool is_param_load(const LoopExpr *e, const void *ctx)
{
    (void)ctx;
    return e->kind == LEXPR_LOAD && e->load.buf->kind == BUF_PARAM;
}

static bool is_vector_load(const LoopExpr *e, const void *ctx)
{
    return e->kind == LEXPR_LOAD && e->type.lanes == *(const uint32_t *)ctx;
}

static bool is_fma(const LoopExpr *e, const void *ctx)
{
    return e->kind == LEXPR_FMA && e->type.lanes == *(const uint32_t *)ctx;
}

/* Runs p through the evaluator and interp_run on the same random data; asserts agreement. */
static void check_numerics(const Graph *g, const LoopProgram *p, const char *name)
{
    float **mem = calloc(p->nbuffers, sizeof(float *));
    float **ins = calloc(g->ninputs + 1, sizeof(float *));
    float **prm = calloc(g->nparams + 1, sizeof(float *));
    float **outs = calloc(g->noutputs + 1, sizeof(float *));
    uint64_t rng = 12345;
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const LoopBuffer *b = p->buffers[i];
        mem[i] = malloc((size_t)b->elems * sizeof(float));
        for (int64_t j = 0; j < b->elems; j++)
            mem[i][j] = b->kind == BUF_INPUT || b->kind == BUF_PARAM ? frand(&rng) : NAN;
        if (b->kind == BUF_PARAM && strstr(b->key, "running_var"))
            for (int64_t j = 0; j < b->elems; j++)
                mem[i][j] = fabsf(mem[i][j]) + 0.5f;
        if (b->kind == BUF_INPUT)
            ins[b->index] = mem[i];
        if (b->kind == BUF_PARAM)
            prm[b->index] = mem[i];
    }
    for (uint32_t o = 0; o < g->noutputs; o++)
        outs[o] = calloc((size_t)shape_numel(&g->outputs[o]->shape), sizeof(float));
    char err[256];
    assert_true(
        interp_run(g, (const float *const *)prm, (const float *const *)ins, outs, err, sizeof err));
    Eval ev = {.p = p, .mem = mem};
    for (uint32_t i = 0; i < p->nprepare; i++)
        run_kernel(&ev, p->prepare[i]);
    for (uint32_t i = 0; i < p->nkernels && !ev.oob; i++)
        run_kernel(&ev, p->kernels[i]);
    if (ev.oob)
        fail_msg("%s (vl %u): out of bounds: %s", name, p->vector_lanes, ev.what);
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const LoopBuffer *b = p->buffers[i];
        if (b->kind != BUF_OUTPUT)
            continue;
        const float *want = outs[b->index], *got = mem[i];
        double mx = 1.0, err_max = 0.0;
        for (int64_t j = 0; j < b->elems; j++)
            if (isfinite(want[j]) && fabs(want[j]) > mx)
                mx = fabs(want[j]);
        for (int64_t j = 0; j < b->elems; j++) {
            bool same = (isnan(want[j]) && isnan(got[j])) || want[j] == got[j];
            double d = same ? 0.0 : fabs((double)want[j] - (double)got[j]);
            if (isnan(d) || d > err_max)
                err_max = isnan(d) ? INFINITY : d;
            if (!(d <= 1e-4 * mx))
                fail_msg("%s (vl %u): output %s[%lld] = %g, want %g", name, p->vector_lanes,
                         b->name, (long long)j, (double)got[j], (double)want[j]);
        }
    }
    for (uint32_t i = 0; i < p->nbuffers; i++)
        free(mem[i]);
    for (uint32_t o = 0; o < g->noutputs; o++)
        free(outs[o]);
    free(mem);
    free(ins);
    free(prm);
    free(outs);
}

/* Compiles, schedules with vl lanes, verifies, checks structure and numerics. */
static LoopProgram *schedule_case(TestCompile *t, const Case *c, uint32_t vl)
{
    if (!test_compile(t, c->spec, NULL, c->dims))
        fail_msg("%s: %s", c->name, test_diagnostics(t));
    LoopProgram *p = schedule_graph(&t->cx, t->graph, vl);
    assert_non_null(p);
    if (getenv("SCHED_DUMP"))
        loop_dump(p, stderr);
    if (!loop_verify(p, stderr))
        fail_msg("%s: loop_verify failed", c->name);
    assert_int_equal(p->vector_lanes, vl);
    for (uint32_t i = 0; i < p->nkernels; i++)
        assert_false(any_in_stmt(p->kernels[i]->body, is_param_load, NULL));
    check_numerics(t->graph, p, c->name);
    return p;
}

static void run_cases(const Case *cases, size_t n)
{
    static const uint32_t widths[] = {4, 8, 16};
    for (size_t i = 0; i < n; i++)
        for (size_t w = 0; w < countof(widths); w++) {
            TestCompile t;
            schedule_case(&t, &cases[i], widths[w]);
            test_compile_free(&t);
        }
}

#define G(sig, body) "fuse 1\ngraph g(" sig " {\n" body "\n}\n"

/* ---- numerics of every op ---------------------------------------------------------- */

static void elementwise_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"relu", G("x: f32[2,3,5,7]) -> f32[2,3,5,7]", "return relu(x)"), NULL},
        {"unary_chain",
         G("x: f32[3,37]) -> f32[3,37]",
           "return sigmoid(x) + tanh(x) * exp(x) - silu(x) + abs(neg(x))"),
         NULL},
        {"sqrt_rsqrt",
         G("x: f32[1,1]) -> f32[1,1]", "return sqrt(abs(x) + 0.1) + rsqrt(abs(x) + 1)"), NULL},
        {"gelu", G("x: f32[2,17]) -> f32[2,17]", "return gelu(x) + gelu(x, approximate=tanh)"),
         NULL},
        {"bcast_gate", G("x: f32[2,5,7,9], g: f32[2,5,1,1]) -> f32[2,5,7,9]", "return x * g"),
         NULL},
        {"bcast_row",
         G("x: f32[2,3,5,7], r: f32[7]) -> f32[2,3,5,7]", "return max(x, r) - min(r, x)"), NULL},
        {"bcast_both",
         G("p: f32[2,1,7,1], q: f32[1,5,1,9]) -> f32[2,5,7,9]", "return p * q + p / 3"), NULL},
        {"big_1d", G("x: f32[40000]) -> f32[40000]", "return 2 * x + 1"), NULL},
        {"big_1d_even", G("x: f32[32768]) -> f32[32768]", "return x - 0.5"), NULL},
        {"scalar_only", G("x: f32[3]) -> f32[3]", "return x * (2 + 0)"), NULL},
    };
    run_cases(cases, countof(cases));
}

/* sqrt of negative inputs makes NaNs among ordinary values: they must propagate as in torch. */
static void nan_propagation(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"nan_relu", G("x: f32[2,3,5,7]) -> f32[2,3,5,7]", "return relu(sqrt(x))"), NULL},
        {"nan_minmax", G("x: f32[2,37]) -> f32[2,37]", "return max(sqrt(x), x) + min(x, sqrt(x))"),
         NULL},
        {"nan_amax", G("x: f32[2,3,5,7]) -> f32[2,3]", "return amax(sqrt(x + 1.5), axes=[2,3])"),
         NULL},
        {"nan_amin_c", G("x: f32[2,3,5,7]) -> f32[2,5,7]", "return amin(sqrt(x + 1), axes=[1])"),
         NULL},
        {"nan_softmax", G("x: f32[4,37]) -> f32[4,37]", "return softmax(sqrt(x + 1.9), axis=1)"),
         NULL},
        {"nan_maxpool",
         G("x: f32[1,2,13,17]) -> f32[1,2,6,8]", "return maxpool2d(sqrt(x + 1.9), kernel=2)"),
         NULL},
    };
    run_cases(cases, countof(cases));
}

static void layout_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"permute", G("x: f32[2,3,5,7]) -> f32[2,5,7,3]", "return permute(x, perm=[0,2,3,1])"),
         NULL},
        {"permute_keep_last",
         G("x: f32[2,3,5,17]) -> f32[3,2,5,17]", "return permute(x, perm=[1,0,2,3])"), NULL},
        {"view_output", G("x: f32[2,3,5,7]) -> f32[6,35]", "return view(x, shape=[6,35])"), NULL},
        {"view_relu", G("x: f32[2,3,5,7]) -> f32[6,35]", "return relu(view(x, shape=[6,35]))"),
         NULL},
        {"concat1",
         G("a: f32[2,3,5,7], b: f32[2,4,5,7]) -> f32[2,7,5,7]", "return concat(a, b, axis=1)"),
         NULL},
        {"concat_last",
         G("a: f32[2,3,5], b: f32[2,3,4]) -> f32[2,3,14]", "return concat(a, b, a * 0, axis=-1)"),
         NULL},
        {"concat0",
         G("a: f32[1,3,5], b: f32[2,3,5]) -> f32[4,3,5]", "return concat(a, b, a, axis=0)"), NULL},
    };
    run_cases(cases, countof(cases));
}

static void upsample_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"nearest_size",
         G("x: f32[2,3,7,9]) -> f32[2,3,17,20]", "return upsample(x, size=[17,20])"), NULL},
        {"nearest_x2", G("x: f32[2,3,7,13]) -> f32[2,3,14,26]", "return upsample(x, scale=2)"),
         NULL},
        {"nearest_down",
         G("x: f32[1,2,17,33]) -> f32[1,2,7,13]", "return upsample(x, size=[7,13])"), NULL},
        {"nearest_46_111",
         G("x: f32[1,2,14,9]) -> f32[1,2,46,111]", "return upsample(x, size=[46,111])"), NULL},
        {"bilinear_ac_false",
         G("x: f32[2,3,7,13]) -> f32[2,3,17,20]",
           "return upsample(x, size=[17,20], mode=bilinear)"),
         NULL},
        {"bilinear_ac_true",
         G("x: f32[2,3,7,13]) -> f32[2,3,17,20]",
           "return upsample(x, size=[17,20], mode=bilinear, align_corners=true)"),
         NULL},
        {"bilinear_scale",
         G("x: f32[1,3,5,7]) -> f32[1,3,6,9]", "return upsample(x, scale=1.3, mode=bilinear)"),
         NULL},
        {"bilinear_from1",
         G("x: f32[2,3,1,5]) -> f32[2,3,1,11]", "return upsample(x, size=[1,11], mode=bilinear)"),
         NULL},
        {"bilinear_down",
         G("x: f32[1,3,17,33]) -> f32[1,3,7,13]", "return upsample(x, size=[7,13], mode=bilinear)"),
         NULL},
    };
    run_cases(cases, countof(cases));
}

static void reduce_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"mean_hw", G("x: f32[2,3,5,7]) -> f32[2,3]", "return mean(x, axes=[2,3])"), NULL},
        {"mean_hw_keep",
         G("x: f32[2,3,5,7]) -> f32[2,3,1,1]", "return mean(x, axes=[2,3], keepdim=true)"), NULL},
        {"mean_c", G("x: f32[2,3,5,7]) -> f32[2,5,7]", "return mean(x, axes=[1])"), NULL},
        {"mean_all",
         G("x: f32[2,3,5,7]) -> f32[1,1,1,1]", "return mean(x, axes=[0,1,2,3], keepdim=true)"),
         NULL},
        {"sum_mixed",
         G("x: f32[2,3,5,7]) -> f32[1,3,5,1]", "return sum(x, axes=[-1,-4], keepdim=true)"), NULL},
        {"sum_long", G("x: f32[4,33]) -> f32[4]", "return sum(x, axes=[1])"), NULL},
        {"amax", G("x: f32[2,3,5,7]) -> f32[2,3]", "return amax(x, axes=[-1,-2])"), NULL},
        {"amax_c", G("x: f32[2,3,5,7]) -> f32[2,1,5,7]", "return amax(x, axes=[1], keepdim=true)"),
         NULL},
        {"amin_02", G("x: f32[2,3,5,7]) -> f32[3,7]", "return amin(x, axes=[0,2])"), NULL},
        {"amin_3", G("x: f32[2,3,5,37]) -> f32[2,3,5]", "return amin(x, axes=[3])"), NULL},
        {"sum_size1", G("x: f32[3,1,5]) -> f32[3,5]", "return sum(x, axes=[1])"), NULL},
        {"softmax_last", G("x: f32[2,3,5,7]) -> f32[2,3,5,7]", "return softmax(20 * x, axis=-1)"),
         NULL},
        {"softmax_long", G("x: f32[3,41]) -> f32[3,41]", "return softmax(20 * x, axis=1)"), NULL},
        {"softmax_axis1", G("x: f32[2,3,5,7]) -> f32[2,3,5,7]", "return softmax(x, axis=1)"), NULL},
        {"softmax_axis0", G("x: f32[4,6]) -> f32[4,6]", "return softmax(50 * x, axis=0)"), NULL},
        /* long rows: tiles of 4 (2, 1) interleaved vector accumulators, single vectors, a
         * scalar tail; two reductions of x in one pass */
        {"pools_long",
         G("x: f32[3,1003]) -> (a: f32[3], m: f32[3], n: f32[3])",
           "return mean(x, axes=[1]), amax(x, axes=[1]), amin(x, axes=[1])"),
         NULL},
        {"sum_long_rows", G("x: f32[2,1003]) -> f32[2]", "return sum(x * 3, axes=[1])"), NULL},
        {"mean_rows", G("x: f32[2,3,300]) -> f32[2,3]", "return mean(x, axes=[2])"), NULL},
        /* reductions over the channels of long rows: blocks of the row in parallel, the last
         * one partial, tiles of vectors, then single vectors and a scalar tail */
        {"channel_pools_blocked",
         G("x: f32[2,5,1,1100], g: f32[2,5,1,1]) -> (y: f32[2,5,1,1100], a: f32[2,1,1,1100], "
           "m: f32[2,1,1,1100])",
           "y = x * g\nreturn y, mean(y, axes=[1], keepdim=true), amax(y, axes=[1], keepdim=true)"),
         NULL},
        {"channel_pools_three",
         G("x: f32[1,6,2,700]) -> (a: f32[1,1,2,700], m: f32[1,1,2,700], n: f32[1,1,2,700])",
           "return mean(x, axes=[1], keepdim=true), amax(x, axes=[1], keepdim=true), "
           "amin(x, axes=[1], keepdim=true)"),
         NULL},
    };
    run_cases(cases, countof(cases));
}

static void norm_and_pool_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"batchnorm2d", G("x: f32[2,5,7,9]) -> f32[2,5,7,9]", "return batchnorm2d(x) @bn"), NULL},
        {"batchnorm1d", G("x: f32[3,6]) -> f32[3,6]", "return batchnorm1d(x, eps=1e-3) @bn"), NULL},
        {"batchnorm1d_3", G("x: f32[2,6,11]) -> f32[2,6,11]", "return batchnorm1d(x) @bn"), NULL},
        {"layernorm", G("x: f32[2,5,13]) -> f32[2,5,13]", "return layernorm(x) @ln"), NULL},
        {"layernorm_long", G("x: f32[3,37]) -> f32[3,37]", "return layernorm(x, eps=1e-3) @ln"),
         NULL},
        {"avgpool",
         G("x: f32[2,3,13,17]) -> f32[2,3,7,9]",
           "return avgpool2d(x, kernel=3, stride=2, padding=1)"),
         NULL},
        {"maxpool",
         G("x: f32[2,3,13,17]) -> f32[2,3,7,9]",
           "return maxpool2d(x, kernel=3, stride=2, padding=1)"),
         NULL},
        {"maxpool_neg",
         G("x: f32[1,2,13,17]) -> f32[1,2,7,9]",
           "return maxpool2d(abs(x) * -1 - 1, kernel=3, stride=2, padding=1)"),
         NULL},
        {"pool_pairs",
         G("x: f32[2,3,13,17]) -> f32[2,3,13,9]",
           "return avgpool2d(x, kernel=[3,5], stride=[1,2], padding=[1,2])"),
         NULL},
        {"maxpool_k2", G("x: f32[2,3,13,17]) -> f32[2,3,6,8]", "return maxpool2d(x, kernel=2)"),
         NULL},
    };
    run_cases(cases, countof(cases));
}

static void contraction_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"linear2", G("x: f32[3,13]) -> f32[3,7]", "return linear(x, out=7) @fc"), NULL},
        {"linear4", G("x: f32[2,3,5,13]) -> f32[2,3,5,37]", "return linear(x, out=37) @fc"), NULL},
        {"linear_nobias",
         G("x: f32[2,5,13]) -> f32[2,5,40]", "return linear(x, out=40, bias=false) @fc"), NULL},
        {"linear_dot", G("x: f32[2,3,40]) -> f32[2,3,3]", "return linear(x, out=3) @fc"), NULL},
        {"linear_dot_nobias",
         G("x: f32[5,17]) -> f32[5,1]", "return linear(x, out=1, bias=false) @fc"), NULL},
        {"matmul_dot", G("a: f32[2,5,40], b: f32[40]) -> f32[2,5]", "return matmul(a, b)"), NULL},
        {"matmul_dot_col", G("a: f32[3,33], b: f32[33,1]) -> f32[3,1]", "return matmul(a, b)"),
         NULL},
        {"matmul_dot_t", G("a: f32[2,5,40], b: f32[2,40,3]) -> f32[2,5,3]", "return matmul(a, b)"),
         NULL},
        {"matmul_dot_bcast",
         G("a: f32[2,1,5,20], b: f32[3,20,2]) -> f32[2,3,5,2]", "return matmul(a, b)"), NULL},
        {"mha_dot",
         G("q: f32[2,5,32], k: f32[2,6,32], v: f32[2,6,32]) -> f32[2,5,32]",
           "return mha(q, k, v, heads=2) @attn"),
         NULL},
        {"matmul_2d", G("a: f32[5,7], b: f32[7,3]) -> f32[5,3]", "return matmul(a, b)"), NULL},
        {"matmul_wide", G("a: f32[8,7], b: f32[7,53]) -> f32[8,53]", "return matmul(a, b)"), NULL},
        {"matmul_1d_2d", G("a: f32[7], b: f32[7,3]) -> f32[3]", "return matmul(a, b)"), NULL},
        {"matmul_2d_1d", G("a: f32[5,7], b: f32[7]) -> f32[5]", "return matmul(a, b)"), NULL},
        {"matmul_bcast",
         G("a: f32[2,1,5,7], b: f32[3,7,4]) -> f32[2,3,5,4]", "return matmul(a, b)"), NULL},
        {"matmul_1d_3d", G("a: f32[7], b: f32[2,7,19]) -> f32[2,19]", "return matmul(a, b)"), NULL},
        {"matmul_1d_1d",
         G("a: f32[13], b: f32[13]) -> f32[1]", "return view(matmul(a, b), shape=[1])"), NULL},
        {"mha",
         G("q: f32[2,5,12], k: f32[2,7,12], v: f32[2,7,12]) -> f32[2,5,12]",
           "return mha(q, k, v, heads=3) @attn"),
         NULL},
        {"mha_nobias",
         G("x: f32[2,6,8]) -> f32[2,6,8]", "return mha(x, x, x, heads=2, bias=false) @attn"), NULL},
        {"mha_wide", G("x: f32[1,19,32]) -> f32[1,19,32]", "return mha(x, x, x, heads=1) @attn"),
         NULL},
    };
    run_cases(cases, countof(cases));
}

static void conv_ops(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"conv1x1",
         G("x: f32[2,7,13,17]) -> f32[2,8,13,17]", "return conv2d(x, out=8, kernel=1) @c"), NULL},
        {"conv1x1_odd",
         G("x: f32[1,3,5,7]) -> f32[1,3,5,7]", "return conv2d(x, out=3, kernel=1) @c"), NULL},
        {"conv1x1_on_1x1",
         G("x: f32[2,12,1,1]) -> f32[2,3,1,1]", "return conv2d(x, out=3, kernel=1, bias=false) @c"),
         NULL},
        {"conv1x1_dot",
         G("x: f32[2,40,1,1]) -> f32[2,6,1,1]", "return conv2d(x, out=6, kernel=1) @c"), NULL},
        {"conv1x1_dot_groups",
         G("x: f32[1,36,1,1]) -> f32[1,4,1,1]",
           "return conv2d(x, out=4, kernel=1, groups=2, bias=false) @c"),
         NULL},
        {"conv3_pad1",
         G("x: f32[2,3,13,17]) -> f32[2,4,13,17]",
           "return conv2d(x, out=4, kernel=3, padding=1) @c"),
         NULL},
        {"conv3_wide",
         G("x: f32[1,2,9,40]) -> f32[1,16,9,40]",
           "return conv2d(x, out=16, kernel=3, padding=1) @c"),
         NULL},
        {"conv_stride2",
         G("x: f32[2,3,13,17]) -> f32[2,5,7,9]",
           "return conv2d(x, out=5, kernel=3, stride=2, padding=1) @c"),
         NULL},
        {"conv_pad_wide",
         G("x: f32[1,3,7,9]) -> f32[1,2,11,13]", "return conv2d(x, out=2, kernel=3, padding=3) @c"),
         NULL},
        {"conv_h1",
         G("x: f32[2,4,1,5]) -> f32[2,3,1,5]", "return conv2d(x, out=3, kernel=3, padding=1) @c"),
         NULL},
        {"conv_groups",
         G("x: f32[2,4,13,17]) -> f32[2,6,7,9]",
           "return conv2d(x, out=6, kernel=3, stride=2, padding=2, dilation=2, groups=2) @c"),
         NULL},
        {"conv_dil_s1",
         G("x: f32[1,4,20,37]) -> f32[1,8,20,37]",
           "return conv2d(x, out=8, kernel=3, padding=2, dilation=2) @c"),
         NULL},
        {"conv_depthwise",
         G("x: f32[1,4,9,29]) -> f32[1,4,9,29]",
           "return conv2d(x, out=4, kernel=[3,5], padding=[1,2], groups=4) @c"),
         NULL},
        {"conv_7x7_2ch",
         G("x: f32[1,2,11,23]) -> f32[1,1,11,23]",
           "return conv2d(x, out=1, kernel=7, padding=3, bias=false) @c"),
         NULL},
        {"conv1x1_groups",
         G("x: f32[1,4,5,19]) -> f32[1,6,5,19]", "return conv2d(x, out=6, kernel=1, groups=2) @c"),
         NULL},
        {"conv1x1_stride2",
         G("x: f32[1,3,9,9]) -> f32[1,2,5,5]", "return conv2d(x, out=2, kernel=1, stride=2) @c"),
         NULL},
    };
    run_cases(cases, countof(cases));
}

/* The contraction kernels' packed weights, packed column blocks in thread scratch, prefetch of
 * the next block and upsampled rows built per channel block (x2 ones by shuffles): whole and
 * partial column blocks and panels, batches, scalar tails, rows wide enough for x2 interior
 * vectors at every vector width. */
static void contraction_kernels(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"conv1x1_blocks",
         G("x: f32[2,24,9,120]) -> f32[2,16,9,120]", "return conv2d(x, out=16, kernel=1) @c"),
         NULL},
        {"seed_x2",
         G("h: f32[1,16,6,64], l: f32[1,16,3,32]) -> f32[1,16,6,64]",
           "z = conv2d(l, out=16, kernel=1) @zl\n"
           "return relu(conv2d(h, out=16, kernel=1, bias=false) @zh + "
           "upsample(z, size=[6, 64], mode=bilinear))"),
         NULL},
        {"seed_x2_odd",
         G("h: f32[2,8,5,70], l: f32[2,16,3,35]) -> f32[2,16,5,70]",
           "z = conv2d(l, out=16, kernel=1) @zl\n"
           "return relu(conv2d(h, out=16, kernel=1, bias=false) @zh + "
           "upsample(z, size=[5, 70], mode=bilinear))"),
         NULL},
        {"seed_x2_aligned",
         G("h: f32[1,8,4,48], l: f32[1,8,2,24]) -> f32[1,16,4,48]",
           "z = conv2d(l, out=16, kernel=1) @zl\n"
           "return relu(conv2d(h, out=16, kernel=1, bias=false) @zh + "
           "upsample(z, scale=2, mode=bilinear, align_corners=true))"),
         NULL},
    };
    run_cases(cases, countof(cases));
}

static void outputs_and_weights(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"seed_block",
         "fuse 1\ndim H = 8, W = 8\n"
         "block cc(l: f32[N, Cl, Hl, Wl], h: f32[N, Ch, H, W]; out: int) -> f32[N, out, H, W] {\n"
         "  u = upsample(l, size=[H, W], mode=bilinear, align_corners=false)\n"
         "  x = concat(h, u, axis=1)\n  x = conv2d(x, out=out, kernel=1) @0\n"
         "  x = batchnorm2d(x) @1\n  return relu(x)\n}\n"
         "graph fuse_hl(h: f32[1, 16, H, W], l: f32[1, 16, H // 2, W // 2]) -> f32[1, 16, H, W] {\n"
         "  return cc(l, h, out=16) @conv_fuse\n}\n",
         NULL},
        {"output_is_input", G("x: f32[3,5]) -> (a: f32[3,5], b: f32[3,5])", "return x, relu(x)"),
         NULL},
        {"output_twice",
         G("x: f32[3,5]) -> (a: f32[3,5], b: f32[3,5])", "y = relu(x)\nreturn y, y"), NULL},
        {"output_param",
         G("x: f32[2,5,6]) -> (a: f32[6], b: f32[2,5,6])",
           "gm = param(shape=[6]) @gamma\nreturn gm, x * gm"),
         NULL},
        {"shared_weights",
         G("x: f32[2,4,5,7]) -> f32[2,4,5,7]", "y = conv2d(x, out=4, kernel=3, padding=1) @c\n"
                                               "return conv2d(y, out=4, kernel=3, padding=1) @c"),
         NULL},
        {"dead_code", G("x: f32[3,5]) -> f32[3,5]", "y = exp(x)\nreturn relu(x)"), NULL},
    };
    run_cases(cases, countof(cases));
}

/* ---- structure --------------------------------------------------------------------- */

static bool kernel_has(const LoopKernel *k, ExprFn fn, uint32_t lanes)
{
    return any_in_stmt(k->body, fn, &lanes);
}

static void buffers_and_kernels(void **state)
{
    (void)state;
    TestCompile t;
    Case c = {"seed",
              G("x: f32[1,7,13,17]) -> f32[1,8,13,17]",
                "return relu(batchnorm2d(conv2d(x, out=8, kernel=1) @c) @bn)"),
              NULL};
    LoopProgram *p = schedule_case(&t, &c, 8);
    assert_int_equal(p->nkernels, 1); /* conv with batchnorm and relu as its epilogue */
    uint32_t kinds[BUF_THREAD + 1] = {0};
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const LoopBuffer *b = p->buffers[i];
        kinds[b->kind]++;
        if (b->kind == BUF_INPUT) {
            assert_string_equal(b->name, "x");
            assert_int_equal(b->rank, 4);
            assert_int_equal(b->elems, 7 * 13 * 17);
        }
        if (b->kind == BUF_OUTPUT) {
            assert_int_equal(b->index, 0);
            assert_int_equal(b->elems, 8 * 13 * 17);
            assert_int_equal(b->shape[1], 8);
        }
        if (b->kind == BUF_PARAM)
            assert_non_null(b->key);
    }
    assert_int_equal(kinds[BUF_INPUT], 1);
    assert_int_equal(kinds[BUF_OUTPUT], 1);
    assert_int_equal(kinds[BUF_PARAM], 6);
    assert_true(kinds[BUF_PREPARED] >= 1 && p->nprepare >= 1); /* weights prepared at create */
    assert_int_equal(p->scratch_bytes % 64, 0);
    assert_true(p->flops > 0 && p->bytes > 0);
    assert_non_null(strstr(p->kernels[0]->comment, "test.fuse:3"));
    assert_non_null(strstr(p->kernels[0]->name, "conv2d"));
    for (uint32_t i = 0; i < p->nkernels; i++)
        assert_true(kernel_has(p->kernels[i], is_vector_load, 8));
    assert_true(kernel_has(p->kernels[0], is_fma, 8));
    test_compile_free(&t);
}

/* The scratch buffers holding exactly `elems` floats. */
static uint32_t scratch_of(const LoopProgram *p, int64_t elems)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->nbuffers; i++)
        n += p->buffers[i]->kind == BUF_SCRATCH && p->buffers[i]->elems == elems;
    return n;
}

/* A value whose only reader (besides its own kernel's side reductions) is the elementwise
 * kernel of an output of its shape is stored into that output, which the kernel then updates
 * in place (SE's x * gate): no full-size scratch. Not when the value is read elsewhere too, or
 * at other indices (through a permute), or broadcast. */
static void in_place_outputs(void **state)
{
    (void)state;
    static const struct {
        Case c;
        uint32_t scratch; /* full-size scratch buffers expected */
    } cases[] = {
        {{"se",
          G("x: f32[2,8,5,7]) -> f32[2,8,5,7]",
            "y = relu(conv2d(x, out=8, kernel=1) @c)\n"
            "return y * sigmoid(mean(y, axes=[2, 3], keepdim=true))"),
          NULL},
         0},
        {{"chain",
          G("x: f32[2,8,5,7]) -> f32[2,8,5,7]",
            "y = relu(conv2d(x, out=8, kernel=1) @c)\n"
            "return tanh(y * 2 + mean(y, axes=[2, 3], keepdim=true)) - y"),
          NULL},
         0},
        {{"also_returned",
          G("x: f32[2,8,5,7]) -> (a: f32[2,8,5,7], b: f32[2,8,5,7])",
            "y = relu(conv2d(x, out=8, kernel=1) @c)\n"
            "return y * sigmoid(mean(y, axes=[2, 3], keepdim=true)), "
            "exp(y)"),
          NULL},
         1},
        {{"permuted",
          G("x: f32[2,8,5,5]) -> f32[2,8,5,5]",
            "y = relu(conv2d(x, out=8, kernel=1) @c)\n"
            "return permute(y, perm=[0, 1, 3, 2]) * mean(y, axes=[2, 3], keepdim=true)"),
          NULL},
         1},
    };
    for (size_t i = 0; i < countof(cases); i++)
        for (uint32_t vl = 4; vl <= 16; vl *= 2) {
            TestCompile t;
            LoopProgram *p = schedule_case(&t, &cases[i].c, vl);
            if (scratch_of(p, 2 * 8 * 5 * (i == 3 ? 5 : 7)) != cases[i].scratch)
                fail_msg("%s (vl %u): %u full-size scratch buffers, want %u", cases[i].c.name, vl,
                         scratch_of(p, 2 * 8 * 5 * (i == 3 ? 5 : 7)), cases[i].scratch);
            test_compile_free(&t);
        }
}

static bool is_identifier(const char *s)
{
    if (!s[0] || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

static uint32_t count_named(const LoopProgram *p, const char *part)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->nkernels; i++)
        n += strstr(p->kernels[i]->name, part) != NULL;
    return n;
}

/* A global pool over a contraction's output of many pixels: the contraction runs over column
 * blocks in parallel, so each block keeps its own partial pool and one more kernel combines
 * them in block order (the numerics are checked at every width, threads or not). */
static void column_pools_per_block(void **state)
{
    (void)state;
    Case c = {"pools",
              G("x: f32[2,16,40,40]) -> (y: f32[2,16,40,40], m: f32[2,16,1,1])",
                "y = relu(conv2d(x, out=16, kernel=1) @c)\n"
                "return y * sigmoid(mean(y, axes=[2, 3], keepdim=true)), "
                "amax(y, axes=[2, 3], keepdim=true)"),
              NULL};
    for (uint32_t vl = 4; vl <= 16; vl *= 2) {
        TestCompile t;
        LoopProgram *p = schedule_case(&t, &c, vl);
        assert_int_equal(count_named(p, "_pool"), 1);
        test_compile_free(&t);
    }
}

/* A 1x1 conv over many pixels runs in parallel over column blocks of whole register-tile
 * panels (no narrower remainder tile in every block): 4096 pixels make 18 blocks of 240 with
 * 4 x 3 tiles of 8 lanes, 17 of 252 with 4 lanes, 16 of 256 with 8 x 2 tiles of 16 lanes.
 * A block is packed only when 4 or more row blocks use it. */
static void column_blocks_are_whole_panels(void **state)
{
    (void)state;
    Case c = {
        "blocks",
        G("x: f32[1,32,64,64]) -> f32[1,32,64,64]", "return relu(conv2d(x, out=32, kernel=1) @c)"),
        NULL};
    static const struct {
        uint32_t vl;
        int64_t blocks;
    } want[] = {{4, 17}, {8, 18}, {16, 16}};
    for (size_t i = 0; i < countof(want); i++) {
        TestCompile t;
        LoopProgram *p = schedule_case(&t, &c, want[i].vl);
        assert_int_equal(p->nkernels, 1);
        const LoopStmt *par = NULL;
        const LoopStmt *body = p->kernels[0]->body;
        for (uint32_t j = 0; j < body->block.n; j++)
            if (body->block.stmts[j]->kind == LOOP_FOR &&
                body->block.stmts[j]->loop.for_kind == FOR_PARALLEL)
                par = body->block.stmts[j];
        assert_non_null(par);
        assert_int_equal(par->loop.hi->kind, LEXPR_CONST_I);
        if (par->loop.hi->i != want[i].blocks)
            fail_msg("vl %u: %lld column blocks, want %lld", want[i].vl, (long long)par->loop.hi->i,
                     (long long)want[i].blocks);
        test_compile_free(&t);
    } /* with 2 row blocks B is read in place: packing would cost as much as its use */
    Case few = {
        "few_rows",
        G("x: f32[1,32,64,64]) -> f32[1,8,64,64]", "return relu(conv2d(x, out=8, kernel=1) @c)"),
        NULL};
    TestCompile t;
    LoopProgram *p = schedule_case(&t, &few, 8);
    for (uint32_t b = 0; b < p->nbuffers; b++)
        assert_false(p->buffers[b]->kind == BUF_THREAD &&
                     strncmp(p->buffers[b]->name, "panel", 5) == 0);
    test_compile_free(&t);
}

/* Reductions of one input over the same axes run as one kernel (one pass over the input);
 * over other axes, or of another value, they stay apart. The channel reductions of 700
 * pixels run in parallel blocks of 512 (the last one partial). */
static void sibling_reductions(void **state)
{
    (void)state;
    static const struct {
        Case c;
        uint32_t kernels;
    } cases[] = {
        {{"pools",
          G("x: f32[2,6,5,7]) -> (a: f32[2,6,1,1], m: f32[2,6], n: f32[2,6,1,1], s: f32[2,5,7])",
            "return mean(x, axes=[2, 3], keepdim=true), amax(x, axes=[2, 3]), "
            "amin(x, axes=[3, 2], keepdim=true), sum(x, axes=[1])"),
          NULL},
         2},
        {{"channels",
          G("x: f32[1,6,5,140]) -> (a: f32[1,1,5,140], m: f32[1,1,5,140], y: f32[1,6,5,140])",
            "return mean(x, axes=[1], keepdim=true), amax(x, axes=[1], keepdim=true), "
            "mean(relu(x), axes=[1], keepdim=true) * x"),
          NULL},
         3},
    };
    for (size_t i = 0; i < countof(cases); i++)
        for (uint32_t vl = 4; vl <= 16; vl *= 2) {
            TestCompile t;
            LoopProgram *p = schedule_case(&t, &cases[i].c, vl);
            if (p->nkernels != cases[i].kernels)
                fail_msg("%s (vl %u): %u kernels, want %u", cases[i].c.name, vl, p->nkernels,
                         cases[i].kernels);
            test_compile_free(&t);
        }
}

/* Vector stores to buffer b in s: *streaming of them marked streaming, *all in total. */
static void count_stores(const LoopStmt *s, const LoopBuffer *b, uint32_t *streaming, uint32_t *all)
{
    if (!s)
        return;
    if (s->kind == LOOP_BLOCK)
        for (uint32_t i = 0; i < s->block.n; i++)
            count_stores(s->block.stmts[i], b, streaming, all);
    else if (s->kind == LOOP_FOR)
        count_stores(s->loop.body, b, streaming, all);
    else if (s->kind == LOOP_IF) {
        count_stores(s->branch.then_body, b, streaming, all);
        count_stores(s->branch.else_body, b, streaming, all);
    } else if (s->kind == LOOP_STORE && s->store.buf == b && s->store.value->type.lanes > 1) {
        *streaming += s->store.streaming;
        *all += 1;
    }
}

/* Streaming stores: the row sweeps of a kernel that writes a buffer of 16 MiB or more and does
 * not read it; not a smaller buffer, not a contraction's register tiles (partial lines), not
 * a kernel that updates its output in place. */
static void streaming_marks(void **state)
{
    (void)state;
    static const struct {
        Case c;
        bool streamed; /* every vector store to output 0 is streaming (else none is) */
    } cases[] = {
        {{"sweep_16mib",
          G("a: f32[1,64,256,256], b: f32[1,64,256,256]) -> (s: f32[1,64,256,256], "
            "m: f32[1,64,256,256])",
            "return a + b, a * b"),
          NULL},
         true},
        {{"sweep_8mib",
          G("a: f32[1,32,256,256], b: f32[1,32,256,256]) -> f32[1,32,256,256]", "return a + b"),
          NULL},
         false},
        {{"upsample_add",
          G("h: f32[1,64,256,256], l: f32[1,64,128,128]) -> f32[1,64,256,256]",
            "return h + upsample(l, size=[256, 256], mode=bilinear, align_corners=false)"),
          NULL},
         true},
        {{"channel_pool_rows",
          G("x: f32[1,64,256,256], g: f32[1,64,1,1]) -> (y: f32[1,64,256,256], "
            "a: f32[1,1,256,256])",
            "y = x * g\nreturn y, mean(y, axes=[1], keepdim=true)"),
          NULL},
         true},
        {{"tiles",
          G("x: f32[1,64,256,256]) -> f32[1,64,256,256]",
            "return relu(conv2d(x, out=64, kernel=1) @c)"),
          NULL},
         false},
        {{"in_place",
          G("x: f32[1,64,256,256]) -> f32[1,64,256,256]",
            "y = relu(conv2d(x, out=64, kernel=1) @c)\n"
            "return y * sigmoid(mean(y, axes=[2, 3], keepdim=true))"),
          NULL},
         false},
    };
    for (size_t i = 0; i < countof(cases); i++)
        for (uint32_t vl = 4; vl <= 16; vl *= 2) {
            /* scheduled, not evaluated: the sizes that matter are too large for the evaluator */
            TestCompile t;
            if (!test_compile(&t, cases[i].c.spec, NULL, NULL))
                fail_msg("%s: %s", cases[i].c.name, test_diagnostics(&t));
            LoopProgram *p = schedule_graph(&t.cx, t.graph, vl);
            assert_non_null(p);
            assert_true(loop_verify(p, stderr));
            const LoopBuffer *out = NULL;
            for (uint32_t b = 0; b < p->nbuffers; b++)
                if (p->buffers[b]->kind == BUF_OUTPUT && p->buffers[b]->index == 0)
                    out = p->buffers[b];
            assert_non_null(out);
            uint32_t streaming = 0, all = 0;
            for (uint32_t k = 0; k < p->nkernels; k++)
                count_stores(p->kernels[k]->body, out, &streaming, &all);
            assert_true(all > 0);
            if (streaming != (cases[i].streamed ? all : 0))
                fail_msg("%s (vl %u): %u of %u vector stores streaming", cases[i].c.name, vl,
                         streaming, all);
            test_compile_free(&t);
        }
}

/* Outputs that are inputs, weights or repeated are copies; names are identifiers. */
static void output_copies_and_names(void **state)
{
    (void)state;
    TestCompile t;
    Case c = {"outs",
              G("x: f32[3,5]) -> (a: f32[3,5], b: f32[3,5], c: f32[3,5], d: f32[6], e: f32[5,3])",
                "y = relu(x)\ngm = param(shape=[6]) @w.0\n"
                "return x, y, y, gm, view(y, shape=[5,3])"),
              NULL};
    LoopProgram *p = schedule_case(&t, &c, 4);
    /* a is x (copied), b is written by relu itself, c, d (a weight), e (a view) are copied */
    assert_int_equal(count_named(p, "relu"), 1);
    assert_int_equal(count_named(p, "k_out"), 4);
    assert_int_equal(p->nkernels, 5);
    for (uint32_t i = 0; i < p->nbuffers; i++)
        assert_true(is_identifier(p->buffers[i]->name));
    for (uint32_t i = 0; i < p->nprepare; i++)
        assert_true(is_identifier(p->prepare[i]->name));
    for (uint32_t i = 0; i < p->nkernels; i++) {
        assert_true(is_identifier(p->kernels[i]->name));
        assert_true(p->kernels[i]->comment[0] != '\0');
    }
    test_compile_free(&t);
}

static void contractions_are_vectorized(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"linear", G("x: f32[4,13]) -> f32[4,37]", "return linear(x, out=37) @fc"), NULL},
        {"matmul", G("a: f32[5,7], b: f32[7,20]) -> f32[5,20]", "return matmul(a, b)"), NULL},
        {"conv3",
         G("x: f32[1,3,9,30]) -> f32[1,4,9,30]", "return conv2d(x, out=4, kernel=3, padding=1) @c"),
         NULL},
        {"linear_dot", G("x: f32[4,40]) -> f32[4,5]", "return linear(x, out=5) @fc"), NULL},
        {"conv_1x1_map",
         G("x: f32[1,48,1,1]) -> f32[1,3,1,1]", "return conv2d(x, out=3, kernel=1) @c"), NULL},
        {"add", G("a: f32[3,19], b: f32[19]) -> f32[3,19]", "return a + b"), NULL},
    };
    for (size_t i = 0; i < countof(cases); i++) {
        TestCompile t;
        LoopProgram *p = schedule_case(&t, &cases[i], 16);
        assert_int_equal(p->nkernels, 1);
        assert_true(kernel_has(p->kernels[0], is_vector_load, 16));
        if (i + 1 < countof(cases))
            assert_true(kernel_has(p->kernels[0], is_fma, 16));
        const LoopStmt *top = p->kernels[0]->body->block.stmts[0];
        assert_int_equal(top->kind, LOOP_FOR);
        assert_int_equal(top->loop.for_kind, FOR_PARALLEL);
        test_compile_free(&t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(elementwise_ops),
        cmocka_unit_test(nan_propagation),
        cmocka_unit_test(layout_ops),
        cmocka_unit_test(upsample_ops),
        cmocka_unit_test(reduce_ops),
        cmocka_unit_test(norm_and_pool_ops),
        cmocka_unit_test(contraction_ops),
        cmocka_unit_test(conv_ops),
        cmocka_unit_test(contraction_kernels),
        cmocka_unit_test(outputs_and_weights),
        cmocka_unit_test(buffers_and_kernels),
        cmocka_unit_test(output_copies_and_names),
        cmocka_unit_test(in_place_outputs),
        cmocka_unit_test(column_pools_per_block),
        cmocka_unit_test(streaming_marks),
        cmocka_unit_test(sibling_reductions),
        cmocka_unit_test(column_blocks_are_whole_panels),
        cmocka_unit_test(contractions_are_vectorized),
    };
    return cmocka_run_group_tests_name("schedule", tests, NULL, NULL);
}
