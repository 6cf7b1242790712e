/*
 * diag: prints diagnostics in the fixed format of diag.h and counts them.
 */
#include "diag.h"

#include <string.h>

static const char *const level_names[] = {"error", "warning", "note"};

void diag_init(Diag *d, const Source *src, FILE *out)
{
    d->src = src;
    d->out = out;
    d->nerrors = d->nwarnings = 0;
    d->max_errors = 50;
}

/* Returns false when this diagnostic should not be printed (too many errors already). */
static bool count(Diag *d, DiagLevel lvl)
{
    if (lvl == DIAG_ERROR) {
        d->nerrors++;
        if (d->max_errors && d->nerrors == d->max_errors + 1)
            fprintf(d->out, "fusec: too many errors; stopping output here\n");
        return !d->max_errors || d->nerrors <= d->max_errors;
    }
    if (lvl == DIAG_WARNING)
        d->nwarnings++;
    /* A note belongs to the error before it, and is hidden with it. */
    return !d->max_errors || d->nerrors <= d->max_errors;
}

static void print_snippet(Diag *d, Span at)
{
    const Source *src = d->src;
    uint32_t line, col;
    source_line_col(src, at.lo, &line, &col);
    size_t len;
    const char *text = source_line_text(src, line, &len);
    fprintf(d->out, "%5u | ", line);
    fwrite(text, 1, len, d->out); /* the line may hold NUL bytes */
    fputc('\n', d->out);
    fprintf(d->out, "      | ");
    for (uint32_t i = 1; i < col; i++)
        fputc(text[i - 1] == '\t' ? '\t' : ' ', d->out);
    fputc('^', d->out);
    /* Underline the rest of the span, up to the end of its first line. */
    size_t end = at.hi > at.lo ? at.hi - at.lo : 1;
    size_t room = len >= col ? len - (col - 1) : 0;
    for (size_t i = 1; i < end && i < room; i++)
        fputc('~', d->out);
    fputc('\n', d->out);
}

void diag_vreport(Diag *d, DiagLevel lvl, Span at, const char *fmt, va_list ap)
{
    if (!count(d, lvl))
        return;
    if (!d->src) {
        fprintf(d->out, "fusec: %s: ", level_names[lvl]);
        vfprintf(d->out, fmt, ap);
        fputc('\n', d->out);
        return;
    }
    uint32_t line, col;
    source_line_col(d->src, at.lo, &line, &col);
    fprintf(d->out, "%s:%u:%u: %s: ", d->src->name, line, col, level_names[lvl]);
    vfprintf(d->out, fmt, ap);
    fputc('\n', d->out);
    print_snippet(d, at);
}

void diag_report(Diag *d, DiagLevel lvl, Span at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_vreport(d, lvl, at, fmt, ap);
    va_end(ap);
}

void diag_report_file(Diag *d, DiagLevel lvl, const char *file, const char *fmt, ...)
{
    if (!count(d, lvl))
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(d->out, "%s: %s: ", file ? file : "fusec", level_names[lvl]);
    vfprintf(d->out, fmt, ap);
    fputc('\n', d->out);
    va_end(ap);
}

void diag_report_runtime(Diag *d, DiagLevel lvl, const char *file, const char *message)
{
    size_t n = strlen(file);
    if (strncmp(message, file, n) == 0 && message[n] == ':' && message[n + 1] == ' ')
        message += n + 2;
    diag_report_file(d, lvl, file, "%s", message);
}
