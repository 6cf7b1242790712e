/* W8 with oneDNN: conv3x3 (pad 1, stride 1) + bias + ReLU on one NCHW f32 image, BatchNorm
 * folded into the weights and bias by the caller. src and dst are plain NCHW, as PyTorch holds
 * them; the weights are given as OIHW and reordered once, outside the timed loop, into the
 * layout the convolution chose (format_tag any). ReLU is an eltwise post-op.
 *
 *   cc -O2 -o onednn_w8 bench/onednn_w8.c -ldnnl
 *   OMP_NUM_THREADS=2 ./onednn_w8 [--c 128] [--h 128] [--w 128] [--runs 11] [--warmup 1]
 *                                 [--input DIR] [--output FILE] [--layout nchw|any]
 *
 * --layout any lets the convolution choose the src and dst layouts too (a blocked layout): src
 * is then reordered once before the timed loop and dst once after it, so those figures are the
 * convolution alone, without the layout changes a caller holding NCHW tensors would pay.
 *
 * --input DIR reads DIR/src.bin [C,H,W], DIR/wei.bin [C,C,3,3] and DIR/bias.bin [C] (raw
 * little-endian f32); without it the data are pseudo-random. --output FILE writes dst [C,H,W]
 * after the timed runs. stdout: one JSON line (median_ms, min_ms, max_ms, runs, impl, ...).
 */
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) {                                                                 \
            fprintf(stderr, "onednn_w8: %s failed (status %d) at line %d\n", #call, (int)st_,      \
                    __LINE__);                                                                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fill_random(float *p, size_t n, uint64_t seed, float scale)
{
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = scale * ((float)(s >> 40) / (float)(1u << 24) * 2.0f - 1.0f);
    }
}

static void read_file(const char *dir, const char *name, float *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "onednn_w8: cannot open %s\n", path);
        exit(1);
    }
    if (fread(p, sizeof(float), n, f) != n) {
        fprintf(stderr, "onednn_w8: %s: expected %zu floats\n", path, n);
        exit(1);
    }
    fclose(f);
}

static void *xmalloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
        fprintf(stderr, "onednn_w8: out of memory\n");
        exit(1);
    }
    return p;
}

/* Copies `from` into `to` (different layouts) with a reorder primitive, synchronously. */
static void reorder_once(dnnl_engine_t engine, dnnl_stream_t stream, dnnl_memory_t from,
                         dnnl_memory_t to)
{
    const dnnl_memory_desc_t *from_md, *to_md;
    CHECK(dnnl_memory_get_memory_desc(from, &from_md));
    CHECK(dnnl_memory_get_memory_desc(to, &to_md));
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t r;
    CHECK(dnnl_reorder_primitive_desc_create(&pd, from_md, engine, to_md, engine, NULL));
    CHECK(dnnl_primitive_create(&r, pd));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    CHECK(dnnl_primitive_execute(r, stream, 2, args));
    CHECK(dnnl_stream_wait(stream));
    CHECK(dnnl_primitive_destroy(r));
    CHECK(dnnl_primitive_desc_destroy(pd));
}

