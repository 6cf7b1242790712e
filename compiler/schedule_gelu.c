/*
 * schedule_gelu: GELU as a loop IR expression, within 2 ulp of the correctly rounded result for
 * every float input (tests/math/test_math_exhaustive.c checks all 2^32).
 *
 * gelu(x) = x * Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2. The textbook form 0.5 x (1 + erf(x /
 * sqrt 2)) cancels for negative x (1 + erf(y) where erf(y) is near -1: at x = -3 a third of the
 * digits are lost, below x = -5.5 all of them). Here, with c = Phi(-|x|) = erfc(t) / 2 and
 * t = |x| / sqrt 2:
 *     gelu(x) = x * c          for x < 0
 *     gelu(x) = x * (1 - c)    for x >= 0 (1 - c >= 1/2: no cancellation)
 *     erfc(t) = exp(-t^2) * erfcx(t),  t^2 = x^2 / 2 exactly as p/2 + e/2, p = x*x rounded,
 *               e = fma(x, x, -p) its error: exp(-t^2) = exp(-p/2) * (1 - e/2)
 * erfcx(t) = exp(t^2) erfc(t), smooth and between 1 and 0.05 on [0, 10.61], is a degree-9
 * polynomial in s = t - m on each of five segments, fitted (least squares on the relative error)
 * to values of erfcx computed with 30 digits. s is computed from |x| with sqrt(1/2) in two parts,
 * so that t's rounding does not enter. |x| is clamped to 15 (t <= 10.61), past which exp(-t^2) is
 * 0 in float; the clamp also keeps p and e finite for infinite x.
 *
 * approximate=tanh: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), written
 * x * sigmoid(2u), the same value without the cancellation of 1 + tanh(u) for negative u.
 */
#include "schedule_internal.h"

enum { GELU_SEGMENTS = 5, GELU_DEGREE = 9 };

/* Segment k covers t in [gelu_bounds[k - 1], gelu_bounds[k]); erfcx(t) = P_k(t - mid) there. */
static const float gelu_bounds[GELU_SEGMENTS - 1] = {1.0f, 2.0f, 3.5f, 6.0f};
static const struct {
    float mid;
    float c[GELU_DEGREE + 1]; /* c[0] + c[1] s + ... */
} gelu_erfcx[GELU_SEGMENTS] = {
    {0.5f,
     {0.615690351f, -0.512688816f, 0.359345645f, -0.22201094f, 0.12418025f, -0.0639663637f,
      0.0306078978f, -0.0138856098f, 0.00653034681f, -0.00256164814f}},
    {1.5f,
     {0.321585417f, -0.163622916f, 0.0761510357f, -0.0329309106f, 0.0133775817f, -0.00514593162f,
      0.00188324158f, -0.000661618426f, 0.000237278233f, -7.58356182e-05f}},
    {2.75f,
     {0.193662092f, -0.0632376373f, 0.0197585877f, -0.00593433902f, 0.00171964965f,
      -0.000482195086f, 0.000130821034f, -3.46534398e-05f, 9.71035297e-06f, -2.39734095e-06f}},
    {4.75f,
     {0.116302706f, -0.0235034488f, 0.0046613235f, -0.00090809929f, 0.000173945271f,
      -3.27764283e-05f, 6.04866773e-06f, -1.10805468e-06f, 2.25053185e-07f, -3.92418258e-08f}},
    {8.30500031f,
     {0.0674515963f, -0.00800810568f, 0.000944273197f, -0.000110600486f, 1.28725715e-05f,
      -1.48797596e-06f, 1.69175578e-07f, -1.93817389e-08f, 2.60416e-09f, -2.87648877e-10f}},
};

/* The constant of the segment t falls in: select(t >= b1, select(t >= b2, ...), v0). */
static LoopExpr *by_segment(Sched *s, LoopExpr *const *at_least, const float *v, uint32_t lanes)
{
    LoopExpr *e = fx_c(s, v[GELU_SEGMENTS - 1], lanes);
    for (int k = GELU_SEGMENTS - 2; k >= 0; k--)
        e = lx_select(s->p, at_least[k], e, fx_c(s, v[k], lanes));
    return e;
}

