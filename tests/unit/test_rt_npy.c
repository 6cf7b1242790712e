/*
 * test_rt_npy: the .npy reader and writer. Files numpy 1.24 writes (headers hard-coded byte for
 * byte), format versions 1.0, 2.0 and 3.0, Fortran order, round trips of rank 0..4, hostile
 * files (each must fail with the right FUSE_RT_E* code and a one-line message naming the file
 * and the problem, never crash or overrun), and writes that fail without leaving a file.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
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
    strcpy(d->path, "/tmp/fuse_rt_npy_XXXXXX");
    if (!mkdtemp(d->path)) {
        free(d);
        return -1;
    }
    *state = d;
    return 0;
}

/* Removes the directory's files and subdirectories (one level deep), then the directory. */
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
            if (unlink(p) != 0)
                rmdir(p);
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

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The names in a directory, sorted and joined with '/', into buf. */
static const char *listing(const char *dirpath, char *buf, size_t size)
{
    char names[16][256];
    size_t n = 0;
    DIR *dir = opendir(dirpath);
    assert_non_null(dir);
    for (struct dirent *de; (de = readdir(dir)) != NULL;)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 && n < 16)
            snprintf(names[n++], sizeof names[0], "%s", de->d_name);
    closedir(dir);
    qsort(names, n, sizeof names[0], cmp_name);
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? "/" : "", names[i]);
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

static size_t read_bytes(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap, f);
    assert_int_equal(fclose(f), 0);
    return n;
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

/* A .npy file into buf: magic, version major.minor, the header length (u16 for 1.x, else u32),
 * the header (padded numpy-style with spaces and '\n' so the data starts at a multiple of 64
 * when pad is true, else exactly `header`), then nbytes of data (zeros when data is NULL). */
static size_t npy_bytes(unsigned char *buf, size_t cap, unsigned major, unsigned minor,
                        const char *header, bool pad, const void *data, size_t nbytes)
{
    size_t prefix = major == 1 ? 10 : 12, hlen = strlen(header);
    size_t total = pad ? hlen + 1 + (64 - (prefix + hlen + 1) % 64) % 64 : hlen;
    assert_true(prefix + total + nbytes <= cap);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = (unsigned char)minor;
    for (size_t k = 0; k < prefix - 8; k++)
        buf[8 + k] = (unsigned char)(total >> (8 * k));
    memcpy(buf + prefix, header, hlen);
    if (pad) {
        memset(buf + prefix + hlen, ' ', total - hlen);
        buf[prefix + total - 1] = '\n';
    }
    if (data)
        memcpy(buf + prefix + total, data, nbytes);
    else
        memset(buf + prefix + total, 0, nbytes);
    return prefix + total + nbytes;
}

/* C-order src -> Fortran-order dst, computed from scratch with divisions. */
static void c_to_fortran(const float *src, float *dst, size_t count, uint32_t rank,
                         const int64_t *shape)
{
    for (size_t c = 0; c < count; c++) {
        size_t rest = c, off = 0, stride[FUSE_RT_MAX_RANK];
        for (uint32_t d = 0; d < rank; d++)
            stride[d] = d ? stride[d - 1] * (size_t)shape[d - 1] : 1;
        for (uint32_t d = rank; d-- > 0;) {
            off += rest % (size_t)shape[d] * stride[d];
            rest /= (size_t)shape[d];
        }
        dst[off] = src[c];
    }
}

static void check_array(const char *path, uint32_t want_rank, const int64_t *want_shape,
                        const float *want)
{
    char err[FUSE_RT_ERR_MAX] = "";
    float *data = NULL;
    uint32_t rank = 99;
    int64_t shape[FUSE_RT_MAX_RANK];
    int rc = fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    assert_non_null(data);
    assert_int_equal(rank, want_rank);
    size_t count = 1;
    for (uint32_t d = 0; d < rank; d++) {
        assert_int_equal(shape[d], want_shape[d]);
        count *= (size_t)shape[d];
    }
    for (size_t k = 0; k < count; k++)
        if (data[k] != want[k])
            fail_msg("element %zu is %g, want %g", k, (double)data[k], (double)want[k]);
    fuse_rt_free(data);
}

/* ---- what numpy 1.24 writes (np.save of np.arange(n, dtype='<f4').reshape(shape)) ---- */

