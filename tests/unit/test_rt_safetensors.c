/*
 * test_rt_safetensors: the safetensors reader against a file laid out the way
 * safetensors.torch.save_file writes it, and against hostile files: each must fail with the
 * right FUSE_RT_E* code and a one-line message naming the file and the problem, never crash
 * or read outside the file (run under ASan/UBSan in CI). Files live in a mkdtemp directory.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fuse_rt.h"

typedef struct Dir {
    char path[64];
} Dir;

static int setup(void **state)
{
    Dir *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    strcpy(d->path, "/tmp/fuse_rt_st_XXXXXX");
    if (!mkdtemp(d->path)) {
        free(d);
        return -1;
    }
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    Dir *d = *state;
    DIR *dir = opendir(d->path);
    if (dir) {
        char p[512];
        for (struct dirent *de; (de = readdir(dir)) != NULL;) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", d->path, de->d_name);
            unlink(p);
        }
        closedir(dir);
    }
    rmdir(d->path);
    free(d);
    return 0;
}

static const char *in_dir(void **state, const char *name, char *buf, size_t size)
{
    const Dir *d = *state;
    snprintf(buf, size, "%s/%s", d->path, name);
    return buf;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n > 0)
        assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

/* Writes u64 len | header (of hlen bytes) | data (ndata bytes; zeros when data is NULL). */
static void write_st(const char *path, const char *header, size_t hlen, const void *data,
                     size_t ndata)
{
    size_t n = 8 + hlen + ndata;
    unsigned char *buf = calloc(1, n);
    assert_non_null(buf);
    put_le64(buf, hlen);
    memcpy(buf + 8, header, hlen);
    if (data)
        memcpy(buf + 8 + hlen, data, ndata);
    write_bytes(path, buf, n);
    free(buf);
}

/* rc must be `want`, and err one line that starts with "path: " and contains `substr`. */
static void check_err(int rc, int want, const char *err, const char *path, const char *substr)
{
    size_t plen = strlen(path);
    if (rc != want || strncmp(err, path, plen) != 0 || strncmp(err + plen, ": ", 2) != 0 ||
        strchr(err, '\n') || !strstr(err, substr)) {
        print_error("want rc %d with '%s'\n got rc %d: %s\n", want, substr, rc, err);
        fail();
    }
}

/* ---- a valid file ---- */

/* What safetensors.torch.save_file writes for a conv + BN state dict: __metadata__ first,
 * 8-byte dtypes first, JSON without spaces, padded with spaces to a multiple of 8. */
