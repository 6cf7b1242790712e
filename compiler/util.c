/*
 * util: checked allocation, panics, StrBuf, PtrVec, name suggestions and the CPU count (see
 * util.h).
 */
#define _GNU_SOURCE /* sched_getaffinity: the CPUs this process may use */
#include "util.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

noreturn void fuse_panic(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fusec: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        fuse_panic(__FILE__, __LINE__, "out of memory allocating %zu bytes", size);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        fuse_panic(__FILE__, __LINE__, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q)
        fuse_panic(__FILE__, __LINE__, "out of memory allocating %zu bytes", size);
    return q;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

static void sb_reserve(StrBuf *sb, size_t extra)
{
    if (sb->len + extra + 1 <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + extra + 1)
        cap *= 2;
    sb->data = xrealloc(sb->data, cap);
    sb->cap = cap;
}

void sb_append_n(StrBuf *sb, const char *s, size_t n)
{
    sb_reserve(sb, n);
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

void sb_append(StrBuf *sb, const char *s)
{
    sb_append_n(sb, s, strlen(s));
}

void sb_vprintf(StrBuf *sb, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    FUSE_ASSERT(n >= 0);
    sb_reserve(sb, (size_t)n);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    sb->len += (size_t)n;
}

void sb_printf(StrBuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(sb, fmt, ap);
    va_end(ap);
}

void sb_clear(StrBuf *sb)
{
    sb->len = 0;
    if (sb->data)
        sb->data[0] = '\0';
}

void sb_free(StrBuf *sb)
{
    free(sb->data);
    sb->data = NULL;
    sb->len = sb->cap = 0;
}

const char *sb_str(const StrBuf *sb)
{
    return sb->data ? sb->data : "";
}

void ptrvec_push(PtrVec *v, void *p)
{
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 8;
        v->items = xrealloc(v->items, v->cap * sizeof(void *));
    }
    v->items[v->len++] = p;
}

void ptrvec_free(PtrVec *v)
{
    free(v->items);
    v->items = NULL;
    v->len = v->cap = 0;
}

static uint32_t ptrmap_slot(const PtrMap *m, const void *key)
{
    uint64_t h = (uint64_t)(uintptr_t)key * 0x9e3779b97f4a7c15u; /* Fibonacci hashing */
    uint32_t i = (uint32_t)(h >> 32) & (m->cap - 1);
    while (m->gens[i] == m->gen && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

bool ptrmap_get(const PtrMap *m, const void *key, uint32_t *val)
{
    if (!m->cap)
        return false;
    uint32_t i = ptrmap_slot(m, key);
    if (m->gens[i] != m->gen)
        return false;
    *val = m->vals[i];
    return true;
}

void ptrmap_put(PtrMap *m, const void *key, uint32_t val)
{
    if (2 * (m->n + 1) > m->cap) {
        PtrMap bigger = {.cap = m->cap ? 2 * m->cap : 64, .gen = 1};
        bigger.keys = xcalloc(bigger.cap, sizeof *bigger.keys);
        bigger.vals = xcalloc(bigger.cap, sizeof *bigger.vals);
        bigger.gens = xcalloc(bigger.cap, sizeof *bigger.gens);
        for (uint32_t i = 0; i < m->cap; i++)
            if (m->gens[i] == m->gen)
                ptrmap_put(&bigger, m->keys[i], m->vals[i]);
        ptrmap_free(m);
        *m = bigger;
    }
    uint32_t i = ptrmap_slot(m, key);
    if (m->gens[i] != m->gen) {
        m->gens[i] = m->gen;
        m->keys[i] = key;
        m->n++;
    }
    m->vals[i] = val;
}

void ptrmap_clear(PtrMap *m)
{
    m->n = 0;
    if (++m->gen == 0) { /* after 2^32 clears: no stale generation may match again */
        memset(m->gens, 0, m->cap * sizeof *m->gens);
        m->gen = 1;
    }
}

void ptrmap_free(PtrMap *m)
{
    free(m->keys);
    free(m->vals);
    free(m->gens);
    *m = (PtrMap){0};
}

size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return la > lb ? la : lb;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *closest_name(const char *name, const char *const *candidates, size_t n)
{
    const char *best = NULL;
    size_t best_dist = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (!candidates[i])
            continue;
        size_t d = edit_distance(name, candidates[i]);
        if (d < best_dist) {
            best_dist = d;
            best = candidates[i];
        }
    }
    /* Close enough to be a typo: at most a third of the name's length, and at least 1 edit. */
    size_t len = strlen(name);
    size_t limit = len / 3 + 1;
    if (best && best_dist > 0 && best_dist <= limit && best_dist < len)
        return best;
    return NULL;
}

bool mul_i64(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

bool add_i64(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

long available_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}