static const char numpy_2x3[] = "\x93NUMPY\x01\x00v\x00"
                                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
                                "                             "
                                "                             "
                                "\n";
_Static_assert(sizeof numpy_2x3 == 129, "numpy 1.24 writes a 128-byte header");
static const char numpy_0d[] = "\x93NUMPY\x01\x00v\x00"
                               "{'descr': '<f4', 'fortran_order': False, 'shape': (), }"
                               "                               "
                               "                               "
                               "\n";
_Static_assert(sizeof numpy_0d == 129, "numpy 1.24 writes a 128-byte header");
/* np.save(np.asfortranarray(np.arange(24, dtype='<f4').reshape(2, 3, 4))) */
static const char numpy_f234[] = "\x93NUMPY\x01\x00v\x00"
                                 "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }"
                                 "                            "
                                 "                            "
                                 "\n";
_Static_assert(sizeof numpy_f234 == 129, "numpy 1.24 writes a 128-byte header");

/* np.arange(n) as float32, and the same values in Fortran order for `shape`. */
static void arange(float *v, size_t n)
{
    for (size_t k = 0; k < n; k++)
        v[k] = (float)k;
}

static void test_read_numpy_files(void **state)
{
    char path[256];
    unsigned char buf[1024];
    float want[64], fdata[64];
    arange(want, 64);
    in_dir(state, "np.npy", path, sizeof path);

    // (2, 3) in C order.
    memcpy(buf, numpy_2x3, 128);
    memcpy(buf + 128, want, 24);
    write_bytes(path, buf, 128 + 24);
    check_array(path, 2, (const int64_t[]){2, 3}, want);
    // A 0-d array: rank 0, one element.
    memcpy(buf, numpy_0d, 128);
    memcpy(buf + 128, want + 7, 4);
    write_bytes(path, buf, 128 + 4);
    check_array(path, 0, NULL, want + 7);
    // Fortran order: the file holds a.ravel('F'); the reader returns C order.
    const int64_t shape[] = {2, 3, 4};
    c_to_fortran(want, fdata, 24, 3, shape);
    assert_true(fdata[1] == 12.0f && fdata[2] == 4.0f); /* a[1,0,0] and a[0,1,0] */
    memcpy(buf, numpy_f234, 128);
    memcpy(buf + 128, fdata, 96);
    write_bytes(path, buf, 128 + 96);
    check_array(path, 3, shape, want);
}

/* Headers numpy would also read: any key order, double quotes, no trailing comma, no or odd
 * padding, tuples with or without spaces and trailing commas; Fortran order of rank 1..4. */
static void test_header_variants(void **state)
{
    static const struct {
        const char *header;
        bool pad;
        uint32_t rank;
        int64_t shape[4];
    } cases[] = {
        {"{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}", true, 2, {2, 3}},
        {"{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,3)}", true, 2, {2, 3}},
        {"{'descr':'<f4','fortran_order':False,'shape':(6,),}", false, 1, {6}},
        {"  {'descr': '<f4', 'fortran_order': False, 'shape': ( 6 , ), }\n\n\t \r\n",
         false,
         1,
         {6}},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3,), }", true, 3, {1, 2, 3}},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (), }", false, 0, {0}},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }", true, 2, {0, 5}},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (7,), }", true, 1, {7}},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (), }", true, 0, {0}},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }", true, 2, {3, 4}},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 1, 3, 2), }", true, 4, {2, 1, 3, 2}},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (4, 0, 2), }", true, 3, {4, 0, 2}},
    };
    char path[256];
    unsigned char buf[1024];
    float want[64], file[64];
    for (size_t k = 0; k < 64; k++)
        want[k] = (float)k * 0.5f - 7.0f;
    in_dir(state, "variant.npy", path, sizeof path);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t count = 1;
        for (uint32_t d = 0; d < cases[i].rank; d++)
            count *= (size_t)cases[i].shape[d];
        if (strstr(cases[i].header, "True"))
            c_to_fortran(want, file, count, cases[i].rank, cases[i].shape);
        else
            memcpy(file, want, count * 4);
        size_t n = npy_bytes(buf, sizeof buf, 1, 0, cases[i].header, cases[i].pad, file, count * 4);
        write_bytes(path, buf, n);
        check_array(path, cases[i].rank, cases[i].shape, want);
    }
}

