/*
 * sema (stage 3): AST -> checked AST. Everything that is true of every instance of a body and
 * needs no concrete dim (LANGUAGE.md §1-§3):
 *   - names: the file-global namespace of blocks and graphs (not op names, no duplicates), dims,
 *     and per body one namespace of dims, compile-time parameters, loop variables and values;
 *     undefined names with "did you mean";
 *   - calls against the op catalogue (builtins.h): arity, attributes (unknown, missing,
 *     duplicate, kind, enum words, exclusive groups), scopes; block calls against signatures;
 *   - block signatures: which dims are pattern variables, and that each can be inferred;
 *   - statements: one `return`, last; no `return` in `for`; result counts;
 *   - recursion between blocks, reported at the call that closes the cycle.
 * The AST is not changed: build re-reads it knowing it is well formed. Every independent error
 * is reported; a name that failed is entered as SYM_ERROR so that its later uses are quiet.
 */
#include "front.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtins.h"
#include "diag.h"
#include "util.h"

typedef enum SymKind {
    SYM_VALUE, /* a tensor */
    SYM_DIM,   /* a file dim, or a pattern variable of a block signature */
    SYM_INT,   /* compile-time int parameter */
    SYM_FLOAT, /* compile-time float parameter */
    SYM_BOOL,  /* compile-time bool parameter */
    SYM_LOOP,  /* `for` variable */
    SYM_ERROR, /* an undefined or ill-defined name, already reported */
} SymKind;

typedef struct Sym {
    const char *name; /* NULL: no longer visible (a finished loop's variable) */
    SymKind kind;
    Span def;
} Sym;

/* The names of one body, above the file's dims. */
typedef struct Names {
    Sym *syms; /* owns */
    uint32_t n, cap;
    bool hide_file_dims; /* a block signature: names are pattern variables, not file dims */
} Names;

/* A growable list of candidate names for "did you mean". */
typedef struct NameList {
    const char **v; /* owns the array */
    size_t n, cap;
} NameList;

/* A block call inside a block, for the recursion check. */
typedef struct Edge {
    const Decl *from, *to;
    const Expr *call;
} Edge;

typedef enum Ty { TY_ERROR, TY_TENSOR, TY_NUMBER } Ty;

typedef struct Sema {
    Ctx *cx;
    const Ast *ast;
    PtrVec dims; /* const DimDef *: the first definition of each file dim */
    PtrVec fns;  /* const Decl *: the first definition of each block and graph */
    Names file;  /* file-level names that failed, reported once */
    Edge *edges; /* owns */
    uint32_t nedges, edge_cap;
    const Decl *fn; /* the block or graph being checked (NULL at file level) */
    uint32_t loops; /* `for` bodies around the statement being checked */
} Sema;

/* ---- Diagnostics ---- */

static void error(Sema *s, Span at, const char *fmt, ...) FUSE_PRINTF(3, 4);
static void note(Sema *s, Span at, const char *fmt, ...) FUSE_PRINTF(3, 4);

static void error(Sema *s, Span at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_vreport(s->cx->diag, DIAG_ERROR, at, fmt, ap);
    va_end(ap);
}

static void note(Sema *s, Span at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_vreport(s->cx->diag, DIAG_NOTE, at, fmt, ap);
    va_end(ap);
}

static const char *fn_kind(const Decl *fn)
{
    return fn->kind == DECL_BLOCK ? "block" : "graph";
}

/* ---- Names ---- */

static void names_push(Names *nm, const char *name, SymKind kind, Span def)
{
    if (nm->n == nm->cap) {
        nm->cap = nm->cap ? nm->cap * 2 : 16;
        nm->syms = xrealloc(nm->syms, nm->cap * sizeof(Sym));
    }
    nm->syms[nm->n++] = (Sym){name, kind, def};
}

static Sym *names_find(Names *nm, const char *name)
{
    for (uint32_t i = nm->n; i-- > 0;)
        if (nm->syms[i].name && strcmp(nm->syms[i].name, name) == 0)
            return &nm->syms[i];
    return NULL;
}

static void names_free(Names *nm)
{
    free(nm->syms);
    memset(nm, 0, sizeof *nm);
}

static void list_push(NameList *l, const char *name)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, l->cap * sizeof(char *));
    }
    l->v[l->n++] = name;
}

static const DimDef *find_dim(Sema *s, const char *name)
{
    for (size_t i = 0; i < s->dims.len; i++) {
        const DimDef *d = s->dims.items[i];
        if (strcmp(d->name, name) == 0)
            return d;
    }
    return NULL;
}

static const Decl *find_fn(Sema *s, const char *name)
{
    for (size_t i = 0; i < s->fns.len; i++) {
        const Decl *d = s->fns.items[i];
        if (strcmp(d->fn.name, name) == 0)
            return d;
    }
    return NULL;
}

/* The symbol `name` refers to in nm (file dims below it), or NULL. */
static const Sym *lookup(Sema *s, Names *nm, const char *name, Sym *tmp)
{
    const Sym *y = names_find(nm, name);
    if (y)
        return y;
    if (nm->hide_file_dims)
        return NULL;
    const DimDef *d = find_dim(s, name);
    if (d) {
        *tmp = (Sym){d->name, SYM_DIM, d->name_span};
        return tmp;
    }
    return names_find(&s->file, name);
}

static bool dimlike(SymKind k)
{
    return k == SYM_DIM || k == SYM_INT || k == SYM_LOOP;
}

/* "dim", "tensor", ...: what a symbol is. */
static const char *sym_noun(SymKind k)
{
    static const char *const nouns[] = {
        [SYM_VALUE] = "tensor",         [SYM_DIM] = "dim",
        [SYM_INT] = "int parameter",    [SYM_FLOAT] = "float parameter",
        [SYM_BOOL] = "bool parameter",  [SYM_LOOP] = "loop variable",
        [SYM_ERROR] = "undefined name",
    };
    return nouns[k];
}

