/*
 * rt_kernel: the glue between a compiled kernel's signature (fuse_rt_kernel_info) and its
 * weights. fuse_rt_bind_weights: (info, a caller's weight table) -> one data pointer per
 * info->params[i]; fuse_rt_kernel_create_from_file: (info, a safetensors file, a key prefix) ->
 * a kernel instance made by info->create.
 *
 * Invariants: a table of more than LINEAR_MAX weights is searched through a sorted index
 * (O((n + m) log n) for n weights and m params, never n x m string compares); a key found twice
 * in the table is an error rather than a silent choice; on failure the outputs are left NULL and
 * the message names the key and, for a shape mismatch, both shapes, e.g.
 *   "weight 'conv.weight' has shape [4,3,1,1]; the kernel needs [4,2,1,1]".
 * bind_weights reports under the kernel's name, create_from_file under the file's path with the
 * full (prefixed) key. Codes: an ABI mismatch or a bad table is FUSE_RT_EINVAL; in a file, a
 * missing key or a wrong shape is FUSE_RT_EFORMAT and a used entry that is not F32 is
 * FUSE_RT_EDTYPE.
 */
#include "fuse_rt.h"
#include "rt_internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tables up to this size are searched linearly: sorting would cost more than it saves. */
#define LINEAR_MAX 16
/* Room for "[d0,d1,...]" with FUSE_RT_MAX_RANK dims of up to 20 characters each. */
#define SHAPE_TEXT_MAX (2 + FUSE_RT_MAX_RANK * 21)

/* Writes "[4,3,1,1]" ("[]" for rank 0) into buf; a rank above FUSE_RT_MAX_RANK shows its first
 * FUSE_RT_MAX_RANK dims and "...". */
static const char *format_shape(char *buf, size_t size, uint32_t rank, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, size, "[");
    uint32_t shown = rank < FUSE_RT_MAX_RANK ? rank : FUSE_RT_MAX_RANK;
    for (uint32_t d = 0; d < shown && o < size; d++)
        o += (size_t)snprintf(buf + o, size - o, "%s%" PRId64, d ? "," : "", shape[d]);
    if (o < size)
        snprintf(buf + o, size - o, "%s]", rank > shown ? ",..." : "");
    return buf;
}

static bool same_shape(uint32_t rank, const int64_t *shape, const fuse_rt_tensor_desc *want)
{
    if (rank != want->rank)
        return false;
    for (uint32_t d = 0; d < rank; d++)
        if (shape[d] != want->shape[d])
            return false;
    return true;
}

static int check_info(const fuse_rt_kernel_info *info, char *err, size_t errlen, const char *who)
{
    if (!info)
        return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, who, "NULL kernel info");
    if (info->abi_version != FUSE_RT_ABI_VERSION)
        return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, who,
                             "kernel '%s' was built for runtime ABI %" PRIu32
                             "; this runtime has ABI %d (regenerate the kernel)",
                             info->name ? info->name : "(unnamed)", info->abi_version,
                             FUSE_RT_ABI_VERSION);
    if (info->nparams > 0 && !info->params)
        return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, who,
                             "kernel '%s' has %" PRIu32 " params but no param table",
                             info->name ? info->name : "(unnamed)", info->nparams);
    for (uint32_t i = 0; i < info->nparams; i++)
        if (!info->params[i].name)
            return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, who,
                                 "param %" PRIu32 " of kernel '%s' has no name", i,
                                 info->name ? info->name : "(unnamed)");
    return FUSE_RT_OK;
}

/* ---- fuse_rt_bind_weights ---- */

static int cmp_weight(const void *a, const void *b)
{
    const fuse_rt_weight *const *x = a, *const *y = b;
    return strcmp((*x)->key, (*y)->key);
}

static int find_weight(const void *key, const void *elem)
{
    const fuse_rt_weight *const *w = elem;
    return strcmp(key, (*w)->key);
}

/* The weight with this key: *hit is NULL when there is none; returns false when there are
 * several. `index` (sorted by key, NULL-keyed weights left out, `nindex` entries) is used when
 * not NULL, else the table is scanned. */
static bool lookup(const fuse_rt_weight *weights, size_t nweights, const fuse_rt_weight **index,
                   size_t nindex, const char *key, const fuse_rt_weight **hit)
{
    *hit = NULL;
    if (!index) {
        for (size_t i = 0; i < nweights; i++) {
            if (!weights[i].key || strcmp(weights[i].key, key) != 0)
                continue;
            if (*hit)
                return false;
            *hit = &weights[i];
        }
        return true;
    }
    const fuse_rt_weight *const *p = bsearch(key, index, nindex, sizeof *index, find_weight);
    if (!p)
        return true;
    *hit = *p;
    // bsearch may land on any of several equal keys: look at both neighbours.
    size_t at = (size_t)(p - index);
    return !(at > 0 && strcmp(index[at - 1]->key, key) == 0) &&
           !(at + 1 < nindex && strcmp(index[at + 1]->key, key) == 0);
}