/* Versions 2.0 and 3.0 differ from 1.0 only in a u32 header length (3.0: UTF-8 text). */
static void test_versions_2_and_3(void **state)
{
    char path[256];
    unsigned char buf[1024];
    float want[6];
    arange(want, 6);
    in_dir(state, "v.npy", path, sizeof path);
    for (unsigned major = 2; major <= 3; major++) {
        size_t n = npy_bytes(buf, sizeof buf, major, 0,
                             "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", true,
                             want, 24);
        assert_int_equal(n, 128 + 24); /* as numpy.lib.format.write_array(version=(2, 0)) */
        write_bytes(path, buf, n);
        check_array(path, 2, (const int64_t[]){2, 3}, want);
    }
}

/* Writes then reads back ranks 0..4 (and empty arrays); the bytes are numpy's. */
static void test_round_trip(void **state)
{
    static const struct {
        uint32_t rank;
        int64_t shape[4];
    } cases[] = {
        {0, {0}},          {1, {5}}, {2, {2, 3}},    {3, {2, 3, 4}},
        {4, {2, 1, 3, 2}}, {1, {0}}, {3, {3, 0, 2}}, {2, {1, 1}},
    };
    char path[256], err[FUSE_RT_ERR_MAX] = "";
    unsigned char buf[1024];
    float data[64];
    for (size_t k = 0; k < 64; k++)
        data[k] = (float)k / 3.0f - 5.0f;
    data[1] = -0.0f;
    in_dir(state, "rt.npy", path, sizeof path);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t count = 1;
        for (uint32_t d = 0; d < cases[i].rank; d++)
            count *= (size_t)cases[i].shape[d];
        int rc = fuse_rt_npy_write(path, data, cases[i].rank, cases[i].shape, err, sizeof err);
        if (rc)
            fail_msg("%s", err);
        size_t n = read_bytes(path, buf, sizeof buf);
        assert_int_equal(n, 128 + 4 * count);
        assert_memory_equal(buf + 128, data, 4 * count);
        check_array(path, cases[i].rank, cases[i].shape, data);
    }
    // Byte for byte what numpy 1.24 writes.
    float a[6];
    arange(a, 6);
    assert_int_equal(fuse_rt_npy_write(path, a, 2, (const int64_t[]){2, 3}, err, sizeof err), 0);
    assert_int_equal(read_bytes(path, buf, sizeof buf), 128 + 24);
    assert_memory_equal(buf, numpy_2x3, 128);
    assert_memory_equal(buf + 128, a, 24);
    assert_int_equal(fuse_rt_npy_write(path, a + 5, 0, NULL, err, sizeof err), 0);
    assert_int_equal(read_bytes(path, buf, sizeof buf), 128 + 4);
    assert_memory_equal(buf, numpy_0d, 128);
    // An empty array may come without data.
    assert_int_equal(fuse_rt_npy_write(path, NULL, 2, (const int64_t[]){0, 9}, err, sizeof err), 0);
    check_array(path, 2, (const int64_t[]){0, 9}, NULL);
}

/* Overwriting keeps the old file's mode; a new file gets 0666 minus the umask. */
static void test_write_modes(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX] = "";
    const float x = 1.5f;
    struct stat sb;
    in_dir(state, "mode.npy", path, sizeof path);
    mode_t old = umask(027);
    int rc = fuse_rt_npy_write(path, &x, 0, NULL, err, sizeof err);
    umask(old);
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0640);
    assert_int_equal(chmod(path, 0604), 0);
    assert_int_equal(fuse_rt_npy_write(path, &x, 0, NULL, err, sizeof err), 0);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0604);
    check_array(path, 0, NULL, &x);
}