static LoopExpr *gelu_exact(Sched *s, LoopExpr *x, uint32_t lanes)
{
    LoopProgram *p = s->p;
    LoopExpr *ax = lx_binary(p, LOP_MIN, lx_unary(p, LOP_ABS, x), fx_c(s, 15.0f, lanes));
    LoopExpr *sq = lx_binary(p, LOP_MUL, ax, ax);
    LoopExpr *sq_err = lx_fma(p, ax, ax, lx_unary(p, LOP_NEG, sq));
    LoopExpr *e0 = lx_unary(p, LOP_EXP, lx_binary(p, LOP_MUL, sq, fx_c(s, -0.5f, lanes)));
    LoopExpr *gauss = lx_fma(p, e0, lx_binary(p, LOP_MUL, sq_err, fx_c(s, -0.5f, lanes)), e0);

    const float rsqrt2_hi = 0.707106769f, rsqrt2_lo = 1.21016175e-08f;
    LoopExpr *t = lx_binary(p, LOP_MUL, ax, fx_c(s, rsqrt2_hi, lanes));
    LoopExpr *at_least[GELU_SEGMENTS - 1];
    for (int k = 0; k < GELU_SEGMENTS - 1; k++)
        at_least[k] = lx_cmp(p, LCMP_GE, t, fx_c(s, gelu_bounds[k], lanes));
    float v[GELU_SEGMENTS];
    for (int k = 0; k < GELU_SEGMENTS; k++)
        v[k] = -gelu_erfcx[k].mid;
    LoopExpr *d = lx_fma(p, ax, fx_c(s, rsqrt2_hi, lanes), by_segment(s, at_least, v, lanes));
    d = lx_fma(p, ax, fx_c(s, rsqrt2_lo, lanes), d);
    for (int k = 0; k < GELU_SEGMENTS; k++)
        v[k] = gelu_erfcx[k].c[GELU_DEGREE];
    LoopExpr *poly = by_segment(s, at_least, v, lanes);
    for (int j = GELU_DEGREE - 1; j >= 0; j--) {
        for (int k = 0; k < GELU_SEGMENTS; k++)
            v[k] = gelu_erfcx[k].c[j];
        poly = lx_fma(p, poly, d, by_segment(s, at_least, v, lanes));
    }
    /* x < 0: exp(-t^2) * (x/2 * erfcx) with the product x/2 * erfcx kept as hi + lo and the
     * correction of exp(-t^2) folded into lo, so that the result is rounded once (a subnormal
     * one too) */
    LoopExpr *half_x = lx_binary(p, LOP_MUL, x, fx_c(s, 0.5f, lanes));
    LoopExpr *hi = lx_binary(p, LOP_MUL, half_x, poly);
    LoopExpr *lo = lx_fma(p, half_x, poly, lx_unary(p, LOP_NEG, hi));
    lo = lx_fma(p, hi, lx_binary(p, LOP_MUL, sq_err, fx_c(s, -0.5f, lanes)), lo);
    LoopExpr *below = lx_fma(p, e0, hi, lx_binary(p, LOP_MUL, e0, lo));
    /* 0 <= x < 1: Phi = 1/2 + erf(x / sqrt 2) / 2, erf's series branch (no cancellation);
     * x >= 1: Phi = 1 - exp(-t^2) / 2 * erfcx(t), the difference rounded once */
    LoopExpr *erf = lx_unary(p, LOP_ERF, lx_binary(p, LOP_MUL, x, fx_c(s, rsqrt2_hi, lanes)));
    LoopExpr *near = lx_fma(p, fx_c(s, 0.5f, lanes), erf, fx_c(s, 0.5f, lanes));
    LoopExpr *half_gauss = lx_binary(p, LOP_MUL, gauss, fx_c(s, -0.5f, lanes));
    LoopExpr *far = lx_fma(p, half_gauss, poly, fx_c(s, 1.0f, lanes));
    LoopExpr *phi = lx_select(p, lx_cmp(p, LCMP_LT, x, fx_c(s, 1.0f, lanes)), near, far);
    LoopExpr *above = lx_binary(p, LOP_MUL, x, phi);
    return lx_select(p, lx_cmp(p, LCMP_LT, x, fx_c(s, 0.0f, lanes)), below, above);
}

static LoopExpr *gelu_tanh(Sched *s, LoopExpr *x, uint32_t lanes)
{
    LoopProgram *p = s->p;
    LoopExpr *cube = lx_binary(p, LOP_MUL, lx_binary(p, LOP_MUL, fx_c(s, 0.044715f, lanes), x),
                               lx_binary(p, LOP_MUL, x, x));
    LoopExpr *u = lx_binary(p, LOP_MUL, fx_c(s, 2.0f * 0.797884583f, lanes),
                            lx_binary(p, LOP_ADD, x, cube)); /* 2u: the factor 2 is exact */
    return lx_binary(p, LOP_MUL, x, lx_unary(p, LOP_SIGMOID, u));
}

LoopExpr *sched_gelu(Sched *s, LoopExpr *x, bool tanh_form, uint32_t lanes)
{
    return tanh_form ? gelu_tanh(s, x, lanes) : gelu_exact(s, x, lanes);
}
