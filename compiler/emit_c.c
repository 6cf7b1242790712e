/*
 * emit_c: LoopProgram -> C11 source + header (see emit_c.h).
 *
 * Shape of the output:
 * - A prelude of GNU vector typedefs: fuse_v<N> (f32), fuse_v<N>u (the same with aligned(4) and
 *   may_alias, for loads and stores at any element index), fuse_vi<N> (int32 lane masks: bool
 *   vectors and the bit view of f32 vectors) and fuse_vl<N> (i64), for N in 1, 4, 8, 16. N = 1
 *   is the scalar view the math expansions use.
 * - One `static void k_<kernel>(...)` per LoopKernel. Every expression becomes straight-line
 *   statements with named temporaries (`const fuse_v16 t12 = ...;`), so the multi-statement
 *   math expansions sit inline and no vector ever crosses a call (gcc -Wpsabi; PERF-NOTES).
 * - A FOR_PARALLEL loop (top level only) is outlined into `k_<kernel>_par<N>` with a context
 *   struct holding the instance, the argument arrays, the loop's lo and every outer variable
 *   the body reads; it runs through fuse_rt_parallel_for over the iteration count.
 * - create/run/destroy and the fuse_rt_kernel_info descriptor.
 *
 * Float contract: no reassociation anywhere. FMA is explicit: __builtin_fmaf for scalars, a
 * loop over lanes of __builtin_fmaf for vectors (gcc 12 and clang 14 both turn it into one
 * vfmadd*ps at -O2/-O3 -march=native). Select is `(m & a) | (~m & b)` on the int view (C has
 * no vector ?:). EXP/TANH/SIGMOID are polynomial expansions, exact-rounding tricks
 * included, that stay correct with -ffp-contract=fast and without -ffast-math.
 */
#include "emit_c.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* An emitted value: an expression text (a temporary, a variable, a constant) that is either a
 * vector or a scalar. `scalar` marks scalar constants used inside vector math. */
typedef struct Val {
    char s[96];
    bool scalar;
} Val;

/* The emitter's state for one program; `out` is the function being written. */
typedef struct Emit {
    const LoopProgram *p;
    const EmitCOptions *opt;
    const LoopKernel *k;
    StrBuf *out;          /* the function body being written */
    StrBuf *fns;          /* outlined parallel bodies of the current kernel */
    int depth;            /* indentation level in `out` */
    uint32_t ntemps;      /* temporaries so far in the current kernel */
    uint32_t npar;        /* parallel loops outlined so far in the current kernel */
    char **var_names;     /* by var id: its C name (owned) */
    bool *var_read;       /* by var id: read somewhere in the kernel */
    int64_t *prepared_at; /* by buffer id: f32 offset in the prepared block */
    bool prepare;         /* the current kernel is a prepare kernel */
    bool streamed;        /* the function being written has streaming stores */
    PtrMap emitted;       /* expression -> index in done: what the current statement has */
    Val *done;            /* emitted (a shared subexpression is written once) */
    uint32_t ndone, done_cap;
} Emit;

static const char *const c_keywords[] = {
    "auto",     "break",   "case",   "char",     "const",    "continue", "default",  "do",
    "double",   "else",    "enum",   "extern",   "float",    "for",      "goto",     "if",
    "inline",   "int",     "long",   "register", "restrict", "return",   "short",    "signed",
    "sizeof",   "static",  "struct", "switch",   "typedef",  "union",    "unsigned", "void",
    "volatile", "while",   "_Bool",  "bool",     "true",     "false",    "NAN",      "INFINITY",
    "int64_t",  "int32_t", "main",   "memcpy",   "size_t",   "NULL",     "errno",
};

/* ---- small text helpers ---- */

static void line(Emit *E, const char *fmt, ...) FUSE_PRINTF(2, 3);
static void line(Emit *E, const char *fmt, ...)
{
    for (int i = 0; i < E->depth; i++)
        sb_append(E->out, "    ");
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(E->out, fmt, ap);
    va_end(ap);
    sb_append(E->out, "\n");
}

static Val val(const char *fmt, ...) FUSE_PRINTF(1, 2);
static Val val(const char *fmt, ...)
{
    Val v = {.scalar = false};
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(v.s, sizeof v.s, fmt, ap);
    va_end(ap);
    FUSE_ASSERT(n >= 0 && (size_t)n < sizeof v.s);
    return v;
}

static Val sconst(const char *text)
{
    Val v = val("%s", text);
    v.scalar = true;
    return v;
}

static Val new_temp(Emit *E)
{
    return val("t%u", E->ntemps++);
}

/* C type of a loop type; lanes 1 are plain C scalars (bool is int 0/1). */
static const char *ctype(LoopType t, char buf[32])
{
    static const char *const scalars[] = {"float", "int64_t", "int"};
    static const char *const vectors[] = {"fuse_v", "fuse_vl", "fuse_vi"};
    if (t.lanes == 1)
        return scalars[t.scalar];
    snprintf(buf, 32, "%s%u", vectors[t.scalar], t.lanes);
    return buf;
}

/* Appends `name` made into a C identifier. */
static void append_ident(char *dst, size_t cap, const char *name)
{
    size_t n = strlen(dst);
    for (const char *c = name; *c && n + 1 < cap; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
                  (*c >= '0' && *c <= '9' && c != name);
        dst[n++] = ok ? *c : '_';
    }
    dst[n] = '\0';
}

static bool is_keyword(const char *s)
{
    for (size_t i = 0; i < countof(c_keywords); i++)
        if (strcmp(s, c_keywords[i]) == 0)
            return true;
    return false;
}

/* Names that generated code reserves: temporaries t<digits> and everything fuse_/k_. */
static bool is_reserved(const char *s)
{
    if (s[0] == 't' && s[1]) {
        size_t i = 1;
        while (s[i] >= '0' && s[i] <= '9')
            i++;
        if (!s[i])
            return true;
    }
    return strncmp(s, "fuse_", 5) == 0 || strncmp(s, "k_", 2) == 0 || is_keyword(s);
}

/* The C name of a buffer: its name, with '_' appended when that clashes with C. */
static void buffer_cname(const LoopBuffer *b, char out[80])
{
    out[0] = '\0';
    append_ident(out, 72, b->name);
    if (!out[0] || is_reserved(out))
        strcat(out, "_b");
}

static Val fmt_float(float f)
{
    if (isnan(f))
        return sconst("NAN");
    if (isinf(f))
        return sconst(f > 0 ? "INFINITY" : "(-INFINITY)");
    char num[48];
    snprintf(num, sizeof num, "%.9g", (double)f);
    bool plain = !strpbrk(num, ".e");
    Val v = val(num[0] == '-' ? "(%s%sf)" : "%s%sf", num, plain ? ".0" : "");
    v.scalar = true;
    return v;
}

static Val fmt_int(int64_t i)
{
    if (i == INT64_MIN)
        return sconst("(-INT64_C(9223372036854775807) - 1)");
    if (i >= INT32_MIN && i <= INT32_MAX)  // an int, promoted where it meets an int64_t
        return val(i < 0 ? "(%" PRId64 ")" : "%" PRId64, i);
    return val(i < 0 ? "(INT64_C(%" PRId64 "))" : "INT64_C(%" PRId64 ")", i);
}

/* ---- vector math on fuse_v<n> (n = 1 for scalars), as inline statements ---- */

/* Emits `const fuse_v<n> tN = text;` and returns tN. */
static Val vdef(Emit *E, uint32_t n, const char *type, const char *fmt, ...) FUSE_PRINTF(4, 5);
static Val vdef(Emit *E, uint32_t n, const char *type, const char *fmt, ...)
{
    Val t = new_temp(E);
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    FUSE_ASSERT(len >= 0 && (size_t)len < sizeof text);
    line(E, "const fuse_%s%u %s = %s;", type, n, t.s, text);
    return t;
}

/* A vector of n copies of a scalar text. */
static Val splat(Emit *E, uint32_t n, const char *type, Val s)
{
    if (!s.scalar)
        return s;
    Val t = new_temp(E);
    line(E, "const fuse_%s%u %s = FUSE_SPLAT%u(%s);", type, n, t.s, n, s.s);
    return t;
}

static const char *lane(const Val *v, char buf[128])
{
    if (v->scalar)
        return v->s;
    snprintf(buf, 128, "%s[fuse_l]", v->s);
    return buf;
}

/* A lane-wise call of a scalar builtin (fmaf, sqrtf, floorf): gcc 12 and clang 14 vectorize it
 * into one instruction at -O2 -march=native. */
static Val lanewise(Emit *E, uint32_t n, const char *fn, Val a, Val b, Val c, int nargs)
{
    Val t = new_temp(E);
    char la[128], lb[128], lc[128];
    line(E, "fuse_v%u %s = {0};", n, t.s);
    line(E, "for (int fuse_l = 0; fuse_l < %u; fuse_l++)", n);
    if (nargs == 3)
        line(E, "    %s[fuse_l] = %s(%s, %s, %s);", t.s, fn, lane(&a, la), lane(&b, lb),
             lane(&c, lc));
    else
        line(E, "    %s[fuse_l] = %s(%s);", t.s, fn, lane(&a, la));
    return t;
}