/* Failed writes report EIO or EINVAL and leave nothing behind. */
static void test_write_errors(void **state)
{
    const Dir *d = *state;
    char path[256], before[1024], after[1024], err[FUSE_RT_ERR_MAX];
    const float x[4] = {1, 2, 3, 4};
    struct stat sb;

    listing(d->path, before, sizeof before);
    in_dir(state, "no_such_dir/out.npy", path, sizeof path);
    check_err(fuse_rt_npy_write(path, x, 1, (const int64_t[]){4}, err, sizeof err), FUSE_RT_EIO,
              err, path, "cannot create a temporary file beside it: No such file or directory");
    assert_int_equal(stat(path, &sb), -1);
    assert_string_equal(listing(d->path, after, sizeof after), before);

    // The target is a directory: the rename fails and the temporary file is removed.
    in_dir(state, "a_dir", path, sizeof path);
    assert_int_equal(mkdir(path, 0755), 0);
    listing(d->path, before, sizeof before);
    check_err(fuse_rt_npy_write(path, x, 1, (const int64_t[]){4}, err, sizeof err), FUSE_RT_EIO,
              err, path, "cannot rename the temporary file over it");
    assert_string_equal(listing(d->path, after, sizeof after), before);
    assert_int_equal(rmdir(path), 0);

    in_dir(state, "inval.npy", path, sizeof path);
    int64_t shape9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    check_err(fuse_rt_npy_write(path, x, 9, shape9, err, sizeof err), FUSE_RT_EINVAL, err, path,
              "rank over 8");
    check_err(fuse_rt_npy_write(path, x, 2, (const int64_t[]){2, -2}, err, sizeof err),
              FUSE_RT_EINVAL, err, path, "negative dimension -2");
    check_err(fuse_rt_npy_write(path, x, 3, (const int64_t[]){INT64_MAX, 2, 0}, err, sizeof err),
              FUSE_RT_EINVAL, err, path, "too many elements");
    check_err(fuse_rt_npy_write(path, NULL, 1, (const int64_t[]){4}, err, sizeof err),
              FUSE_RT_EINVAL, err, path, "NULL data");
    check_err(fuse_rt_npy_write(path, x, 1, NULL, err, sizeof err), FUSE_RT_EINVAL, err, path,
              "NULL path or shape");
    assert_int_equal(fuse_rt_npy_write(NULL, x, 0, NULL, NULL, 0), FUSE_RT_EINVAL);
    assert_int_equal(stat(path, &sb), -1);
}

/* ---- hostile files ---- */

#define HDR(descr, fortran, shape)                                                                 \
    "{'descr': " descr ", 'fortran_order': " fortran ", 'shape': " shape ", }"

