/*
 * rt_safetensors: a safetensors file -> a read-only table of tensor entries pointing into a
 * private, read-only mapping of the file.
 *
 * Layout: u64 little-endian N | N bytes of UTF-8 JSON object (the header) | data area.
 * The header is read twice by one strict JSON reader (RFC 8259: UTF-8, escapes, surrogate
 * pairs, no trailing commas or garbage, nesting <= 64): pass 1 checks the syntax of the whole
 * text, pass 2 walks it again and reads the entries. Every read is bounds-checked against the
 * header length, so no byte outside the mapping is ever touched.
 *
 * Invariants on success: keys are unique NUL-terminated strings; every entry's byte range lies
 * in the data area, equals product(shape) x element size (computed in 64 bits without
 * overflow) and overlaps no other non-empty entry; F32 data is 4-byte aligned (copied into an
 * owned buffer when the header length leaves it unaligned). Failures return FUSE_RT_E* with a
 * one-line message naming the file and, where there is one, the key.
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_MAX     ((uint64_t)100 << 20) /* bytes; safetensors' own limit */
#define JSON_DEPTH_MAX 64
#define countof(a)     (sizeof(a) / sizeof((a)[0]))

static const struct {
    const char *name;
    size_t size; /* bytes per element */
} dtype_table[] = {
    [FUSE_RT_BOOL] = {"BOOL", 1},       [FUSE_RT_U8] = {"U8", 1},
    [FUSE_RT_I8] = {"I8", 1},           [FUSE_RT_U16] = {"U16", 2},
    [FUSE_RT_I16] = {"I16", 2},         [FUSE_RT_F16] = {"F16", 2},
    [FUSE_RT_BF16] = {"BF16", 2},       [FUSE_RT_U32] = {"U32", 4},
    [FUSE_RT_I32] = {"I32", 4},         [FUSE_RT_F32] = {"F32", 4},
    [FUSE_RT_U64] = {"U64", 8},         [FUSE_RT_I64] = {"I64", 8},
    [FUSE_RT_F64] = {"F64", 8},         [FUSE_RT_F8_E4M3] = {"F8_E4M3", 1},
    [FUSE_RT_F8_E5M2] = {"F8_E5M2", 1},
};

typedef struct Entry {
    fuse_rt_tensor_info info; /* info.key aliases key */
    char *key;                /* owns */
    void *copy;               /* owns (fuse_rt_alloc): aligned copy of the data, or NULL */
    uint64_t begin, end;      /* byte range in the data area */
} Entry;

struct fuse_rt_safetensors {
    void *map;       /* owns (munmap): the whole file */
    size_t map_size; /* bytes, > 0 when map != NULL */
    Entry *entries;  /* owns: header order */
    size_t count, cap;
    const Entry **by_key; /* owns: the entries sorted by strcmp of key, for bsearch */
};

/* The strict JSON reader over the header text [s, s + n). */
typedef struct Json {
    const unsigned char *s;
    size_t n, i; /* length and cursor, in bytes */
    const char *path;
    char *err;
    size_t errlen;
} Json;

/* Copies s[0, len) into buf for a message: control bytes become \xNN, long text is cut with
 * "...". buf has room for at least 8 bytes. */
static const char *show(char *buf, size_t size, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = (c < 0x20 || c == 0x7f) ? 4 : 1;
        if (o + need + 4 > size) {
            // Cut before the last character, so no UTF-8 sequence is left incomplete.
            while (o > 0 && ((unsigned char)buf[o - 1] & 0xc0) == 0x80)
                o--;
            if (o > 0 && ((unsigned char)buf[o - 1] & 0xc0) == 0xc0)
                o--;
            memcpy(buf + o, "...", 4);
            return buf;
        }
        if (need == 4)
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    buf[o] = '\0';
    return buf;
}

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = v << 8 | p[k];
    return v;
}

/* ---- the JSON reader ---- */

static int jfail(Json *j, const char *fmt, ...) PRINTF_LIKE(2, 3);

static int jfail(Json *j, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (j->i >= j->n)
        return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                             "header is not valid JSON: %s at the end of the header (truncated?)",
                             msg);
    return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                         "header is not valid JSON: %s at byte %zu of the header", msg, j->i);
}

