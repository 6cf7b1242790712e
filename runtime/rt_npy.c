/*
 * rt_npy: .npy files <-> C-order little-endian float32 arrays.
 *
 * Reading: "\x93NUMPY", version 1.0 (u16 header length) or 2.0/3.0 (u32), then a Python dict
 * literal {'descr': ..., 'fortran_order': ..., 'shape': (...)} padded with spaces and a
 * newline, then the raw elements. Only '<f4' is accepted; Fortran-order data is transposed on
 * load. The header is read into a buffer of at most 1 MiB and parsed with bounds checks; the
 * data must be exactly product(shape) x 4 bytes, so the allocation never exceeds the file.
 *
 * Writing: byte for byte what numpy 1.24 writes for a C-order float32 array (the same dict,
 * the same growth padding, data aligned to 64 bytes), into a temporary file beside the target
 * that is renamed over it only once complete.
 *
 * Failures return FUSE_RT_E* with a one-line message naming the file and the problem.
 */
#include "fuse_rt.h"
#include "rt_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_HEADER_MAX ((uint32_t)1 << 20) /* bytes; numpy itself allows far less by default */
#define NPY_ALIGN      64                  /* numpy's ARRAY_ALIGN */
#define NPY_GROWTH     21                  /* numpy's GROWTH_AXIS_MAX_DIGITS */
#define IO_CHUNK       ((size_t)1 << 30)   /* bytes per read()/write() call */

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

static bool host_is_le(void)
{
    const uint16_t one = 1;
    unsigned char b[2];
    memcpy(b, &one, 2);
    return b[0] == 1;
}

static void swap32(float *v, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        unsigned char b[4], t;
        memcpy(b, &v[k], 4);
        t = b[0], b[0] = b[3], b[3] = t;
        t = b[1], b[1] = b[2], b[2] = t;
        memcpy(&v[k], b, 4);
    }
}

/* Python's repr of a shape tuple: (), (3,), (2, 3). */
static void format_shape(char *buf, size_t size, uint32_t rank, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, size, "(");
    for (uint32_t d = 0; d < rank && o < size; d++)
        o += (size_t)snprintf(buf + o, size - o, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (o < size)
        snprintf(buf + o, size - o, rank == 1 ? ",)" : ")");
}

/* The number of elements of a shape. False if the product of its non-zero dims, in bytes,
 * exceeds what numpy (a signed 64-bit intp) or this process (size_t) can address: numpy
 * refuses such shapes even when a zero dim makes the array empty. */
static bool shape_count(uint32_t rank, const int64_t *shape, size_t *count)
{
    const uint64_t limit =
        ((uint64_t)SIZE_MAX < (uint64_t)INT64_MAX ? (uint64_t)SIZE_MAX : (uint64_t)INT64_MAX) / 4;
    uint64_t nonzero = 1;
    bool empty = false;
    for (uint32_t d = 0; d < rank; d++) {
        uint64_t dim = (uint64_t)shape[d];
        if (dim == 0) {
            empty = true;
            continue;
        }
        if (nonzero > limit / dim)
            return false;
        nonzero *= dim;
    }
    *count = empty ? 0 : (size_t)nonzero;
    return true;
}

/* Reads exactly len bytes at offset off. Returns 0, or errno (EIO if the file ended early). */
static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
    unsigned char *p = buf;
    while (len > 0) {
        size_t want = len < IO_CHUNK ? len : IO_CHUNK;
        ssize_t got = pread(fd, p, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno;
        if (got == 0)
            return EIO;
        p += got;
        len -= (size_t)got;
        off += (uint64_t)got;
    }
    return 0;
}

/* ---- the header: a Python dict literal ---- */

typedef struct Lit {
    const char *s;
    size_t n, i; /* length and cursor, in bytes */
    const char *path;
    char *err;
    size_t errlen;
} Lit;

static int lfail(Lit *l, const char *fmt, ...) PRINTF_LIKE(2, 3);