static const struct {
    const char *name;
    unsigned major, minor;
    const char *header;
    size_t nbytes;
    int code;
    const char *msg;
} bad_files[] = {
    {"version 4.0", 4, 0, HDR("'<f4'", "False", "(2, 3)"), 24, FUSE_RT_EFORMAT,
     "unsupported .npy format version 4.0 (1.0, 2.0 and 3.0 are)"},
    {"version 1.1", 1, 1, HDR("'<f4'", "False", "(2, 3)"), 24, FUSE_RT_EFORMAT,
     "unsupported .npy format version 1.1"},
    {"version 0.0", 0, 0, HDR("'<f4'", "False", "(2, 3)"), 24, FUSE_RT_EFORMAT,
     "unsupported .npy format version 0.0"},
    {"header not a dict", 1, 0, "[('descr', '<f4')]", 0, FUSE_RT_EFORMAT,
     "bad header: not a Python dict literal at byte 0 ('[')"},
    {"header of spaces", 1, 0, "", 0, FUSE_RT_EFORMAT,
     "not a Python dict literal at the end of the header"},
    {"missing descr", 1, 0, "{'fortran_order': False, 'shape': (2, 3), }", 24, FUSE_RT_EFORMAT,
     "bad header: no 'descr' key"},
    {"missing fortran_order", 1, 0, "{'descr': '<f4', 'shape': (2, 3), }", 24, FUSE_RT_EFORMAT,
     "bad header: no 'fortran_order' key"},
    {"missing shape", 1, 0, "{'descr': '<f4', 'fortran_order': False}", 24, FUSE_RT_EFORMAT,
     "bad header: no 'shape' key"},
    {"empty dict", 1, 0, "{}", 0, FUSE_RT_EFORMAT, "no 'descr' key"},
    {"float64", 1, 0, HDR("'<f8'", "False", "(2, 3)"), 48, FUSE_RT_EDTYPE,
     "dtype '<f8' is not float32 '<f4'; convert with .astype(np.float32)"},
    {"big-endian float32", 1, 0, HDR("'>f4'", "False", "(2, 3)"), 24, FUSE_RT_EDTYPE,
     "dtype '>f4' is big-endian float32, not little-endian float32 '<f4'; convert with "
     ".astype(np.float32)"},
    {"int32", 1, 0, HDR("'<i4'", "False", "(2, 3)"), 24, FUSE_RT_EDTYPE,
     "dtype '<i4' is not float32"},
    {"float16", 1, 0, HDR("'<f2'", "False", "(2, 3)"), 12, FUSE_RT_EDTYPE,
     "dtype '<f2' is not float32"},
    {"bool", 1, 0, HDR("'|b1'", "False", "(2, 3)"), 6, FUSE_RT_EDTYPE, "dtype '|b1' is not"},
    {"native-order float32", 1, 0, HDR("'=f4'", "False", "(2, 3)"), 24, FUSE_RT_EDTYPE,
     "dtype '=f4' is not float32 '<f4'"},
    {"structured dtype", 1, 0, HDR("[('a', '<f4'), ('b', [('c', '<f4')])]", "False", "(2,)"), 16,
     FUSE_RT_EDTYPE, "dtype is a structured dtype, not little-endian float32"},
    {"long dtype", 1, 0, HDR("'<U123456789012345678901234567890'", "False", "(2,)"), 8,
     FUSE_RT_EDTYPE, "dtype '<U12345678901234567890123456...' is not float32"},
    {"descr not a string", 1, 0, HDR("4", "False", "(2, 3)"), 24, FUSE_RT_EFORMAT,
     "'descr' is not a string"},
    {"fortran_order a string", 1, 0, HDR("'<f4'", "'yes'", "(2, 3)"), 24, FUSE_RT_EFORMAT,
     "'fortran_order' is not True or False"},
    {"fortran_order 1", 1, 0, HDR("'<f4'", "1", "(2, 3)"), 24, FUSE_RT_EFORMAT,
     "'fortran_order' is not True or False"},
    {"fortran_order Truex", 1, 0, HDR("'<f4'", "Truex", "(2, 3)"), 24, FUSE_RT_EFORMAT,
     "'fortran_order' is not True or False"},
    {"fortran_order lowercase", 1, 0, HDR("'<f4'", "false", "(2, 3)"), 24, FUSE_RT_EFORMAT,
     "'fortran_order' is not True or False"},
    {"negative dim", 1, 0, HDR("'<f4'", "False", "(-1, 3)"), 24, FUSE_RT_EFORMAT,
     "negative dimension in 'shape'"},
    {"dim over 2^63-1", 1, 0, HDR("'<f4'", "False", "(9223372036854775808,)"), 0, FUSE_RT_EFORMAT,
     "dimension in 'shape' exceeds 2^63-1"},
    {"dim 10^20", 1, 0, HDR("'<f4'", "False", "(99999999999999999999,)"), 0, FUSE_RT_EFORMAT,
     "exceeds 2^63-1"},
    {"shape product overflow", 1, 0, HDR("'<f4'", "False", "(4294967296, 4294967296, 16)"), 0,
     FUSE_RT_EFORMAT, "shape (4294967296, 4294967296, 16) has more elements than memory can hold"},
    {"overflow beside a zero", 1, 0, HDR("'<f4'", "False", "(0, 4294967296, 4294967296)"), 0,
     FUSE_RT_EFORMAT, "has more elements than memory can hold"},
    {"shape (3)", 1, 0, HDR("'<f4'", "False", "(3)"), 12, FUSE_RT_EFORMAT,
     "'shape' is (n), an int, not the tuple (n,)"},
    {"shape a list", 1, 0, HDR("'<f4'", "False", "[2, 3]"), 24, FUSE_RT_EFORMAT,
     "'shape' is not a tuple"},
    {"shape a float", 1, 0, HDR("'<f4'", "False", "(2.5,)"), 8, FUSE_RT_EFORMAT,
     "expected ',' or ')' in 'shape'"},
    {"shape leading zero", 1, 0, HDR("'<f4'", "False", "(03,)"), 12, FUSE_RT_EFORMAT,
     "dimension with a leading zero"},
    {"shape unclosed", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3", 24,
     FUSE_RT_EFORMAT, "at the end of the header"},
    {"rank 9", 1, 0, HDR("'<f4'", "False", "(1, 1, 1, 1, 1, 1, 1, 1, 1)"), 4, FUSE_RT_EFORMAT,
     "'shape' has more than 8 dimensions"},
    {"truncated data", 1, 0, HDR("'<f4'", "False", "(2, 3)"), 20, FUSE_RT_EFORMAT,
     "truncated data: shape (2, 3) needs 24 bytes, the file has 20"},
    {"no data", 1, 0, HDR("'<f4'", "False", "()"), 0, FUSE_RT_EFORMAT,
     "truncated data: shape () needs 4 bytes, the file has 0"},
    {"trailing data", 1, 0, HDR("'<f4'", "False", "(2, 3)"), 28, FUSE_RT_EFORMAT,
     "4 bytes of trailing data after shape (2, 3) (24 bytes)"},
    {"one trailing byte", 1, 0, HDR("'<f4'", "False", "(3,)"), 13, FUSE_RT_EFORMAT,
     "1 byte of trailing data after shape (3,) (12 bytes)"},
    {"duplicate key", 1, 0, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False}", 0,
     FUSE_RT_EFORMAT, "duplicate key 'descr'"},
    {"extra key", 1, 0, "{'descr': '<f4', 'foo': 1, 'fortran_order': False, 'shape': (), }", 4,
     FUSE_RT_EFORMAT, "unexpected key 'foo'"},
    {"text after the dict", 1, 0, HDR("'<f4'", "False", "(2, 3)") " x", 24, FUSE_RT_EFORMAT,
     "unexpected text after the dict"},
    {"two dicts", 1, 0, HDR("'<f4'", "False", "(2, 3)") "{}", 24, FUSE_RT_EFORMAT,
     "unexpected text after the dict"},
    {"unterminated string", 1, 0, "{'descr: '<f4'}", 0, FUSE_RT_EFORMAT, "expected ':'"},
    {"unterminated key", 1, 0, "{'descr", 0, FUSE_RT_EFORMAT, "unterminated string"},
    {"escape in a string", 1, 0, HDR("'<f\\x34'", "False", "(2, 3)"), 24, FUSE_RT_EFORMAT,
     "unsupported escape in a string"},
    {"key not a string", 1, 0, "{descr: '<f4'}", 0, FUSE_RT_EFORMAT,
     "expected a string key or '}' at byte 1 ('d')"},
    {"missing colon", 1, 0, "{'descr' '<f4'}", 0, FUSE_RT_EFORMAT,
     "expected ':' at byte 9 (\"'\")"},
    {"missing comma", 1, 0, "{'descr': '<f4' 'shape': ()}", 0, FUSE_RT_EFORMAT,
     "expected ',' or '}'"},
    {"control byte", 1, 0, "{\x01}", 0, FUSE_RT_EFORMAT, "(byte 0x01)"},
};