static Val vfma(Emit *E, uint32_t n, Val a, Val b, Val c)
{
    if (n == 1)
        return lanewise(E, n, "__builtin_fmaf", a, b, c, 3);
    a = splat(E, n, "v", a);
    b = splat(E, n, "v", b);
    c = splat(E, n, "v", c);
    return vdef(E, n, "v", "FUSE_FMA%u(%s, %s, %s)", n, a.s, b.s, c.s);
}

/* m ? a : b on f32 vectors, with an int32 mask m. */
static Val vsel(Emit *E, uint32_t n, Val m, Val a, Val b)
{
    a = splat(E, n, "v", a);
    b = splat(E, n, "v", b);
    return vdef(E, n, "v", "(fuse_v%u)((%s & (fuse_vi%u)%s) | (~%s & (fuse_vi%u)%s))", n, m.s, n,
                a.s, m.s, n, b.s);
}

static Val vabs(Emit *E, uint32_t n, Val x)
{
    return vdef(E, n, "v", "(fuse_v%u)((fuse_vi%u)%s & 0x7fffffff)", n, n, x.s);
}

/* |mag| with the sign of sgn. */
static Val vcopysign(Emit *E, uint32_t n, Val mag, Val sgn)
{
    return vdef(E, n, "v", "(fuse_v%u)((fuse_vi%u)%s | ((fuse_vi%u)%s & (int32_t)0x80000000))", n,
                n, mag.s, n, sgn.s);
}

/* Horner: ((c[0] * x + c[1]) * x + ...) with fmas. */
static Val horner(Emit *E, uint32_t n, Val x, const char *const *c, size_t nc)
{
    Val r = vfma(E, n, sconst(c[0]), x, sconst(c[1]));
    for (size_t i = 2; i < nc; i++)
        r = vfma(E, n, r, x, sconst(c[i]));
    return r;
}

/* a * 2^k, where big = k + 1.5*2^23 holds the integer k (|k| <= 252) in its low mantissa bits: k is
 * read from those bits (no float-to-int conversion, which a NaN would make undefined) and 2^k
 * applied in two steps 2^k1 * 2^k2, each a normal power of two, so that the single rounding
 * happens last: subnormal results and overflow to inf come out right. */
static Val scale_by_pow2(Emit *E, uint32_t n, Val a, Val big)
{
    Val ki = vdef(E, n, "vi", "(fuse_vi%u)%s - 0x4b400000", n, big.s);
    Val k1 = vdef(E, n, "vi", "%s >> 1", ki.s);
    Val s1 = vdef(E, n, "v", "(fuse_v%u)((%s + 127) << 23)", n, k1.s);
    Val s2 = vdef(E, n, "v", "(fuse_v%u)((%s - %s + 127) << 23)", n, ki.s, k1.s);
    return vdef(E, n, "v", "(%s * %s) * %s", a.s, s1.s, s2.s);
}

/* exp(x) within 1 ulp: x clamped to [-150, 150] by selects that keep a NaN (it then flows
 * through every step: NaN in, NaN out); k = round(x / ln2) by the 1.5*2^23 trick (an fma then a
 * subtraction: reassociation would break it, contraction cannot); r = x - k ln2 in two fmas
 * (Cody-Waite); exp(r) = 1 + r + r^2 q(r), q of degree 5 (Cephes expf), evaluated by Estrin's
 * scheme (pairs of coefficients, then r^2 and r^4): three fma levels instead of six, so the
 * dependency chain of each vector is short enough for the out-of-order window to overlap
 * several; 2^k applied by scale_by_pow2 from the bits of k + 1.5*2^23. */
static Val math_exp(Emit *E, uint32_t n, Val x)
{
    static const char *const poly[] = {"1.9875691500e-4f", "1.3981999507e-3f", "8.3334519073e-3f",
                                       "4.1665795894e-2f", "1.6666665459e-1f", "5.0000001201e-1f"};
    line(E, "// exp(%s)", x.s);
    Val lo = vsel(E, n, vdef(E, n, "vi", "%s < -150.0f", x.s), sconst("-150.0f"), x);
    Val xc = vsel(E, n, vdef(E, n, "vi", "%s > 150.0f", lo.s), sconst("150.0f"), lo);
    Val big = vfma(E, n, xc, sconst("1.44269502e+0f"), sconst("0x1.8p23f"));
    Val k = vdef(E, n, "v", "%s - 0x1.8p23f", big.s);
    Val r = vfma(E, n, k, sconst("-0x1.62e400p-1f"), xc);
    r = vfma(E, n, k, sconst("-0x1.7f7d1cp-20f"), r);
    Val r2 = vdef(E, n, "v", "%s * %s", r.s, r.s);
    Val r4 = vdef(E, n, "v", "%s * %s", r2.s, r2.s);
    Val q01 = vfma(E, n, sconst(poly[0]), r, sconst(poly[1]));
    Val q23 = vfma(E, n, sconst(poly[2]), r, sconst(poly[3]));
    Val q45 = vfma(E, n, sconst(poly[4]), r, sconst(poly[5]));
    Val q = vfma(E, n, q01, r4, vfma(E, n, q23, r2, q45));
    Val p = vdef(E, n, "v", "%s + 1.0f", vfma(E, n, q, r2, r).s);
    return scale_by_pow2(E, n, p, big);
}

/* sigmoid(x) = 1/(1+e) for x >= 0 and e/(1+e) for x < 0, with e = exp(-|x|) <= 1: no overflow,
 * and tiny results (x < -87) stay accurate. */
static Val math_sigmoid(Emit *E, uint32_t n, Val x)
{
    line(E, "// sigmoid(%s)", x.s);
    Val e = math_exp(E, n, vdef(E, n, "v", "-%s", vabs(E, n, x).s));
    Val d = vdef(E, n, "v", "1.0f + %s", e.s);
    Val pos = vdef(E, n, "v", "1.0f / %s", d.s);
    Val neg = vdef(E, n, "v", "%s / %s", e.s, d.s);
    return vsel(E, n, vdef(E, n, "vi", "%s < 0.0f", x.s), neg, pos);
}

/* tanh(x): an odd polynomial for |x| < 0.625 (Cephes tanhf), else 1 - 2/(exp(2|x|)+1) with the
 * sign of x; exp saturates, so large |x| gives exactly +-1. */
static Val math_tanh(Emit *E, uint32_t n, Val x)
{
    static const char *const poly[] = {"-5.70498872745e-3f", "2.06390887954e-2f",
                                       "-5.37397155531e-2f", "1.33314422036e-1f",
                                       "-3.33332819422e-1f"};
    line(E, "// tanh(%s)", x.s);
    Val a = vabs(E, n, x);
    Val e = math_exp(E, n, vdef(E, n, "v", "%s + %s", a.s, a.s));
    Val big = vdef(E, n, "v", "1.0f - 2.0f / (%s + 1.0f)", e.s);
    Val s = vdef(E, n, "v", "%s * %s", x.s, x.s);
    Val q = vdef(E, n, "v", "%s * %s", horner(E, n, s, poly, countof(poly)).s, s.s);
    Val small = vfma(E, n, q, x, x);
    Val m = vdef(E, n, "vi", "%s < 0.625f", a.s);
    return vsel(E, n, m, small, vcopysign(E, n, big, x));
}

/* A transcendental op on a value of `lanes` lanes (1: through a 1-lane vector). */
/* The math expansions work on fuse_v<n>: a scalar goes in as a one-lane vector and comes out as
 * its lane 0. */
static Val math_operand(Emit *E, uint32_t lanes, Val x)
{
    return lanes == 1 ? vdef(E, 1, "v", "{%s}", x.s) : splat(E, lanes, "v", x);
}

static Val math_result(Emit *E, uint32_t lanes, Val r)
{
    if (lanes > 1)
        return r;
    Val s = new_temp(E);
    line(E, "const float %s = %s[0];", s.s, r.s);
    return s;
}

static Val emit_math(Emit *E, LoopOp op, Val x, uint32_t lanes)
{
    Val v = math_operand(E, lanes, x);
    Val r;
    switch (op) {
    case LOP_EXP:
        r = math_exp(E, lanes, v);
        break;
    case LOP_TANH:
        r = math_tanh(E, lanes, v);
        break;
    case LOP_SIGMOID:
        r = math_sigmoid(E, lanes, v);
        break;
    default:
        FUSE_UNREACHABLE();
    }
    return math_result(E, lanes, r);
}

