/*
 * ast: the text dump of the syntax tree (--dump=ast) and the operator names.
 *
 * The dump is deterministic and shows the structure, not the spans: one line per declaration,
 * parameter and statement, indented two spaces per level; expressions are printed on one line
 * with every unary and binary operation parenthesized, so precedence and associativity can be
 * read off directly:
 *
 *   fuse 1
 *   dim N = 1, Hl = (H // 2)
 *   graph fuse_hl
 *     param h: f32[N, 128, H, W]
 *     output out: f32[N, 128, H, W] (unnamed)
 *     assign y = (((-a) * b) + c)
 *     return concat_conv(l, h, out=128) @conv_fuse
 *
 * Floats print in the shortest form that reads back to the same double, always with a '.' or
 * an exponent, so they cannot be mistaken for integers.
 */
#include "ast.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *binop_text(BinOp op)
{
    static const char *const names[] = {"+", "-", "*", "/", "//", "%"};
    FUSE_ASSERT((size_t)op < countof(names));
    return names[op];
}

const char *cmpop_text(CmpOp op)
{
    static const char *const names[] = {"==", "!=", "<", "<=", ">", ">="};
    FUSE_ASSERT((size_t)op < countof(names));
    return names[op];
}

static void dump_expr(const Expr *e, FILE *out);

static void indent(int level, FILE *out)
{
    for (int i = 0; i < level; i++)
        fputs("  ", out);
}