/* "a dim", "an int parameter", ... */
static const char *sym_what(SymKind k)
{
    static const char *const what[] = {
        [SYM_VALUE] = "a tensor",          [SYM_DIM] = "a dim",
        [SYM_INT] = "an int parameter",    [SYM_FLOAT] = "a float parameter",
        [SYM_BOOL] = "a bool parameter",   [SYM_LOOP] = "a loop variable",
        [SYM_ERROR] = "an undefined name",
    };
    return what[k];
}

/* Bits of (1 << SymKind) a suggestion may be. */
#define ANY_SYM   0x7fu
#define DIM_SYMS  ((1u << SYM_DIM) | (1u << SYM_INT) | (1u << SYM_LOOP))
#define BOOL_SYMS (1u << SYM_BOOL)

/* The visible name closest to `name` among the kinds in mask, or NULL. */
static const char *suggest(Sema *s, Names *nm, const char *name, unsigned mask)
{
    NameList l = {0};
    for (uint32_t i = 0; i < nm->n; i++)
        if (nm->syms[i].name && (mask >> nm->syms[i].kind & 1u))
            list_push(&l, nm->syms[i].name);
    if (!nm->hide_file_dims && (mask >> SYM_DIM & 1u))
        for (size_t i = 0; i < s->dims.len; i++)
            list_push(&l, ((const DimDef *)s->dims.items[i])->name);
    const char *best = closest_name(name, l.v, l.n);
    free(l.v);
    return best;
}

/* Reports an undefined name (once: it is entered as SYM_ERROR). */
static void undefined(Sema *s, Names *nm, const Expr *e, unsigned mask, const char *what)
{
    const char *near = suggest(s, nm, e->name, mask);
    if (near)
        error(s, e->span, "undefined %s '%s'; did you mean '%s'?", what, e->name, near);
    else
        error(s, e->span, "undefined %s '%s'", what, e->name);
    names_push(nm, e->name, SYM_ERROR, e->span);
}

/* What an expression is, for "takes X, not Y" messages. */
static const char *expr_what(Sema *s, Names *nm, const Expr *e, char *buf, size_t size)
{
    Sym tmp;
    switch (e->kind) {
    case EX_INT:
        return "an int";
    case EX_FLOAT:
        return "a float";
    case EX_BOOL:
        return "a bool";
    case EX_STRING:
        return "a string";
    case EX_LIST:
        return "a list";
    case EX_CALL:
        return "a call";
    case EX_NEG:
        return expr_what(s, nm, e->unary.operand, buf, size);
    case EX_BIN:
        return "an expression";
    case EX_NAME: {
        const Sym *y = lookup(s, nm, e->name, &tmp);
        if (!y || y->kind == SYM_ERROR)
            snprintf(buf, size, "the word '%s'", e->name);
        else if (y->kind == SYM_VALUE)
            snprintf(buf, size, "the tensor '%s'", e->name);
        else
            snprintf(buf, size, "the %s '%s'", sym_noun(y->kind), e->name);
        return buf;
    }
    }
    FUSE_UNREACHABLE();
}

/* ---- Dim expressions ---- */

static bool check_dim(Sema *s, Names *nm, const Expr *e);

static bool check_dim_name(Sema *s, Names *nm, const Expr *e)
{
    Sym tmp;
    const Sym *y = lookup(s, nm, e->name, &tmp);
    if (!y) {
        if (nm->hide_file_dims) {
            error(s, e->span,
                  "'%s' cannot be inferred from the arguments of block '%s': it appears only "
                  "inside dim expressions, which are checked, never solved",
                  e->name, s->fn->fn.name);
            names_push(nm, e->name, SYM_ERROR, e->span);
        } else {
            undefined(s, nm, e, DIM_SYMS, "dim");
        }
        return false;
    }
    if (y->kind == SYM_ERROR)
        return false;
    if (!dimlike(y->kind)) {
        error(s, e->span, "'%s' is %s, not a dim", e->name, sym_what(y->kind));
        return false;
    }
    return true;
}

/* An integer expression over dims, int parameters and loop variables. */
static bool check_dim(Sema *s, Names *nm, const Expr *e)
{
    char buf[128];
    switch (e->kind) {
    case EX_INT:
        return true;
    case EX_NAME:
        return check_dim_name(s, nm, e);
    case EX_NEG:
        return check_dim(s, nm, e->unary.operand);
    case EX_BIN: {
        bool ok = check_dim(s, nm, e->bin.lhs);
        ok = check_dim(s, nm, e->bin.rhs) && ok;
        if (e->bin.op == BIN_DIV) {
            error(s, e->bin.op_span,
                  "'/' is not allowed in a dim expression; use '//' for floor division");
            ok = false;
        }
        return ok;
    }
    default:
        error(s, e->span, "expected a dim expression, not %s",
              expr_what(s, nm, e, buf, sizeof buf));
        return false;
    }
}

static void check_conds(Sema *s, Names *nm, const Cond *c)
{
    for (; c; c = c->next) {
        check_dim(s, nm, c->lhs);
        check_dim(s, nm, c->rhs);
    }
}

static void check_dtype_rank(Sema *s, const TensorType *t)
{
    if (t->dtype != DT_F32)
        error(s, t->dtype_span,
              "dtype '%s' is reserved for a later version; version 1 has only f32",
              t->dtype == DT_F16 ? "f16" : "bf16");
    if (t->rank > FUSE_MAX_RANK)
        error(s, t->span, "a tensor has at most %d dims, this type has %u", FUSE_MAX_RANK, t->rank);
}