/* "unexpected character 'x'" for the byte under the cursor. */
static int junexpected(Json *j, const char *wanted)
{
    if (j->i >= j->n)
        return jfail(j, "expected %s", wanted);
    unsigned char c = j->s[j->i];
    if (c == '\'')
        return jfail(j, "expected %s, found a single quote", wanted);
    if (c > 0x20 && c < 0x7f)
        return jfail(j, "expected %s, found '%c'", wanted, c);
    return jfail(j, "expected %s, found byte 0x%02x", wanted, c);
}

static void ws(Json *j)
{
    while (j->i < j->n &&
           (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r'))
        j->i++;
}

static bool at(const Json *j, char c)
{
    return j->i < j->n && j->s[j->i] == (unsigned char)c;
}

/* Length of the valid UTF-8 sequence at s[0, n), or 0 if it is not one (overlong forms,
 * surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xbf)
            return 0;
    return len;
}

static int hex4(Json *j, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        if (j->i >= j->n)
            return jfail(j, "truncated \\u escape");
        unsigned char c = j->s[j->i];
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return jfail(j, "bad hex digit in a \\u escape");
        v = v << 4 | d;
        j->i++;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Reads the string at the cursor (which is at '"'). With out != NULL, *out receives the decoded
 * text (owns, NUL-terminated; it may contain NULs from \u0000) and *outlen its length. */
static int json_string(Json *j, char **out, size_t *outlen)
{
    char *buf = NULL;
    size_t o = 0;
    j->i++; /* the opening quote */
    if (out) {
        // The decoded text is never longer than the raw text up to the closing quote.
        size_t k = j->i;
        while (k < j->n && j->s[k] != '"')
            k += j->s[k] == '\\' ? 2 : 1;
        size_t raw = (k < j->n ? k : j->n) - j->i;
        buf = malloc(raw + 1);
        if (!buf)
            return fuse_rt__fail(FUSE_RT_ENOMEM, j->err, j->errlen, j->path,
                                 "out of memory reading the header");
    }
    int rc = 0;
    for (;;) {
        if (j->i >= j->n) {
            rc = jfail(j, "unterminated string");
            break;
        }
        unsigned char c = j->s[j->i];
        if (c == '"') {
            j->i++;
            break;
        }
        if (c < 0x20) {
            rc = jfail(j, "control character 0x%02x in a string", c);
            break;
        }
        if (c >= 0x80) {
            size_t len = utf8_len(j->s + j->i, j->n - j->i);
            if (len == 0) {
                rc = jfail(j, "invalid UTF-8");
                break;
            }
            if (buf)
                memcpy(buf + o, j->s + j->i, len);
            o += len;
            j->i += len;
            continue;
        }
        if (c != '\\') {
            if (buf)
                buf[o] = (char)c;
            o++;
            j->i++;
            continue;
        }
        j->i++;
        if (j->i >= j->n) {
            rc = jfail(j, "unterminated string");
            break;
        }
        c = j->s[j->i++];
        // The two-character escapes, \" \\ \/ \b \f \n \r \t, then \uXXXX.
        static const char esc_in[8] = {'"', '\\', '/', 'b', 'f', 'n', 'r', 't'};
        static const char esc_out[8] = {'"', '\\', '/', '\b', '\f', '\n', '\r', '\t'};
        const char *hit = memchr(esc_in, c, sizeof esc_in);
        if (hit) {
            if (buf)
                buf[o] = esc_out[hit - esc_in];
            o++;
            continue;
        }
        if (c != 'u') {
            j->i--;
            rc = jfail(j, "invalid escape '\\%c'", c >= 0x20 && c < 0x7f ? c : '?');
            break;
        }
        uint32_t cp = 0;
        if ((rc = hex4(j, &cp)) != 0)
            break;
        if (cp >= 0xdc00 && cp <= 0xdfff) {
            rc = jfail(j, "unpaired surrogate \\u%04" PRIX32, cp);
            break;
        }
        if (cp >= 0xd800 && cp <= 0xdbff) {
            uint32_t lo = 0;
            if (!(j->i + 1 < j->n && j->s[j->i] == '\\' && j->s[j->i + 1] == 'u')) {
                rc = jfail(j, "unpaired surrogate \\u%04" PRIX32, cp);
                break;
            }
            j->i += 2;
            if ((rc = hex4(j, &lo)) != 0)
                break;
            if (lo < 0xdc00 || lo > 0xdfff) {
                rc = jfail(j, "unpaired surrogate \\u%04" PRIX32, cp);
                break;
            }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        if (buf)
            o += put_utf8(buf + o, cp);
        else
            o += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    }
    if (rc) {
        free(buf);
        return rc;
    }
    if (out) {
        buf[o] = '\0';
        *out = buf;
        *outlen = o;
    }
    return 0;
}

static bool is_digit(const Json *j)
{
    return j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9';
}

/* Checks the number grammar at the cursor; [*start, j->i) is the token afterwards. */
static int json_number(Json *j, size_t *start)
{
    *start = j->i;
    if (at(j, '-'))
        j->i++;
    if (at(j, '0'))
        j->i++;
    else if (is_digit(j))
        while (is_digit(j))
            j->i++;
    else
        return junexpected(j, "a digit");
    if (at(j, '.')) {
        j->i++;
        if (!is_digit(j))
            return junexpected(j, "a digit after '.'");
        while (is_digit(j))
            j->i++;
    }
    if (at(j, 'e') || at(j, 'E')) {
        j->i++;
        if (at(j, '+') || at(j, '-'))
            j->i++;
        if (!is_digit(j))
            return junexpected(j, "a digit in the exponent");
        while (is_digit(j))
            j->i++;
    }
    return 0;
}

static int json_literal(Json *j, const char *word)
{
    size_t len = strlen(word);
    if (j->n - j->i < len || memcmp(j->s + j->i, word, len) != 0)
        return junexpected(j, "a JSON value");
    j->i += len;
    return 0;
}

/* Reads one value of any kind; `depth` is the number of objects and arrays around it. */
static int json_skip(Json *j, int depth)
{
    int rc;
    ws(j);
    if (j->i >= j->n)
        return jfail(j, "expected a value");
    unsigned char c = j->s[j->i];
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        if (depth >= JSON_DEPTH_MAX)
            return jfail(j, "nesting deeper than %d levels", JSON_DEPTH_MAX);
        j->i++;
        ws(j);
        if (at(j, close)) {
            j->i++;
            return 0;
        }
        for (bool first = true;; first = false) {
            ws(j);
            if (c == '{') {
                if (!at(j, '"'))
                    return junexpected(j, first ? "a string key or '}'" : "a string key");
                if ((rc = json_string(j, NULL, NULL)) != 0)
                    return rc;
                ws(j);
                if (!at(j, ':'))
                    return junexpected(j, "':'");
                j->i++;
            }
            if ((rc = json_skip(j, depth + 1)) != 0)
                return rc;
            ws(j);
            if (at(j, ',')) {
                j->i++;
                continue;
            }
            if (at(j, close)) {
                j->i++;
                return 0;
            }
            return junexpected(j, c == '{' ? "',' or '}'" : "',' or ']'");
        }
    }
    if (c == '"')
        return json_string(j, NULL, NULL);
    if (c == '-' || (c >= '0' && c <= '9')) {
        size_t start;
        return json_number(j, &start);
    }
    if (c == 't')
        return json_literal(j, "true");
    if (c == 'f')
        return json_literal(j, "false");
    if (c == 'n')
        return json_literal(j, "null");
    return junexpected(j, "a JSON value");
}

/* What kind of value starts at the cursor, for messages. */
static const char *kind_at(const Json *j)
{
    if (j->i >= j->n)
        return "nothing";
    switch (j->s[j->i]) {
    case '{':
        return "an object";
    case '[':
        return "an array";
    case '"':
        return "a string";
    case 't':
    case 'f':
        return "a boolean";
    case 'n':
        return "null";
    default:
        return "a number";
    }
}

/* ---- pass 2: the entries ---- */

static void format_shape(char *buf, size_t size, const fuse_rt_tensor_info *t)
{
    size_t o = (size_t)snprintf(buf, size, "[");
    for (uint32_t d = 0; d < t->rank && o < size; d++)
        o += (size_t)snprintf(buf + o, size - o, "%s%" PRId64, d ? "," : "", t->shape[d]);
    if (o < size)
        snprintf(buf + o, size - o, "]");
}

/* Reads a non-negative integer below 2^64 at the cursor. `what` names it in messages. */
static int read_uint(Json *j, const char *key, const char *what, uint64_t *out)
{
    char kb[160], tb[48];
    if (!(at(j, '-') || is_digit(j)))
        return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                             "entry '%s': %s is %s, not an integer",
                             show(kb, sizeof kb, key, strlen(key)), what, kind_at(j));
    size_t start;
    int rc = json_number(j, &start);
    if (rc)
        return rc;
    const char *tok = (const char *)j->s + start;
    size_t len = j->i - start;
    show(kb, sizeof kb, key, strlen(key));
    show(tb, sizeof tb, tok, len);
    if (tok[0] == '-')
        return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                             "entry '%s': %s %s is negative", kb, what, tb);
    uint64_t v = 0;
    for (size_t k = 0; k < len; k++) {
        if (tok[k] < '0' || tok[k] > '9')
            return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                                 "entry '%s': %s %s is not an integer", kb, what, tb);
        unsigned d = (unsigned)(tok[k] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                                 "entry '%s': %s %s does not fit in 64 bits", kb, what, tb);
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Reads an array of integers at the cursor into v[0, *count); more than `max` is an error. */
static int read_uints(Json *j, const char *key, const char *field, const char *unit, uint64_t *v,
                      size_t max, size_t *count)
{
    char kb[160], what[48];
    show(kb, sizeof kb, key, strlen(key));
    if (!at(j, '['))
        return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                             "entry '%s': %s is %s, not an array", kb, field, kind_at(j));
    j->i++;
    ws(j);
    size_t n = 0;
    if (at(j, ']')) {
        j->i++;
        *count = 0;
        return 0;
    }
    for (;;) {
        ws(j);
        if (n == max)
            return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                                 "entry '%s': %s has more than %zu %s", kb, field, max, unit);
        snprintf(what, sizeof what, "%s[%zu]", field, n);
        int rc = read_uint(j, key, what, &v[n]);
        if (rc)
            return rc;
        n++;
        ws(j);
        if (at(j, ',')) {
            j->i++;
            continue;
        }
        if (at(j, ']')) {
            j->i++;
            *count = n;
            return 0;
        }
        return junexpected(j, "',' or ']'");
    }
}

