/*
 * schedule_gelu: GELU as a loop IR expression, within 2 ulp of the correctly rounded result for
 * every float input (tests/math/test_math_exhaustive.c checks all 2^32).
 *
 * gelu(x) = x * Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2. The textbook form 0.5 x (1 + erf(x /
 * sqrt 2)) cancels for negative x (at x = -3 a third of the digits are lost, below x = -5.5 all
 * of them), so three ranges, each without cancellation:
 *
 *   -0.5 <= x < 1:  gelu = x/2 + x^2 S(x^2), S(u) = erf(sqrt(u/2)) / (2 sqrt u) of degree 5;
 *   x < -0.5:       gelu = x/2 * erfc(t) with t = |x| / sqrt 2,
 *   x >= 1:         gelu = x - x * erfc(t) / 2,
 *   erfc(t) = exp(-t^2) erfcx(t),  erfcx(t) = P(v) / (t + 3),  v = 1/(t + 3) - mid.
 *
 * erfcx (smooth, from 1 down to 0.05 on [0, 10.61]) times (t + 3) is one polynomial of degree 9
 * in v over all of [0.354, 10.61] (t >= 10.61, |x| >= 15, has exp(-t^2) = 0 in float: |x| is
 * clamped there). Every factor is carried with its error term, so that only the last addition
 * rounds: x^2 = p + e exactly (an fma); exp(-t^2) = 2^k (1 + r1 + small) with r1 = -p/2 - k ln2
 * exact (Cody-Waite) and the rest, e and ln2's tail, in small; 1/(t + 3) = rc (1 + rho) from
 * t + 3 in two parts and a Newton residual; P = P_hi + P_lo with v's own rounding error fed
 * through the last coefficient. The result is 2^k (B + corr), B the rounded product of the
 * leading parts and corr everything else: one rounding, then an exact scaling (below 2^-126, a
 * second rounding to the subnormal grid, within 1 subnormal ulp). Coefficients: least squares on
 * the relative error against double erfc, each rounded to float in turn and the rest refitted.
 *
 * approximate=tanh: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), written
 * x * sigmoid(2u), the same value without the cancellation of 1 + tanh(u) for negative u.
 */
#include "schedule_internal.h"

/* (t + 3) erfcx(t) = sum far[j] v^j, v = 1/(t + 3) - far_mid, on t in [0.354, 10.61]; far_c0_lo
 * is the rest of far[0] (the fit's constant term needs more than a float). */
static const float far[10] = {
    1.183773398e+00f, 6.192277431e+00f,  2.545543098e+01f,  7.967771912e+01f,  1.743547516e+02f,
    1.951994629e+02f, -1.789095459e+02f, -9.390125732e+02f, -2.576917419e+02f, 3.100631836e+03f};
static const float far_c0_lo = -1.056063592e-08f, far_mid = 1.858134270e-01f;
/* S(u) = erf(sqrt(u/2)) / (2 sqrt u) on u = x^2 in [0, 1]. */
static const float near[6] = {3.989422917e-01f,  -6.649035960e-02f, 9.973321110e-03f,
                              -1.186324283e-03f, 1.134805862e-04f,  -7.652099157e-06f};
/* (exp(r) - 1 - r) / r^2 on |r| <= ln2 / 2. */
static const float expm1_q[5] = {5.000000000e-01f, 1.666657776e-01f, 4.166671261e-02f,
                                 8.363098837e-03f, 1.391041558e-03f};

/* c[lo] + x (c[lo + 1] + x (... + x c[hi])) */
static LoopExpr *horner(Sched *s, LoopExpr *x, const float *c, int lo, int hi, uint32_t lanes)
{
    LoopExpr *r = fx_c(s, c[hi], lanes);
    for (int j = hi - 1; j >= lo; j--)
        r = lx_fma(s->p, r, x, fx_c(s, c[j], lanes));
    return r;
}