static void check_type(Sema *s, Names *nm, const TensorType *t)
{
    check_dtype_rank(s, t);
    for (const Expr *d = t->dims; d; d = d->next)
        check_dim(s, nm, d);
}

static void check_scope(Sema *s, Names *nm, const Scope *sc)
{
    for (const ScopeSeg *g = sc->segs; g; g = g->next)
        for (const ScopePart *p = g->parts; p; p = p->next)
            if (p->splice)
                check_dim(s, nm, p->splice);
}

/* ---- Attribute and compile-time argument values ---- */

/* Reports that `who` takes `kind_text`, not what e is. */
static void wrong_kind(Sema *s, Names *nm, const char *who, const char *kind_text, const Expr *e)
{
    char buf[128];
    error(s, e->span, "%s takes %s, not %s", who, kind_text, expr_what(s, nm, e, buf, sizeof buf));
}

/* A number: literals, float parameters and dim expressions, with + - * / // %. */
static bool check_number(Sema *s, Names *nm, const char *who, const char *kind_text, const Expr *e)
{
    Sym tmp;
    switch (e->kind) {
    case EX_INT:
    case EX_FLOAT:
        return true;
    case EX_NEG:
        return check_number(s, nm, who, kind_text, e->unary.operand);
    case EX_BIN: {
        bool ok = check_number(s, nm, who, kind_text, e->bin.lhs);
        return check_number(s, nm, who, kind_text, e->bin.rhs) && ok;
    }
    case EX_NAME: {
        const Sym *y = lookup(s, nm, e->name, &tmp);
        if (!y) {
            undefined(s, nm, e, DIM_SYMS | (1u << SYM_FLOAT), "name");
            return false;
        }
        if (y->kind == SYM_ERROR)
            return false;
        if (dimlike(y->kind) || y->kind == SYM_FLOAT)
            return true;
        wrong_kind(s, nm, who, kind_text, e);
        return false;
    }
    default:
        wrong_kind(s, nm, who, kind_text, e);
        return false;
    }
}

/* An int: a dim expression; other kinds of values are reported as the wrong kind. */
static bool check_int(Sema *s, Names *nm, const char *who, const char *kind_text, const Expr *e)
{
    const Expr *inner = e->kind == EX_NEG ? e->unary.operand : e;
    switch (inner->kind) {
    case EX_FLOAT:
    case EX_BOOL:
    case EX_STRING:
    case EX_LIST:
    case EX_CALL:
        wrong_kind(s, nm, who, kind_text, e);
        return false;
    default:
        return check_dim(s, nm, e);
    }
}

static bool check_bool(Sema *s, Names *nm, const char *who, const Expr *e)
{
    Sym tmp;
    if (e->kind == EX_BOOL)
        return true;
    if (e->kind == EX_NAME) {
        const Sym *y = lookup(s, nm, e->name, &tmp);
        if (y && (y->kind == SYM_BOOL || y->kind == SYM_ERROR))
            return y->kind == SYM_BOOL;
        if (!y) {
            NameList l = {0};
            list_push(&l, "true");
            list_push(&l, "false");
            for (uint32_t i = 0; i < nm->n; i++)
                if (nm->syms[i].name && nm->syms[i].kind == SYM_BOOL)
                    list_push(&l, nm->syms[i].name);
            const char *near = closest_name(e->name, l.v, l.n);
            free(l.v);
            if (near) {
                error(s, e->span, "%s takes true or false, not '%s'; did you mean '%s'?", who,
                      e->name, near);
                names_push(nm, e->name, SYM_ERROR, e->span);
                return false;
            }
        }
    }
    wrong_kind(s, nm, who, "true or false", e);
    return false;
}

static bool check_enum(Sema *s, Names *nm, const char *who, const SrcOp *op, const AttrSpec *a,
                       const Expr *e)
{
    char words[128];
    attr_words_text(a, words, sizeof words);
    if (e->kind != EX_NAME && e->kind != EX_STRING) {
        wrong_kind(s, nm, who, words, e);
        return false;
    }
    for (size_t i = 0; a->words[i]; i++)
        if (strcmp(a->words[i], e->name) == 0)
            return true;
    size_t n = 0;
    while (a->words[n])
        n++;
    const char *near = closest_name(e->name, a->words, n);
    if (near)
        error(s, e->span, "unknown %s '%s' for %s; did you mean '%s'?", a->name, e->name, op->name,
              near);
    else
        error(s, e->span, "unknown %s '%s' for %s; expected %s", a->name, e->name, op->name, words);
    return false;
}

/* One value or a list of `want` (0: 1..FUSE_MAX_RANK) values, each an int or a number. */
static bool check_list(Sema *s, Names *nm, const char *who, const AttrSpec *a, const Expr *e)
{
    const char *kt = attr_kind_text(a->kind);
    bool floats = a->kind == AK_FLOAT2;
    if (e->kind != EX_LIST) {
        if (a->len > 1) {
            error(s, e->span, "%s takes a list of %u ints, not one value", who, a->len);
            return false;
        }
        return floats ? check_number(s, nm, who, kt, e) : check_int(s, nm, who, kt, e);
    }
    uint32_t want = a->kind == AK_INT2 || a->kind == AK_FLOAT2 ? 2 : a->len;
    if (want && e->list.n != want) {
        if (want == 2 && !a->len)
            error(s, e->span, "%s takes one value or a pair [h, w], not a list of %u", who,
                  e->list.n);
        else
            error(s, e->span, "%s takes a list of %u ints, not %u", who, want, e->list.n);
        return false;
    }
    if (e->list.n == 0 && a->kind == AK_AXES) {
        error(s, e->span, "%s needs at least one axis", who);
        return false;
    }
    if (e->list.n > FUSE_MAX_RANK) {
        error(s, e->span, "%s takes at most %d values, not %u", who, FUSE_MAX_RANK, e->list.n);
        return false;
    }
    bool ok = true;
    for (const Expr *it = e->list.items; it; it = it->next) {
        if (it->kind == EX_LIST) {
            wrong_kind(s, nm, who, kt, it);
            ok = false;
            continue;
        }
        ok = (floats ? check_number(s, nm, who, kt, it) : check_int(s, nm, who, kt, it)) && ok;
    }
    return ok;
}

