/*
 * source: a spec's text and its line table. Locations are byte spans into the text; line and
 * column are computed only when a diagnostic is printed.
 */
#ifndef FUSE_SOURCE_H
#define FUSE_SOURCE_H

#include <stddef.h>
#include <stdint.h>

typedef struct Span {
    uint32_t lo, hi; /* byte offsets into Source.text, [lo, hi) */
} Span;

typedef struct Source {
    char *name;            /* owns: the path as given, used in diagnostics */
    char *text;            /* owns: the text, NUL-terminated (may also contain NULs) */
    size_t len;            /* bytes of text, without the terminating NUL */
    uint32_t *line_starts; /* owns: byte offset of each line's first byte */
    uint32_t nlines;
} Source;

/* Largest spec we accept; offsets must fit a Span. */
#define FUSE_MAX_SOURCE_BYTES (64u * 1024u * 1024u)

/* Copies name and text. Requires len <= FUSE_MAX_SOURCE_BYTES. Returns an owned Source. */
Source *source_new(const char *name, const char *text, size_t len);
void source_free(Source *src);

/* 1-based line and column (in bytes) of a byte offset. */
void source_line_col(const Source *src, uint32_t offset, uint32_t *line, uint32_t *col);
/* The text of a 1-based line without its newline: start pointer and length. */
const char *source_line_text(const Source *src, uint32_t line, size_t *len);

static inline Span span_join(Span a, Span b)
{
    Span s = {a.lo < b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi};
    return s;
}

#endif