static const char valid_header[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
    "\"bn.running_mean\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]},"
    "\"conv.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[24,40]},"
    "\"conv.weight\":{\"dtype\":\"F32\",\"shape\":[4,3,1,1],\"data_offsets\":[40,88]}}";

/* The valid file's bytes into buf (at least 512 bytes); returns its size. `extra` spaces are
 * added to the padding, to move the data area off 4-byte alignment. */
static size_t valid_file(unsigned char *buf, size_t extra)
{
    size_t hlen = strlen(valid_header);
    size_t padded = (hlen + 7) / 8 * 8 + extra;
    put_le64(buf, padded);
    memcpy(buf + 8, valid_header, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    unsigned char *data = buf + 8 + padded;
    int64_t nbt = 1234567;
    memcpy(data, &nbt, 8);
    for (int k = 0; k < 20; k++) {
        float v = (float)k * 0.5f - 3.0f;
        memcpy(data + 8 + 4 * k, &v, 4);
    }
    return 8 + padded + 88;
}

static void check_valid(const fuse_rt_safetensors *st)
{
    assert_int_equal(fuse_rt_safetensors_count(st), 4);
    static const char *const keys[] = {"bn.num_batches_tracked", "bn.running_mean", "conv.bias",
                                       "conv.weight"};
    for (size_t i = 0; i < 4; i++) {
        const fuse_rt_tensor_info *t = fuse_rt_safetensors_entry(st, i);
        assert_non_null(t);
        assert_string_equal(t->key, keys[i]);
        assert_ptr_equal(fuse_rt_safetensors_find(st, keys[i]), t);
    }
    assert_null(fuse_rt_safetensors_entry(st, 4));
    assert_null(fuse_rt_safetensors_find(st, "__metadata__"));
    assert_null(fuse_rt_safetensors_find(st, "conv"));
    assert_null(fuse_rt_safetensors_find(st, "conv.weightx"));

    const fuse_rt_tensor_info *nbt = fuse_rt_safetensors_find(st, "bn.num_batches_tracked");
    assert_int_equal(nbt->dtype, FUSE_RT_I64);
    assert_string_equal(nbt->dtype_name, "I64");
    assert_int_equal(nbt->rank, 0);
    assert_int_equal(nbt->nbytes, 8);
    int64_t v;
    memcpy(&v, nbt->data, 8);
    assert_int_equal(v, 1234567);

    const fuse_rt_tensor_info *w = fuse_rt_safetensors_find(st, "conv.weight");
    assert_int_equal(w->dtype, FUSE_RT_F32);
    assert_string_equal(w->dtype_name, "F32");
    assert_int_equal(w->rank, 4);
    assert_int_equal(w->shape[0], 4);
    assert_int_equal(w->shape[1], 3);
    assert_int_equal(w->shape[2], 1);
    assert_int_equal(w->shape[3], 1);
    assert_int_equal(w->nbytes, 48);
    assert_int_equal((uintptr_t)w->data % 4, 0);
    const float *wf = w->data;
    for (int k = 0; k < 12; k++)
        assert_true(wf[k] == (float)(k + 8) * 0.5f - 3.0f);
    const fuse_rt_tensor_info *b = fuse_rt_safetensors_find(st, "conv.bias");
    assert_int_equal((uintptr_t)b->data % 4, 0);
    const float *bf = b->data;
    for (int k = 0; k < 4; k++)
        assert_true(bf[k] == (float)(k + 4) * 0.5f - 3.0f);
}

static void test_valid(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX] = "";
    unsigned char buf[512];
    size_t n = valid_file(buf, 0);
    write_bytes(in_dir(state, "valid.safetensors", path, sizeof path), buf, n);
    fuse_rt_safetensors *st = NULL;
    int rc = fuse_rt_safetensors_open(path, &st, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    assert_non_null(st);
    check_valid(st);
    fuse_rt_safetensors_close(st);
}

/* A header length that leaves the data area 4-byte unaligned: F32 entries get aligned copies
 * holding the same values; the I64 entry stays in the mapping. */
static void test_unaligned_f32(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX] = "";
    for (size_t extra = 1; extra < 4; extra++) {
        unsigned char buf[512];
        size_t n = valid_file(buf, extra);
        write_bytes(in_dir(state, "unaligned.safetensors", path, sizeof path), buf, n);
        fuse_rt_safetensors *st = NULL;
        int rc = fuse_rt_safetensors_open(path, &st, err, sizeof err);
        if (rc)
            fail_msg("%s", err);
        check_valid(st);
        fuse_rt_safetensors_close(st);
    }
}

static void test_dtype_table(void **state)
{
    (void)state;
    assert_string_equal(fuse_rt_dtype_name(FUSE_RT_BF16), "BF16");
    assert_string_equal(fuse_rt_dtype_name(FUSE_RT_F8_E5M2), "F8_E5M2");
    assert_int_equal(fuse_rt_dtype_size(FUSE_RT_BOOL), 1);
    assert_int_equal(fuse_rt_dtype_size(FUSE_RT_F16), 2);
    assert_int_equal(fuse_rt_dtype_size(FUSE_RT_U32), 4);
    assert_int_equal(fuse_rt_dtype_size(FUSE_RT_F64), 8);
    assert_int_equal(fuse_rt_dtype_size(FUSE_RT_F8_E4M3), 1);
    assert_null(fuse_rt_dtype_name((fuse_rt_dtype)99));
    assert_int_equal(fuse_rt_dtype_size((fuse_rt_dtype)99), 0);
}

/* Files that are valid though unusual. */
static void test_accepted(void **state)
{
    static const struct {
        const char *header;
        size_t ndata;
        size_t count;
    } cases[] = {
        {"{}", 0, 0},
        {" \t\r\n{ } \n ", 0, 0},
        // __metadata__ that is not an object of strings is ignored.
        {"{\"__metadata__\": [1, {\"x\": null, \"y\": [true, false, -1.5e+3]}], "
         "\"a\": {\"dtype\": \"U8\", \"shape\": [3], \"data_offsets\": [0, 3]}}",
         3, 1},
        {"{\"__metadata__\": \"text\"}", 0, 0},
        // Fields in any order; zero-size entries anywhere, even inside another's range.
        {"{\"a\": {\"data_offsets\": [0, 16], \"shape\": [2, 2], \"dtype\": \"F32\"},"
         " \"e\": {\"dtype\": \"F32\", \"shape\": [0, 5], \"data_offsets\": [4, 4]},"
         " \"f\": {\"dtype\": \"F16\", \"shape\": [0], \"data_offsets\": [16, 16]}}",
         16, 3},
        // Gaps between entries and unused bytes at the end are allowed.
        {"{\"a\": {\"dtype\": \"BOOL\", \"shape\": [1], \"data_offsets\": [2, 3]}}", 9, 1},
        // Every dtype.
        {"{\"b\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]},"
         "\"i8\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[1,2]},"
         "\"u16\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[2,4]},"
         "\"i16\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[4,6]},"
         "\"bf16\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[6,8]},"
         "\"u32\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[8,12]},"
         "\"i32\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[12,16]},"
         "\"u64\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[16,24]},"
         "\"f64\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[24,32]},"
         "\"e4\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[32,33]},"
         "\"e5\":{\"dtype\":\"F8_E5M2\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[33,34]}}",
         34, 11},
    };
    char path[256], err[FUSE_RT_ERR_MAX];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        in_dir(state, "ok.safetensors", path, sizeof path);
        write_st(path, cases[i].header, strlen(cases[i].header), NULL, cases[i].ndata);
        fuse_rt_safetensors *st = NULL;
        err[0] = '\0';
        int rc = fuse_rt_safetensors_open(path, &st, err, sizeof err);
        if (rc)
            fail_msg("case %zu: %s", i, err);
        assert_int_equal(fuse_rt_safetensors_count(st), cases[i].count);
        for (size_t k = 0; k < cases[i].count; k++) {
            const fuse_rt_tensor_info *t = fuse_rt_safetensors_entry(st, k);
            assert_ptr_equal(fuse_rt_safetensors_find(st, t->key), t);
            assert_int_equal(t->nbytes, fuse_rt_dtype_size(t->dtype) *
                                            (size_t)(t->rank ? t->shape[0] : 1) *
                                            (size_t)(t->rank > 1 ? t->shape[1] : 1));
        }
        fuse_rt_safetensors_close(st);
    }
}