/* a * 2^b for an integral b: b + 1.5*2^23 holds b in its low bits (scale_by_pow2). */
static Val emit_ldexp(Emit *E, uint32_t lanes, Val a, Val b)
{
    Val va = math_operand(E, lanes, a);
    Val big = vdef(E, lanes, "v", "%s + 0x1.8p23f", math_operand(E, lanes, b).s);
    return math_result(E, lanes, scale_by_pow2(E, lanes, va, big));
}

/* ---- expressions ---- */

static Val emit_expr(Emit *E, const LoopExpr *e);

static Val def(Emit *E, LoopType t, const char *fmt, ...) FUSE_PRINTF(3, 4);
static Val def(Emit *E, LoopType t, const char *fmt, ...)
{
    Val v = new_temp(E);
    char text[1024], tb[32];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    FUSE_ASSERT(len >= 0 && (size_t)len < sizeof text);
    line(E, "const %s %s = %s;", ctype(t, tb), v.s, text);
    return v;
}

/* `0 <= i && i <= elems - lanes`, the bounds check of one access. */
static void bounds_cond(const LoopBuffer *b, Val index, uint32_t lanes, char out[256])
{
    snprintf(out, 256, "0 <= %s && %s <= INT64_C(%" PRId64 ")", index.s, index.s,
             b->elems - (int64_t)lanes);
}

static Val emit_load(Emit *E, const LoopExpr *e)
{
    char name[80], tb[32];
    buffer_cname(e->load.buf, name);
    Val idx = emit_expr(E, e->load.index);
    uint32_t n = e->type.lanes;
    char ptr[200];
    if (E->opt->bounds_checks) {
        char cond[256];
        bounds_cond(e->load.buf, idx, n, cond);
        Val pv = new_temp(E);
        line(E, "const float *%s = %s ? %s + %s : fuse_oob(fuse_self, \"%s: load %s x%u\", %s);",
             pv.s, cond, name, idx.s, E->k->name, name, n, idx.s);
        snprintf(ptr, sizeof ptr, "%s", pv.s);
    } else {
        snprintf(ptr, sizeof ptr, "%s + %s", name, idx.s);
    }
    if (n == 1 && !E->opt->bounds_checks)
        return def(E, e->type, "%s[%s]", name, idx.s);
    if (n == 1)
        return def(E, e->type, "*(%s)", ptr);
    return def(E, e->type, "*(const %su *)(%s)", ctype(e->type, tb), ptr);
}

/* Lane l of the result is buf[index[l]]: a lane loop, which gcc and clang may turn into a
 * gather instruction. */
static Val emit_gather(Emit *E, const LoopExpr *e)
{
    char name[80], tb[32];
    buffer_cname(e->load.buf, name);
    Val idx = emit_expr(E, e->load.index);
    uint32_t n = e->type.lanes;
    Val t = new_temp(E);
    line(E, "%s %s = {0};", ctype(e->type, tb), t.s);
    line(E, "for (int fuse_l = 0; fuse_l < %u; fuse_l++)", n);
    if (!E->opt->bounds_checks) {
        line(E, "    %s[fuse_l] = %s[%s[fuse_l]];", t.s, name, idx.s);
        return t;
    }
    line(E,
         "    %s[fuse_l] = 0 <= %s[fuse_l] && %s[fuse_l] <= INT64_C(%" PRId64 ") ? %s[%s[fuse_l]]"
         " : *fuse_oob(fuse_self, \"%s: gather %s x%u\", %s[fuse_l]);",
         t.s, idx.s, idx.s, e->load.buf->elems - 1, name, idx.s, E->k->name, name, n, idx.s);
    return t;
}

/* Lanes of a in the order of sel, as a vector literal (gcc and clang make it one permute). */
static Val emit_shuffle(Emit *E, const LoopExpr *e)
{
    Val a = emit_expr(E, e->op.a);
    char text[512], tb[32];
    int at = snprintf(text, sizeof text, "(%s){", ctype(e->type, tb));
    for (uint32_t l = 0; l < e->type.lanes; l++)
        at += snprintf(text + at, sizeof text - (size_t)at, "%s%s[%u]", l ? ", " : "", a.s,
                       e->op.sel[l]);
    FUSE_ASSERT(at > 0 && (size_t)at + 2 < sizeof text);
    return def(E, e->type, "%s}", text);
}

/* 0, 1, ..., lanes-1 as an i64 vector. */
static Val emit_iota(Emit *E, const LoopExpr *e)
{
    char text[128];
    int at = 0;
    for (uint32_t l = 0; l < e->type.lanes; l++)
        at += snprintf(text + at, sizeof text - (size_t)at, "%s%u", l ? ", " : "", l);
    return def(E, e->type, "{%s}", text);
}

static Val emit_unary(Emit *E, const LoopExpr *e)
{
    Val a = emit_expr(E, e->op.a);
    uint32_t n = e->type.lanes;
    switch (e->op.op) {
    case LOP_NEG:
        return def(E, e->type, "-%s", a.s);
    case LOP_ABS:
        return n == 1 ? def(E, e->type, "__builtin_fabsf(%s)", a.s) : vabs(E, n, a);
    case LOP_SQRT:
        return n == 1 ? def(E, e->type, "__builtin_sqrtf(%s)", a.s)
                      : lanewise(E, n, "__builtin_sqrtf", a, a, a, 1);
    case LOP_FLOOR:
        return n == 1 ? def(E, e->type, "__builtin_floorf(%s)", a.s)
                      : lanewise(E, n, "__builtin_floorf", a, a, a, 1);
    default:
        return emit_math(E, e->op.op, a, n);
    }
}

/* NaN-propagating max/min: a wins when it is NaN or strictly ahead, else b (so b's NaN too). */
static Val emit_minmax(Emit *E, const LoopExpr *e, Val a, Val b)
{
    const char *rel = e->op.op == LOP_MAX ? ">" : "<";
    uint32_t n = e->type.lanes;
    bool f32 = e->type.scalar == LT_F32;
    if (n == 1)
        return f32 ? def(E, e->type, "(%s %s %s || %s != %s) ? %s : %s", a.s, rel, b.s, a.s, a.s,
                         a.s, b.s)
                   : def(E, e->type, "%s %s %s ? %s : %s", a.s, rel, b.s, a.s, b.s);
    if (f32)
        return vsel(E, n, vdef(E, n, "vi", "(%s %s %s) | (%s != %s)", a.s, rel, b.s, a.s, a.s), a,
                    b);
    Val m = def(E, e->type, "(%s %s %s)", a.s, rel, b.s);
    return def(E, e->type, "(%s & %s) | (~%s & %s)", m.s, a.s, m.s, b.s);
}

/* Python floor division and modulo for a divisor > 0. */
static Val emit_floordiv(Emit *E, const LoopExpr *e, Val a, Val b)
{
    bool vec = e->type.lanes > 1;
    Val r = def(E, e->type, "%s %% %s", a.s, b.s);
    if (e->op.op == LOP_MOD)
        return vec ? def(E, e->type, "%s + (%s & (%s < 0))", r.s, b.s, r.s)
                   : def(E, e->type, "%s < 0 ? %s + %s : %s", r.s, r.s, b.s, r.s);
    return vec ? def(E, e->type, "%s / %s + (%s < 0)", a.s, b.s, r.s)
               : def(E, e->type, "%s / %s - (%s < 0)", a.s, b.s, r.s);
}

static Val emit_binary(Emit *E, const LoopExpr *e)
{
    static const char *const infix[] = {
        [LOP_ADD] = "+", [LOP_SUB] = "-", [LOP_MUL] = "*", [LOP_DIV] = "/"};
    Val a = emit_expr(E, e->op.a);
    Val b = emit_expr(E, e->op.b);
    bool vec = e->type.lanes > 1;
    switch (e->op.op) {
    case LOP_ADD:
    case LOP_SUB:
    case LOP_MUL:
    case LOP_DIV:
        return def(E, e->type, "%s %s %s", a.s, infix[e->op.op], b.s);
    case LOP_MIN:
    case LOP_MAX:
        return emit_minmax(E, e, a, b);
    case LOP_LDEXP:
        return emit_ldexp(E, e->type.lanes, a, b);
    case LOP_FLOORDIV:
    case LOP_MOD:
        return emit_floordiv(E, e, a, b);
    case LOP_AND:
        return def(E, e->type, vec ? "%s & %s" : "%s && %s", a.s, b.s);
    case LOP_OR:
        return def(E, e->type, vec ? "%s | %s" : "%s || %s", a.s, b.s);
    default:
        FUSE_UNREACHABLE();
    }
}

static Val emit_select(Emit *E, const LoopExpr *e)
{
    Val c = emit_expr(E, e->op.a);
    Val a = emit_expr(E, e->op.b);
    Val b = emit_expr(E, e->op.c);
    uint32_t n = e->type.lanes;
    if (n == 1)
        return def(E, e->type, "%s ? %s : %s", c.s, a.s, b.s);
    if (e->type.scalar == LT_F32)
        return vsel(E, n, c, a, b);
    if (e->type.scalar == LT_I64)
        c = def(E, e->type, "__builtin_convertvector(%s, fuse_vl%u)", c.s, n);
    return def(E, e->type, "(%s & %s) | (~%s & %s)", c.s, a.s, c.s, b.s);
}