static int lfail(Lit *l, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (l->i >= l->n)
        return fuse_rt__fail(FUSE_RT_EFORMAT, l->err, l->errlen, l->path,
                             "bad header: %s at the end of the header (truncated?)", msg);
    unsigned char c = (unsigned char)l->s[l->i];
    if (c == '\'')
        return fuse_rt__fail(FUSE_RT_EFORMAT, l->err, l->errlen, l->path,
                             "bad header: %s at byte %zu (\"'\")", msg, l->i);
    if (c > 0x20 && c < 0x7f)
        return fuse_rt__fail(FUSE_RT_EFORMAT, l->err, l->errlen, l->path,
                             "bad header: %s at byte %zu ('%c')", msg, l->i, c);
    return fuse_rt__fail(FUSE_RT_EFORMAT, l->err, l->errlen, l->path,
                         "bad header: %s at byte %zu (byte 0x%02x)", msg, l->i, c);
}

static void lws(Lit *l)
{
    while (l->i < l->n &&
           (l->s[l->i] == ' ' || l->s[l->i] == '\t' || l->s[l->i] == '\n' || l->s[l->i] == '\r'))
        l->i++;
}

static bool lat(const Lit *l, char c)
{
    return l->i < l->n && l->s[l->i] == c;
}

static bool ldigit(const Lit *l)
{
    return l->i < l->n && l->s[l->i] >= '0' && l->s[l->i] <= '9';
}

/* A quoted string without escapes at the cursor; [*start, *start + *len) is its text. */
static int lstring(Lit *l, size_t *start, size_t *len)
{
    char q = l->s[l->i];
    if (q != '\'' && q != '"')
        return lfail(l, "expected a string");
    size_t k = ++l->i;
    while (l->i < l->n && l->s[l->i] != q) {
        if (l->s[l->i] == '\n')
            return lfail(l, "unterminated string");
        if (l->s[l->i] == '\\')
            return lfail(l, "unsupported escape in a string");
        l->i++;
    }
    if (l->i >= l->n)
        return lfail(l, "unterminated string");
    *start = k;
    *len = l->i - k;
    l->i++;
    return 0;
}

static bool lword(Lit *l, const char *word)
{
    size_t len = strlen(word);
    if (l->n - l->i < len || memcmp(l->s + l->i, word, len) != 0)
        return false;
    size_t e = l->i + len; /* the word must end there: True, not Truex */
    if (e < l->n && (l->s[e] == '_' || (l->s[e] >= 'a' && l->s[e] <= 'z') ||
                     (l->s[e] >= 'A' && l->s[e] <= 'Z') || (l->s[e] >= '0' && l->s[e] <= '9')))
        return false;
    l->i = e;
    return true;
}

/* The shape tuple at the cursor: (), (3,), (2, 3) and (2, 3,); at most FUSE_RT_MAX_RANK dims. */
static int lshape(Lit *l, uint32_t *rank, int64_t *shape)
{
    if (!lat(l, '('))
        return lfail(l, "'shape' is not a tuple");
    l->i++;
    lws(l);
    uint32_t n = 0;
    bool comma = false;
    while (!lat(l, ')')) {
        if (lat(l, '-'))
            return lfail(l, "negative dimension in 'shape'");
        if (!ldigit(l))
            return lfail(l, "expected a dimension or ')' in 'shape'");
        if (l->s[l->i] == '0' && l->i + 1 < l->n && l->s[l->i + 1] >= '0' && l->s[l->i + 1] <= '9')
            return lfail(l, "dimension with a leading zero in 'shape'");
        uint64_t v = 0;
        while (ldigit(l)) {
            unsigned d = (unsigned)(l->s[l->i] - '0');
            if (v > ((uint64_t)INT64_MAX - d) / 10)
                return lfail(l, "dimension in 'shape' exceeds 2^63-1");
            v = v * 10 + d;
            l->i++;
        }
        if (n == FUSE_RT_MAX_RANK)
            return lfail(l, "'shape' has more than %d dimensions", FUSE_RT_MAX_RANK);
        shape[n++] = (int64_t)v;
        lws(l);
        comma = lat(l, ',');
        if (comma) {
            l->i++;
            lws(l);
        } else if (!lat(l, ')'))
            return lfail(l, "expected ',' or ')' in 'shape'");
    }
    if (n == 1 && !comma)
        return lfail(l, "'shape' is (n), an int, not the tuple (n,)");
    l->i++;
    *rank = n;
    return 0;
}