int fuse_rt_bind_weights(const fuse_rt_kernel_info *info, const fuse_rt_weight *weights,
                         size_t nweights, const float **data, char *err, size_t errlen)
{
    static const char who[] = "fuse_rt_bind_weights";
    int rc = check_info(info, err, errlen, who);
    if (rc)
        return rc;
    const char *name = info->name ? info->name : who;
    if (info->nparams == 0)
        return FUSE_RT_OK;
    if (!data || (nweights > 0 && !weights))
        return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, name, "NULL data or weights argument");
    for (uint32_t i = 0; i < info->nparams; i++)
        data[i] = NULL;
    const fuse_rt_weight **index = NULL;
    size_t nindex = 0;
    if (nweights > LINEAR_MAX) {
        index = malloc(nweights * sizeof *index);
        if (!index)
            return fuse_rt__fail(FUSE_RT_ENOMEM, err, errlen, name,
                                 "out of memory indexing %zu weights", nweights);
        for (size_t i = 0; i < nweights; i++)
            if (weights[i].key)
                index[nindex++] = &weights[i];
        qsort(index, nindex, sizeof *index, cmp_weight);
    }
    char got[SHAPE_TEXT_MAX], want[SHAPE_TEXT_MAX];
    for (uint32_t i = 0; i < info->nparams && rc == 0; i++) {
        const fuse_rt_tensor_desc *p = &info->params[i];
        const fuse_rt_weight *w;
        format_shape(want, sizeof want, p->rank, p->shape);
        if (!lookup(weights, nweights, index, nindex, p->name, &w))
            rc = fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, name,
                               "weight '%s' appears more than once in the table", p->name);
        else if (!w)
            rc = fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, name,
                               "weight '%s' is missing; the kernel needs f32%s", p->name, want);
        else if (w->rank > 0 && !w->shape)
            rc = fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, name,
                               "weight '%s' has rank %" PRIu32 " but no shape", p->name, w->rank);
        else if (!same_shape(w->rank, w->shape, p))
            rc = fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, name,
                               "weight '%s' has shape %s; the kernel needs %s", p->name,
                               format_shape(got, sizeof got, w->rank, w->shape), want);
        else if (!w->data)
            rc = fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, name, "weight '%s' has no data",
                               p->name);
        else
            data[i] = w->data;
    }
    free(index);
    if (rc)
        for (uint32_t i = 0; i < info->nparams; i++)
            data[i] = NULL;
    return rc;
}

/* ---- fuse_rt_kernel_create_from_file ---- */

/* Checks every param against the file and fills table[i] = {params[i].name, its data, rank,
 * shape}. `key` starts with the normalized prefix (plen bytes) and has room for it followed by
 * the longest param name. */
static int collect(const fuse_rt_kernel_info *info, const fuse_rt_safetensors *st, const char *path,
                   char *key, size_t plen, fuse_rt_weight *table, char *err, size_t errlen)
{
    char got[SHAPE_TEXT_MAX], want[SHAPE_TEXT_MAX];
    for (uint32_t i = 0; i < info->nparams; i++) {
        const fuse_rt_tensor_desc *p = &info->params[i];
        memcpy(key + plen, p->name, strlen(p->name) + 1); /* fits: see keysize */
        const fuse_rt_tensor_info *t = fuse_rt_safetensors_find(st, key);
        format_shape(want, sizeof want, p->rank, p->shape);
        if (!t)
            return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                                 "weight '%s' is missing; the kernel needs f32%s", key, want);
        if (t->dtype != FUSE_RT_F32)
            return fuse_rt__fail(FUSE_RT_EDTYPE, err, errlen, path,
                                 "weight '%s' has dtype %s; the kernel needs F32", key,
                                 t->dtype_name ? t->dtype_name : "?");
        if (!same_shape(t->rank, t->shape, p))
            return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                                 "weight '%s' has shape %s; the kernel needs %s", key,
                                 format_shape(got, sizeof got, t->rank, t->shape), want);
        table[i] =
            (fuse_rt_weight){.key = p->name, .data = t->data, .rank = t->rank, .shape = t->shape};
    }
    return FUSE_RT_OK;
}

int fuse_rt_kernel_create_from_file(const fuse_rt_kernel_info *info, const char *path,
                                    const char *prefix, fuse_rt_pool *pool, fuse_rt_kernel **out,
                                    char *err, size_t errlen)
{
    static const char who[] = "fuse_rt_kernel_create_from_file";
    if (out)
        *out = NULL;
    int rc = check_info(info, err, errlen, who);
    if (rc)
        return rc;
    if (!path || !out || !info->create)
        return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, who, "NULL path, out or info->create");
    fuse_rt_safetensors *st = NULL;
    if ((rc = fuse_rt_safetensors_open(path, &st, err, errlen)) != 0)
        return rc;
    // key = prefix, '.' when the prefix is non-empty and lacks one, then each param's name.
    size_t plen = prefix ? strlen(prefix) : 0;
    bool dot = plen > 0 && prefix[plen - 1] != '.';
    size_t longest = 0;
    for (uint32_t i = 0; i < info->nparams; i++) {
        size_t nlen = strlen(info->params[i].name);
        longest = nlen > longest ? nlen : longest;
    }
    size_t keysize = plen + 1 + longest + 1;
    char *key = malloc(keysize);
    fuse_rt_weight *table = calloc(info->nparams ? info->nparams : 1, sizeof *table);
    if (!key || !table) {
        rc = fuse_rt__fail(FUSE_RT_ENOMEM, err, errlen, path, "out of memory");
    } else {
        if (plen > 0)
            memcpy(key, prefix, plen);
        if (dot)
            key[plen++] = '.';
        rc = collect(info, st, path, key, plen, table, err, errlen);
    }
    if (rc == 0 && (rc = info->create(table, info->nparams, pool, out, err, errlen)) != 0)
        *out = NULL;
    free(key);
    free(table);
    fuse_rt_safetensors_close(st);
    return rc;
}