static Val emit_cmp(Emit *E, const LoopExpr *e)
{
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    Val a = emit_expr(E, e->op.a);
    Val b = emit_expr(E, e->op.b);
    uint32_t n = e->type.lanes;
    if (n > 1 && e->op.a->type.scalar == LT_I64)
        return def(E, e->type, "__builtin_convertvector(%s %s %s, fuse_vi%u)", a.s, ops[e->op.cmp],
                   b.s, n);
    return def(E, e->type, "%s %s %s", a.s, ops[e->op.cmp], b.s);
}

static Val emit_broadcast(Emit *E, const LoopExpr *e)
{
    Val a = emit_expr(E, e->op.a);
    bool mask = e->type.scalar == LT_BOOL; /* 0/1 -> lanes of 0/-1 */
    return def(E, e->type, "FUSE_SPLAT%u(%s%s)", e->type.lanes, mask ? "-" : "", a.s);
}

static Val emit_cast(Emit *E, const LoopExpr *e)
{
    Val a = emit_expr(E, e->op.a);
    char tb[32];
    if (e->type.lanes == 1)
        return def(E, e->type, "(%s)%s", ctype(e->type, tb), a.s);
    return def(E, e->type, "__builtin_convertvector(%s, %s)", a.s, ctype(e->type, tb));
}

/* Across lanes: sums in lane order (no reassociation), ((a0 + a1) + a2) + ...; max and min as
 * a tree of adjacent pairs, as emit_llvm's emit_reduce (the same result as in lane order). */
static Val emit_reduce(Emit *E, const LoopExpr *e)
{
    Val a = emit_expr(E, e->op.a);
    uint32_t n = e->op.a->type.lanes;
    if (n == 1)
        return a;
    if (e->op.op == LOP_ADD) {
        Val r = new_temp(E);
        line(E, "float %s = %s[0];", r.s, a.s);
        for (uint32_t i = 1; i < n; i++)
            line(E, "%s += %s[%u];", r.s, a.s, i);
        return r;
    }
    FUSE_ASSERT(n <= 16 && (n & (n - 1)) == 0);
    const char *rel = e->op.op == LOP_MAX ? ">" : "<";
    Val t[16];
    for (uint32_t i = 0; i < n; i++) {
        t[i] = new_temp(E);
        line(E, "float %s = %s[%u];", t[i].s, a.s, i);
    }
    for (; n > 1; n /= 2)
        for (uint32_t i = 0; i < n / 2; i++) {
            Val l = t[2 * i], r = t[2 * i + 1];
            t[i] = new_temp(E);
            line(E, "float %s = (%s %s %s || %s != %s) ? %s : %s;", t[i].s, l.s, rel, r.s, l.s, l.s,
                 l.s, r.s);
        }
    return t[0];
}

static Val emit_expr_once(Emit *E, const LoopExpr *e);

/* Expressions are trees that share subtrees (a math expansion uses its argument many times):
 * within one statement, each node is written once and its temporary reused. */
static Val emit_expr(Emit *E, const LoopExpr *e)
{
    if (e->kind == LEXPR_CONST_F || e->kind == LEXPR_CONST_I || e->kind == LEXPR_VAR)
        return emit_expr_once(E, e);
    uint32_t at;
    if (ptrmap_get(&E->emitted, e, &at))
        return E->done[at];
    Val v = emit_expr_once(E, e);
    if (E->ndone == E->done_cap) {
        E->done_cap = E->done_cap ? 2 * E->done_cap : 64;
        E->done = xrealloc(E->done, E->done_cap * sizeof *E->done);
    }
    E->done[E->ndone] = v;
    ptrmap_put(&E->emitted, e, E->ndone++);
    return v;
}

/* Forgets what was emitted: the temporaries of the statement before may be out of scope. */
static void forget_emitted(Emit *E)
{
    ptrmap_clear(&E->emitted);
    E->ndone = 0;
}

static Val emit_expr_once(Emit *E, const LoopExpr *e)
{
    switch (e->kind) {
    case LEXPR_CONST_F:
        return fmt_float(e->f);
    case LEXPR_CONST_I:
        return fmt_int(e->i);
    case LEXPR_VAR:
        return val("%s", E->var_names[e->var->id]);
    case LEXPR_LOAD:
        return emit_load(E, e);
    case LEXPR_UNARY:
        return emit_unary(E, e);
    case LEXPR_BINARY:
        return emit_binary(E, e);
    case LEXPR_FMA: {
        Val a = emit_expr(E, e->op.a), b = emit_expr(E, e->op.b), c = emit_expr(E, e->op.c);
        if (e->type.lanes == 1)
            return def(E, e->type, "__builtin_fmaf(%s, %s, %s)", a.s, b.s, c.s);
        return vfma(E, e->type.lanes, a, b, c);
    }
    case LEXPR_SELECT:
        return emit_select(E, e);
    case LEXPR_CMP:
        return emit_cmp(E, e);
    case LEXPR_BROADCAST:
        return emit_broadcast(E, e);
    case LEXPR_CAST:
        return emit_cast(E, e);
    case LEXPR_REDUCE:
        return emit_reduce(E, e);
    case LEXPR_IOTA:
        return emit_iota(E, e);
    case LEXPR_GATHER:
        return emit_gather(E, e);
    case LEXPR_SHUFFLE:
        return emit_shuffle(E, e);
    }
    FUSE_UNREACHABLE();
}

/* ---- analysis: which buffers and variables a statement tree touches ---- */

/* Vars read anywhere (assignment targets do not count as reads). */
static void reads_expr(bool *read, const LoopExpr *e)
{
    if (!e || e->kind == LEXPR_CONST_F || e->kind == LEXPR_CONST_I || e->kind == LEXPR_IOTA)
        return;
    if (e->kind == LEXPR_VAR) {
        read[e->var->id] = true;
    } else if (e->kind == LEXPR_LOAD || e->kind == LEXPR_GATHER) {
        reads_expr(read, e->load.index);
    } else {
        reads_expr(read, e->op.a);
        if (e->kind == LEXPR_BINARY || e->kind == LEXPR_FMA || e->kind == LEXPR_SELECT ||
            e->kind == LEXPR_CMP)
            reads_expr(read, e->op.b);
        if (e->kind == LEXPR_FMA || e->kind == LEXPR_SELECT)
            reads_expr(read, e->op.c);
    }
}

static void reads_stmt(bool *read, const LoopStmt *s)
{
    if (!s)
        return;
    switch (s->kind) {
    case LOOP_BLOCK:
        for (uint32_t i = 0; i < s->block.n; i++)
            reads_stmt(read, s->block.stmts[i]);
        return;
    case LOOP_FOR:
        reads_expr(read, s->loop.lo);
        reads_expr(read, s->loop.hi);
        reads_stmt(read, s->loop.body);
        return;
    case LOOP_STORE:
        reads_expr(read, s->store.index);
        reads_expr(read, s->store.value);
        return;
    case LOOP_IF:
        reads_expr(read, s->branch.cond);
        reads_stmt(read, s->branch.then_body);
        reads_stmt(read, s->branch.else_body);
        return;
    case LOOP_DECL:
        reads_expr(read, s->decl.init);
        return;
    case LOOP_ASSIGN:
        reads_expr(read, s->assign.value);
        return;
    case LOOP_PREFETCH:
        reads_expr(read, s->prefetch.index);
        return;
    }
}

/* ---- statements ---- */

static void emit_stmt(Emit *E, const LoopStmt *s);

/* Declares the pointer of every buffer marked in `bufs` (thread buffers need fuse_thread). */
static void declare_buffers(Emit *E, const bool *bufs, bool prepare)
{
    const LoopProgram *p = E->p;
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        if (!bufs[i])
            continue;
        const LoopBuffer *b = p->buffers[i];
        char name[80];
        buffer_cname(b, name);
        switch (b->kind) {
        case BUF_INPUT:
            line(E, "const float *restrict %s = fuse_in[%u];", name, b->index);
            break;
        case BUF_OUTPUT:
            line(E, "float *restrict %s = fuse_out[%u];", name, b->index);
            break;
        case BUF_PARAM:
            line(E, "const float *restrict %s = fuse_param[%u];", name, b->index);
            break;
        case BUF_PREPARED:
            line(E, "%sfloat *restrict %s = fuse_self->prepared + %" PRId64 ";",
                 prepare ? "" : "const ", name, E->prepared_at[i]);
            break;
        case BUF_SCRATCH:
            line(E, "float *restrict %s = fuse_self->scratch + %" PRId64 ";", name, b->offset / 4);
            break;
        case BUF_THREAD:
            line(E,
                 "float *restrict %s = fuse_self->scratch + (%" PRId64
                 " + (int64_t)fuse_thread * %" PRId64 " + %" PRId64 ") / 4;",
                 name, p->scratch_bytes, p->thread_scratch_bytes, b->offset);
            break;
        }
    }
}