/* Keys are decoded JSON strings: escapes, \u escapes and surrogate pairs become UTF-8. */
static void test_escaped_keys(void **state)
{
    static const char header[] =
        "{\"a\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\\/\": "
        "{\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [0, 1]},"
        " \"\xc3\xa9t\xc3\xa9\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [1, 2]},"
        " \"\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [2, 3]}}";
    char path[256], err[FUSE_RT_ERR_MAX] = "";
    write_st(in_dir(state, "keys.safetensors", path, sizeof path), header, strlen(header), "xyz",
             3);
    fuse_rt_safetensors *st = NULL;
    int rc = fuse_rt_safetensors_open(path, &st, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    const fuse_rt_tensor_info *t =
        fuse_rt_safetensors_find(st, "a\xc3\xa9\xf0\x9f\x98\x80\n\t\"\\/");
    assert_non_null(t);
    assert_int_equal(*(const char *)t->data, 'x');
    t = fuse_rt_safetensors_find(st, "\xc3\xa9t\xc3\xa9");
    assert_non_null(t);
    assert_int_equal(*(const char *)t->data, 'y');
    t = fuse_rt_safetensors_find(st, "");
    assert_non_null(t);
    assert_int_equal(*(const char *)t->data, 'z');
    fuse_rt_safetensors_close(st);
}

/* Thousands of weights: find() locates every key through the index. */
static void test_many_keys(void **state)
{
    enum { N = 3000 };
    size_t cap = (size_t)N * 80 + 16, o = 0;
    char *header = malloc(cap);
    assert_non_null(header);
    header[o++] = '{';
    for (int i = 0; i < N; i++)
        o += (size_t)snprintf(header + o, cap - o,
                              "%s\"layer%d.weight\":{\"dtype\":\"F32\",\"shape\":[1],"
                              "\"data_offsets\":[%d,%d]}",
                              i ? "," : "", (N - 1 - i), 4 * i, 4 * i + 4);
    header[o++] = '}';
    float *data = malloc((size_t)N * 4);
    assert_non_null(data);
    for (int i = 0; i < N; i++)
        data[i] = (float)i;
    char path[256], err[FUSE_RT_ERR_MAX] = "", key[32];
    write_st(in_dir(state, "many.safetensors", path, sizeof path), header, o, data, (size_t)N * 4);
    fuse_rt_safetensors *st = NULL;
    int rc = fuse_rt_safetensors_open(path, &st, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(fuse_rt_safetensors_count(st), N);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "layer%d.weight", i);
        const fuse_rt_tensor_info *t = fuse_rt_safetensors_find(st, key);
        assert_non_null(t);
        assert_string_equal(t->key, key);
        assert_true(*(const float *)t->data == (float)(N - 1 - i));
        assert_ptr_equal(fuse_rt_safetensors_entry(st, (size_t)(N - 1 - i)), t);
    }
    assert_null(fuse_rt_safetensors_find(st, "layer3000.weight"));
    assert_null(fuse_rt_safetensors_find(st, "layer.weight"));
    fuse_rt_safetensors_close(st);
    free(header);
    free(data);
}