static bool str_is(const char *s, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(s, word, len) == 0;
}

/* Reads the entry object for `key` at the cursor into e and checks it against the data area
 * of `data_size` bytes. */
static int read_entry(Json *j, const char *key, Entry *e, uint64_t data_size)
{
    char kb[160];
    show(kb, sizeof kb, key, strlen(key));
    if (!at(j, '{'))
        return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                             "entry '%s' is %s, not an object", kb, kind_at(j));
    j->i++;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    uint64_t dims[FUSE_RT_MAX_RANK] = {0}, offs[2] = {0};
    size_t rank = 0, noffs = 0;
    int rc;
    ws(j);
    if (at(j, '}'))
        j->i++;
    else
        for (;;) {
            ws(j);
            if (!at(j, '"'))
                return junexpected(j, "a string key");
            char *field;
            size_t flen;
            if ((rc = json_string(j, &field, &flen)) != 0)
                return rc;
            ws(j);
            if (!at(j, ':')) {
                free(field);
                return junexpected(j, "':'");
            }
            j->i++;
            ws(j);
            bool *seen = str_is(field, flen, "dtype")          ? &has_dtype
                         : str_is(field, flen, "shape")        ? &has_shape
                         : str_is(field, flen, "data_offsets") ? &has_offsets
                                                               : NULL;
            if (!seen || *seen) {
                char fb[80];
                show(fb, sizeof fb, field, flen);
                free(field);
                return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                                     "entry '%s': %s '%s'", kb,
                                     seen ? "duplicate field" : "unknown field", fb);
            }
            *seen = true;
            if (seen == &has_dtype) {
                free(field);
                if (!at(j, '"'))
                    return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                                         "entry '%s': dtype is %s, not a string", kb, kind_at(j));
                char *name;
                size_t nlen;
                if ((rc = json_string(j, &name, &nlen)) != 0)
                    return rc;
                size_t d = 0;
                while (d < countof(dtype_table) && !str_is(name, nlen, dtype_table[d].name))
                    d++;
                if (d == countof(dtype_table)) {
                    char nb[48];
                    show(nb, sizeof nb, name, nlen);
                    free(name);
                    return fuse_rt__fail(FUSE_RT_EDTYPE, j->err, j->errlen, j->path,
                                         "entry '%s': unknown dtype '%s'", kb, nb);
                }
                free(name);
                e->info.dtype = (fuse_rt_dtype)d;
                e->info.dtype_name = dtype_table[d].name;
            } else if (seen == &has_shape) {
                free(field);
                if ((rc = read_uints(j, key, "shape", "dimensions", dims, FUSE_RT_MAX_RANK,
                                     &rank)) != 0)
                    return rc;
            } else {
                free(field);
                if ((rc = read_uints(j, key, "data_offsets", "elements", offs, 2, &noffs)) != 0)
                    return rc;
                if (noffs != 2)
                    return fuse_rt__fail(
                        FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                        "entry '%s': data_offsets has %zu element%s, not 2 [begin, end]", kb, noffs,
                        noffs == 1 ? "" : "s");
            }
            ws(j);
            if (at(j, ',')) {
                j->i++;
                continue;
            }
            if (at(j, '}')) {
                j->i++;
                break;
            }
            return junexpected(j, "',' or '}'");
        }
    const char *missing = !has_dtype     ? "dtype"
                          : !has_shape   ? "shape"
                          : !has_offsets ? "data_offsets"
                                         : NULL;
    if (missing)
        return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path, "entry '%s' has no '%s'",
                             kb, missing);

    e->info.rank = (uint32_t)rank;
    bool empty = false;
    for (size_t d = 0; d < rank; d++) {
        if (dims[d] > INT64_MAX)
            return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                                 "entry '%s': shape[%zu] %" PRIu64 " exceeds 2^63-1", kb, d,
                                 dims[d]);
        e->info.shape[d] = (int64_t)dims[d];
        empty = empty || dims[d] == 0;
    }
    char sb[200];
    format_shape(sb, sizeof sb, &e->info);
    uint64_t nbytes = empty ? 0 : dtype_table[e->info.dtype].size;
    for (size_t d = 0; d < rank && !empty; d++) {
        if (nbytes > UINT64_MAX / dims[d])
            return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                                 "entry '%s': shape %s of %s needs more than 2^64 bytes", kb, sb,
                                 e->info.dtype_name);
        nbytes *= dims[d];
    }
    if (offs[0] > offs[1])
        return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                             "entry '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] are reversed", kb,
                             offs[0], offs[1]);
    if (offs[1] > data_size)
        return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                             "entry '%s': data_offsets [%" PRIu64 ", %" PRIu64
                             "] go past the end of the data area (%" PRIu64 " bytes)",
                             kb, offs[0], offs[1], data_size);
    if (nbytes != offs[1] - offs[0])
        return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                             "entry '%s': shape %s of %s needs %" PRIu64
                             " bytes, data_offsets give %" PRIu64,
                             kb, sb, e->info.dtype_name, nbytes, offs[1] - offs[0]);
    e->begin = offs[0];
    e->end = offs[1];
    e->info.nbytes = (size_t)nbytes; /* <= data_size, which fits in size_t */
    return 0;
}

