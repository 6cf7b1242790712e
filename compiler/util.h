/*
 * util: the few helpers every stage uses: checked allocation, internal-error panics,
 * a growable string buffer and a growable pointer vector.
 *
 * Internal errors (our bugs) go through FUSE_ASSERT / fuse_panic and abort with file:line.
 * User errors never do: they go through diag (diag.h).
 */
#ifndef FUSE_UTIL_H
#define FUSE_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#if defined(__GNUC__)
#define FUSE_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define FUSE_PRINTF(fmt, args)
#endif

#define countof(a) (sizeof(a) / sizeof((a)[0]))

noreturn void fuse_panic(const char *file, int line, const char *fmt, ...) FUSE_PRINTF(3, 4);

#define FUSE_ASSERT(c)     ((c) ? (void)0 : fuse_panic(__FILE__, __LINE__, "assertion failed: %s", #c))
#define FUSE_UNREACHABLE() fuse_panic(__FILE__, __LINE__, "unreachable")

/* Allocation that panics on exhaustion (never returns NULL). Pair with free(). */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);

/* A growable, always NUL-terminated string. Zero-initialize, then append; owns data. */
typedef struct StrBuf {
    char *data;
    size_t len, cap;
} StrBuf;

void sb_append(StrBuf *sb, const char *s);
void sb_append_n(StrBuf *sb, const char *s, size_t n);
void sb_printf(StrBuf *sb, const char *fmt, ...) FUSE_PRINTF(2, 3);
void sb_vprintf(StrBuf *sb, const char *fmt, va_list ap) FUSE_PRINTF(2, 0);
void sb_clear(StrBuf *sb);
void sb_free(StrBuf *sb);
/* Returns the contents ("" when empty); valid until the next append. */
const char *sb_str(const StrBuf *sb);

/* A growable array of pointers. Zero-initialize; owns the array, not the pointees. */
typedef struct PtrVec {
    void **items;
    size_t len, cap;
} PtrVec;

void ptrvec_push(PtrVec *v, void *p);
void ptrvec_free(PtrVec *v);

/* A map from pointers to uint32_t, cleared in O(1): an entry counts only while its generation is
 * the map's. Zero-initialize; open addressing, kept at most half full. */
typedef struct PtrMap {
    const void **keys;
    uint32_t *vals;
    uint32_t *gens;
    uint32_t cap, n, gen;
} PtrMap;

bool ptrmap_get(const PtrMap *m, const void *key, uint32_t *val);
void ptrmap_put(PtrMap *m, const void *key, uint32_t val); /* key absent or replaced */
void ptrmap_clear(PtrMap *m);
void ptrmap_free(PtrMap *m);

/* Levenshtein distance, for "did you mean" suggestions. */
size_t edit_distance(const char *a, const char *b);
/* Returns the candidate closest to `name` if it is close enough to be a likely typo, else NULL. */
const char *closest_name(const char *name, const char *const *candidates, size_t n);

/* a * b and a + b on int64 with overflow detection; return false on overflow. */
bool mul_i64(int64_t a, int64_t b, int64_t *out);
bool add_i64(int64_t a, int64_t b, int64_t *out);

/* The number of CPUs this process may run on (its affinity mask), at least 1: the default
 * thread count of a run and of a JIT compile. */
long available_cpus(void);

#endif