/* The header object is level 1, so 63 arrays nested in __metadata__ reach the limit of 64. */
static void test_nesting_limit(void **state)
{
    char header[256], path[256], err[FUSE_RT_ERR_MAX];
    in_dir(state, "deep.safetensors", path, sizeof path);
    for (int levels = 63; levels <= 64; levels++) {
        size_t o = (size_t)snprintf(header, sizeof header, "{\"__metadata__\": ");
        for (int k = 0; k < levels; k++)
            header[o++] = '[';
        for (int k = 0; k < levels; k++)
            header[o++] = ']';
        header[o++] = '}';
        write_st(path, header, o, NULL, 0);
        fuse_rt_safetensors *st = NULL;
        err[0] = '\0';
        int rc = fuse_rt_safetensors_open(path, &st, err, sizeof err);
        if (levels == 63) {
            if (rc)
                fail_msg("%s", err);
            fuse_rt_safetensors_close(st);
        } else {
            check_err(rc, FUSE_RT_EFORMAT, err, path, "nesting deeper than 64 levels");
        }
    }
}

/* ---- hostile headers ---- */

#define ENTRY(k, body) "\"" k "\": {" body "}"

static const struct {
    const char *name;
    const char *header;
    size_t ndata;
    int code;
    const char *msg;
} bad_headers[] = {
    {"not JSON", "hello world", 0, FUSE_RT_EFORMAT,
     "header is not valid JSON: expected a JSON value, found 'h' at byte 0"},
    {"JSON not an object", "[1, 2]", 0, FUSE_RT_EFORMAT, "header is an array, not a JSON object"},
    {"JSON string", "\"x\"", 0, FUSE_RT_EFORMAT, "header is a string, not a JSON object"},
    {"truncated JSON", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1", 0, FUSE_RT_EFORMAT,
     "at the end of the header (truncated?)"},
    {"truncated string", "{\"a", 0, FUSE_RT_EFORMAT, "unterminated string"},
    {"trailing garbage", "{} x", 0, FUSE_RT_EFORMAT,
     "trailing characters after the JSON value at byte 3"},
    {"two objects", "{}{}", 0, FUSE_RT_EFORMAT, "trailing characters"},
    {"trailing comma", "{\"__metadata__\": {},}", 0, FUSE_RT_EFORMAT, "expected a string key"},
    {"trailing comma in array", "{\"__metadata__\": [1,]}", 0, FUSE_RT_EFORMAT,
     "expected a JSON value, found ']'"},
    {"missing colon", "{\"a\" 1}", 0, FUSE_RT_EFORMAT, "expected ':', found '1'"},
    {"single quotes", "{'a': 1}", 0, FUSE_RT_EFORMAT, "expected a string key or '}'"},
    {"leading zero", "{\"__metadata__\": [01]}", 0, FUSE_RT_EFORMAT,
     "expected ',' or ']', found '1'"},
    {"bare minus", "{\"__metadata__\": -}", 0, FUSE_RT_EFORMAT, "expected a digit"},
    {"bad literal", "{\"__metadata__\": tru}", 0, FUSE_RT_EFORMAT, "expected a JSON value"},
    {"NaN", "{\"__metadata__\": NaN}", 0, FUSE_RT_EFORMAT, "expected a JSON value, found 'N'"},
    {"bad escape", "{\"a\\x\": 1}", 0, FUSE_RT_EFORMAT, "invalid escape '\\x'"},
    {"bad \\u escape", "{\"a\\u12g4\": 1}", 0, FUSE_RT_EFORMAT, "bad hex digit"},
    {"lone high surrogate", "{\"a\\ud800\": 1}", 0, FUSE_RT_EFORMAT, "unpaired surrogate \\uD800"},
    {"lone low surrogate", "{\"a\\udc00x\": 1}", 0, FUSE_RT_EFORMAT, "unpaired surrogate \\uDC00"},
    {"control character", "{\"a\tb\": 1}", 0, FUSE_RT_EFORMAT, "control character 0x09"},
    {"deep nesting in metadata",
     "{\"__metadata__\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
     0, FUSE_RT_EFORMAT, "nesting deeper than 64 levels"},
    {"entry not an object", "{\"a\": 5}", 0, FUSE_RT_EFORMAT,
     "entry 'a' is a number, not an object"},
    {"entry an array", "{\"a\": [\"F32\"]}", 0, FUSE_RT_EFORMAT,
     "entry 'a' is an array, not an object"},
    {"missing dtype", "{" ENTRY("w", "\"shape\": [1], \"data_offsets\": [0, 4]") "}", 4,
     FUSE_RT_EFORMAT, "entry 'w' has no 'dtype'"},
    {"missing shape", "{" ENTRY("w", "\"dtype\": \"F32\", \"data_offsets\": [0, 4]") "}", 4,
     FUSE_RT_EFORMAT, "entry 'w' has no 'shape'"},
    {"missing data_offsets", "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [1]") "}", 4,
     FUSE_RT_EFORMAT, "entry 'w' has no 'data_offsets'"},
    {"empty entry", "{\"w\": {}}", 0, FUSE_RT_EFORMAT, "entry 'w' has no 'dtype'"},
    {"unknown field",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4], \"foo\": 1") "}",
     4, FUSE_RT_EFORMAT, "entry 'w': unknown field 'foo'"},
    {"duplicate field",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"dtype\": \"F32\", \"shape\": [1]") "}", 4,
     FUSE_RT_EFORMAT, "entry 'w': duplicate field 'dtype'"},
    {"unknown dtype",
     "{" ENTRY("w", "\"dtype\": \"F33\", \"shape\": [1], \"data_offsets\": [0, 4]") "}", 4,
     FUSE_RT_EDTYPE, "entry 'w': unknown dtype 'F33'"},
    {"lowercase dtype",
     "{" ENTRY("w", "\"dtype\": \"f32\", \"shape\": [1], \"data_offsets\": [0, 4]") "}", 4,
     FUSE_RT_EDTYPE, "unknown dtype 'f32'"},
    {"dtype not a string",
     "{" ENTRY("w", "\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]") "}", 4,
     FUSE_RT_EFORMAT, "entry 'w': dtype is a number, not a string"},
    {"shape not an array",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": {}, \"data_offsets\": [0, 4]") "}", 4,
     FUSE_RT_EFORMAT, "entry 'w': shape is an object, not an array"},
    {"negative dim",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]") "}", 4,
     FUSE_RT_EFORMAT, "entry 'w': shape[1] -1 is negative"},
    {"non-integer dim",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]") "}", 4,
     FUSE_RT_EFORMAT, "entry 'w': shape[0] 1.5 is not an integer"},
    {"dim in exponent form",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [1e0], \"data_offsets\": [0, 4]") "}", 4,
     FUSE_RT_EFORMAT, "shape[0] 1e0 is not an integer"},
    {"string dim",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [\"1\"], \"data_offsets\": [0, 4]") "}", 4,
     FUSE_RT_EFORMAT, "entry 'w': shape[0] is a string, not an integer"},
    {"null dim",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [null], \"data_offsets\": [0, 4]") "}", 4,
     FUSE_RT_EFORMAT, "shape[0] is null, not an integer"},
    {"rank 9",
     "{" ENTRY("w",
               "\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]") "}",
     4, FUSE_RT_EFORMAT, "entry 'w': shape has more than 8 dimensions"},
    {"dim over 2^63-1",
     "{" ENTRY(
         "w",
         "\"dtype\": \"U8\", \"shape\": [9223372036854775808, 0], \"data_offsets\": [0, 0]") "}",
     0, FUSE_RT_EFORMAT, "shape[0] 9223372036854775808 exceeds 2^63-1"},
    {"offsets reversed",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]") "}", 8,
     FUSE_RT_EFORMAT, "entry 'w': data_offsets [8, 4] are reversed"},
    {"offsets beyond the data",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [1024], \"data_offsets\": [0, 4096]") "}", 16,
     FUSE_RT_EFORMAT,
     "entry 'w': data_offsets [0, 4096] go past the end of the data area (16 bytes)"},
    {"offsets one past the data",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [13, 17]") "}", 16,
     FUSE_RT_EFORMAT, "go past the end of the data area"},
    {"three offsets",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]") "}", 8,
     FUSE_RT_EFORMAT, "entry 'w': data_offsets has more than 2 elements"},
    {"one offset", "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4]") "}",
     8, FUSE_RT_EFORMAT, "entry 'w': data_offsets has 1 element, not 2"},
    {"negative offset",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]") "}", 8,
     FUSE_RT_EFORMAT, "data_offsets[0] -4 is negative"},
    {"size mismatch",
     "{" ENTRY("conv.weight",
               "\"dtype\": \"F32\", \"shape\": [3, 4], \"data_offsets\": [0, 40]") "}",
     48, FUSE_RT_EFORMAT,
     "entry 'conv.weight': shape [3,4] of F32 needs 48 bytes, data_offsets give 40"},
    {"rank-0 size mismatch",
     "{" ENTRY("nbt", "\"dtype\": \"I64\", \"shape\": [], \"data_offsets\": [0, 4]") "}", 8,
     FUSE_RT_EFORMAT, "entry 'nbt': shape [] of I64 needs 8 bytes, data_offsets give 4"},
    {"shape product overflow",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 16], "
                    "\"data_offsets\": [0, 0]") "}",
     0, FUSE_RT_EFORMAT, "entry 'w': shape [4294967296,4294967296,16] of F32 needs more than 2^64"},
    {"byte count overflow",
     "{" ENTRY(
         "w", "\"dtype\": \"F64\", \"shape\": [2305843009213693952], \"data_offsets\": [0, 0]") "}",
     0, FUSE_RT_EFORMAT, "needs more than 2^64 bytes"},
    {"offset 1e400",
     "{" ENTRY("w", "\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 1e400]") "}", 4,
     FUSE_RT_EFORMAT, "entry 'w': data_offsets[1] 1e400 is not an integer"},
    {"offset 2^64+1",
     "{" ENTRY(
         "w",
         "\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [18446744073709551617, 0]") "}",
     4, FUSE_RT_EFORMAT, "data_offsets[0] 18446744073709551617 does not fit in 64 bits"},
    {"offset 2^64-1",
     "{" ENTRY("w", "\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [18446744073709551614, "
                    "18446744073709551615]") "}",
     4, FUSE_RT_EFORMAT, "go past the end of the data area"},
    {"overlapping entries",
     "{" ENTRY("a", "\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]") ", " ENTRY(
         "b", "\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]") "}",
     24, FUSE_RT_EFORMAT, "entries 'a' [0, 16) and 'b' [8, 24) overlap"},
    {"entry inside another",
     "{" ENTRY("big", "\"dtype\": \"U8\", \"shape\": [32], \"data_offsets\": [0, 32]") ", " ENTRY(
         "mid",
         "\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [20, 24]") ", " ENTRY("small",
                                                                                     "\"dtype\": "
                                                                                     "\"U8\", "
                                                                                     "\"shape\": "
                                                                                     "[4], "
                                                                                     "\"data_"
                                                                                     "offsets\": "
                                                                                     "[4, 8]") "}",
     32, FUSE_RT_EFORMAT, "entries 'big' [0, 32) and 'small' [4, 8) overlap"},
    {"identical ranges",
     "{" ENTRY("a", "\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]") ", " ENTRY(
         "b", "\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]") "}",
     4, FUSE_RT_EFORMAT, "overlap"},
    {"duplicate keys",
     "{" ENTRY("a", "\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]") ", " ENTRY(
         "a", "\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]") "}",
     8, FUSE_RT_EFORMAT, "duplicate key 'a'"},
    {"duplicate keys by escape",
     "{" ENTRY("ab", "\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]") ", " ENTRY(
         "a\\u0062", "\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]") "}",
     8, FUSE_RT_EFORMAT, "duplicate key 'ab'"},
    {"duplicate __metadata__", "{\"__metadata__\": {}, \"__metadata__\": {}}", 0, FUSE_RT_EFORMAT,
     "duplicate key '__metadata__'"},
    {"key with \\u0000",
     "{" ENTRY("a\\u0000b", "\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]") "}", 4,
     FUSE_RT_EFORMAT, "key 'a\\x00b' contains a NUL character"},
    {"key with a newline shown escaped",
     "{" ENTRY("a\\nb", "\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 8]") "}", 8,
     FUSE_RT_EFORMAT, "entry 'a\\x0ab': shape [4] of U8 needs 4 bytes"},
};