static bool check_attr_value(Sema *s, Names *nm, const SrcOp *op, const AttrSpec *a, const Expr *e)
{
    char who[96];
    snprintf(who, sizeof who, "attribute '%s' of %s", a->name, op->name);
    switch (a->kind) {
    case AK_INT:
        return check_int(s, nm, who, attr_kind_text(a->kind), e);
    case AK_FLOAT:
        return check_number(s, nm, who, attr_kind_text(a->kind), e);
    case AK_BOOL:
        return check_bool(s, nm, who, e);
    case AK_ENUM:
        return check_enum(s, nm, who, op, a, e);
    case AK_INT2:
    case AK_FLOAT2:
    case AK_AXES:
    case AK_INTS:
        return check_list(s, nm, who, a, e);
    }
    FUSE_UNREACHABLE();
}

/* A compile-time argument or default of kind k. */
static bool check_const_value(Sema *s, Names *nm, const char *who, CParamKind k, const Expr *e)
{
    switch (k) {
    case CP_INT:
        return check_int(s, nm, who, "an int", e);
    case CP_FLOAT:
        return check_number(s, nm, who, "a number", e);
    case CP_BOOL:
        return check_bool(s, nm, who, e);
    }
    FUSE_UNREACHABLE();
}

/* ---- Tensor expressions and calls ---- */

static Ty check_value(Sema *s, Names *nm, const Expr *e);

/* "a number", or what a name used as one is. */
static const char *number_what(Sema *s, Names *nm, const Expr *e, char *buf, size_t size)
{
    if (e->kind == EX_NAME)
        return expr_what(s, nm, e, buf, size);
    return "a number";
}

/* The positional arguments of a call; reports those that are not tensors. Returns their count. */
static uint32_t check_positional(Sema *s, Names *nm, const Expr *call, const char *callee)
{
    char buf[128];
    uint32_t n = 0;
    for (const Arg *a = call->call.args; a; a = a->next) {
        if (a->name)
            continue;
        n++;
        if (check_value(s, nm, a->value) == TY_NUMBER)
            error(s, a->value->span, "argument %u of %s must be a tensor, not %s", n, callee,
                  number_what(s, nm, a->value, buf, sizeof buf));
    }
    return n;
}

/* The positional argument number k (1-based), or NULL. */
static const Expr *positional(const Expr *call, uint32_t k)
{
    uint32_t n = 0;
    for (const Arg *a = call->call.args; a; a = a->next)
        if (!a->name && ++n == k)
            return a->value;
    return NULL;
}

static void check_arity(Sema *s, const Expr *call, const char *what, uint32_t min, uint32_t max,
                        uint32_t n)
{
    if (n >= min && n <= max)
        return;
    Span at = n > max ? positional(call, max + 1)->span : call->call.callee_span;
    if (max == 0)
        error(s, at, "%s takes no tensor arguments", what);
    else if (max == ARGS_VARIADIC)
        error(s, at, "%s takes at least %u tensor argument%s", what, min, min == 1 ? "" : "s");
    else
        error(s, at, "%s takes %u tensor argument%s, not %u", what, min, min == 1 ? "" : "s", n);
}

static void unknown_attr(Sema *s, const SrcOp *op, const Arg *a)
{
    if (op->nattrs == 0) {
        error(s, a->name_span, "%s takes no attributes", op->name);
        return;
    }
    const char *names[BUILTIN_MAX_ATTRS];
    char list[256];
    size_t at = 0;
    list[0] = '\0';
    for (uint32_t i = 0; i < op->nattrs && i < BUILTIN_MAX_ATTRS; i++) {
        names[i] = op->attrs[i].name;
        at += (size_t)snprintf(list + at, at < sizeof list ? sizeof list - at : 0, "%s%s",
                               i ? ", " : "", names[i]);
    }
    const char *near = closest_name(a->name, names, op->nattrs);
    if (near)
        error(s, a->name_span, "%s has no attribute '%s'; did you mean '%s'?", op->name, a->name,
              near);
    else
        error(s, a->name_span, "%s has no attribute '%s'; its attributes are %s", op->name, a->name,
              list);
}

/* The word an enum attribute has at this call (its default when not given); NULL if invalid. */
static const char *enum_word(const SrcOp *op, const AttrSpec *a, const Arg *const *given)
{
    const Arg *arg = given[a - op->attrs];
    if (!arg)
        return a->words[0];
    const Expr *e = arg->value;
    if (e->kind == EX_NAME || e->kind == EX_STRING)
        for (size_t i = 0; a->words[i]; i++)
            if (strcmp(a->words[i], e->name) == 0)
                return a->words[i];
    return NULL; /* reported as a bad word */
}

