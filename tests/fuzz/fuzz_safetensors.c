/*
 * fuzz_safetensors: arbitrary bytes as a safetensors file through fuse_rt_safetensors_open,
 * then every lookup the runtime offers and weight binding on top of it.
 *
 * Checked, besides the sanitizers: a failure leaves *out NULL with a one-line message; on
 * success every entry has a unique key that fuse_rt_safetensors_find returns, a known dtype,
 * rank <= FUSE_RT_MAX_RANK, nbytes == product(shape) x element size, 4-byte aligned F32 data,
 * and data that comes from the file (every byte is read and found in the data area, and the
 * entries that were not copied fit in the data area together). Then the F32 entries are bound as a
 * kernel's weights twice, through fuse_rt_kernel_create_from_file (with and without a key prefix)
 * and fuse_rt_bind_weights, and a create() callback checks that each weight arrives with its own
 * shape and data.
 */
#include "fuzz.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuse_rt.h"

enum { MAX_PARAMS = 64 }; /* F32 entries bound as weights */

static void check_message(const char *err)
{
    FUZZ_CHECK(err[0] != '\0');
    FUZZ_CHECK(strchr(err, '\n') == NULL);
}

static uint64_t entry_bytes(const fuse_rt_tensor_info *t)
{
    uint64_t n = fuse_rt_dtype_size(t->dtype);
    FUZZ_CHECK(n > 0);
    for (uint32_t d = 0; d < t->rank; d++) {
        FUZZ_CHECK(t->shape[d] >= 0);
        uint64_t dim = (uint64_t)t->shape[d];
        if (dim == 0)
            return 0;
        FUZZ_CHECK(n <= UINT64_MAX / dim);
        n *= dim;
    }
    return n;
}

/* Whether needle[0, n) occurs in hay[0, len) (n >= 1). */
static bool occurs(const uint8_t *hay, size_t len, const unsigned char *needle, size_t n)
{
    for (size_t i = 0; i + n <= len; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0)
            return true;
    return false;
}

/* What create() must see: the params of the kernel being created. */
typedef struct Expect {
    const fuse_rt_tensor_desc *params;
    uint32_t nparams;
} Expect;

static Expect expect;
static char kernel_token; /* create() returns its address as the instance */

static int fake_create(const fuse_rt_weight *weights, size_t nweights, fuse_rt_pool *pool,
                       fuse_rt_kernel **out, char *err, size_t errlen)
{
    (void)pool, (void)err, (void)errlen;
    FUZZ_CHECK(nweights == expect.nparams);
    for (size_t i = 0; i < nweights; i++) {
        const fuse_rt_weight *w = &weights[i];
        const fuse_rt_tensor_desc *p = &expect.params[i];
        FUZZ_CHECK(w->key && strcmp(w->key, p->name) == 0);
        FUZZ_CHECK(w->rank == p->rank);
        size_t n = 1;
        for (uint32_t d = 0; d < w->rank; d++) {
            FUZZ_CHECK(w->shape[d] == p->shape[d]);
            n *= (size_t)w->shape[d];
        }
        FUZZ_CHECK(n == 0 || ((uintptr_t)w->data % 4 == 0));
        volatile float sink = 0;
        for (size_t k = 0; k < n; k++)
            sink += w->data[k];
        (void)sink;
    }
    *out = (fuse_rt_kernel *)(void *)&kernel_token;
    return FUSE_RT_OK;
}

static void fake_destroy(fuse_rt_kernel *k)
{
    FUZZ_CHECK((void *)k == (void *)&kernel_token);
}

/* Binds the params through the file, under `prefix` (each name then lacks it); the binding
 * must succeed or fail as `should_bind` says. */
static void create_from_file(const char *path, const char *prefix,
                             const fuse_rt_tensor_desc *params, uint32_t n, bool should_bind)
{
    fuse_rt_kernel_info info = {.abi_version = FUSE_RT_ABI_VERSION,
                                .name = "fuzz",
                                .nparams = n,
                                .params = params,
                                .create = fake_create,
                                .destroy = fake_destroy};
    expect = (Expect){params, n};
    fuse_rt_kernel *k = NULL;
    char err[FUSE_RT_ERR_MAX] = "";
    int rc = fuse_rt_kernel_create_from_file(&info, path, prefix, NULL, &k, err, sizeof err);
    FUZZ_CHECK((rc == FUSE_RT_OK) == should_bind);
    if (rc == FUSE_RT_OK) {
        FUZZ_CHECK(k != NULL);
        fake_destroy(k);
    } else {
        FUZZ_CHECK(k == NULL);
        check_message(err);
    }
}