static void emit_block_items(Emit *E, const LoopStmt *s)
{
    for (uint32_t i = 0; i < s->block.n; i++)
        emit_stmt(E, s->block.stmts[i]);
}

static void emit_body(Emit *E, const LoopStmt *body)
{
    E->depth++;
    emit_block_items(E, body);
    E->depth--;
}

/* An outlined FOR_PARALLEL body: the context struct and the task function go to E->fns. */
static void emit_parallel(Emit *E, const LoopStmt *s, Val lo, Val hi)
{
    uint32_t id = E->npar++;
    const char *kn = E->k->name;
    LoopUses u = loop_uses(E->p, E->k, s->loop.body, false);
    u.defined[s->loop.var->id] = true;
    const LoopVar **vars = xcalloc(E->k->nvars + 1, sizeof *vars);
    loop_collect_vars(E->k->body, vars);

    StrBuf *saved = E->out;
    int saved_depth = E->depth;
    bool saved_streamed = E->streamed;
    E->streamed = false;
    StrBuf fn = {0};
    E->out = &fn;
    E->depth = 0;
    line(E, "/* Context of the parallel loop over %s in %s. */", s->loop.var->name, kn);
    line(E, "struct k_%s_par%u_ctx {", kn, id);
    line(E, "    fuse_rt_kernel *fuse_self;");
    line(E, "    const float *const *fuse_in;");
    line(E, "    float *const *fuse_out;");
    line(E, "    const float *const *fuse_param;");
    line(E, "    int64_t fuse_lo;");
    char tb[32];
    for (uint32_t v = 0; v < E->k->nvars; v++)
        if (u.used[v] && !u.defined[v] && vars[v])
            line(E, "    %s %s;", ctype(vars[v]->type, tb), E->var_names[v]);
    line(E, "};");
    sb_append(E->out, "\n");
    line(E, "/* Iterations [fuse_begin, fuse_end) of %s's loop over %s on thread fuse_thread. */",
         kn, s->loop.var->name);
    line(E, "static void k_%s_par%u(void *fuse_ctx, int64_t fuse_begin, int64_t fuse_end,", kn, id);
    line(E, "    int fuse_thread)");
    line(E, "{");
    E->depth = 1;
    line(E, "const struct k_%s_par%u_ctx *fuse_c = fuse_ctx;", kn, id);
    line(E, "fuse_rt_kernel *fuse_self = fuse_c->fuse_self;");
    line(E, "const float *const *fuse_in = fuse_c->fuse_in;");
    line(E, "float *const *fuse_out = fuse_c->fuse_out;");
    line(E, "const float *const *fuse_param = fuse_c->fuse_param;");
    line(E, "(void)fuse_self;");
    line(E, "(void)fuse_in;");
    line(E, "(void)fuse_out;");
    line(E, "(void)fuse_param;");
    line(E, "(void)fuse_thread;");
    for (uint32_t v = 0; v < E->k->nvars; v++)
        if (u.used[v] && !u.defined[v] && vars[v])
            line(E, "%s %s = fuse_c->%s;", ctype(vars[v]->type, tb), E->var_names[v],
                 E->var_names[v]);
    declare_buffers(E, u.bufs, E->prepare);
    const char *iv = E->var_names[s->loop.var->id];
    line(E, "for (int64_t fuse_i = fuse_begin; fuse_i < fuse_end; fuse_i++) {");
    E->depth++;
    line(E, "const int64_t %s = fuse_c->fuse_lo + fuse_i * %" PRId64 ";", iv, s->loop.step);
    if (!E->var_read[s->loop.var->id])
        line(E, "(void)%s;", iv);
    emit_block_items(E, s->loop.body);
    E->depth--;
    line(E, "}");
    if (E->streamed)
        line(E, "FUSE_SFENCE(); /* streaming stores are weakly ordered */");
    E->depth = 0;
    line(E, "}");
    sb_append(E->out, "\n");
    E->out = saved;
    E->depth = saved_depth;
    E->streamed = saved_streamed;
    sb_append(E->fns, sb_str(&fn));
    sb_free(&fn);

    line(E, "{");
    E->depth++;
    line(E, "const struct k_%s_par%u_ctx fuse_c = {", kn, id);
    line(E, "    .fuse_self = fuse_self, .fuse_in = fuse_in, .fuse_out = fuse_out,");
    line(E, "    .fuse_param = fuse_param,");
    line(E, "    .fuse_lo = %s,", lo.s);
    for (uint32_t v = 0; v < E->k->nvars; v++)
        if (u.used[v] && !u.defined[v] && vars[v])
            line(E, "    .%s = %s,", E->var_names[v], E->var_names[v]);
    line(E, "};");
    line(E, "const int64_t fuse_n = %s > %s ? (%s - %s + %" PRId64 ") / %" PRId64 " : 0;", hi.s,
         lo.s, hi.s, lo.s, s->loop.step - 1, s->loop.step);
    line(E, "fuse_rt_parallel_for(fuse_self->pool, fuse_n, k_%s_par%u, (void *)&fuse_c);", kn, id);
    E->depth--;
    line(E, "}");
    free(vars);
    loop_uses_free(&u);
}

#define MAX_UNROLL 64

static void emit_for(Emit *E, const LoopStmt *s)
{
    Val lo = emit_expr(E, s->loop.lo);
    Val hi = emit_expr(E, s->loop.hi);
    const char *v = E->var_names[s->loop.var->id];
    if (s->loop.for_kind == FOR_PARALLEL) {
        emit_parallel(E, s, lo, hi);
        return;
    }
    int64_t trips = s->loop.for_kind == FOR_UNROLLED && s->loop.hi->i > s->loop.lo->i
                        ? (s->loop.hi->i - s->loop.lo->i + s->loop.step - 1) / s->loop.step
                        : -1;
    if (trips >= 0 && trips <= MAX_UNROLL) {
        for (int64_t i = s->loop.lo->i; i < s->loop.hi->i; i += s->loop.step) {
            line(E, "{ // %s = %" PRId64, v, i);
            E->depth++;
            line(E, "const int64_t %s = %" PRId64 ";", v, i);
            if (!E->var_read[s->loop.var->id])
                line(E, "(void)%s;", v);
            emit_block_items(E, s->loop.body);
            E->depth--;
            line(E, "}");
        }
        return;
    }
    if (s->loop.step == 1)
        line(E, "for (int64_t %s = %s; %s < %s; %s++) {", v, lo.s, v, hi.s, v);
    else
        line(E, "for (int64_t %s = %s; %s < %s; %s += %" PRId64 ") {", v, lo.s, v, hi.s, v,
             s->loop.step);
    emit_body(E, s->loop.body);
    line(E, "}");
}

static void emit_store(Emit *E, const LoopStmt *s)
{
    char name[80], tb[32];
    buffer_cname(s->store.buf, name);
    Val idx = emit_expr(E, s->store.index);
    Val v = emit_expr(E, s->store.value);
    uint32_t n = s->store.value->type.lanes;
    char st[512];
    if (n == 1)
        snprintf(st, sizeof st, "%s[%s] = %s;", name, idx.s, v.s);
    else if (s->store.streaming)
        snprintf(st, sizeof st, "FUSE_STREAM%u(%s + %s, %s);", n, name, idx.s, v.s);
    else
        snprintf(st, sizeof st, "*(%su *)(%s + %s) = %s;", ctype(s->store.value->type, tb), name,
                 idx.s, v.s);
    E->streamed |= s->store.streaming;
    if (!E->opt->bounds_checks) {
        line(E, "%s", st);
        return;
    }
    char cond[256];
    bounds_cond(s->store.buf, idx, n, cond);
    line(E, "if (%s)", cond);
    line(E, "    %s", st);
    line(E, "else");
    line(E, "    fuse_oob(fuse_self, \"%s: store %s x%u\", %s);", E->k->name, name, n, idx.s);
}

static void emit_stmt_once(Emit *E, const LoopStmt *s);

static void emit_stmt(Emit *E, const LoopStmt *s)
{
    forget_emitted(E);
    emit_stmt_once(E, s);
    forget_emitted(E);
}

