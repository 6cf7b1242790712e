/*
 * weights: safetensors binding and deterministic random parameters (see weights.h).
 */
#include "weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"

const char *weights_normalized_prefix(const char *prefix, char *buf, size_t size)
{
    size_t n = prefix ? strlen(prefix) : 0;
    if (n == 0)
        snprintf(buf, size, "%s", "");
    else if (prefix[n - 1] == '.')
        snprintf(buf, size, "%s", prefix);
    else
        snprintf(buf, size, "%s.", prefix);
    return buf;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

static void format_rt_shape(const fuse_rt_tensor_info *t, char *buf, size_t size)
{
    Shape s = {.rank = t->rank};
    for (uint32_t i = 0; i < t->rank && i < FUSE_MAX_RANK; i++)
        s.dim[i] = t->shape[i];
    shape_format(&s, buf, size);
}

static bool check_param(Ctx *cx, const Node *p, const fuse_rt_tensor_info *t, const char *path)
{
    char want[SHAPE_TEXT_MAX], got[SHAPE_TEXT_MAX];
    const char *key = p->attr.param.key;
    shape_format(&p->shape, want, sizeof want);
    if (!t) {
        diag_report(cx->diag, DIAG_ERROR, p->span, "weight '%s' (f32%s) is missing from %s", key,
                    want, path);
        return false;
    }
    if (t->dtype != FUSE_RT_F32) {
        diag_report(cx->diag, DIAG_ERROR, p->span,
                    "weight '%s' in %s has dtype %s; this op needs F32 (f32%s)", key, path,
                    t->dtype_name, want);
        return false;
    }
    bool same = t->rank == p->shape.rank;
    for (uint32_t i = 0; same && i < t->rank; i++)
        same = t->shape[i] == p->shape.dim[i];
    if (!same) {
        format_rt_shape(t, got, sizeof got);
        diag_report(cx->diag, DIAG_ERROR, p->span,
                    "weight '%s' in %s has shape %s; this op needs %s", key, path, got, want);
        return false;
    }
    return true;
}

static void warn_unused(Ctx *cx, const Graph *g, const fuse_rt_safetensors *st, const char *prefix,
                        const char *path)
{
    size_t n = fuse_rt_safetensors_count(st), unused = 0;
    StrBuf names = {0};
    for (size_t i = 0; i < n; i++) {
        const char *key = fuse_rt_safetensors_entry(st, i)->key;
        if (strncmp(key, prefix, strlen(prefix)) != 0 || ends_with(key, "num_batches_tracked"))
            continue;
        if (graph_find_param(g, key))
            continue;
        if (unused < 5)
            sb_printf(&names, "%s'%s'", unused ? ", " : "", key);
        unused++;
    }
    if (unused)
        diag_report_file(cx->diag, DIAG_WARNING, path,
                         "%zu unused weight%s under prefix '%s': %s%s", unused,
                         unused == 1 ? "" : "s", prefix, sb_str(&names), unused > 5 ? ", ..." : "");
    sb_free(&names);
}

fuse_rt_safetensors *weights_bind_file(Ctx *cx, const Graph *g, const char *path,
                                       const float **data)
{
    char err[FUSE_RT_ERR_MAX];
    fuse_rt_safetensors *st = NULL;
    if (fuse_rt_safetensors_open(path, &st, err, sizeof err) != FUSE_RT_OK) {
        diag_report_runtime(cx->diag, DIAG_ERROR, path, err);
        return NULL;
    }
    bool ok = true;
    for (uint32_t i = 0; i < g->nparams; i++) {
        const Node *p = g->params[i];
        const fuse_rt_tensor_info *t = fuse_rt_safetensors_find(st, p->attr.param.key);
        if (check_param(cx, p, t, path))
            data[i] = t->data;
        else
            ok = false;
    }
    if (!ok) {
        fuse_rt_safetensors_close(st);
        return NULL;
    }
    char prefix[1024];
    warn_unused(cx, g, st, weights_normalized_prefix(cx->prefix, prefix, sizeof prefix), path);
    return st;
}

/* splitmix64: a tiny, well-mixed generator; seeded from the key so values do not depend on
 * the order parameters appear in. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)key; *c; c++)
        h = (h ^ *c) * 1099511628211ULL;
    return h;
}

void weights_fill_random(const Node *param, float *out)
{
    FUSE_ASSERT(param->kind == OP_PARAM);
    int64_t n = shape_numel(&param->shape);
    double lo = -0.5, hi = 0.5;
    switch (param->attr.param.init) {
    case INIT_FAN_IN: {
        int64_t fan_in = param->shape.rank > 1 ? n / param->shape.dim[0] : n;
        double bound = 1.0 / sqrt((double)(fan_in > 0 ? fan_in : 1));
        lo = -bound;
        hi = bound;
        break;
    }
    case INIT_NEAR_ONE:
    case INIT_POSITIVE:
        lo = 0.5;
        hi = 1.5;
        break;
    case INIT_SMALL:
        break;
    }
    uint64_t state = hash_key(param->attr.param.key);
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(splitmix64(&state) >> 11) * 0x1.0p-53;
        out[i] = (float)(lo + (hi - lo) * u);
    }
}
