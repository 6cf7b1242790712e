/*
 * arena: bump allocation for IR. One arena per IR generation (AST, graph, loops); nodes are
 * never freed one at a time, the whole arena is freed at once.
 */
#ifndef FUSE_ARENA_H
#define FUSE_ARENA_H

#include <stddef.h>

typedef struct Arena Arena;

Arena *arena_new(size_t block_size);                                    /* caller owns */
void arena_free(Arena *a);                                              /* frees everything */
void *arena_alloc(Arena *a, size_t size, size_t align);                 /* zeroed, never NULL */
void *arena_alloc_array(Arena *a, size_t n, size_t size, size_t align); /* panics on overflow */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);

#define ARENA_NEW(a, T)      ((T *)arena_alloc((a), sizeof(T), _Alignof(T)))
#define ARENA_ARRAY(a, T, n) ((T *)arena_alloc_array((a), (n), sizeof(T), _Alignof(T)))

#endif