static void test_bad_files(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX];
    unsigned char buf[1024];
    in_dir(state, "bad.npy", path, sizeof path);
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        size_t n = npy_bytes(buf, sizeof buf, bad_files[i].major, bad_files[i].minor,
                             bad_files[i].header, true, NULL, bad_files[i].nbytes);
        write_bytes(path, buf, n);
        float *data = (float *)buf; /* must be reset to NULL */
        uint32_t rank = 7;
        int64_t shape[FUSE_RT_MAX_RANK];
        err[0] = '\0';
        int rc = fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err);
        if (rc != bad_files[i].code || !strstr(err, bad_files[i].msg))
            print_error("case '%s'\n", bad_files[i].name);
        check_err(rc, bad_files[i].code, err, path, bad_files[i].msg);
        assert_null(data);
        assert_int_equal(rank, 0);
    }
}

/* Hostile files the table cannot express: short files, bad magic, header lengths. */
static void test_bad_preambles(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX];
    unsigned char buf[1024];
    float *data = NULL;
    uint32_t rank;
    int64_t shape[FUSE_RT_MAX_RANK];
    in_dir(state, "pre.npy", path, sizeof path);

    write_bytes(path, "", 0);
    check_err(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err), FUSE_RT_EFORMAT, err,
              path, "not a .npy file (it does not start with \\x93NUMPY)");
    write_bytes(path, "\x93NUM", 4);
    check_err(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err), FUSE_RT_EFORMAT, err,
              path, "not a .npy file");
    size_t n = npy_bytes(buf, sizeof buf, 1, 0, HDR("'<f4'", "False", "(2,)"), true, NULL, 8);
    buf[5] = 'Z';
    write_bytes(path, buf, n);
    check_err(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err), FUSE_RT_EFORMAT, err,
              path, "not a .npy file");
    write_bytes(path, "\x93NUMPY", 6);
    check_err(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err), FUSE_RT_EFORMAT, err,
              path, "file is truncated in its version");
    write_bytes(path, "\x93NUMPY\x01\x00v", 9);
    check_err(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err), FUSE_RT_EFORMAT, err,
              path, "file is truncated in its header length");
    write_bytes(path, "\x93NUMPY\x02\x00v\x00\x00", 11);
    check_err(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err), FUSE_RT_EFORMAT, err,
              path, "file is truncated in its header length");
    // A truncated header: numpy's 118-byte header cut after 40 bytes.
    write_bytes(path, numpy_2x3, 50);
    check_err(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err), FUSE_RT_EFORMAT, err,
              path, "header length 118 exceeds the file size (50 bytes)");
    write_bytes(path, "\x93NUMPY\x01\x00\xff\xff{}", 12);
    check_err(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err), FUSE_RT_EFORMAT, err,
              path, "header length 65535 exceeds the file size (12 bytes)");
    write_bytes(path, "\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14);
    check_err(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err), FUSE_RT_EFORMAT, err,
              path, "header length 4294967295 exceeds the limit of 1 MiB");
    write_bytes(path, "\x93NUMPY\x03\x00\x01\x00\x10\x00{}", 14);
    check_err(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err), FUSE_RT_EFORMAT, err,
              path, "header length 1048577 exceeds the limit of 1 MiB");
    // A NUL inside descr must not make it compare equal to '<f4'.
    n = npy_bytes(buf, sizeof buf, 1, 0, HDR("'<f4@'", "False", "(2,)"), true, NULL, 8);
    *(unsigned char *)memchr(buf, '@', n) = '\0';
    write_bytes(path, buf, n);
    check_err(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err), FUSE_RT_EDTYPE, err,
              path, "dtype '<f4' is not float32");

    in_dir(state, "missing.npy", path, sizeof path);
    check_err(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err), FUSE_RT_EIO, err, path,
              "cannot open: No such file or directory");
    const Dir *d = *state;
    check_err(fuse_rt_npy_read(d->path, &data, &rank, shape, err, sizeof err), FUSE_RT_EIO, err,
              d->path, "is a directory");
    assert_int_equal(fuse_rt_npy_read(NULL, &data, &rank, shape, err, sizeof err), FUSE_RT_EINVAL);
    assert_int_equal(fuse_rt_npy_read(path, NULL, &rank, shape, NULL, 0), FUSE_RT_EINVAL);
    assert_null(data);
}