/* Required attributes, exclusive groups and attributes allowed only with an enum word. */
static void check_attr_rules(Sema *s, const SrcOp *op, const Expr *call, const Arg *const *given)
{
    for (uint32_t i = 0; i < op->nattrs; i++) {
        const AttrSpec *a = &op->attrs[i];
        if (a->required && !given[i])
            error(s, call->call.callee_span, "%s needs the attribute '%s'", op->name, a->name);
        if (a->only_attr && given[i]) {
            const char *w = enum_word(op, builtin_attr(op, a->only_attr), given);
            if (w && strcmp(w, a->only_word) != 0)
                error(s, given[i]->name_span, "'%s' is only allowed with %s=%s, not %s=%s", a->name,
                      a->only_attr, a->only_word, a->only_attr, w);
        }
        if (!a->one_of || (i > 0 && op->attrs[i - 1].one_of == a->one_of))
            continue;
        /* The first attribute of its group: count the group. */
        const Arg *first = NULL, *second = NULL;
        char names[128] = "";
        for (uint32_t j = i; j < op->nattrs && op->attrs[j].one_of == a->one_of; j++) {
            size_t len = strlen(names);
            snprintf(names + len, sizeof names - len, "%s%s", j > i ? " or " : "",
                     op->attrs[j].name);
            if (given[j] && !first)
                first = given[j];
            else if (given[j] && !second)
                second = given[j];
        }
        if (!first)
            error(s, call->call.callee_span, "%s needs %s", op->name, names);
        else if (second)
            error(s, second->name_span, "%s takes %s, not both", op->name, names);
    }
}

static Ty check_op_call(Sema *s, Names *nm, const Expr *call, const SrcOp *op)
{
    uint32_t n = check_positional(s, nm, call, op->name);
    check_arity(s, call, op->name, op->min_args, op->max_args, n);
    const Arg *given[BUILTIN_MAX_ATTRS] = {0};
    FUSE_ASSERT(op->nattrs <= BUILTIN_MAX_ATTRS);
    for (const Arg *a = call->call.args; a; a = a->next) {
        if (!a->name)
            continue;
        const AttrSpec *spec = builtin_attr(op, a->name);
        if (!spec) {
            unknown_attr(s, op, a);
            continue;
        }
        size_t i = (size_t)(spec - op->attrs);
        if (given[i]) {
            error(s, a->name_span, "attribute '%s' is given twice", a->name);
            note(s, given[i]->name_span, "'%s' was first given here", a->name);
            continue;
        }
        given[i] = a;
        check_attr_value(s, nm, op, spec, a->value);
    }
    check_attr_rules(s, op, call, given);
    const Scope *sc = call->call.scope;
    if (builtin_has_weights(op) && !sc)
        error(s, call->call.callee_span,
              "%s has weights, so it needs a scope: write '@name' after its ')'", op->name);
    if (!builtin_has_weights(op) && sc)
        error(s, sc->span, "%s has no weights, so it cannot take a scope", op->name);
    if (sc)
        check_scope(s, nm, sc);
    return TY_TENSOR;
}