/* Formats v with %g (or %f when `fixed`) and the fewest digits that read back exactly. */
static void shortest(char *buf, size_t size, bool fixed, double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        if (fixed)
            snprintf(buf, size, "%.*f", prec, v);
        else
            snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* The shortest form that reads back exactly: plain decimals for ordinary magnitudes
 * (2500.0, 0.001), an exponent otherwise (1e-05), and ".0" when it would look like an int. */
static void dump_float(double v, FILE *out)
{
    char buf[400];
    shortest(buf, sizeof buf, false, v);
    double mag = v < 0 ? -v : v;
    if (strchr(buf, 'e') && mag >= 1e-4 && mag < 1e16)
        shortest(buf, sizeof buf, true, v);
    fputs(buf, out);
    if (!strpbrk(buf, ".eEni"))
        fputs(".0", out);
}

static void dump_scope(const Scope *s, FILE *out)
{
    fputc('@', out);
    for (const ScopeSeg *seg = s->segs; seg; seg = seg->next) {
        if (seg != s->segs)
            fputc('.', out);
        for (const ScopePart *q = seg->parts; q; q = q->next) {
            if (q->text) {
                fputs(q->text, out);
            } else {
                fputc('{', out);
                dump_expr(q->splice, out);
                fputc('}', out);
            }
        }
    }
}

static void dump_call(const Expr *e, FILE *out)
{
    fprintf(out, "%s(", e->call.callee);
    for (const Arg *a = e->call.args; a; a = a->next) {
        if (a != e->call.args)
            fputs(", ", out);
        if (a->name)
            fprintf(out, "%s=", a->name);
        dump_expr(a->value, out);
    }
    fputc(')', out);
    if (e->call.scope) {
        fputc(' ', out);
        dump_scope(e->call.scope, out);
    }
}

/* Expressions linked through next, separated by ", ". */
static void dump_expr_list(const Expr *e, FILE *out)
{
    for (const Expr *i = e; i; i = i->next) {
        if (i != e)
            fputs(", ", out);
        dump_expr(i, out);
    }
}

static void dump_expr(const Expr *e, FILE *out)
{
    switch (e->kind) {
    case EX_INT:
        fprintf(out, "%" PRId64, e->ival);
        break;
    case EX_FLOAT:
        dump_float(e->fval, out);
        break;
    case EX_NAME:
        fputs(e->name, out);
        break;
    case EX_BOOL:
        fputs(e->bval ? "true" : "false", out);
        break;
    case EX_STRING:
        fprintf(out, "\"%s\"", e->name);
        break;
    case EX_NEG:
        fputs("(-", out);
        dump_expr(e->unary.operand, out);
        fputc(')', out);
        break;
    case EX_BIN:
        fputc('(', out);
        dump_expr(e->bin.lhs, out);
        fprintf(out, " %s ", binop_text(e->bin.op));
        dump_expr(e->bin.rhs, out);
        fputc(')', out);
        break;
    case EX_CALL:
        dump_call(e, out);
        break;
    case EX_LIST:
        fputc('[', out);
        dump_expr_list(e->list.items, out);
        fputc(']', out);
        break;
    }
}

static void dump_conds(const Cond *c, FILE *out)
{
    for (const Cond *i = c; i; i = i->next) {
        fputs(i == c ? " " : ", ", out);
        dump_expr(i->lhs, out);
        fprintf(out, " %s ", cmpop_text(i->op));
        dump_expr(i->rhs, out);
    }
}

static void dump_type(const TensorType *t, FILE *out)
{
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    FUSE_ASSERT((size_t)t->dtype < countof(dtypes));
    fprintf(out, "%s[", dtypes[t->dtype]);
    dump_expr_list(t->dims, out);
    fputc(']', out);
}

static void dump_stmts(const Stmt *s, int level, FILE *out);

static void dump_stmt(const Stmt *s, int level, FILE *out)
{
    indent(level, out);
    switch (s->kind) {
    case ST_ASSIGN:
        fprintf(out, "assign %s = ", s->assign.name);
        dump_expr(s->assign.value, out);
        fputc('\n', out);
        break;
    case ST_RETURN:
        fputs("return ", out);
        dump_expr_list(s->ret.values, out);
        fputc('\n', out);
        break;
    case ST_REQUIRE:
        fputs("require", out);
        dump_conds(s->require.conds, out);
        fputc('\n', out);
        break;
    case ST_FOR:
        fprintf(out, "for %s in ", s->loop.var);
        dump_expr(s->loop.lo, out);
        fputs("..", out);
        dump_expr(s->loop.hi, out);
        fputc('\n', out);
        dump_stmts(s->loop.body, level + 1, out);
        break;
    }
}

static void dump_stmts(const Stmt *s, int level, FILE *out)
{
    for (; s; s = s->next)
        dump_stmt(s, level, out);
}

static void dump_param(const Param *q, const char *what, FILE *out)
{
    static const char *const ckinds[] = {"int", "float", "bool"};
    fprintf(out, "  %s %s: ", what, q->name);
    if (q->is_tensor) {
        dump_type(&q->type, out);
    } else {
        FUSE_ASSERT((size_t)q->ckind < countof(ckinds));
        fputs(ckinds[q->ckind], out);
        if (q->default_value) {
            fputs(" = ", out);
            dump_expr(q->default_value, out);
        }
    }
}

static void dump_fn(const Decl *d, FILE *out)
{
    fprintf(out, "%s %s\n", d->kind == DECL_GRAPH ? "graph" : "block", d->fn.name);
    for (const Param *q = d->fn.params; q; q = q->next) {
        dump_param(q, "param", out);
        fputc('\n', out);
    }
    for (const Param *q = d->fn.cparams; q; q = q->next) {
        dump_param(q, "cparam", out);
        fputc('\n', out);
    }
    if (d->kind == DECL_BLOCK && d->fn.has_result) {
        fputs("  result ", out);
        dump_type(&d->fn.outputs->type, out);
        fputc('\n', out);
    } else {
        for (const Param *q = d->fn.outputs; q; q = q->next) {
            dump_param(q, "output", out);
            fputs(d->fn.unnamed_result ? " (unnamed)\n" : "\n", out);
        }
    }
    dump_stmts(d->fn.body, 1, out);
}

static void dump_decl(const Decl *d, FILE *out)
{
    switch (d->kind) {
    case DECL_DIM:
        fputs("dim ", out);
        for (const DimDef *def = d->dim.defs; def; def = def->next) {
            if (def != d->dim.defs)
                fputs(", ", out);
            fputs(def->name, out);
            if (def->value) {
                fputs(" = ", out);
                dump_expr(def->value, out);
            }
        }
        fputc('\n', out);
        break;
    case DECL_REQUIRE:
        fputs("require", out);
        dump_conds(d->require.conds, out);
        fputc('\n', out);
        break;
    case DECL_BLOCK:
    case DECL_GRAPH:
        dump_fn(d, out);
        break;
    }
}

void ast_dump(const Ast *ast, FILE *out)
{
    fprintf(out, "fuse %" PRId64 "\n", ast->version);
    for (const Decl *d = ast->decls; d; d = d->next)
        dump_decl(d, out);
}