static void emit_stmt_once(Emit *E, const LoopStmt *s)
{
    char tb[32];
    switch (s->kind) {
    case LOOP_BLOCK:
        line(E, "{");
        emit_body(E, s);
        line(E, "}");
        return;
    case LOOP_FOR:
        emit_for(E, s);
        return;
    case LOOP_STORE:
        emit_store(E, s);
        return;
    case LOOP_IF: {
        Val c = emit_expr(E, s->branch.cond);
        line(E, "if (%s) {", c.s);
        emit_body(E, s->branch.then_body);
        if (s->branch.else_body) {
            line(E, "} else {");
            emit_body(E, s->branch.else_body);
        }
        line(E, "}");
        return;
    }
    case LOOP_DECL: {
        Val init = emit_expr(E, s->decl.init);
        const char *v = E->var_names[s->decl.var->id];
        line(E, "%s %s = %s;", ctype(s->decl.var->type, tb), v, init.s);
        if (!E->var_read[s->decl.var->id])
            line(E, "(void)%s;", v);
        return;
    }
    case LOOP_ASSIGN: {
        Val v = emit_expr(E, s->assign.value);
        line(E, "%s = %s;", E->var_names[s->assign.var->id], v.s);
        return;
    }
    case LOOP_PREFETCH: {
        char name[80];
        buffer_cname(s->prefetch.buf, name);
        Val idx = emit_expr(E, s->prefetch.index);
        int loc = s->prefetch.locality < 0   ? 0
                  : s->prefetch.locality > 3 ? 3
                                             : s->prefetch.locality;
        if (!E->opt->bounds_checks) {
            line(E, "__builtin_prefetch(%s + %s, 0, %d);", name, idx.s, loc);
            return;
        }
        char cond[256]; /* a hint, but its address is still pointer arithmetic in C */
        bounds_cond(s->prefetch.buf, idx, 1, cond);
        line(E, "if (%s)", cond);
        line(E, "    __builtin_prefetch(%s + %s, 0, %d);", name, idx.s, loc);
        line(E, "else");
        line(E, "    fuse_oob(fuse_self, \"%s: prefetch %s\", %s);", E->k->name, name, idx.s);
        return;
    }
    }
}

/* C names of the kernel's variables: the IR's names, suffixed where they would clash. */
static void name_vars(Emit *E)
{
    const LoopKernel *k = E->k;
    const LoopVar **vars = xcalloc(k->nvars + 1, sizeof *vars);
    loop_collect_vars(k->body, vars);
    E->var_names = xcalloc(k->nvars + 1, sizeof(char *));
    E->var_read = xcalloc(k->nvars + 1, sizeof(bool));
    reads_stmt(E->var_read, k->body);
    for (uint32_t i = 0; i < k->nvars; i++) {
        char name[96] = "";
        append_ident(name, 72, vars[i] ? vars[i]->name : "v");
        bool clash = !name[0] || is_reserved(name);
        for (uint32_t b = 0; b < E->p->nbuffers && !clash; b++) {
            char bn[80];
            buffer_cname(E->p->buffers[b], bn);
            clash = strcmp(bn, name) == 0;
        }
        if (clash)
            snprintf(name + strlen(name), sizeof name - strlen(name), "_v%u", i);
        E->var_names[i] = xstrdup(name);
    }
    free(vars);
}

static void unname_vars(Emit *E)
{
    for (uint32_t i = 0; i < E->k->nvars; i++)
        free(E->var_names[i]);
    free(E->var_names);
    free(E->var_read);
}

/* Writes one comment line per line of `text`, prefixed by `lead`. */
static void comment_lines(StrBuf *out, const char *lead, const char *text)
{
    while (*text) {
        const char *nl = strchr(text, '\n');
        size_t n = nl ? (size_t)(nl - text) : strlen(text);
        sb_append(out, lead);
        for (size_t i = 0; i < n; i++)  // "*/" would end the comment early
            sb_append_n(out, text[i] == '/' && i > 0 && text[i - 1] == '*' ? " /" : text + i,
                        text[i] == '/' && i > 0 && text[i - 1] == '*' ? 2 : 1);
        sb_append(out, "\n");
        text += n + (nl ? 1 : 0);
    }
}

static void emit_kernel(Emit *E, const LoopKernel *k, bool prepare, StrBuf *source)
{
    E->k = k;
    E->prepare = prepare;
    E->ntemps = 0;
    E->npar = 0;
    E->streamed = false;
    name_vars(E);
    StrBuf body = {0}, fns = {0};
    E->out = &body;
    E->fns = &fns;
    E->depth = 0;
    sb_printf(&body, "/*\n * %s kernel %s\n", prepare ? "prepare" : "run", k->name);
    if (k->comment[0])
        comment_lines(&body, " * ", k->comment);
    sb_printf(&body, " */\n");
    line(E, "static void k_%s(fuse_rt_kernel *fuse_self, const float *const *fuse_in,", k->name);
    line(E, "    float *const *fuse_out, const float *const *fuse_param)");
    line(E, "{");
    E->depth = 1;
    line(E, "(void)fuse_self;");
    line(E, "(void)fuse_in;");
    line(E, "(void)fuse_out;");
    line(E, "(void)fuse_param;");
    LoopUses u = loop_uses(E->p, E->k, k->body, true);
    declare_buffers(E, u.bufs, prepare);
    loop_uses_free(&u);
    emit_block_items(E, k->body);
    if (E->streamed)
        line(E, "FUSE_SFENCE(); /* streaming stores are weakly ordered */");
    E->depth = 0;
    line(E, "}");
    sb_append(E->out, "\n");
    sb_append(source, sb_str(&fns));
    sb_append(source, sb_str(&body));
    sb_free(&body);
    sb_free(&fns);
    unname_vars(E);
}

/* ---- the API around the kernels ---- */

static const char *const prelude =
    "#include <math.h>\n"
    "#include <stdint.h>\n"
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "\n"
    "/* f32 vectors (fuse_v<N>; the u variant loads and stores at any element index), int32 lane\n"
    " * masks and bit views (fuse_vi<N>, lanes -1 or 0 for bools) and i64 vectors (fuse_vl<N>).\n"
    " * N = 1 is the scalar view the math expansions use. */\n"
    "#define FUSE_VEC_TYPES(n)                                                                   "
    "\\\n"
    "    __extension__ typedef float fuse_v##n __attribute__((vector_size(4 * n)));              "
    "\\\n"
    "    __extension__ typedef float fuse_v##n##u                                                "
    "\\\n"
    "        __attribute__((vector_size(4 * n), aligned(4), may_alias));                         "
    "\\\n"
    "    __extension__ typedef int32_t fuse_vi##n __attribute__((vector_size(4 * n)));           "
    "\\\n"
    "    __extension__ typedef int64_t fuse_vl##n __attribute__((vector_size(8 * n)));\n"
    "FUSE_VEC_TYPES(1)\n"
    "FUSE_VEC_TYPES(4)\n"
    "FUSE_VEC_TYPES(8)\n"
    "FUSE_VEC_TYPES(16)\n"
    "/* Initializer of a vector of n copies of x (a name or a constant). */\n"
    "#define FUSE_SPLAT1(x)  {x}\n"
    "#define FUSE_SPLAT4(x)  {x, x, x, x}\n"
    "#define FUSE_SPLAT8(x)  {x, x, x, x, x, x, x, x}\n"
    "#define FUSE_SPLAT16(x) {x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}\n"
    "/* FUSE_STREAM<N>(p, v): a streaming store of v at p, around the caches where the target\n"
    " * has one and p is aligned to the vector, a plain store otherwise; FUSE_SFENCE orders them\n"
    " * before another thread reads the lines. */\n"
    "#define FUSE_PLAIN_STORE(n, p, v) (*(fuse_v##n##u *)(p) = (v))\n"
    "#define FUSE_STREAM_IF_ALIGNED(n, p, v, stream, vt) \\\n"
    "    do { \\\n"
    "        float *fuse_at_ = (p); \\\n"
    "        if (((uintptr_t)fuse_at_ & (4 * n - 1)) == 0) \\\n"
    "            stream(fuse_at_, (vt)(v)); \\\n"
    "        else \\\n"
    "            FUSE_PLAIN_STORE(n, fuse_at_, v); \\\n"
    "    } while (0)\n"
    "#if defined(__x86_64__) && defined(__SSE2__)\n"
    "#include <immintrin.h>\n"
    "#define FUSE_SFENCE() _mm_sfence()\n"
    "#define FUSE_STREAM4(p, v) FUSE_STREAM_IF_ALIGNED(4, p, v, _mm_stream_ps, __m128)\n"
    "#else\n"
    "#define FUSE_SFENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)\n"
    "#define FUSE_STREAM4(p, v) FUSE_PLAIN_STORE(4, p, v)\n"
    "#endif\n"
    "#if defined(__x86_64__) && defined(__AVX__)\n"
    "#define FUSE_STREAM8(p, v) FUSE_STREAM_IF_ALIGNED(8, p, v, _mm256_stream_ps, __m256)\n"
    "#else\n"
    "#define FUSE_STREAM8(p, v) FUSE_PLAIN_STORE(8, p, v)\n"
    "#endif\n"
    "#if defined(__x86_64__) && defined(__AVX512F__)\n"
    "#define FUSE_STREAM16(p, v) FUSE_STREAM_IF_ALIGNED(16, p, v, _mm512_stream_ps, __m512)\n"
    "#else\n"
    "#define FUSE_STREAM16(p, v) FUSE_PLAIN_STORE(16, p, v)\n"
    "#endif\n"
    "/* FUSE_FMA<N>(a, b, c): a * b + c lane by lane with one rounding: the target's instruction\n"
    " * where it has one (gcc keeps the register tiles in registers far better around it than\n"
    " * around the lane loop of fmaf it vectorizes itself), else that loop. */\n"
    "#define FUSE_FMA_LANES(n, a, b, c) \\\n"
    "    __extension__({ \\\n"
    "        fuse_v##n fuse_a_ = (a), fuse_b_ = (b), fuse_c_ = (c), fuse_r_; \\\n"
    "        for (int fuse_l = 0; fuse_l < n; fuse_l++) \\\n"
    "            fuse_r_[fuse_l] = __builtin_fmaf(fuse_a_[fuse_l], fuse_b_[fuse_l], "
    "fuse_c_[fuse_l]); \\\n"
    "        fuse_r_; \\\n"
    "    })\n"
    "#if defined(__x86_64__) && defined(__FMA__)\n"
    "#include <immintrin.h>\n"
    "#define FUSE_FMA4(a, b, c) ((fuse_v4)_mm_fmadd_ps((__m128)(a), (__m128)(b), (__m128)(c)))\n"
    "#define FUSE_FMA8(a, b, c) ((fuse_v8)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))\n"
    "#else\n"
    "#define FUSE_FMA4(a, b, c) FUSE_FMA_LANES(4, a, b, c)\n"
    "#define FUSE_FMA8(a, b, c) FUSE_FMA_LANES(8, a, b, c)\n"
    "#endif\n"
    "#if defined(__x86_64__) && defined(__AVX512F__)\n"
    "#define FUSE_FMA16(a, b, c) ((fuse_v16)_mm512_fmadd_ps((__m512)(a), (__m512)(b), "
    "(__m512)(c)))\n"
    "#else\n"
    "#define FUSE_FMA16(a, b, c) FUSE_FMA_LANES(16, a, b, c)\n"
    "#endif\n"
    "/* gcc: schedule instructions before register allocation, minding register pressure (off by\n"
    " * default on x86): the contraction and attention tiles spill less. */\n"
    "#if defined(__GNUC__) && !defined(__clang__)\n"
    "#pragma GCC optimize(\"schedule-insns\", \"sched-pressure\")\n"
    "#endif\n"
    "\n";