typedef struct Header {
    char descr[32];    /* for messages: NUL-terminated, cut to fit; "" if structured */
    bool f4_le, f4_be; /* descr is exactly '<f4' / '>f4' */
    bool structured, fortran;
    uint32_t rank;
    int64_t shape[FUSE_RT_MAX_RANK];
} Header;

/* Parses the header dict. Keys in any order, each exactly once, none other. */
static int parse_header(Lit *l, Header *h)
{
    bool has_descr = false, has_fortran = false, has_shape = false;
    int rc;
    lws(l);
    if (!lat(l, '{'))
        return lfail(l, "not a Python dict literal");
    l->i++;
    for (;;) {
        lws(l);
        if (lat(l, '}'))
            break;
        size_t ks, klen;
        if (l->i >= l->n || (l->s[l->i] != '\'' && l->s[l->i] != '"'))
            return lfail(l, "expected a string key or '}'");
        if ((rc = lstring(l, &ks, &klen)) != 0)
            return rc;
        const char *key = l->s + ks;
        lws(l);
        if (!lat(l, ':'))
            return lfail(l, "expected ':'");
        l->i++;
        lws(l);
        bool *seen = NULL;
        if (klen == 5 && memcmp(key, "descr", 5) == 0)
            seen = &has_descr;
        else if (klen == 13 && memcmp(key, "fortran_order", 13) == 0)
            seen = &has_fortran;
        else if (klen == 5 && memcmp(key, "shape", 5) == 0)
            seen = &has_shape;
        if (!seen || *seen) {
            char kb[40];
            size_t cut = klen < sizeof kb - 1 ? klen : sizeof kb - 1;
            memcpy(kb, key, cut);
            kb[cut] = '\0';
            l->i = ks;
            return lfail(l, "%s key '%s'", seen ? "duplicate" : "unexpected", kb);
        }
        *seen = true;
        if (seen == &has_descr) {
            if (lat(l, '[')) {
                // A structured dtype: a list of fields. Never float32; skip to report that.
                h->structured = true;
                int depth = 0;
                do {
                    if (l->i >= l->n)
                        return lfail(l, "unterminated 'descr' list");
                    depth += l->s[l->i] == '[' ? 1 : l->s[l->i] == ']' ? -1 : 0;
                    l->i++;
                } while (depth > 0);
            } else {
                size_t vs, vlen;
                if (!lat(l, '\'') && !lat(l, '"'))
                    return lfail(l, "'descr' is not a string");
                if ((rc = lstring(l, &vs, &vlen)) != 0)
                    return rc;
                h->f4_le = vlen == 3 && memcmp(l->s + vs, "<f4", 3) == 0;
                h->f4_be = vlen == 3 && memcmp(l->s + vs, ">f4", 3) == 0;
                size_t cut = vlen < sizeof h->descr - 4 ? vlen : sizeof h->descr - 4;
                memcpy(h->descr, l->s + vs, cut);
                memcpy(h->descr + cut, vlen == cut ? "" : "...", vlen == cut ? 1 : 4);
            }
        } else if (seen == &has_fortran) {
            if (lword(l, "True"))
                h->fortran = true;
            else if (lword(l, "False"))
                h->fortran = false;
            else
                return lfail(l, "'fortran_order' is not True or False");
        } else if ((rc = lshape(l, &h->rank, h->shape)) != 0) {
            return rc;
        }
        lws(l);
        if (lat(l, ','))
            l->i++;
        else if (!lat(l, '}'))
            return lfail(l, "expected ',' or '}'");
    }
    l->i++;
    lws(l);
    if (l->i < l->n)
        return lfail(l, "unexpected text after the dict");
    const char *missing = !has_descr     ? "descr"
                          : !has_fortran ? "fortran_order"
                          : !has_shape   ? "shape"
                                         : NULL;
    if (missing)
        return fuse_rt__fail(FUSE_RT_EFORMAT, l->err, l->errlen, l->path, "bad header: no '%s' key",
                             missing);
    return 0;
}