static LoopExpr *gelu_exact(Sched *s, LoopExpr *x, uint32_t lanes)
{
    LoopProgram *p = s->p;
#define C(v)         fx_c(s, (v), lanes)
#define MUL(a, b)    lx_binary(p, LOP_MUL, (a), (b))
#define ADD(a, b)    lx_binary(p, LOP_ADD, (a), (b))
#define SUB(a, b)    lx_binary(p, LOP_SUB, (a), (b))
#define FMA(a, b, c) lx_fma(p, (a), (b), (c))
#define NEG(a)       lx_unary(p, LOP_NEG, (a))
#define LT(a, b)     lx_cmp(p, LCMP_LT, (a), (b))
    LoopExpr *ax = lx_binary(p, LOP_MIN, lx_unary(p, LOP_ABS, x), C(15.0f)); /* NaN stays */
    LoopExpr *sq = MUL(ax, ax);
    LoopExpr *sq_err = FMA(ax, ax, NEG(sq));

    /* exp(-x^2/2) = 2^k exp(r1 + c): k = round(-p/2 / ln2) by the 1.5*2^23 shifter */
    const float shifter = 0x1.8p23f, ln2_hi = 0x1.62e400p-1f, ln2_lo = 0x1.7f7d1cp-20f;
    LoopExpr *big = FMA(sq, C(-0.5f * 1.44269502f), C(shifter));
    LoopExpr *k = SUB(big, C(shifter));
    LoopExpr *r1 = FMA(k, C(-ln2_hi), MUL(sq, C(-0.5f)));
    LoopExpr *c = FMA(k, C(-ln2_lo), MUL(sq_err, C(-0.5f)));
    LoopExpr *s0 = MUL(MUL(r1, r1), horner(s, r1, expm1_q, 0, 4, lanes));
    LoopExpr *small = FMA(c, ADD(r1, s0), ADD(s0, c)); /* exp(r1 + c) - 1 - r1 */

    /* 1/(t + 3) = rc (1 + rho), t + 3 = u_hi + u_lo from |x| times sqrt(1/2) in two parts */
    const float rsqrt2_hi = 0.707106769f, rsqrt2_lo = 1.21016175e-08f;
    LoopExpr *u_hi = FMA(ax, C(rsqrt2_hi), C(3.0f));
    LoopExpr *u_lo = FMA(ax, C(rsqrt2_lo), FMA(ax, C(rsqrt2_hi), SUB(C(3.0f), u_hi)));
    LoopExpr *rc = lx_binary(p, LOP_DIV, C(1.0f), u_hi);
    LoopExpr *rho = FMA(NEG(u_lo), rc, FMA(NEG(u_hi), rc, C(1.0f)));
    LoopExpr *d = SUB(rc, C(far_mid));
    LoopExpr *v = FMA(rc, rho, d);
    LoopExpr *v_lo = FMA(rc, rho, SUB(d, v));
    LoopExpr *tail = horner(s, v, far, 1, 9, lanes);
    LoopExpr *P_hi = FMA(tail, v, C(far[0]));
    LoopExpr *P_lo = FMA(tail, v_lo, ADD(FMA(tail, v, SUB(C(far[0]), P_hi)), C(far_c0_lo)));

    /* erfc(t) times m = x/2 (x < 0) or 1/2; x < -15 gives x * 0: -0, and NaN for -inf, as
     * x/2 * erfc(t) does */
    LoopExpr *neg_m = lx_select(p, LT(x, C(-15.0f)), MUL(x, C(0.0f)), MUL(x, C(0.5f)));
    LoopExpr *m = lx_select(p, LT(x, C(0.0f)), neg_m, C(0.5f));
    LoopExpr *A_hi = MUL(m, rc);
    LoopExpr *A_lo = FMA(m, rc, NEG(A_hi));
    LoopExpr *B_hi = MUL(A_hi, P_hi);
    LoopExpr *B_lo = FMA(A_hi, P_hi, NEG(B_hi));
    LoopExpr *rest = FMA(A_hi, P_lo, FMA(A_lo, P_hi, B_lo));
    LoopExpr *corr = FMA(B_hi, r1, FMA(B_hi, ADD(small, rho), rest));
    LoopExpr *tail_prob = lx_binary(p, LOP_LDEXP, ADD(B_hi, corr), k);

    LoopExpr *mid = FMA(sq, horner(s, sq, near, 0, 5, lanes), MUL(x, C(0.5f)));
    /* x >= 15 (and +inf): x itself, as x - x * 0 would not be for inf */
    LoopExpr *above = lx_select(p, lx_cmp(p, LCMP_GE, x, C(15.0f)), x, FMA(NEG(x), tail_prob, x));
    return lx_select(p, LT(x, C(-0.5f)), tail_prob, lx_select(p, LT(x, C(1.0f)), mid, above));
#undef C
#undef MUL
#undef ADD
#undef SUB
#undef FMA
#undef NEG
#undef LT
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