static void upper(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++)
        out[i] = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 'a' + 'A') : s[i];
    out[i] = '\0';
}

static uint32_t count_kind(const LoopProgram *p, LoopBufferKind kind)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->nbuffers; i++)
        n += p->buffers[i]->kind == kind;
    return n;
}

static void emit_declarations(const LoopProgram *p, StrBuf *h)
{
    const char *n = p->name;
    char N[128];
    upper(n, N, sizeof N);
    sb_printf(h, "#define FUSE_K_%s_NUM_INPUTS  %u\n", N, count_kind(p, BUF_INPUT));
    sb_printf(h, "#define FUSE_K_%s_NUM_OUTPUTS %u\n", N, count_kind(p, BUF_OUTPUT));
    sb_printf(h, "#define FUSE_K_%s_NUM_PARAMS  %u\n", N, count_kind(p, BUF_PARAM));
    sb_printf(h, "/* Of the graph as written: multiply-adds count 2; each tensor once. */\n");
    sb_printf(h, "#define FUSE_K_%s_FLOPS %.17g\n", N, p->flops);
    sb_printf(h, "#define FUSE_K_%s_BYTES %.17g\n", N, p->bytes);
    sb_printf(h, "/* Per instance; plus THREAD_SCRATCH_BYTES per thread of the pool. */\n");
    sb_printf(h, "#define FUSE_K_%s_SCRATCH_BYTES        %" PRId64 "\n", N, p->scratch_bytes);
    sb_printf(h, "#define FUSE_K_%s_THREAD_SCRATCH_BYTES %" PRId64 "\n", N,
              p->thread_scratch_bytes);
    sb_printf(h, "#define FUSE_K_%s_PREPARED_BYTES       %" PRId64 "\n\n", N, p->prepared_bytes);
    sb_printf(h,
              "/* Descriptors, constants and the functions below, for programs that pick a\n"
              " * kernel at run time (fuse_rt.h). */\n"
              "extern const fuse_rt_kernel_info fuse_k_%s_info;\n\n",
              n);
    sb_printf(h,
              "/* Binds `weights` (each of the info's params by key: f32, that shape), prepares\n"
              " * them and allocates scratch for the pool's threads. pool (NULL: single threaded)\n"
              " * must outlive the instance. Returns 0 and *out, or an FUSE_RT_E* code with a\n"
              " * message in err. Owns: the caller; release with fuse_k_%s_destroy. */\n"
              "int fuse_k_%s_create(const fuse_rt_weight *weights, size_t nweights, "
              "fuse_rt_pool *pool,\n    fuse_rt_kernel **out, char *err, size_t errlen);\n\n",
              n, n);
    sb_printf(h,
              "/* Computes the outputs from the inputs (contiguous f32 in the graph's shapes, not\n"
              " * overlapping). Returns 0, or an FUSE_RT_E* code with a message in err. */\n"
              "int fuse_k_%s_run(fuse_rt_kernel *k, const float *const *inputs, "
              "float *const *outputs,\n    char *err, size_t errlen);\n\n",
              n);
    sb_printf(h,
              "/* Frees an instance and everything it holds; NULL is a no-op. */\n"
              "void fuse_k_%s_destroy(fuse_rt_kernel *k);\n",
              n);
}

