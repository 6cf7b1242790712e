/*
 * diag: user-facing diagnostics (LANGUAGE.md §5). The format is fixed; golden tests compare it
 * byte for byte:
 *
 *   FILE:LINE:COL: error: message
 *       7 |     y = conv1 + skip
 *         |               ^
 *
 * Columns are 1-based byte offsets. The caret line marks the span: '^' at its start, '~' for the
 * rest of it on the same line. Problems in files that have no line (weights, tensors) print as
 * `FILE: error: message`; problems with no file at all as `fusec: error: message`.
 */
#ifndef FUSE_DIAG_H
#define FUSE_DIAG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "source.h"
#include "util.h"

typedef enum DiagLevel { DIAG_ERROR, DIAG_WARNING, DIAG_NOTE } DiagLevel;

typedef struct Diag {
    const Source *src; /* borrowed: the spec that spans refer to (may be NULL) */
    FILE *out;         /* borrowed: where diagnostics go (stderr in the CLI) */
    unsigned nerrors, nwarnings;
    unsigned max_errors; /* stop printing errors after this many (0: no limit) */
} Diag;

void diag_init(Diag *d, const Source *src, FILE *out);

/* A diagnostic at a span of d->src. */
void diag_report(Diag *d, DiagLevel lvl, Span at, const char *fmt, ...) FUSE_PRINTF(4, 5);
void diag_vreport(Diag *d, DiagLevel lvl, Span at, const char *fmt, va_list ap) FUSE_PRINTF(4, 0);
/* A diagnostic about a file without a line (file may be NULL: "fusec: error: ..."). */
void diag_report_file(Diag *d, DiagLevel lvl, const char *file, const char *fmt, ...)
    FUSE_PRINTF(4, 5);

/* A message from the runtime, which starts with "FILE: " when it names a file, printed as
 * `FILE: error: rest` (so every input-file problem has the same form). */
void diag_report_runtime(Diag *d, DiagLevel lvl, const char *file, const char *message);

static inline bool diag_has_errors(const Diag *d)
{
    return d->nerrors > 0;
}

#endif