static void test_bad_headers(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX];
    in_dir(state, "bad.safetensors", path, sizeof path);
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
        write_st(path, bad_headers[i].header, strlen(bad_headers[i].header), NULL,
                 bad_headers[i].ndata);
        fuse_rt_safetensors *st = (fuse_rt_safetensors *)&err; /* must be reset to NULL */
        err[0] = '\0';
        int rc = fuse_rt_safetensors_open(path, &st, err, sizeof err);
        if (st)
            fuse_rt_safetensors_close(st);
        assert_null(st);
        if (rc != bad_headers[i].code || !strstr(err, bad_headers[i].msg))
            print_error("case '%s'\n", bad_headers[i].name);
        check_err(rc, bad_headers[i].code, err, path, bad_headers[i].msg);
    }
}

/* Hostile files that a header string cannot express. */
static void test_bad_files(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX];
    unsigned char buf[1024] = {0};
    fuse_rt_safetensors *st = NULL;
    in_dir(state, "raw.safetensors", path, sizeof path);

    write_bytes(path, buf, 0);
    check_err(fuse_rt_safetensors_open(path, &st, err, sizeof err), FUSE_RT_EFORMAT, err, path,
              "file is 0 bytes, too short for the 8-byte header length");
    write_bytes(path, buf, 7);
    check_err(fuse_rt_safetensors_open(path, &st, err, sizeof err), FUSE_RT_EFORMAT, err, path,
              "file is 7 bytes");
    put_le64(buf, 99999999);
    write_bytes(path, buf, sizeof buf);
    check_err(fuse_rt_safetensors_open(path, &st, err, sizeof err), FUSE_RT_EFORMAT, err, path,
              "header length 99999999 exceeds the file size (1024 bytes)");
    put_le64(buf, 1017);
    write_bytes(path, buf, sizeof buf);
    check_err(fuse_rt_safetensors_open(path, &st, err, sizeof err), FUSE_RT_EFORMAT, err, path,
              "header length 1017 exceeds the file size");
    put_le64(buf, UINT64_MAX);
    write_bytes(path, buf, sizeof buf);
    check_err(fuse_rt_safetensors_open(path, &st, err, sizeof err), FUSE_RT_EFORMAT, err, path,
              "header length 18446744073709551615 exceeds the file size");
    put_le64(buf, 0);
    write_bytes(path, buf, 8);
    check_err(fuse_rt_safetensors_open(path, &st, err, sizeof err), FUSE_RT_EFORMAT, err, path,
              "header length is 0");
    // A header of NUL bytes, and one that is all spaces.
    put_le64(buf, 16);
    write_bytes(path, buf, 24);
    check_err(fuse_rt_safetensors_open(path, &st, err, sizeof err), FUSE_RT_EFORMAT, err, path,
              "found byte 0x00 at byte 0");
    memset(buf + 8, ' ', 16);
    write_bytes(path, buf, 24);
    check_err(fuse_rt_safetensors_open(path, &st, err, sizeof err), FUSE_RT_EFORMAT, err, path,
              "expected a value at the end of the header");

    // Invalid UTF-8 in a key: a stray continuation byte, an overlong NUL, a UTF-16 surrogate.
    static const char *const bad_utf8[] = {"{\"a\x80\": 1}", "{\"a\xc0\x80\": 1}",
                                           "{\"a\xed\xa0\x80\": 1}", "{\"a\xf4\x90\x80\x80\": 1}",
                                           "{\"a\xe2\x82\": 1}"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        write_st(path, bad_utf8[i], strlen(bad_utf8[i]), NULL, 0);
        check_err(fuse_rt_safetensors_open(path, &st, err, sizeof err), FUSE_RT_EFORMAT, err, path,
                  "invalid UTF-8 at byte 3");
    }
    // Over 100 MiB of header: a sparse file, so nothing is written.
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    put_le64(buf, ((uint64_t)100 << 20) + 1);
    assert_int_equal(write(fd, buf, 8), 8);
    assert_int_equal(ftruncate(fd, (off_t)(101 << 20)), 0);
    close(fd);
    check_err(fuse_rt_safetensors_open(path, &st, err, sizeof err), FUSE_RT_EFORMAT, err, path,
              "header length 104857601 exceeds the limit of 100 MiB");

    in_dir(state, "missing.safetensors", path, sizeof path);
    check_err(fuse_rt_safetensors_open(path, &st, err, sizeof err), FUSE_RT_EIO, err, path,
              "cannot open: No such file or directory");
    const Dir *d = *state;
    check_err(fuse_rt_safetensors_open(d->path, &st, err, sizeof err), FUSE_RT_EIO, err, d->path,
              "is a directory");
    assert_null(st);
    assert_int_equal(fuse_rt_safetensors_open(NULL, &st, err, sizeof err), FUSE_RT_EINVAL);
    assert_int_equal(fuse_rt_safetensors_open(path, NULL, NULL, 0), FUSE_RT_EINVAL);
    // err may be NULL, or too small for the message.
    assert_int_equal(fuse_rt_safetensors_open(path, &st, NULL, 0), FUSE_RT_EIO);
    char tiny[5] = "zzzz";
    assert_int_equal(fuse_rt_safetensors_open(path, &st, tiny, sizeof tiny), FUSE_RT_EIO);
    assert_int_equal(strlen(tiny), 4);
    assert_null(fuse_rt_safetensors_find(NULL, "a"));
    assert_int_equal(fuse_rt_safetensors_count(NULL), 0);
    fuse_rt_safetensors_close(NULL);
}