static void emit_header(const LoopProgram *p, StrBuf *h)
{
    char N[128];
    upper(p->name, N, sizeof N);
    sb_printf(h, "/*\n * Generated by fusec emit-c: do not edit.\n");
    comment_lines(h, " * ", p->origin ? p->origin : p->name);
    sb_printf(h, " */\n#ifndef FUSE_K_%s_H\n#define FUSE_K_%s_H\n\n", N, N);
    sb_printf(h, "#include \"fuse_rt.h\"\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    emit_declarations(p, h);
    sb_printf(h, "\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
}

static void emit_descs(const LoopProgram *p, StrBuf *s, LoopBufferKind kind, const char *what)
{
    if (!count_kind(p, kind))
        return;
    sb_printf(s, "static const fuse_rt_tensor_desc fuse_%s[] = {\n", what);
    for (uint32_t idx = 0; idx < p->nbuffers; idx++)  // in index order
        for (uint32_t i = 0; i < p->nbuffers; i++) {
            const LoopBuffer *b = p->buffers[i];
            if (b->kind != kind || b->index != idx)
                continue;
            sb_printf(s, "    {\"%s\", %u, {", kind == BUF_PARAM && b->key ? b->key : b->name,
                      b->rank);
            for (uint32_t d = 0; d < b->rank; d++)
                sb_printf(s, "%s%" PRId64, d ? ", " : "", b->shape[d]);
            sb_printf(s, "%s}},\n", b->rank ? "" : "0");
        }
    sb_printf(s, "};\n");
}

static void emit_info(const LoopProgram *p, StrBuf *s)
{
    const char *n = p->name;
    char N[128];
    upper(n, N, sizeof N);
    emit_descs(p, s, BUF_INPUT, "inputs");
    emit_descs(p, s, BUF_OUTPUT, "outputs");
    emit_descs(p, s, BUF_PARAM, "params");
    sb_printf(s, "\nconst fuse_rt_kernel_info fuse_k_%s_info = {\n", n);
    sb_printf(s, "    .abi_version = FUSE_RT_ABI_VERSION,\n    .name = \"%s\",\n", n);
    sb_printf(s, "    .ninputs = FUSE_K_%s_NUM_INPUTS,\n", N);
    sb_printf(s, "    .noutputs = FUSE_K_%s_NUM_OUTPUTS,\n", N);
    sb_printf(s, "    .nparams = FUSE_K_%s_NUM_PARAMS,\n", N);
    sb_printf(s, "    .inputs = %s,\n", count_kind(p, BUF_INPUT) ? "fuse_inputs" : "NULL");
    sb_printf(s, "    .outputs = %s,\n", count_kind(p, BUF_OUTPUT) ? "fuse_outputs" : "NULL");
    sb_printf(s, "    .params = %s,\n", count_kind(p, BUF_PARAM) ? "fuse_params" : "NULL");
    sb_printf(s, "    .flops = FUSE_K_%s_FLOPS,\n    .bytes = FUSE_K_%s_BYTES,\n", N, N);
    sb_printf(s, "    .scratch_bytes = FUSE_K_%s_SCRATCH_BYTES,\n", N);
    sb_printf(s, "    .thread_scratch_bytes = FUSE_K_%s_THREAD_SCRATCH_BYTES,\n", N);
    sb_printf(s, "    .prepared_bytes = FUSE_K_%s_PREPARED_BYTES,\n", N);
    sb_printf(s, "    .create = fuse_k_%s_create,\n    .run = fuse_k_%s_run,\n", n, n);
    sb_printf(s, "    .destroy = fuse_k_%s_destroy,\n};\n\n", n);
}

static void emit_instance(const LoopProgram *p, const EmitCOptions *opt, StrBuf *s)
{
    sb_printf(s, "/* An instance: prepared weights, scratch, the pool. */\n"
                 "struct fuse_rt_kernel {\n"
                 "    fuse_rt_pool *pool; /* borrowed */\n"
                 "    float *prepared;    /* owns: every BUF_PREPARED buffer */\n"
                 "    float *scratch;     /* owns: scratch, then per-thread scratch */\n");
    if (opt->bounds_checks)
        sb_printf(s, "    int oob;             /* an access was out of bounds */\n"
                     "    const char *oob_site;\n"
                     "    int64_t oob_index;\n"
                     "    float zeros[16]; /* read instead of an out-of-bounds load */\n");
    sb_printf(s, "};\n\n");
    sb_printf(s,
              "static int fuse_fail(char *err, size_t errlen, int code, const char *msg)\n{\n"
              "    if (err && errlen)\n        snprintf(err, errlen, \"fuse_k_%s: %%s\", msg);\n"
              "    return code;\n}\n\n",
              p->name);
    if (!opt->bounds_checks)
        return;
    sb_printf(s,
              "/* Records the first out-of-bounds access and returns zeros to read instead. */\n"
              "static __attribute__((unused)) const float *fuse_oob(fuse_rt_kernel *self, const "
              "char *site, int64_t "
              "index)\n{\n"
              "    int expected = 0;\n"
              "    if (__atomic_compare_exchange_n(&self->oob, &expected, 1, 0, "
              "__ATOMIC_SEQ_CST,\n                                    __ATOMIC_SEQ_CST)) {\n"
              "        self->oob_site = site;\n        self->oob_index = index;\n    }\n"
              "    return self->zeros;\n}\n\n"
              "static int fuse_oob_report(fuse_rt_kernel *self, char *err, size_t errlen)\n{\n"
              "    if (err && errlen)\n"
              "        snprintf(err, errlen, \"fuse_k_%s: out-of-bounds access: %%s at index "
              "%%lld\",\n                 self->oob_site, (long long)self->oob_index);\n"
              "    self->oob = 0;\n    return FUSE_RT_EINVAL;\n}\n\n",
              p->name);
}

static void emit_calls(const LoopProgram *p, const EmitCOptions *opt, StrBuf *s, bool prepare)
{
    uint32_t n = prepare ? p->nprepare : p->nkernels;
    LoopKernel *const *ks = prepare ? p->prepare : p->kernels;
    for (uint32_t i = 0; i < n; i++) {
        if (prepare)
            sb_printf(s, "    k_%s(self, NULL, NULL, fuse_param);\n", ks[i]->name);
        else
            sb_printf(s, "    k_%s(k, inputs, outputs, NULL);\n", ks[i]->name);
        if (opt->bounds_checks && prepare)
            sb_printf(s,
                      "    if (self->oob) {\n"
                      "        rc = fuse_oob_report(self, err, errlen);\n"
                      "        fuse_k_%s_destroy(self);\n        return rc;\n    }\n",
                      p->name);
        else if (opt->bounds_checks)
            sb_printf(s, "    if (k->oob)\n        return fuse_oob_report(k, err, errlen);\n");
    }
}

static void emit_create(const LoopProgram *p, const EmitCOptions *opt, StrBuf *s)
{
    const char *n = p->name;
    char N[128];
    upper(n, N, sizeof N);
    sb_printf(s,
              "int fuse_k_%s_create(const fuse_rt_weight *weights, size_t nweights, "
              "fuse_rt_pool *pool,\n    fuse_rt_kernel **out, char *err, size_t errlen)\n{\n",
              n);
    sb_printf(s, "    const float *fuse_param[FUSE_K_%s_NUM_PARAMS + 1] = {NULL};\n", N);
    sb_printf(s, "    if (!out)\n        return fuse_fail(err, errlen, FUSE_RT_EINVAL, "
                 "\"create: out is NULL\");\n    *out = NULL;\n");
    sb_printf(s,
              "    int rc = fuse_rt_bind_weights(&fuse_k_%s_info, weights, nweights, fuse_param, "
              "err, errlen);\n    if (rc)\n        return rc;\n",
              n);
    sb_printf(s,
              "    fuse_rt_kernel *self = calloc(1, sizeof *self);\n"
              "    if (!self)\n        return fuse_fail(err, errlen, FUSE_RT_ENOMEM, "
              "\"create: out of memory\");\n"
              "    self->pool = pool;\n"
              "    size_t threads = (size_t)fuse_rt_pool_threads(pool);\n"
              "    self->prepared = fuse_rt_alloc(FUSE_K_%s_PREPARED_BYTES);\n"
              "    self->scratch = fuse_rt_alloc(FUSE_K_%s_SCRATCH_BYTES +\n"
              "                                  threads * FUSE_K_%s_THREAD_SCRATCH_BYTES);\n"
              "    if (!self->prepared || !self->scratch) {\n"
              "        fuse_k_%s_destroy(self);\n"
              "        return fuse_fail(err, errlen, FUSE_RT_ENOMEM, \"create: out of memory\");\n"
              "    }\n",
              N, N, N, n);
    emit_calls(p, opt, s, true);
    sb_printf(s, "    *out = self;\n    return FUSE_RT_OK;\n}\n\n");
}

static void emit_run(const LoopProgram *p, const EmitCOptions *opt, StrBuf *s)
{
    const char *n = p->name;
    char N[128];
    upper(n, N, sizeof N);
    sb_printf(s,
              "int fuse_k_%s_run(fuse_rt_kernel *k, const float *const *inputs, "
              "float *const *outputs,\n    char *err, size_t errlen)\n{\n",
              n);
    uint32_t nin = count_kind(p, BUF_INPUT), nout = count_kind(p, BUF_OUTPUT);
    sb_printf(s, "    if (!k%s%s)\n", nin ? " || !inputs" : "", nout ? " || !outputs" : "");
    sb_printf(s,
              "        return fuse_fail(err, errlen, FUSE_RT_EINVAL, \"run: NULL argument\");\n");
    if (nin)
        sb_printf(s,
                  "    for (int i = 0; i < FUSE_K_%s_NUM_INPUTS; i++)\n        if (!inputs[i])\n"
                  "            return fuse_fail(err, errlen, FUSE_RT_EINVAL, \"run: an input is "
                  "NULL\");\n",
                  N);
    if (nout)
        sb_printf(s,
                  "    for (int i = 0; i < FUSE_K_%s_NUM_OUTPUTS; i++)\n        if (!outputs[i])\n"
                  "            return fuse_fail(err, errlen, FUSE_RT_EINVAL, \"run: an output is "
                  "NULL\");\n",
                  N);
    emit_calls(p, opt, s, false);
    sb_printf(s, "    return FUSE_RT_OK;\n}\n\n");
    sb_printf(s,
              "void fuse_k_%s_destroy(fuse_rt_kernel *k)\n{\n    if (!k)\n        return;\n"
              "    fuse_rt_free(k->prepared);\n    fuse_rt_free(k->scratch);\n    free(k);\n}\n",
              n);
}

void emit_c_program(const LoopProgram *p, const EmitCOptions *opt, StrBuf *source, StrBuf *header)
{
    static const EmitCOptions defaults = {0};
    if (!opt)
        opt = &defaults;
    Emit E = {.p = p, .opt = opt};
    E.prepared_at = xcalloc(p->nbuffers + 1, sizeof(int64_t));
    int64_t at = 0;
    for (uint32_t i = 0; i < p->nbuffers; i++)
        if (p->buffers[i]->kind == BUF_PREPARED) {
            E.prepared_at[i] = at / 4;
            at += (p->buffers[i]->elems * 4 + 63) & ~(int64_t)63;
        }
    if (header)
        emit_header(p, header);
    sb_printf(source, "/*\n * Generated by fusec emit-c: do not edit.\n");
    comment_lines(source, " * ", p->origin ? p->origin : p->name);
    sb_printf(source,
              " * Compile without -ffast-math (the math expansions rely on IEEE f32).\n */\n");
    if (opt->header_name) {
        sb_printf(source, "#include \"%s\"\n\n", opt->header_name);
    } else {
        sb_printf(source, "#include \"fuse_rt.h\"\n\n");
        emit_declarations(p, source);
        sb_printf(source, "\n");
    }
    sb_append(source, prelude);
    emit_instance(p, opt, source);
    for (uint32_t i = 0; i < p->nprepare; i++)
        emit_kernel(&E, p->prepare[i], true, source);
    for (uint32_t i = 0; i < p->nkernels; i++)
        emit_kernel(&E, p->kernels[i], false, source);
    emit_info(p, source);
    emit_create(p, opt, source);
    emit_run(p, opt, source);
    free(E.prepared_at);
    ptrmap_free(&E.emitted);
    free(E.done);
}
