/*
 * source: owned spec text with a line table (see source.h). A UTF-8 byte order mark at the
 * start, which some editors write, is not part of the text: columns on line 1 count from
 * after it, as the editor shows them.
 */
#include "source.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

Source *source_new(const char *name, const char *text, size_t len)
{
    FUSE_ASSERT(len <= FUSE_MAX_SOURCE_BYTES);
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
        text += 3;
        len -= 3;
    }
    Source *src = xcalloc(1, sizeof(Source));
    src->name = xstrdup(name);
    src->text = xmalloc(len + 1);
    memcpy(src->text, text, len);
    src->text[len] = '\0';
    src->len = len;
    uint32_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += text[i] == '\n';
    src->line_starts = xmalloc(n * sizeof(uint32_t));
    src->line_starts[0] = 0;
    uint32_t k = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            src->line_starts[k++] = (uint32_t)(i + 1);
    src->nlines = n;
    return src;
}

void source_free(Source *src)
{
    if (!src)
        return;
    free(src->name);
    free(src->text);
    free(src->line_starts);
    free(src);
}

void source_line_col(const Source *src, uint32_t offset, uint32_t *line, uint32_t *col)
{
    if (offset > src->len)
        offset = (uint32_t)src->len;
    /* Binary search for the last line starting at or before offset. */
    uint32_t lo = 0, hi = src->nlines;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (src->line_starts[mid] <= offset)
            lo = mid;
        else
            hi = mid;
    }
    *line = lo + 1;
    *col = offset - src->line_starts[lo] + 1;
}

const char *source_line_text(const Source *src, uint32_t line, size_t *len)
{
    FUSE_ASSERT(line >= 1 && line <= src->nlines);
    uint32_t start = src->line_starts[line - 1];
    uint32_t end = line < src->nlines ? src->line_starts[line] - 1 : (uint32_t)src->len;
    if (end > start && src->text[end - 1] == '\r')
        end--;
    *len = end - start;
    return src->text + start;
}
