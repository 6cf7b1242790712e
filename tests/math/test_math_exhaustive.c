/*
 * test_math_exhaustive: the vector math as a user gets it, against the correctly rounded result
 * computed in double, over every float input. Each op is a graph `return op(x)` compiled through
 * the library (libfusec.so, as a program would), so what is checked is the whole path: the
 * schedule's expansion (silu = x * sigmoid(x), gelu through erf) and a backend's polynomials.
 *
 * The inputs are all 2^32 bit patterns (--stride 1) or every S-th one, starting at a pattern that
 * changes with S so that strided runs do not only see even patterns: zeros, subnormals, the
 * overflow and underflow ranges, infinities and NaNs are all inputs. A result passes when it is
 * within the op's bound of the double result rounded to float (ulp_distance below; silu has a
 * wider bound for its tiniest results, see ops[]), and NaN exactly where that is NaN. Every failure
 * past the first few is counted, and the worst input of each op printed, so one run shows the whole
 * picture.
 *
 * Usage: test_math_exhaustive [--stride S] [--backend jit|c] [--threads T] [--lanes L] OP...
 * OP: exp sigmoid tanh silu gelu gelu_tanh. ctest runs it exhaustively in Release builds and with
 * a stride in the others (tests/CMakeLists.txt).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuse_rt.h"
#include "fusec.h"

typedef struct MathOp {
    const char *name;
    const char *call; /* the op as the language writes it, with its attributes */
    double (*ref)(double);
    int64_t bound;      /* ulp */
    float tiny;         /* below this magnitude of the result, */
    int64_t tiny_bound; /* the bound is this */
} MathOp;

static double ref_exp(double x)
{
    return exp(x);
}

static double ref_sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

static double ref_tanh(double x)
{
    return tanh(x);
}

static double ref_silu(double x)
{
    return x / (1.0 + exp(-x));
}

/* x * Phi(x) in the erfc form: no cancellation for negative x, where 1 + erf(x) would lose
 * every digit. */
static double ref_gelu(double x)
{
    return 0.5 * x * erfc(-x * 0.70710678118654752440);
}

/* 0.5 x (1 + tanh(u)) as x / (1 + exp(-2u)): the same value, without the cancellation that
 * makes 1 + tanh(u) exactly 0 in double for u < -19. */
static double ref_gelu_tanh(double x)
{
    const double k = 0.79788456080286535588; /* sqrt(2/pi) */
    return x / (1.0 + exp(-2.0 * k * (x + 0.044715 * x * x * x)));
}

/* silu is x * sigmoid(x) (as PyTorch computes it): sigmoid's 2 ulp and the product's rounding
 * make 3 ulp. Where sigmoid(x) is subnormal (x < -87.3),
 * it has few significant bits, and the product, up to 104 times larger (below 2^-119 in
 * magnitude), carries its absolute error: 2 subnormal ulp of sigmoid times |x| <= 104, at most 208
 * subnormal ulp. */
static const MathOp ops[] = {
    {"exp", "exp(x)", ref_exp, 2, 0, 2},
    {"sigmoid", "sigmoid(x)", ref_sigmoid, 2, 0, 2},
    {"tanh", "tanh(x)", ref_tanh, 2, 0, 2},
    {"silu", "silu(x)", ref_silu, 3, 0x1p-119f, 208},
    {"gelu", "gelu(x)", ref_gelu, 2, 0, 2},
    {"gelu_tanh", "gelu(x, approximate=tanh)", ref_gelu_tanh, 3, 0x1p-6f, 256},
};

/* Distance in representable floats between got and want, counting +0 and -0 as one value; NaN
 * matches only NaN. */
static int64_t ulp_distance(float got, float want)
{
    if (isnan(want) || isnan(got))
        return isnan(want) && isnan(got) ? 0 : INT64_MAX;
    int32_t a, b;
    memcpy(&a, &got, 4);
    memcpy(&b, &want, 4);
    int64_t oa = a < 0 ? (int64_t)INT32_MIN - a : a;
    int64_t ob = b < 0 ? (int64_t)INT32_MIN - b : b;
    return oa > ob ? oa - ob : ob - oa;
}

enum { CHUNK = 1 << 20 };

typedef struct Worker {
    const MathOp *op;
    const fuse_rt_kernel_info *info;
    uint64_t first, last, stride; /* bit patterns first, first + stride, ... < last */
    uint64_t checked, failed;
    int64_t worst;
    uint32_t worst_bits;
    float worst_got;
    char error[FUSE_RT_ERR_MAX];
} Worker;