static int cmp_key(const void *a, const void *b)
{
    const Entry *const *x = a, *const *y = b;
    return strcmp((*x)->key, (*y)->key);
}

static int cmp_begin(const void *a, const void *b)
{
    const Entry *const *x = a, *const *y = b;
    if ((*x)->begin != (*y)->begin)
        return (*x)->begin < (*y)->begin ? -1 : 1;
    return ((*x)->end > (*y)->end) - ((*x)->end < (*y)->end);
}

static int find_key(const void *key, const void *elem)
{
    const Entry *const *e = elem;
    return strcmp(key, (*e)->key);
}

/* Pass 2: reads the entries of the (syntactically valid) header into st. */
static int read_entries(Json *j, fuse_rt_safetensors *st, uint64_t data_size)
{
    int rc;
    bool seen_metadata = false;
    ws(j);
    j->i++; /* '{', checked by pass 1 */
    ws(j);
    if (at(j, '}'))
        return 0;
    for (;;) {
        ws(j);
        if (!at(j, '"'))
            return junexpected(j, "a string key");
        char *key;
        size_t klen;
        if ((rc = json_string(j, &key, &klen)) != 0)
            return rc;
        ws(j);
        if (!at(j, ':')) {
            free(key);
            return junexpected(j, "':'");
        }
        j->i++;
        ws(j);
        if (str_is(key, klen, "__metadata__")) {
            // Ignored whatever it holds: pass 1 already checked that it is valid JSON.
            free(key);
            if (seen_metadata)
                return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                                     "duplicate key '__metadata__'");
            seen_metadata = true;
            if ((rc = json_skip(j, 1)) != 0)
                return rc;
        } else {
            if (strlen(key) != klen) {
                char kb[160];
                show(kb, sizeof kb, key, klen);
                free(key);
                return fuse_rt__fail(FUSE_RT_EFORMAT, j->err, j->errlen, j->path,
                                     "key '%s' contains a NUL character (\\u0000)", kb);
            }
            if (st->count == st->cap) {
                size_t cap = st->cap ? 2 * st->cap : 16;
                Entry *grown = cap <= SIZE_MAX / sizeof(Entry)
                                   ? realloc(st->entries, cap * sizeof(Entry))
                                   : NULL;
                if (!grown) {
                    free(key);
                    return fuse_rt__fail(FUSE_RT_ENOMEM, j->err, j->errlen, j->path,
                                         "out of memory reading the header");
                }
                st->entries = grown;
                st->cap = cap;
            }
            Entry *e = &st->entries[st->count++];
            memset(e, 0, sizeof *e);
            e->key = key;
            e->info.key = key;
            if ((rc = read_entry(j, key, e, data_size)) != 0)
                return rc;
        }
        ws(j);
        if (at(j, ',')) {
            j->i++;
            continue;
        }
        if (at(j, '}'))
            return 0;
        return junexpected(j, "',' or '}'");
    }
}