static const Param *find_param(const Param *p, const char *name)
{
    for (; p; p = p->next)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

static uint32_t count_params(const Param *p)
{
    uint32_t n = 0;
    for (; p; p = p->next)
        n++;
    return n;
}

static void unknown_const_arg(Sema *s, const Decl *fn, const Arg *a)
{
    if (!fn->fn.cparams) {
        error(s, a->name_span, "block '%s' takes no compile-time parameters", fn->fn.name);
        return;
    }
    NameList l = {0};
    for (const Param *p = fn->fn.cparams; p; p = p->next)
        list_push(&l, p->name);
    const char *near = closest_name(a->name, l.v, l.n);
    free(l.v);
    if (near)
        error(s, a->name_span, "block '%s' has no compile-time parameter '%s'; did you mean '%s'?",
              fn->fn.name, a->name, near);
    else
        error(s, a->name_span, "block '%s' has no compile-time parameter '%s'", fn->fn.name,
              a->name);
}

static void add_edge(Sema *s, const Decl *to, const Expr *call)
{
    if (!s->fn || s->fn->kind != DECL_BLOCK)
        return;
    if (s->nedges == s->edge_cap) {
        s->edge_cap = s->edge_cap ? s->edge_cap * 2 : 16;
        s->edges = xrealloc(s->edges, s->edge_cap * sizeof(Edge));
    }
    s->edges[s->nedges++] = (Edge){s->fn, to, call};
}

static void check_const_args(Sema *s, Names *nm, const Expr *call, const Decl *fn)
{
    PtrVec seen = {0}; /* const Arg * given, by cparam */
    for (const Arg *a = call->call.args; a; a = a->next) {
        if (!a->name)
            continue;
        const Param *cp = find_param(fn->fn.cparams, a->name);
        if (!cp) {
            unknown_const_arg(s, fn, a);
            continue;
        }
        const Arg *first = NULL;
        for (size_t i = 0; i < seen.len && !first; i++)
            if (strcmp(((const Arg *)seen.items[i])->name, a->name) == 0)
                first = seen.items[i];
        if (first) {
            error(s, a->name_span, "compile-time argument '%s' is given twice", a->name);
            note(s, first->name_span, "'%s' was first given here", a->name);
            continue;
        }
        ptrvec_push(&seen, (void *)(uintptr_t)a);
        char who[128];
        snprintf(who, sizeof who, "compile-time parameter '%s' of block '%s'", cp->name,
                 fn->fn.name);
        check_const_value(s, nm, who, cp->ckind, a->value);
    }
    for (const Param *cp = fn->fn.cparams; cp; cp = cp->next) {
        bool given = false;
        for (size_t i = 0; i < seen.len; i++)
            given |= strcmp(((const Arg *)seen.items[i])->name, cp->name) == 0;
        if (!given && !cp->default_value) {
            error(s, call->call.callee_span, "missing compile-time argument '%s' of block '%s'",
                  cp->name, fn->fn.name);
            note(s, cp->span, "'%s' is declared here without a default", cp->name);
        }
    }
    ptrvec_free(&seen);
}

static Ty check_block_call(Sema *s, Names *nm, const Expr *call, const Decl *fn)
{
    char what[96];
    snprintf(what, sizeof what, "block '%s'", fn->fn.name);
    uint32_t n = check_positional(s, nm, call, what);
    uint32_t want = count_params(fn->fn.params);
    if (n != want) {
        check_arity(s, call, what, want, want, n);
        note(s, fn->fn.name_span, "'%s' is defined here", fn->fn.name);
    }
    check_const_args(s, nm, call, fn);
    if (call->call.scope)
        check_scope(s, nm, call->call.scope);
    add_edge(s, fn, call);
    return TY_TENSOR;
}

static Ty check_call(Sema *s, Names *nm, const Expr *call)
{
    const char *name = call->call.callee;
    const SrcOp *op = builtin_find(name);
    if (op)
        return check_op_call(s, nm, call, op);
    const Decl *fn = find_fn(s, name);
    if (fn && fn->kind == DECL_BLOCK)
        return check_block_call(s, nm, call, fn);
    if (fn) {
        error(s, call->call.callee_span, "'%s' is a graph; only ops and blocks can be called",
              name);
        note(s, fn->fn.name_span, "'%s' is defined here", name);
    } else {
        NameList l = {0};
        const char *opnames[64];
        size_t nops = builtin_names(opnames, countof(opnames));
        for (size_t i = 0; i < nops && i < countof(opnames); i++)
            list_push(&l, opnames[i]);
        for (size_t i = 0; i < s->fns.len; i++)
            if (((const Decl *)s->fns.items[i])->kind == DECL_BLOCK)
                list_push(&l, ((const Decl *)s->fns.items[i])->fn.name);
        const char *near = closest_name(name, l.v, l.n);
        free(l.v);
        if (near)
            error(s, call->call.callee_span, "unknown op or block '%s'; did you mean '%s'?", name,
                  near);
        else
            error(s, call->call.callee_span, "unknown op or block '%s'", name);
    }
    check_positional(s, nm, call, name);
    return TY_ERROR;
}

static Ty check_value(Sema *s, Names *nm, const Expr *e)
{
    char buf[128];
    Sym tmp;
    switch (e->kind) {
    case EX_INT:
    case EX_FLOAT:
        return TY_NUMBER;
    case EX_NAME: {
        const Sym *y = lookup(s, nm, e->name, &tmp);
        if (!y) {
            undefined(s, nm, e, ANY_SYM, "name");
            return TY_ERROR;
        }
        if (y->kind == SYM_ERROR)
            return TY_ERROR;
        if (y->kind == SYM_BOOL) {
            error(s, e->span, "'%s' is a bool parameter; it cannot be used in arithmetic", e->name);
            return TY_ERROR;
        }
        return y->kind == SYM_VALUE ? TY_TENSOR : TY_NUMBER;
    }
    case EX_NEG:
        return check_value(s, nm, e->unary.operand);
    case EX_BIN: {
        Ty l = check_value(s, nm, e->bin.lhs);
        Ty r = check_value(s, nm, e->bin.rhs);
        if ((e->bin.op == BIN_FLOORDIV || e->bin.op == BIN_MOD) &&
            (l == TY_TENSOR || r == TY_TENSOR)) {
            error(s, e->bin.op_span, "'%s' applies to dims, not tensors",
                  e->bin.op == BIN_MOD ? "%" : "//");
            return TY_ERROR;
        }
        if (l == TY_ERROR || r == TY_ERROR)
            return TY_ERROR;
        return l == TY_TENSOR || r == TY_TENSOR ? TY_TENSOR : TY_NUMBER;
    }
    case EX_CALL:
        return check_call(s, nm, e);
    default:
        error(s, e->span, "%s cannot be used in a tensor expression",
              expr_what(s, nm, e, buf, sizeof buf));
        return TY_ERROR;
    }
}

/* ---- Statements ---- */

static void bind_value(Sema *s, Names *nm, const char *name, Span at)
{
    Sym tmp;
    Sym *local = names_find(nm, name);
    if (local && local->kind == SYM_VALUE)
        return; /* rebinding: a new SSA value under the same name */
    if (local && local->kind == SYM_ERROR) {
        local->kind = SYM_VALUE;
        local->def = at;
        return;
    }
    const Sym *y = local ? local : lookup(s, nm, name, &tmp);
    if (y && y->kind != SYM_ERROR) {
        error(s, at, "cannot assign to '%s': it is %s", name, sym_what(y->kind));
        note(s, y->def, "'%s' is defined here", name);
        names_push(nm, name, SYM_ERROR, at); /* its later uses are quiet */
        return;
    }
    names_push(nm, name, SYM_VALUE, at);
}

static void check_return(Sema *s, Names *nm, const Stmt *st)
{
    char buf[128];
    for (const Expr *v = st->ret.values; v; v = v->next)
        if (check_value(s, nm, v) == TY_NUMBER)
            error(s, v->span, "%s '%s' must return tensors, not %s", fn_kind(s->fn), s->fn->fn.name,
                  number_what(s, nm, v, buf, sizeof buf));
    if (s->fn->kind == DECL_BLOCK) {
        if (st->ret.n > 1)
            error(s, st->ret.values->next->span, "a block returns one tensor, not %u", st->ret.n);
        return;
    }
    uint32_t want = count_params(s->fn->fn.outputs);
    if (st->ret.n != want)
        error(s, st->span, "graph '%s' declares %u output%s but returns %u value%s", s->fn->fn.name,
              want, want == 1 ? "" : "s", st->ret.n, st->ret.n == 1 ? "" : "s");
}

static void check_stmts(Sema *s, Names *nm, const Stmt *st);

static void check_for(Sema *s, Names *nm, const Stmt *st)
{
    Sym tmp;
    check_dim(s, nm, st->loop.lo);
    check_dim(s, nm, st->loop.hi);
    const Sym *y = lookup(s, nm, st->loop.var, &tmp);
    if (y && y->kind != SYM_ERROR) {
        error(s, st->loop.var_span, "loop variable '%s' reuses the name of %s", st->loop.var,
              sym_what(y->kind));
        note(s, y->def, "'%s' is defined here", st->loop.var);
    }
    uint32_t at = nm->n;
    names_push(nm, st->loop.var, SYM_LOOP, st->loop.var_span);
    s->loops++;
    check_stmts(s, nm, st->loop.body);
    s->loops--;
    nm->syms[at].name = NULL; /* the loop variable ends with the loop; values bound in it stay */
}

static void check_stmts(Sema *s, Names *nm, const Stmt *st)
{
    for (; st; st = st->next) {
        switch (st->kind) {
        case ST_ASSIGN:
            check_value(s, nm, st->assign.value);
            bind_value(s, nm, st->assign.name, st->assign.name_span);
            break;
        case ST_RETURN:
            if (s->loops)
                error(s, st->span, "'return' cannot be inside a 'for' loop");
            else if (st->next)
                error(s, st->span, "'return' must be the last statement of %s '%s'", fn_kind(s->fn),
                      s->fn->fn.name);
            check_return(s, nm, st);
            break;
        case ST_REQUIRE:
            check_conds(s, nm, st->require.conds);
            break;
        case ST_FOR:
            check_for(s, nm, st);
            break;
        }
    }
}

static void check_fn_body(Sema *s, Names *nm, const Decl *fn)
{
    check_stmts(s, nm, fn->fn.body);
    const Stmt *last = fn->fn.body;
    while (last && last->next)
        last = last->next;
    if (!last || last->kind != ST_RETURN) {
        Span end = {fn->fn.body_span.hi - 1, fn->fn.body_span.hi};
        error(s, end, "%s '%s' has no 'return' at the end of its body", fn_kind(fn), fn->fn.name);
    }
}

/* ---- Declarations ---- */

/* Reports a second definition of a name in a signature; true if it was one. */
static bool duplicate_in(Sema *s, const Param *list, const Param *p, const char *what)
{
    for (const Param *q = list; q && q != p; q = q->next)
        if (strcmp(q->name, p->name) == 0) {
            error(s, p->name_span, "%s '%s' is declared twice", what, p->name);
            note(s, q->name_span, "'%s' was first declared here", p->name);
            return true;
        }
    return false;
}

/* Pattern variables: the plain names among a block's tensor parameter dims that are not
 * compile-time parameters. */
static void collect_pattern_vars(Sema *s, Names *nm, const Decl *fn)
{
    for (const Param *p = fn->fn.params; p; p = p->next)
        for (const Expr *d = p->type.dims; d; d = d->next) {
            if (d->kind != EX_NAME || names_find(nm, d->name))
                continue;
            const Param *cp = find_param(fn->fn.cparams, d->name);
            if (cp && cp->ckind != CP_INT) {
                error(s, d->span, "'%s' is a %s parameter, not a dim", d->name,
                      cp->ckind == CP_FLOAT ? "float" : "bool");
                continue;
            }
            if (cp)
                continue;
            const Param *tp = find_param(fn->fn.params, d->name);
            if (tp) {
                error(s, d->span, "'%s' names both a tensor parameter and a dim of block '%s'",
                      d->name, fn->fn.name);
                note(s, tp->name_span, "the parameter '%s' is declared here", d->name);
                names_push(nm, d->name, SYM_ERROR, d->span);
                continue;
            }
            names_push(nm, d->name, SYM_DIM, d->span);
        }
}

static void check_cparams(Sema *s, Names *nm, const Decl *fn)
{
    static const SymKind kinds[] = {SYM_INT, SYM_FLOAT, SYM_BOOL};
    for (const Param *cp = fn->fn.cparams; cp; cp = cp->next) {
        bool dup = duplicate_in(s, fn->fn.cparams, cp, "compile-time parameter");
        if (!dup && find_param(fn->fn.params, cp->name)) {
            error(s, cp->name_span,
                  "'%s' names both a tensor parameter and a compile-time "
                  "parameter",
                  cp->name);
            dup = true;
        }
        if (cp->default_value) {
            char who[128];
            snprintf(who, sizeof who, "compile-time parameter '%s'", cp->name);
            check_const_value(s, nm, who, cp->ckind, cp->default_value);
        }
        if (!dup)
            names_push(nm, cp->name, kinds[cp->ckind], cp->name_span);
    }
}

static void check_block(Sema *s, const Decl *fn)
{
    Names nm = {0};
    s->fn = fn;
    for (const Param *p = fn->fn.params; p; p = p->next) {
        duplicate_in(s, fn->fn.params, p, "parameter");
        check_dtype_rank(s, &p->type);
    }
    collect_pattern_vars(s, &nm, fn);
    /* Defaults and result see the file's dims below the signature's names. */
    check_cparams(s, &nm, fn);
    /* Dims written as expressions: their names must be bound by the signature. */
    nm.hide_file_dims = true;
    for (const Param *p = fn->fn.params; p; p = p->next)
        for (const Expr *d = p->type.dims; d; d = d->next)
            if (d->kind != EX_NAME)
                check_dim(s, &nm, d);
    nm.hide_file_dims = false;
    for (const Param *p = fn->fn.params; p; p = p->next)
        if (!names_find(&nm, p->name))
            names_push(&nm, p->name, SYM_VALUE, p->name_span);
    if (fn->fn.has_result && fn->fn.outputs)
        check_type(s, &nm, &fn->fn.outputs->type);
    check_fn_body(s, &nm, fn);
    names_free(&nm);
    s->fn = NULL;
}

static void check_graph(Sema *s, const Decl *fn)
{
    Names nm = {0};
    s->fn = fn;
    for (const Param *p = fn->fn.params; p; p = p->next) {
        const DimDef *d = find_dim(s, p->name);
        if (d) {
            error(s, p->name_span, "parameter '%s' has the name of a dim", p->name);
            note(s, d->name_span, "the dim '%s' is defined here", p->name);
        } else {
            duplicate_in(s, fn->fn.params, p, "parameter");
        }
        check_type(s, &nm, &p->type);
    }
    for (const Param *p = fn->fn.params; p; p = p->next)
        if (!names_find(&nm, p->name))
            names_push(&nm, p->name, find_dim(s, p->name) ? SYM_ERROR : SYM_VALUE, p->name_span);
    for (const Param *o = fn->fn.outputs; o; o = o->next) {
        if (!fn->fn.unnamed_result)
            duplicate_in(s, fn->fn.outputs, o, "output");
        check_type(s, &nm, &o->type);
    }
    check_fn_body(s, &nm, fn);
    names_free(&nm);
    s->fn = NULL;
}

/* A block or graph: reports a duplicate name or an op's name. True if it is the definition
 * the rest of the compiler will use. */
static bool check_fn_name(Sema *s, const Decl *d)
{
    if (builtin_find(d->fn.name)) {
        error(s, d->fn.name_span,
              "%s '%s' has the name of an op; blocks and graphs may not "
              "reuse op names",
              fn_kind(d), d->fn.name);
        return false;
    }
    const Decl *first = find_fn(s, d->fn.name);
    if (first != d) {
        error(s, d->fn.name_span, "'%s' is defined twice", d->fn.name);
        note(s, first->fn.name_span, "'%s' was first defined here", d->fn.name);
        return false;
    }
    return true;
}

static void check_dim_decl(Sema *s, const Decl *d)
{
    for (const DimDef *dd = d->dim.defs; dd; dd = dd->next) {
        const DimDef *first = find_dim(s, dd->name);
        if (first != dd) {
            error(s, dd->name_span, "dim '%s' is defined twice", dd->name);
            note(s, first->name_span, "'%s' was first defined here", dd->name);
        }
        if (dd->value)
            check_dim(s, &s->file, dd->value);
    }
}

/* First definitions of every dim and every block or graph, so that order does not matter. */
static void collect_names(Sema *s)
{
    for (const Decl *d = s->ast->decls; d; d = d->next) {
        if (d->kind == DECL_DIM) {
            for (const DimDef *dd = d->dim.defs; dd; dd = dd->next)
                if (!find_dim(s, dd->name))
                    ptrvec_push(&s->dims, (void *)(uintptr_t)dd);
        } else if ((d->kind == DECL_BLOCK || d->kind == DECL_GRAPH) && !find_fn(s, d->fn.name) &&
                   !builtin_find(d->fn.name)) {
            ptrvec_push(&s->fns, (void *)(uintptr_t)d);
        }
    }
}

/* ---- Recursion ---- */

static size_t fn_index(Sema *s, const Decl *fn)
{
    for (size_t i = 0; i < s->fns.len; i++)
        if (s->fns.items[i] == fn)
            return i;
    FUSE_UNREACHABLE();
}

typedef struct Walk {
    uint8_t *color;     /* 0 unvisited, 1 on the stack, 2 done */
    const Decl **stack; /* the call path */
    size_t depth;
} Walk;

static void report_cycle(Sema *s, const Walk *w, const Edge *e)
{
    StrBuf path = {0};
    size_t from = 0;
    while (w->stack[from] != e->to)
        from++;
    for (size_t i = from; i < w->depth; i++)
        sb_printf(&path, "%s -> ", w->stack[i]->fn.name);
    sb_append(&path, e->to->fn.name);
    if (e->from == e->to)
        error(s, e->call->call.callee_span,
              "block '%s' calls itself (%s); blocks are inlined, "
              "so they cannot recurse",
              e->to->fn.name, sb_str(&path));
    else
        error(s, e->call->call.callee_span,
              "recursive block call: %s; blocks are inlined, so "
              "they cannot recurse",
              sb_str(&path));
    sb_free(&path);
}

static void walk(Sema *s, Walk *w, const Decl *fn)
{
    w->color[fn_index(s, fn)] = 1;
    w->stack[w->depth++] = fn;
    for (uint32_t i = 0; i < s->nedges; i++) {
        const Edge *e = &s->edges[i];
        if (e->from != fn)
            continue;
        uint8_t c = w->color[fn_index(s, e->to)];
        if (c == 1)
            report_cycle(s, w, e);
        else if (c == 0)
            walk(s, w, e->to);
    }
    w->depth--;
    w->color[fn_index(s, fn)] = 2;
}

static void check_recursion(Sema *s)
{
    Walk w = {xcalloc(s->fns.len, 1), xcalloc(s->fns.len, sizeof(Decl *)), 0};
    for (size_t i = 0; i < s->fns.len; i++)
        if (!w.color[i] && ((const Decl *)s->fns.items[i])->kind == DECL_BLOCK)
            walk(s, &w, s->fns.items[i]);
    free(w.color);
    free(w.stack);
}

bool sema_check(Ctx *cx, const Ast *ast)
{
    Sema s = {.cx = cx, .ast = ast};
    unsigned before = cx->diag->nerrors;
    collect_names(&s);
    for (const Decl *d = ast->decls; d; d = d->next) {
        switch (d->kind) {
        case DECL_DIM:
            check_dim_decl(&s, d);
            break;
        case DECL_REQUIRE:
            check_conds(&s, &s.file, d->require.conds);
            break;
        case DECL_BLOCK:
            if (check_fn_name(&s, d))
                check_block(&s, d);
            break;
        case DECL_GRAPH:
            if (check_fn_name(&s, d))
                check_graph(&s, d);
            break;
        }
    }
    check_recursion(&s);
    ptrvec_free(&s.dims);
    ptrvec_free(&s.fns);
    names_free(&s.file);
    free(s.edges);
    return cx->diag->nerrors == before;
}