/* The F32 entries as kernel params, bound from the file and from a table. */
static void bind(const char *path, const fuse_rt_safetensors *st)
{
    static fuse_rt_tensor_desc params[MAX_PARAMS], suffixes[MAX_PARAMS];
    static fuse_rt_weight table[MAX_PARAMS];
    const float *data[MAX_PARAMS];
    uint32_t n = 0, nsuffix = 0;
    const char *prefix = NULL;
    size_t plen = 0;
    for (size_t i = 0; i < fuse_rt_safetensors_count(st) && n < MAX_PARAMS; i++) {
        const fuse_rt_tensor_info *t = fuse_rt_safetensors_entry(st, i);
        if (t->dtype != FUSE_RT_F32)
            continue;
        params[n] = (fuse_rt_tensor_desc){.name = t->key, .rank = t->rank};
        memcpy(params[n].shape, t->shape, t->rank * sizeof *t->shape);
        table[n] = (fuse_rt_weight){t->key, t->data, t->rank, t->shape};
        // The entries under the first key's first segment, named without it.
        const char *dot = strchr(t->key, '.');
        if (!prefix && dot && dot > t->key) {
            prefix = t->key;
            plen = (size_t)(dot - t->key);
        }
        if (prefix && strncmp(t->key, prefix, plen) == 0 && t->key[plen] == '.' &&
            t->key[plen + 1] != '\0') {
            suffixes[nsuffix] = params[n];
            suffixes[nsuffix++].name = t->key + plen + 1;
        }
        n++;
    }
    create_from_file(path, "", params, n, true);
    if (prefix) {
        char pre[256];
        if (plen < sizeof pre) {
            memcpy(pre, prefix, plen);
            pre[plen] = '\0';
            create_from_file(path, pre, suffixes, nsuffix, true);
        }
    }
    // A param the file cannot satisfy: a shape no entry of that key has.
    if (n > 0) {
        fuse_rt_tensor_desc wrong = params[0];
        wrong.rank = wrong.rank < FUSE_RT_MAX_RANK ? wrong.rank + 1 : 1;
        wrong.shape[wrong.rank - 1] = 3;
        create_from_file(path, NULL, &wrong, 1, false);
    }
    fuse_rt_kernel_info info = {.abi_version = FUSE_RT_ABI_VERSION,
                                .name = "fuzz",
                                .nparams = n,
                                .params = params,
                                .create = fake_create,
                                .destroy = fake_destroy};
    char err[FUSE_RT_ERR_MAX] = "";
    FUZZ_CHECK(fuse_rt_bind_weights(&info, table, n, data, err, sizeof err) == FUSE_RT_OK);
    for (uint32_t i = 0; i < n; i++)
        FUZZ_CHECK(data[i] == table[i].data);
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
    const char *path = fuzz_input_path(bytes, size);
    fuse_rt_safetensors *st = (fuse_rt_safetensors *)(void *)&kernel_token;
    char err[FUSE_RT_ERR_MAX] = "";
    int rc = fuse_rt_safetensors_open(path, &st, err, sizeof err);
    if (rc != FUSE_RT_OK) {
        FUZZ_CHECK(rc == FUSE_RT_EFORMAT || rc == FUSE_RT_EDTYPE || rc == FUSE_RT_EIO ||
                   rc == FUSE_RT_ENOMEM);
        FUZZ_CHECK(st == NULL);
        check_message(err);
        return 0;
    }
    FUZZ_CHECK(st != NULL && size >= 8);
    uint64_t header = 0;
    for (int k = 7; k >= 0; k--)
        header = header << 8 | bytes[k];
    FUZZ_CHECK(header <= size - 8);
    uint64_t data_size = size - 8 - header;

    size_t count = fuse_rt_safetensors_count(st);
    FUZZ_CHECK(fuse_rt_safetensors_entry(st, count) == NULL);
    // Entries the runtime did not copy point into one mapping of the data area.
    const unsigned char *lo = NULL, *hi = NULL;
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++) {
        const fuse_rt_tensor_info *t = fuse_rt_safetensors_entry(st, i);
        FUZZ_CHECK(t != NULL && t->key != NULL);
        FUZZ_CHECK(fuse_rt_safetensors_find(st, t->key) == t);
        FUZZ_CHECK(t->dtype_name && strcmp(t->dtype_name, fuse_rt_dtype_name(t->dtype)) == 0);
        FUZZ_CHECK(t->rank <= FUSE_RT_MAX_RANK);
        FUZZ_CHECK(entry_bytes(t) == t->nbytes);
        FUZZ_CHECK(t->nbytes <= data_size);
        total += t->nbytes;
        if (t->nbytes == 0)
            continue;
        FUZZ_CHECK(t->data != NULL);
        FUZZ_CHECK(t->dtype != FUSE_RT_F32 || (uintptr_t)t->data % 4 == 0);
        const unsigned char *p = t->data;
        volatile unsigned char sink = 0;
        for (size_t k = 0; k < t->nbytes; k++)
            sink ^= p[k];
        (void)sink;
        // The bytes are the file's (copied or not): they occur in its data area.
        FUZZ_CHECK(occurs(bytes + 8 + header, (size_t)data_size, p, t->nbytes));
        // F32 entries may have been copied to aligned memory.
        if (t->dtype == FUSE_RT_F32)
            continue;
        lo = !lo || p < lo ? p : lo;
        hi = !hi || p + t->nbytes > hi ? p + t->nbytes : hi;
    }
    FUZZ_CHECK(total <= data_size); /* entries do not overlap */
    FUZZ_CHECK(!lo || (uint64_t)(hi - lo) <= data_size);
    FUZZ_CHECK(
        fuse_rt_safetensors_find(st, "fuzz: no such key") == NULL ||
        strcmp(fuse_rt_safetensors_find(st, "fuzz: no such key")->key, "fuzz: no such key") == 0);
    bind(path, st);
    fuse_rt_safetensors_close(st);
    return 0;
}