int main(int argc, char **argv)
{
    long c = 128, h = 128, w = 128;
    int runs = 11, warmup = 1;
    const char *input = NULL, *output = NULL;
    int layout_any = 0;
    if (argc % 2 == 0) {
        fprintf(stderr, "onednn_w8: %s needs a value\n", argv[argc - 1]);
        return 2;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--c"))
            c = atol(v);
        else if (!strcmp(a, "--h"))
            h = atol(v);
        else if (!strcmp(a, "--w"))
            w = atol(v);
        else if (!strcmp(a, "--runs"))
            runs = atoi(v);
        else if (!strcmp(a, "--warmup"))
            warmup = atoi(v);
        else if (!strcmp(a, "--input"))
            input = v;
        else if (!strcmp(a, "--output"))
            output = v;
        else if (!strcmp(a, "--layout") && (!strcmp(v, "nchw") || !strcmp(v, "any")))
            layout_any = !strcmp(v, "any");
        else {
            fprintf(stderr, "onednn_w8: unknown option %s %s\n", a, v);
            return 2;
        }
    }
    if (c < 1 || h < 1 || w < 1 || runs < 1 || warmup < 0) {
        fprintf(stderr, "onednn_w8: bad sizes or counts\n");
        return 2;
    }

    size_t n_src = (size_t)c * h * w, n_wei = (size_t)c * c * 9;
    float *src = xmalloc(n_src * sizeof(float));
    float *dst = xmalloc(n_src * sizeof(float));
    float *wei = xmalloc(n_wei * sizeof(float));
    float *bias = xmalloc((size_t)c * sizeof(float));
    if (input) {
        read_file(input, "src.bin", src, n_src);
        read_file(input, "wei.bin", wei, n_wei);
        read_file(input, "bias.bin", bias, (size_t)c);
    } else {
        fill_random(src, n_src, 1, 1.0f);
        fill_random(wei, n_wei, 2, 0.03f);
        fill_random(bias, (size_t)c, 3, 0.1f);
    }
    memset(dst, 0, n_src * sizeof(float));

    dnnl_engine_t engine;
    dnnl_stream_t stream;
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));

    dnnl_dims_t src_dims = {1, c, h, w}, wei_dims = {c, c, 3, 3}, bias_dims = {c};
    dnnl_dims_t strides = {1, 1}, pad = {1, 1};
    dnnl_memory_desc_t src_md, dst_md, bias_md, wei_any_md, wei_user_md, act_any_md;
    CHECK(dnnl_memory_desc_init_by_tag(&src_md, 4, src_dims, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 4, src_dims, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&act_any_md, 4, src_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&bias_md, 1, bias_dims, dnnl_f32, dnnl_x));
    CHECK(dnnl_memory_desc_init_by_tag(&wei_any_md, 4, wei_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&wei_user_md, 4, wei_dims, dnnl_f32, dnnl_oihw));

    dnnl_convolution_desc_t conv_d;
    CHECK(dnnl_convolution_forward_desc_init(
        &conv_d, dnnl_forward_inference, dnnl_convolution_direct,
        layout_any ? &act_any_md : &src_md, &wei_any_md, &bias_md,
        layout_any ? &act_any_md : &dst_md, strides, pad, pad));

    dnnl_post_ops_t ops;
    dnnl_primitive_attr_t attr;
    CHECK(dnnl_post_ops_create(&ops));
    CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_post_ops(attr, ops));

    dnnl_primitive_desc_t conv_pd;
    CHECK(dnnl_primitive_desc_create(&conv_pd, &conv_d, attr, engine, NULL));
    const char *impl = "?";
    CHECK(dnnl_primitive_desc_query(conv_pd, dnnl_query_impl_info_str, 0, &impl));

    const dnnl_memory_desc_t *wei_md =
        dnnl_primitive_desc_query_md(conv_pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *csrc_md = dnnl_primitive_desc_query_md(conv_pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *cdst_md = dnnl_primitive_desc_query_md(conv_pd, dnnl_query_dst_md, 0);
    dnnl_memory_t src_m, dst_m, bias_m, wei_user_m, wei_m, csrc_m, cdst_m;
    CHECK(dnnl_memory_create(&src_m, &src_md, engine, src));
    CHECK(dnnl_memory_create(&dst_m, &dst_md, engine, dst));
    CHECK(dnnl_memory_create(&bias_m, &bias_md, engine, bias));
    CHECK(dnnl_memory_create(&wei_user_m, &wei_user_md, engine, wei));
    int wei_reordered = !dnnl_memory_desc_equal(wei_md, &wei_user_md);
    if (wei_reordered) {
        CHECK(dnnl_memory_create(&wei_m, wei_md, engine, DNNL_MEMORY_ALLOCATE));
        reorder_once(engine, stream, wei_user_m, wei_m);
    } else {
        wei_m = wei_user_m;
    }
    int src_reordered = !dnnl_memory_desc_equal(csrc_md, &src_md);
    int dst_reordered = !dnnl_memory_desc_equal(cdst_md, &dst_md);
    if (src_reordered) {
        CHECK(dnnl_memory_create(&csrc_m, csrc_md, engine, DNNL_MEMORY_ALLOCATE));
        reorder_once(engine, stream, src_m, csrc_m);
    } else {
        csrc_m = src_m;
    }
    if (dst_reordered)
        CHECK(dnnl_memory_create(&cdst_m, cdst_md, engine, DNNL_MEMORY_ALLOCATE));
    else
        cdst_m = dst_m;

    dnnl_primitive_t conv;
    CHECK(dnnl_primitive_create(&conv, conv_pd));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, csrc_m},
                               {DNNL_ARG_WEIGHTS, wei_m},
                               {DNNL_ARG_BIAS, bias_m},
                               {DNNL_ARG_DST, cdst_m}};

    for (int i = 0; i < warmup; i++) {
        CHECK(dnnl_primitive_execute(conv, stream, 4, args));
        CHECK(dnnl_stream_wait(stream));
    }
    double *t = malloc((size_t)runs * sizeof(double));
    for (int i = 0; i < runs; i++) {
        double t0 = now_ms();
        CHECK(dnnl_primitive_execute(conv, stream, 4, args));
        CHECK(dnnl_stream_wait(stream));
        t[i] = now_ms() - t0;
    }
    qsort(t, (size_t)runs, sizeof(double), cmp_double);
    double median = runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);

    if (dst_reordered)
        reorder_once(engine, stream, cdst_m, dst_m);
    if (output) {
        FILE *f = fopen(output, "wb");
        if (!f || fwrite(dst, sizeof(float), n_src, f) != n_src || fclose(f) != 0) {
            fprintf(stderr, "onednn_w8: cannot write %s\n", output);
            return 1;
        }
    }

    const dnnl_version_t *ver = dnnl_version();
    const char *omp = getenv("OMP_NUM_THREADS");
    printf("{\"median_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, \"runs\": %d, "
           "\"warmup\": %d, \"c\": %ld, \"h\": %ld, \"w\": %ld, \"impl\": \"%s\", "
           "\"layout\": \"%s\", \"weights_reordered\": %s, \"src_reordered\": %s, "
           "\"omp_num_threads\": \"%s\", \"version\": \"%d.%d.%d\"}\n",
           median, t[0], t[runs - 1], runs, warmup, c, h, w, impl, layout_any ? "any" : "nchw",
           wei_reordered ? "true" : "false", src_reordered ? "true" : "false", omp ? omp : "",
           ver->major, ver->minor, ver->patch);

    free(t);
    CHECK(dnnl_primitive_destroy(conv));
    CHECK(dnnl_primitive_desc_destroy(conv_pd));
    CHECK(dnnl_primitive_attr_destroy(attr));
    CHECK(dnnl_post_ops_destroy(ops));
    if (wei_reordered)
        CHECK(dnnl_memory_destroy(wei_m));
    if (src_reordered)
        CHECK(dnnl_memory_destroy(csrc_m));
    if (dst_reordered)
        CHECK(dnnl_memory_destroy(cdst_m));
    CHECK(dnnl_memory_destroy(wei_user_m));
    CHECK(dnnl_memory_destroy(bias_m));
    CHECK(dnnl_memory_destroy(dst_m));
    CHECK(dnnl_memory_destroy(src_m));
    CHECK(dnnl_stream_destroy(stream));
    CHECK(dnnl_engine_destroy(engine));
    free(src);
    free(dst);
    free(wei);
    free(bias);
    return 0;
}