/* Fortran order -> C order: dst[i0..ir-1 row-major] = src[sum i_k * prod_{m<k} shape[m]]. */
static void fortran_to_c(const float *src, float *dst, size_t count, uint32_t rank,
                         const int64_t *shape)
{
    size_t stride[FUSE_RT_MAX_RANK], idx[FUSE_RT_MAX_RANK] = {0}, off = 0;
    for (uint32_t k = 0; k < rank; k++)
        stride[k] = k ? stride[k - 1] * (size_t)shape[k - 1] : 1;
    for (size_t c = 0; c < count; c++) {
        dst[c] = src[off];
        // Step the C-order index (last dim fastest) and its Fortran offset together.
        for (uint32_t k = rank; k-- > 0;) {
            off += stride[k];
            if (++idx[k] < (size_t)shape[k])
                break;
            off -= stride[k] * (size_t)shape[k];
            idx[k] = 0;
        }
    }
}

/* Reads and checks everything after the open: fd is a regular file of `size` bytes. */
static int read_npy(int fd, uint64_t size, const char *path, float **data, uint32_t *rank,
                    int64_t *shape, char *err, size_t errlen)
{
    unsigned char pre[12];
    size_t npre = size < sizeof pre ? (size_t)size : sizeof pre;
    int e = read_at(fd, pre, npre, 0);
    if (e)
        return fuse_rt__fail(FUSE_RT_EIO, err, errlen, path, "cannot read: %s", strerror(e));
    if (npre < sizeof npy_magic || memcmp(pre, npy_magic, sizeof npy_magic) != 0)
        return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                             "not a .npy file (it does not start with \\x93NUMPY)");
    if (npre < 8)
        return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                             "file is truncated in its version");
    unsigned major = pre[6], minor = pre[7];
    if (major < 1 || major > 3 || minor != 0)
        return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                             "unsupported .npy format version %u.%u (1.0, 2.0 and 3.0 are)", major,
                             minor);
    size_t hoff = major == 1 ? 10 : 12;
    if (npre < hoff)
        return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                             "file is truncated in its header length");
    uint32_t hlen = major == 1 ? (uint32_t)pre[8] | (uint32_t)pre[9] << 8
                               : (uint32_t)pre[8] | (uint32_t)pre[9] << 8 |
                                     (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
    if (hlen > NPY_HEADER_MAX)
        return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                             "header length %" PRIu32 " exceeds the limit of 1 MiB", hlen);
    if (hlen > size - hoff)
        return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                             "header length %" PRIu32 " exceeds the file size (%" PRIu64 " bytes)",
                             hlen, size);
    char *text = malloc(hlen + 1u);
    if (!text)
        return fuse_rt__fail(FUSE_RT_ENOMEM, err, errlen, path, "out of memory reading the header");
    if ((e = read_at(fd, text, hlen, hoff)) != 0) {
        free(text);
        return fuse_rt__fail(FUSE_RT_EIO, err, errlen, path, "cannot read the header: %s",
                             strerror(e));
    }
    Header h = {.rank = 0};
    Lit l = {.s = text, .n = hlen, .i = 0, .path = path, .err = err, .errlen = errlen};
    int rc = parse_header(&l, &h);
    free(text);
    if (rc)
        return rc;

    char sb[200];
    format_shape(sb, sizeof sb, h.rank, h.shape);
    if (!h.f4_le) {
        const char *what = h.structured ? "dtype is a structured dtype, "
                           : h.f4_be    ? "dtype '>f4' is big-endian float32, "
                                        : NULL;
        if (what)
            return fuse_rt__fail(
                FUSE_RT_EDTYPE, err, errlen, path,
                "%snot little-endian float32 '<f4'; convert with .astype(np.float32)", what);
        return fuse_rt__fail(FUSE_RT_EDTYPE, err, errlen, path,
                             "dtype '%s' is not float32 '<f4'; convert with .astype(np.float32)",
                             h.descr);
    }
    size_t count;
    if (!shape_count(h.rank, h.shape, &count))
        return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                             "shape %s has more elements than memory can hold", sb);
    uint64_t want = (uint64_t)count * 4, have = size - hoff - hlen;
    if (have < want)
        return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                             "truncated data: shape %s needs %" PRIu64
                             " bytes, the file has %" PRIu64,
                             sb, want, have);
    if (have > want)
        return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                             "%" PRIu64 " byte%s of trailing data after shape %s (%" PRIu64
                             " bytes)",
                             have - want, have - want == 1 ? "" : "s", sb, want);
    float *buf = fuse_rt_alloc((size_t)want);
    if (!buf)
        return fuse_rt__fail(FUSE_RT_ENOMEM, err, errlen, path,
                             "out of memory for %" PRIu64 " bytes", want);
    if ((e = read_at(fd, buf, (size_t)want, hoff + hlen)) != 0) {
        fuse_rt_free(buf);
        return fuse_rt__fail(FUSE_RT_EIO, err, errlen, path, "cannot read the data: %s",
                             strerror(e));
    }
    if (!host_is_le())
        swap32(buf, count);
    if (h.fortran && h.rank > 1 && count > 1) {
        float *c = fuse_rt_alloc((size_t)want);
        if (!c) {
            fuse_rt_free(buf);
            return fuse_rt__fail(FUSE_RT_ENOMEM, err, errlen, path,
                                 "out of memory transposing %" PRIu64 " bytes", want);
        }
        fortran_to_c(buf, c, count, h.rank, h.shape);
        fuse_rt_free(buf);
        buf = c;
    }
    *data = buf;
    *rank = h.rank;
    memcpy(shape, h.shape, h.rank * sizeof *shape);
    return 0;
}

