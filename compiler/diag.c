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

/* The length of the UTF-8 sequence at s[0, n) that encodes a printable character, or 0 if
 * the bytes there are not valid UTF-8 (overlong forms and surrogates included) or encode a
 * control character (C0 but tab, DEL, C1), which a terminal could act on. */
static size_t printable_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return (c >= 0x20 && c != 0x7f) || c == '\t' ? 1 : 0;
    size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    if (len == 0 || n < len)
        return 0;
    unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xbf)
            return 0;
    if (c == 0xc2 && s[1] < 0xa0) /* U+0080..U+009F */
        return 0;
    return len;
}

/* Appends the source line text[0, len) to sb with every byte that is not part of a printable
 * character replaced by '?', one for one, so columns stay where they were. A spec may hold
 * NULs, stray carriage returns or terminal escape sequences; none reaches the terminal. */
static void append_line(StrBuf *sb, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        size_t n = printable_len(s + i, len - i);
        if (n == 0) {
            sb_append_n(sb, "?", 1);
            i++;
        } else {
            sb_append_n(sb, text + i, n);
            i += n;
        }
    }
}

static void print_snippet(Diag *d, Span at)
{
    const Source *src = d->src;
    uint32_t line, col;
    source_line_col(src, at.lo, &line, &col);
    size_t len;
    const char *text = source_line_text(src, line, &len);
    /* The two lines are built whole and written at once: stderr is unbuffered, and a hostile
     * spec can hold a line of megabytes. */
    StrBuf out = {0};
    sb_printf(&out, "%5u | ", line);
    append_line(&out, text, len);
    sb_append(&out, "\n      | ");
    for (uint32_t i = 1; i < col; i++)
        sb_append_n(&out, text[i - 1] == '\t' ? "\t" : " ", 1);
    sb_append_n(&out, "^", 1);
    /* Underline the rest of the span, up to the end of its first line. */
    size_t end = at.hi > at.lo ? at.hi - at.lo : 1;
    size_t room = len >= col ? len - (col - 1) : 0;
    for (size_t i = 1; i < end && i < room; i++)
        sb_append_n(&out, "~", 1);
    sb_append_n(&out, "\n", 1);
    fwrite(out.data, 1, out.len, d->out);
    sb_free(&out);
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
