/*
 * arena: a list of blocks; allocations bump a pointer in the newest block. Requests larger
 * than a block get a block of their own.
 */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct Block {
    struct Block *next;
    size_t size, used;
    _Alignas(max_align_t) unsigned char data[];
} Block;

struct Arena {
    Block *head;
    size_t block_size;
};

Arena *arena_new(size_t block_size)
{
    Arena *a = xcalloc(1, sizeof(Arena));
    a->block_size = block_size ? block_size : 64 * 1024;
    return a;
}

void arena_free(Arena *a)
{
    if (!a)
        return;
    for (Block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(a);
}

void *arena_alloc(Arena *a, size_t size, size_t align)
{
    FUSE_ASSERT(align && (align & (align - 1)) == 0 && align <= _Alignof(max_align_t));
    Block *b = a->head;
    if (b) {
        size_t at = (b->used + align - 1) & ~(align - 1);
        if (at <= b->size && size <= b->size - at) {
            b->used = at + size;
            memset(b->data + at, 0, size);
            return b->data + at;
        }
    }
    size_t cap = size > a->block_size ? size : a->block_size;
    if (cap > SIZE_MAX - sizeof(Block))
        fuse_panic(__FILE__, __LINE__, "arena request too large: %zu bytes", size);
    Block *nb = xcalloc(1, sizeof(Block) + cap);
    nb->size = cap;
    nb->used = size;
    nb->next = a->head;
    a->head = nb;
    return nb->data;
}

void *arena_alloc_array(Arena *a, size_t n, size_t size, size_t align)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        fuse_panic(__FILE__, __LINE__, "arena array too large: %zu x %zu", n, size);
    return arena_alloc(a, total, align);
}

char *arena_strndup(Arena *a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1, 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *arena_strdup(Arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}