static void *check_range(void *arg)
{
    Worker *w = arg;
    float *x = malloc(CHUNK * sizeof *x), *y = malloc(CHUNK * sizeof *y);
    fuse_rt_kernel *k = NULL;
    if (!x || !y) {
        snprintf(w->error, sizeof w->error, "out of memory");
        goto done;
    }
    if (w->info->create(NULL, 0, NULL, &k, w->error, sizeof w->error) != FUSE_RT_OK)
        goto done;
    for (uint64_t bits = w->first; bits < w->last;) {
        size_t n = 0;
        for (; n < CHUNK && bits < w->last; n++, bits += w->stride) {
            uint32_t b = (uint32_t)bits;
            memcpy(&x[n], &b, 4);
        }
        for (size_t i = n; i < CHUNK; i++)
            x[i] = 0.0f; /* the kernel's input has CHUNK elements */
        const float *in[] = {x};
        float *out[] = {y};
        if (w->info->run(k, in, out, w->error, sizeof w->error) != FUSE_RT_OK)
            goto done;
        for (size_t i = 0; i < n; i++) {
            float want = (float)w->op->ref((double)x[i]);
            int64_t d = ulp_distance(y[i], want);
            if (d > (fabsf(want) < w->op->tiny ? w->op->tiny_bound : w->op->bound) &&
                w->failed++ < 3)
                fprintf(stderr, "%s(%a) = %a, want %a: %" PRId64 " ulp\n", w->op->name,
                        (double)x[i], (double)y[i], (double)want, d);
            if (d > w->worst) {
                w->worst = d;
                memcpy(&w->worst_bits, &x[i], 4);
                w->worst_got = y[i];
            }
        }
        w->checked += n;
    }
done:
    if (k)
        w->info->destroy(k);
    free(x);
    free(y);
    return NULL;
}

static bool check_op(const MathOp *op, const char *backend, uint64_t stride, int threads,
                     uint32_t lanes)
{
    char spec[256];
    snprintf(spec, sizeof spec, "fuse 1\ngraph g(x: f32[%d]) -> f32[%d] {\n    return %s\n}\n",
             CHUNK, CHUNK, op->call);
    fusec_options opt = {.backend = backend, .vector_lanes = lanes};
    fusec_module *m = NULL;
    char err[4096];
    if (fusec_compile_string(spec, strlen(spec), "math.fuse", &opt, &m, err, sizeof err) !=
        FUSE_RT_OK) {
        fprintf(stderr, "%s: cannot compile: %s\n", op->name, err);
        return false;
    }
    Worker w[16];
    pthread_t tid[16];
    uint64_t start = stride > 1 ? stride / 2 + 1 : 0, total = (uint64_t)1 << 32;
    uint64_t per = (total - start + (uint64_t)threads - 1) / (uint64_t)threads;
    per = (per + stride - 1) / stride * stride; /* each range starts on the stride's grid */
    for (int t = 0; t < threads; t++) {
        uint64_t first = start + (uint64_t)t * per;
        w[t] = (Worker){.op = op, .info = fusec_module_info(m), .stride = stride};
        w[t].first = first < total ? first : total;
        w[t].last = first + per < total ? first + per : total;
        if (pthread_create(&tid[t], NULL, check_range, &w[t]) != 0) {
            fprintf(stderr, "%s: cannot start a thread\n", op->name);
            exit(1);
        }
    }
    bool ok = true;
    Worker all = {.op = op};
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (w[t].error[0]) {
            fprintf(stderr, "%s: %s\n", op->name, w[t].error);
            ok = false;
        }
        all.checked += w[t].checked;
        all.failed += w[t].failed;
        if (w[t].worst > all.worst || t == 0) {
            all.worst = w[t].worst;
            all.worst_bits = w[t].worst_bits;
            all.worst_got = w[t].worst_got;
        }
    }
    fusec_module_free(m);
    float wx;
    memcpy(&wx, &all.worst_bits, 4);
    printf("%-9s %s: %" PRIu64 " inputs, worst %" PRId64 " ulp at x = %a (0x%08" PRIx32
           "): got %a, want %a; %" PRIu64 " over the bound\n",
           op->name, backend, all.checked, all.worst, (double)wx, all.worst_bits,
           (double)all.worst_got, (double)(float)op->ref((double)wx), all.failed);
    return ok && all.failed == 0 && all.checked > 0;
}

static long number(const char *flag, const char *s, long lo, long hi)
{
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || !end || *end || v < lo || v > hi) {
        fprintf(stderr, "test_math_exhaustive: %s needs a number from %ld to %ld\n", flag, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    uint64_t stride = 1;
    const char *backend = "jit";
    int threads = 2;
    uint32_t lanes = 0;
    bool ok = true, any = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--stride") == 0) {
            stride = (uint64_t)number("--stride", argv[++i < argc ? i : 0], 1, 1L << 30);
        } else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            backend = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0) {
            threads = (int)number("--threads", argv[++i < argc ? i : 0], 1, 16);
        } else if (strcmp(argv[i], "--lanes") == 0) {
            lanes = (uint32_t)number("--lanes", argv[++i < argc ? i : 0], 4, 16);
        } else {
            const MathOp *op = NULL;
            for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
                if (strcmp(argv[i], ops[o].name) == 0)
                    op = &ops[o];
            if (!op) {
                fprintf(stderr, "test_math_exhaustive: unknown op or option '%s'\n", argv[i]);
                return 2;
            }
            ok = check_op(op, backend, stride, threads, lanes) && ok;
            any = true;
        }
    }
    if (!any) {
        fprintf(stderr, "usage: test_math_exhaustive [--stride S] [--backend jit|c] [--threads T] "
                        "[--lanes L] OP...\n");
        return 2;
    }
    return ok ? 0 : 1;
}