int fuse_rt_npy_read(const char *path, float **data, uint32_t *rank,
                     int64_t shape[FUSE_RT_MAX_RANK], char *err, size_t errlen)
{
    if (data)
        *data = NULL;
    if (rank)
        *rank = 0;
    if (!path || !data || !rank || !shape)
        return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, "fuse_rt_npy_read", "NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return fuse_rt__fail(FUSE_RT_EIO, err, errlen, path, "cannot open: %s", strerror(errno));
    struct stat sb;
    int rc;
    if (fstat(fd, &sb) != 0)
        rc = fuse_rt__fail(FUSE_RT_EIO, err, errlen, path, "cannot stat: %s", strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        rc = fuse_rt__fail(FUSE_RT_EIO, err, errlen, path, "%s",
                           S_ISDIR(sb.st_mode) ? "is a directory" : "is not a regular file");
    else
        rc = read_npy(fd, (uint64_t)sb.st_size, path, data, rank, shape, err, errlen);
    close(fd);
    return rc;
}

/* ---- writing ---- */

/* Writes all of [p, p + len). Returns 0 or errno. */
static int write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t put = write(fd, p, len < IO_CHUNK ? len : IO_CHUNK);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0)
            return errno;
        if (put == 0)
            return EIO;
        p += put;
        len -= (size_t)put;
    }
    return 0;
}

/* The permission bits a newly created file would get: 0666 minus the umask, read from
 * /proc (umask() itself would have to change it, racing other threads); 0644 if unknown. */
static mode_t new_file_mode(void)
{
    mode_t mode = 0644;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return mode;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Umask:", 6) == 0) {
            unsigned long mask = strtoul(line + 6, NULL, 8);
            mode = (mode_t)(0666 & ~mask);
            break;
        }
    fclose(f);
    return mode;
}

/* Writes the whole file (header then data) to fd. Returns 0 or errno. */
static int write_npy(int fd, const char *head, size_t headlen, const float *data, size_t count)
{
    int e = write_all(fd, head, headlen);
    if (e || count == 0)
        return e;
    if (host_is_le())
        return write_all(fd, data, count * 4);
    float chunk[4096];
    for (size_t k = 0; k < count && !e; k += 4096) {
        size_t m = count - k < 4096 ? count - k : 4096;
        memcpy(chunk, data + k, m * 4);
        swap32(chunk, m);
        e = write_all(fd, chunk, m * 4);
    }
    return e;
}