/* Indexes the entries by key (rejecting duplicates), rejects overlapping byte ranges and sets
 * each entry's data pointer, copying F32 data the mapping leaves unaligned. */
static int finish(fuse_rt_safetensors *st, const unsigned char *data, const char *path, char *err,
                  size_t errlen)
{
    char ka[160], kb[160];
    if (st->count == 0)
        return 0;
    st->by_key = malloc(st->count * sizeof *st->by_key);
    const Entry **by_begin = malloc(st->count * sizeof *by_begin);
    if (!st->by_key || !by_begin) {
        free(by_begin);
        return fuse_rt__fail(FUSE_RT_ENOMEM, err, errlen, path,
                             "out of memory indexing %zu entries", st->count);
    }
    for (size_t i = 0; i < st->count; i++)
        st->by_key[i] = by_begin[i] = &st->entries[i];
    qsort(st->by_key, st->count, sizeof *st->by_key, cmp_key);
    for (size_t i = 1; i < st->count; i++)
        if (strcmp(st->by_key[i - 1]->key, st->by_key[i]->key) == 0) {
            free(by_begin);
            const char *k = st->by_key[i]->key;
            return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path, "duplicate key '%s'",
                                 show(ka, sizeof ka, k, strlen(k)));
        }
    // Sorted by begin, a non-empty range overlaps an earlier one iff it starts before the
    // furthest end seen so far. Empty ranges hold no bytes and overlap nothing.
    qsort(by_begin, st->count, sizeof *by_begin, cmp_begin);
    const Entry *last = NULL;
    for (size_t i = 0; i < st->count; i++) {
        const Entry *e = by_begin[i];
        if (e->begin == e->end)
            continue;
        if (last && e->begin < last->end) {
            int rc = fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                                   "entries '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64
                                   ", %" PRIu64 ") overlap",
                                   show(ka, sizeof ka, last->key, strlen(last->key)), last->begin,
                                   last->end, show(kb, sizeof kb, e->key, strlen(e->key)), e->begin,
                                   e->end);
            free(by_begin);
            return rc;
        }
        if (!last || e->end > last->end)
            last = e;
    }
    free(by_begin);
    for (size_t i = 0; i < st->count; i++) {
        Entry *e = &st->entries[i];
        const unsigned char *p = data + e->begin;
        e->info.data = p;
        if (e->info.dtype != FUSE_RT_F32 || (uintptr_t)p % 4 == 0)
            continue;
        if (e->info.nbytes == 0) {
            e->info.data = st->map; /* page-aligned; never read */
            continue;
        }
        e->copy = fuse_rt_alloc(e->info.nbytes);
        if (!e->copy)
            return fuse_rt__fail(FUSE_RT_ENOMEM, err, errlen, path,
                                 "out of memory copying entry '%s' (%zu bytes) to aligned memory",
                                 show(ka, sizeof ka, e->key, strlen(e->key)), e->info.nbytes);
        memcpy(e->copy, p, e->info.nbytes);
        e->info.data = e->copy;
    }
    return 0;
}