/* Every truncation and many single-byte corruptions of a valid file: each reads or fails
 * cleanly (under ASan: without overrunning anything). */
static void test_mutations(void **state)
{
    char path[256], err[FUSE_RT_ERR_MAX];
    unsigned char good[256], buf[256];
    float v[6];
    arange(v, 6);
    memcpy(good, numpy_2x3, 128);
    memcpy(good + 128, v, 24);
    size_t n = 128 + 24;
    in_dir(state, "mut.npy", path, sizeof path);
    float *data;
    uint32_t rank;
    int64_t shape[FUSE_RT_MAX_RANK];
    for (size_t len = 0; len < n; len++) {
        write_bytes(path, good, len);
        assert_int_equal(fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err),
                         FUSE_RT_EFORMAT);
        assert_null(data);
    }
    static const unsigned char subst[] = {'{', '}', '(', ')', '\'', '"',  ',',  ':',
                                          '0', '9', '-', ' ', 'T',  0x00, 0x80, 0xff};
    size_t accepted = 0;
    for (size_t pos = 0; pos < n; pos++)
        for (size_t s = 0; s < sizeof subst; s++) {
            memcpy(buf, good, n);
            buf[pos] = subst[s];
            write_bytes(path, buf, n);
            err[0] = '\0';
            int rc = fuse_rt_npy_read(path, &data, &rank, shape, err, sizeof err);
            if (rc == 0) {
                accepted++;
                fuse_rt_free(data);
            } else {
                assert_true(rc == FUSE_RT_EFORMAT || rc == FUSE_RT_EDTYPE);
                assert_null(data);
                check_err(rc, rc, err, path, "");
            }
        }
    assert_true(accepted > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_numpy_files), cmocka_unit_test(test_header_variants),
        cmocka_unit_test(test_versions_2_and_3), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_write_modes),      cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_bad_files),        cmocka_unit_test(test_bad_preambles),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