int fuse_rt_npy_write(const char *path, const float *data, uint32_t rank, const int64_t *shape,
                      char *err, size_t errlen)
{
    const char *who = path ? path : "fuse_rt_npy_write";
    if (!path || rank > FUSE_RT_MAX_RANK || (rank > 0 && !shape))
        return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, who,
                             "NULL path or shape, or rank over %d", FUSE_RT_MAX_RANK);
    for (uint32_t d = 0; d < rank; d++)
        if (shape[d] < 0)
            return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, who, "negative dimension %" PRId64,
                                 shape[d]);
    size_t count;
    if (!shape_count(rank, shape, &count))
        return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, who, "shape has too many elements");
    if (!data && count > 0)
        return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, who, "NULL data");

    // numpy 1.24: "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", then spaces
    // for the first dim to grow to 21 digits, then padding and '\n' to a multiple of 64.
    char dict[320], sb[200];
    format_shape(sb, sizeof sb, rank, shape);
    int n = snprintf(dict, sizeof dict - NPY_GROWTH,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", sb);
    if (n < 0 || (size_t)n >= sizeof dict - NPY_GROWTH)
        return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, who, "header too long");
    size_t len = (size_t)n;
    if (rank > 0) {
        char first[24];
        size_t digits = (size_t)snprintf(first, sizeof first, "%" PRId64, shape[0]);
        for (size_t k = digits; k < NPY_GROWTH; k++)
            dict[len++] = ' ';
    }
    size_t prefix = 10, hlen = len + 1;
    size_t pad = NPY_ALIGN - (prefix + hlen) % NPY_ALIGN;
    // Version 2.0 (a u32 length) only when the header outgrows a u16: never for rank <= 8.
    if (hlen + pad > 65535) {
        prefix = 12;
        pad = NPY_ALIGN - (prefix + hlen) % NPY_ALIGN;
    }
    size_t total = hlen + pad; /* the header length field */
    char head[sizeof dict + 2 * NPY_ALIGN];
    if (prefix + total > sizeof head)
        return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, who, "header too long");
    memcpy(head, npy_magic, 6);
    head[6] = prefix == 10 ? 1 : 2;
    head[7] = 0;
    for (size_t k = 0; k < prefix - 8; k++)
        head[8 + k] = (char)(total >> (8 * k) & 0xff);
    memcpy(head + prefix, dict, len);
    memset(head + prefix + len, ' ', pad);
    head[prefix + total - 1] = '\n';

    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    if (!tmp)
        return fuse_rt__fail(FUSE_RT_ENOMEM, err, errlen, path, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return fuse_rt__fail(FUSE_RT_EIO, err, errlen, path,
                             "cannot create a temporary file beside it: %s", strerror(e));
    }
    // mkstemp makes the file 0600: give it the mode of the file it replaces, or of a new file.
    struct stat old;
    mode_t mode =
        stat(path, &old) == 0 && S_ISREG(old.st_mode) ? old.st_mode & 07777 : new_file_mode();
    const char *step = "cannot write the temporary file";
    int e = write_npy(fd, head, prefix + total, data, count);
    if (!e && fchmod(fd, mode) != 0) {
        e = errno;
        step = "cannot set the mode of the temporary file";
    }
    if (!e && fsync(fd) != 0) {
        e = errno;
        step = "cannot sync the temporary file";
    }
    if (close(fd) != 0 && !e) {
        e = errno;
        step = "cannot close the temporary file";
    }
    if (!e && rename(tmp, path) != 0) {
        e = errno;
        step = "cannot rename the temporary file over it";
    }
    if (e) {
        unlink(tmp);
        free(tmp);
        return fuse_rt__fail(FUSE_RT_EIO, err, errlen, path, "%s: %s", step, strerror(e));
    }
    free(tmp);
    return 0;
}