/* Checks the header [hdr, hdr + n) and reads its entries into st. */
static int read_header(fuse_rt_safetensors *st, const unsigned char *hdr, size_t n,
                       uint64_t data_size, const char *path, char *err, size_t errlen)
{
    Json j = {.s = hdr, .n = n, .i = 0, .path = path, .err = err, .errlen = errlen};
    int rc = json_skip(&j, 0); /* pass 1: syntax */
    if (rc)
        return rc;
    ws(&j);
    if (j.i < j.n)
        return jfail(&j, "trailing characters after the JSON value");
    j.i = 0;
    ws(&j);
    if (!at(&j, '{'))
        return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path, "header is %s, not a JSON object",
                             kind_at(&j));
    if ((rc = read_entries(&j, st, data_size)) != 0) /* pass 2 */
        return rc;
    return finish(st, hdr + n, path, err, errlen);
}

int fuse_rt_safetensors_open(const char *path, fuse_rt_safetensors **out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!path || !out)
        return fuse_rt__fail(FUSE_RT_EINVAL, err, errlen, "fuse_rt_safetensors_open",
                             "NULL path or out argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return fuse_rt__fail(FUSE_RT_EIO, err, errlen, path, "cannot open: %s", strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return fuse_rt__fail(FUSE_RT_EIO, err, errlen, path, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return fuse_rt__fail(FUSE_RT_EIO, err, errlen, path, "%s",
                             S_ISDIR(sb.st_mode) ? "is a directory" : "is not a regular file");
    }
    if (sb.st_size < 8) {
        close(fd);
        return fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                             "file is %lld bytes, too short for the 8-byte header length",
                             (long long)sb.st_size);
    }
    if ((uintmax_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return fuse_rt__fail(FUSE_RT_EIO, err, errlen, path, "file is too large to map");
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED)
        return fuse_rt__fail(FUSE_RT_EIO, err, errlen, path, "cannot map %zu bytes: %s", size,
                             strerror(map_errno));
    fuse_rt_safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        munmap(map, size);
        return fuse_rt__fail(FUSE_RT_ENOMEM, err, errlen, path, "out of memory");
    }
    st->map = map;
    st->map_size = size;
    const unsigned char *bytes = map;
    uint64_t n = load_le64(bytes);
    int rc;
    if (n > size - 8)
        rc = fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                           "header length %" PRIu64 " exceeds the file size (%zu bytes)", n, size);
    else if (n > HEADER_MAX)
        rc = fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                           "header length %" PRIu64 " exceeds the limit of 100 MiB", n);
    else if (n == 0)
        rc = fuse_rt__fail(FUSE_RT_EFORMAT, err, errlen, path,
                           "header length is 0; the header must be a JSON object");
    else
        rc = read_header(st, bytes + 8, (size_t)n, size - 8 - n, path, err, errlen);
    if (rc) {
        fuse_rt_safetensors_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

void fuse_rt_safetensors_close(fuse_rt_safetensors *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->count; i++) {
        free(st->entries[i].key);
        fuse_rt_free(st->entries[i].copy);
    }
    free(st->entries);
    free(st->by_key);
    if (st->map)
        munmap(st->map, st->map_size);
    free(st);
}

size_t fuse_rt_safetensors_count(const fuse_rt_safetensors *st)
{
    return st ? st->count : 0;
}

const fuse_rt_tensor_info *fuse_rt_safetensors_entry(const fuse_rt_safetensors *st, size_t i)
{
    return st && i < st->count ? &st->entries[i].info : NULL;
}

const fuse_rt_tensor_info *fuse_rt_safetensors_find(const fuse_rt_safetensors *st, const char *key)
{
    if (!st || !key || st->count == 0)
        return NULL;
    const Entry *const *hit = bsearch(key, st->by_key, st->count, sizeof *st->by_key, find_key);
    return hit ? &(*hit)->info : NULL;
}

const char *fuse_rt_dtype_name(fuse_rt_dtype dt)
{
    return (size_t)dt < countof(dtype_table) ? dtype_table[dt].name : NULL;
}

size_t fuse_rt_dtype_size(fuse_rt_dtype dt)
{
    return (size_t)dt < countof(dtype_table) ? dtype_table[dt].size : 0;
}