/* Every truncation and many single-byte corruptions of the valid file: each opens or fails
 * cleanly (under ASan: without reading outside the file). */
static void test_mutations(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX];
    unsigned char good[512], buf[512];
    size_t n = valid_file(good, 0);
    in_dir(state, "mut.safetensors", path, sizeof path);
    for (size_t len = 0; len < n; len++) {
        write_bytes(path, good, len);
        fuse_rt_safetensors *st = NULL;
        int rc = fuse_rt_safetensors_open(path, &st, err, sizeof err);
        assert_int_equal(rc, FUSE_RT_EFORMAT);
        assert_null(st);
    }
    static const unsigned char subst[] = {'{', '}', '[', ']', '"', '\\', ',',  ':',
                                          '0', '9', '-', ' ', 'e', 0x00, 0x80, 0xff};
    size_t accepted = 0;
    for (size_t pos = 0; pos < n; pos++)
        for (size_t s = 0; s < sizeof subst; s++) {
            memcpy(buf, good, n);
            buf[pos] = subst[s];
            write_bytes(path, buf, n);
            fuse_rt_safetensors *st = NULL;
            err[0] = '\0';
            int rc = fuse_rt_safetensors_open(path, &st, err, sizeof err);
            if (rc == 0) {
                accepted++;
                for (size_t i = 0; i < fuse_rt_safetensors_count(st); i++) {
                    const fuse_rt_tensor_info *t = fuse_rt_safetensors_entry(st, i);
                    assert_ptr_equal(fuse_rt_safetensors_find(st, t->key), t);
                }
                fuse_rt_safetensors_close(st);
            } else {
                assert_true(rc == FUSE_RT_EFORMAT || rc == FUSE_RT_EDTYPE);
                assert_null(st);
                check_err(rc, rc, err, path, "");
            }
        }
    assert_true(accepted > 0); /* e.g. changed data bytes */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),         cmocka_unit_test(test_unaligned_f32),
        cmocka_unit_test(test_dtype_table),   cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_escaped_keys),  cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_nesting_limit), cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_files),     cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
