/*
 * dims (part of stage 4, build): dim binding, expression evaluation and `require`.
 *
 *   - File dims (LANGUAGE.md §2): a --dim override beats the `dim` default. Defaults are
 *     evaluated after all overrides, each once, on demand (dependency order); a cycle, a dim
 *     below 1 and an arithmetic error are reported at the definition. A dim without a value
 *     (`dim X` and no --dim X) is reported at its first use, not at its definition, so that a
 *     file may declare dims only some of its graphs need.
 *   - Expressions: numbers follow Python: ints are exact int64 (overflow is an error), `//` and
 *     `%` floor, `/` is true division in double. A number meets a tensor as an f32 scalar, rounded
 *     once. Tensor + - * / broadcast (NumPy rules); unary minus on a tensor is OP_NEG.
 *   - `require`: each failed condition is reported with the values of its non-literal sides.
 */
#include "build.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"

static Val err_val(void)
{
    return (Val){.kind = V_ERROR};
}

static Val int_val(int64_t i)
{
    return (Val){.kind = V_INT, .i = i};
}

static Val float_val(double f)
{
    return (Val){.kind = V_FLOAT, .f = f};
}

static Val tensor_val(Node *n)
{
    return n ? (Val){.kind = V_TENSOR, .node = n} : err_val();
}

/* ---- File dims ---- */

static bool eval_file_dim(Builder *b, uint32_t idx, Span use, int64_t *out);

static int64_t find_file_dim(const Builder *b, const char *name)
{
    for (uint32_t i = 0; i < b->ndims; i++)
        if (strcmp(b->dims[i].def->name, name) == 0)
            return i;
    return -1;
}

/* A use of a dim without a value: quiet while evaluating defaults (the dim that needs it
 * becomes unbound too), else reported once, at this first use. */
static bool unbound_use(Builder *b, uint32_t idx, Span use)
{
    FileDim *d = &b->dims[idx];
    if (b->eager) {
        b->pending_unbound = d->root;
        return false;
    }
    if (d->reported)
        return false;
    d->reported = true;
    const char *name = d->def->name;
    int64_t r = find_file_dim(b, d->root);
    FUSE_ASSERT(r >= 0);
    if (strcmp(name, d->root) == 0)
        build_error(b, NULL, use, "dim '%s' has no value; give it with --dim %s=N", name, name);
    else
        build_error(b, NULL, use,
                    "dim '%s' has no value: it depends on '%s', which has no default; give it "
                    "with --dim %s=N",
                    name, d->root, d->root);
    build_note(b, b->dims[r].def->name_span, "'%s' is declared here without a default", d->root);
    return false;
}

static Span dimdef_span(const DimDef *d)
{
    return d->value ? span_join(d->name_span, d->value->span) : d->name_span;
}

/* Meeting a dim that is being evaluated: reports the cycle and marks its dims as failed. */
static void report_cycle(Builder *b, uint32_t idx)
{
    uint32_t from = 0;
    while (b->dim_stack[from] != idx)
        from++;
    const DimDef *def = b->dims[idx].def;
    if (from == b->dim_depth - 1) {
        build_error(b, NULL, dimdef_span(def), "dim '%s' is defined in terms of itself", def->name);
    } else {
        StrBuf path = {0};
        for (uint32_t i = from; i < b->dim_depth; i++)
            sb_printf(&path, "%s -> ", b->dims[b->dim_stack[i]].def->name);
        sb_append(&path, def->name);
        build_error(b, NULL, dimdef_span(def), "dims defined in a cycle: %s", sb_str(&path));
        sb_free(&path);
    }
    for (uint32_t i = from; i < b->dim_depth; i++)
        b->dims[b->dim_stack[i]].state = DS_ERROR;
}

static bool is_literal(const Expr *e)
{
    return e->kind == EX_INT || (e->kind == EX_NEG && e->unary.operand->kind == EX_INT);
}

/* Evaluates the default of file dim idx (state DS_TODO, with a default). */
static bool eval_default(Builder *b, uint32_t idx, Span use, int64_t *out)
{
    FileDim *d = &b->dims[idx];
    d->state = DS_BUSY;
    b->dim_stack[b->dim_depth++] = idx;
    b->eager++;
    int64_t v = 0;
    bool ok = eval_int(b, NULL, d->def->value, &v);
    b->eager--;
    b->dim_depth--;
    if (d->state != DS_BUSY) /* failed as part of a cycle */
        return false;
    if (!ok) {
        const char *root = b->pending_unbound;
        b->pending_unbound = NULL;
        if (!root) {
            d->state = DS_ERROR;
            return false;
        }
        d->state = DS_UNBOUND;
        d->root = root;
        return unbound_use(b, idx, use);
    }
    if (v < 1) {
        if (is_literal(d->def->value))
            build_error(b, NULL, dimdef_span(d->def), "dim '%s' must be at least 1, not %lld",
                        d->def->name, (long long)v);
        else
            build_error(b, NULL, dimdef_span(d->def), "dim '%s' must be at least 1, but %s is %lld",
                        d->def->name, build_span_text(b, d->def->value->span), (long long)v);
        d->state = DS_ERROR;
        return false;
    }
    d->state = DS_OK;
    d->value = v;
    *out = v;
    return true;
}

static bool eval_file_dim(Builder *b, uint32_t idx, Span use, int64_t *out)
{
    FileDim *d = &b->dims[idx];
    switch (d->state) {
    case DS_OK:
        *out = d->value;
        return true;
    case DS_ERROR:
        return false;
    case DS_BUSY:
        report_cycle(b, idx);
        return false;
    case DS_UNBOUND:
        return unbound_use(b, idx, use);
    case DS_TODO:
        break;
    }
    if (!d->def->value) {
        d->state = DS_UNBOUND;
        d->root = d->def->name;
        return unbound_use(b, idx, use);
    }
    return eval_default(b, idx, use, out);
}

/* Applies one --dim NAME=VALUE. */
static void apply_override(Builder *b, const DimOverride *o)
{
    int64_t idx = find_file_dim(b, o->name);
    if (idx < 0) {
        const char **names = xcalloc(b->ndims ? b->ndims : 1, sizeof(char *));
        for (uint32_t i = 0; i < b->ndims; i++)
            names[i] = b->dims[i].def->name;
        const char *near = closest_name(o->name, names, b->ndims);
        free(names);
        if (near)
            diag_report_file(b->cx->diag, DIAG_ERROR, NULL,
                             "--dim %s=%lld: the file has no dim '%s'; did you mean '%s'?", o->name,
                             (long long)o->value, o->name, near);
        else
            diag_report_file(b->cx->diag, DIAG_ERROR, NULL,
                             "--dim %s=%lld: the file has no dim '%s'", o->name,
                             (long long)o->value, o->name);
        return;
    }
    FileDim *d = &b->dims[idx];
    if (o->value < 1) {
        diag_report_file(b->cx->diag, DIAG_ERROR, NULL, "--dim %s=%lld: a dim must be at least 1",
                         o->name, (long long)o->value);
        d->state = DS_ERROR;
        return;
    }
    if (o->value > FUSE_MAX_ELEMENTS) {
        diag_report_file(b->cx->diag, DIAG_ERROR, NULL,
                         "--dim %s=%lld: a dim must be at most 2^40 (a tensor has at most 2^40 "
                         "elements)",
                         o->name, (long long)o->value);
        d->state = DS_ERROR;
        return;
    }
    d->state = DS_OK;
    d->value = o->value;
    d->overridden = true;
}

bool dims_init(Builder *b)
{
    unsigned before = b->cx->diag->nerrors;
    uint32_t n = 0;
    for (const Decl *d = b->ast->decls; d; d = d->next)
        if (d->kind == DECL_DIM)
            for (const DimDef *dd = d->dim.defs; dd; dd = dd->next)
                n++;
    b->dims = xcalloc(n ? n : 1, sizeof(FileDim));
    b->dim_stack = xcalloc(n ? n : 1, sizeof(uint32_t));
    for (const Decl *d = b->ast->decls; d; d = d->next)
        if (d->kind == DECL_DIM)
            for (const DimDef *dd = d->dim.defs; dd; dd = dd->next)
                if (find_file_dim(b, dd->name) < 0) /* sema rejected duplicates */
                    b->dims[b->ndims++].def = dd;
    for (size_t i = 0; i < b->cx->ndims; i++)
        apply_override(b, &b->cx->dims[i]);
    /* Every default, now that all overrides are in: errors in them are errors of the file. */
    for (uint32_t i = 0; i < b->ndims; i++) {
        int64_t v;
        b->eager++;
        eval_file_dim(b, i, b->dims[i].def->name_span, &v);
        b->eager--;
        b->pending_unbound = NULL;
    }
    return b->cx->diag->nerrors == before;
}

/* ---- Numbers ---- */

/* Python's int arithmetic on int64. Returns 0, or 1 on overflow, 2 on division by zero. */
static int int_arith(BinOp op, int64_t a, int64_t c, int64_t *out)
{
    switch (op) {
    case BIN_ADD:
        return add_i64(a, c, out) ? 0 : 1;
    case BIN_SUB:
        return __builtin_sub_overflow(a, c, out) ? 1 : 0;
    case BIN_MUL:
        return mul_i64(a, c, out) ? 0 : 1;
    case BIN_FLOORDIV:
        if (c == 0)
            return 2;
        if (a == INT64_MIN && c == -1)
            return 1;
        *out = a / c - ((a % c != 0) && ((a < 0) != (c < 0)));
        return 0;
    case BIN_MOD:
        if (c == 0)
            return 2;
        if (c == -1) {
            *out = 0;
            return 0;
        }
        *out = a % c;
        if (*out != 0 && ((*out < 0) != (c < 0)))
            *out += c;
        return 0;
    case BIN_DIV:
        break;
    }
    FUSE_UNREACHABLE();
}

static void division_by_zero(Builder *b, Frame *f, const Expr *e)
{
    const Expr *rhs = e->bin.rhs;
    if (is_literal(rhs))
        build_error(b, f, e->bin.op_span, "division by zero in '%s'", build_span_text(b, e->span));
    else
        build_error(b, f, e->bin.op_span, "division by zero in '%s': %s is 0",
                    build_span_text(b, e->span), build_span_text(b, rhs->span));
}

static double as_double(Val v)
{
    return v.kind == V_INT ? (double)v.i : v.f;
}

/* l op r on two numbers (V_INT / V_FLOAT), as Python computes it. */
static Val fold(Builder *b, Frame *f, const Expr *e, Val l, Val r)
{
    BinOp op = e->bin.op;
    if (l.kind == V_INT && r.kind == V_INT && op != BIN_DIV) {
        int64_t v = 0;
        int st = int_arith(op, l.i, r.i, &v);
        if (st == 2) {
            division_by_zero(b, f, e);
            return err_val();
        }
        if (st == 1) {
            build_error(b, f, e->bin.op_span,
                        "integer overflow: %lld %s %lld does not fit in 64 bits", (long long)l.i,
                        binop_text(op), (long long)r.i);
            return err_val();
        }
        return int_val(v);
    }
    double x = as_double(l), y = as_double(r);
    if (y == 0 && (op == BIN_DIV || op == BIN_FLOORDIV || op == BIN_MOD)) {
        division_by_zero(b, f, e);
        return err_val();
    }
    switch (op) {
    case BIN_ADD:
        return float_val(x + y);
    case BIN_SUB:
        return float_val(x - y);
    case BIN_MUL:
        return float_val(x * y);
    case BIN_DIV:
        return float_val(x / y);
    case BIN_FLOORDIV:
        return float_val(floor(x / y));
    case BIN_MOD: {
        double m = fmod(x, y);
        if (m != 0 && ((m < 0) != (y < 0)))
            m += y;
        return float_val(m);
    }
    }
    FUSE_UNREACHABLE();
}

/* ---- Tensors ---- */

Node *val_to_node(Builder *b, Frame *f, Val v, Span at)
{
    Shape scalar = {0};
    Node *n;
    switch (v.kind) {
    case V_TENSOR:
        return v.node;
    case V_INT:
    case V_FLOAT:
        n = build_node(b, f, OP_SCALAR, NULL, 0, &scalar, at);
        if (n)
            n->attr.scalar.value = (float)as_double(v); /* rounded once to f32 */
        return n;
    case V_BOOL:
        build_error(b, f, at, "a bool cannot be used as a tensor");
        return NULL;
    case V_ERROR:
        return NULL;
    }
    FUSE_UNREACHABLE();
}

/* "'skip' is f32[1,32,56,56]" at the binding of a named operand. */
static void operand_note(Builder *b, Frame *f, const Expr *e, const Node *n)
{
    if (e->kind != EX_NAME)
        return;
    Binding *bd = frame_lookup(f, e->name);
    if (bd && bd->val.kind == V_TENSOR)
        build_note(b, bd->def, "'%s' is %s", e->name, type_text(&n->shape).s);
}

static void broadcast_error(Builder *b, Frame *f, const Expr *e, const Node *x, const Node *y)
{
    TypeText tx = type_text(&x->shape), ty = type_text(&y->shape);
    switch (e->bin.op) {
    case BIN_ADD:
        build_error(b, f, e->bin.op_span, "cannot add %s and %s", tx.s, ty.s);
        break;
    case BIN_SUB:
        build_error(b, f, e->bin.op_span, "cannot subtract %s from %s", ty.s, tx.s);
        break;
    case BIN_MUL:
        build_error(b, f, e->bin.op_span, "cannot multiply %s and %s", tx.s, ty.s);
        break;
    default:
        build_error(b, f, e->bin.op_span, "cannot divide %s by %s", tx.s, ty.s);
        break;
    }
    operand_note(b, f, e->bin.lhs, x);
    operand_note(b, f, e->bin.rhs, y);
}

static Val tensor_binop(Builder *b, Frame *f, const Expr *e, Val l, Val r)
{
    static const OpKind kinds[] = {
        [BIN_ADD] = OP_ADD, [BIN_SUB] = OP_SUB, [BIN_MUL] = OP_MUL, [BIN_DIV] = OP_DIV};
    if (e->bin.op == BIN_FLOORDIV || e->bin.op == BIN_MOD) { /* sema rejects these */
        build_error(b, f, e->bin.op_span, "'%s' applies to dims, not tensors",
                    binop_text(e->bin.op));
        return err_val();
    }
    Node *in[2] = {val_to_node(b, f, l, e->bin.lhs->span), val_to_node(b, f, r, e->bin.rhs->span)};
    if (!in[0] || !in[1])
        return err_val();
    Shape out;
    if (!shape_broadcast(&in[0]->shape, &in[1]->shape, &out)) {
        broadcast_error(b, f, e, in[0], in[1]);
        return err_val();
    }
    if (!build_check_size(b, f, &out, e->bin.op_span))
        return err_val();
    return tensor_val(build_node(b, f, kinds[e->bin.op], in, 2, &out, e->bin.op_span));
}

static Val eval_neg(Builder *b, Frame *f, const Expr *e)
{
    Val v = eval_expr(b, f, e->unary.operand);
    switch (v.kind) {
    case V_INT:
        if (v.i == INT64_MIN) {
            build_error(b, f, e->span, "integer overflow: -(%lld) does not fit in 64 bits",
                        (long long)v.i);
            return err_val();
        }
        return int_val(-v.i);
    case V_FLOAT:
        return float_val(-v.f);
    case V_TENSOR:
        return tensor_val(build_node(b, f, OP_NEG, &v.node, 1, &v.node->shape, e->span));
    case V_BOOL:
        build_error(b, f, e->span, "a bool cannot be negated");
        return err_val();
    case V_ERROR:
        break;
    }
    return err_val();
}

static Val eval_bin(Builder *b, Frame *f, const Expr *e)
{
    Val l = eval_expr(b, f, e->bin.lhs);
    Val r = eval_expr(b, f, e->bin.rhs);
    if (l.kind == V_ERROR || r.kind == V_ERROR)
        return err_val();
    if (l.kind == V_BOOL || r.kind == V_BOOL) {
        build_error(b, f, e->bin.op_span, "a bool cannot be used in arithmetic");
        return err_val();
    }
    if (l.kind == V_TENSOR || r.kind == V_TENSOR)
        return tensor_binop(b, f, e, l, r);
    return fold(b, f, e, l, r);
}

static Val eval_name(Builder *b, Frame *f, const Expr *e)
{
    Binding *bd = f ? frame_lookup(f, e->name) : NULL;
    if (bd)
        return bd->val;
    int64_t idx = find_file_dim(b, e->name);
    if (idx >= 0) {
        int64_t v;
        return eval_file_dim(b, (uint32_t)idx, e->span, &v) ? int_val(v) : err_val();
    }
    /* sema saw a binding: it is inside a loop that ran zero times. */
    build_error(b, f, e->span,
                "'%s' has no value here: it is only assigned inside a 'for' loop that ran zero "
                "times",
                e->name);
    if (f)
        frame_bind(f, e->name, err_val(), e->span);
    return err_val();
}

Val eval_expr(Builder *b, Frame *f, const Expr *e)
{
    if (b->aborted)
        return err_val();
    switch (e->kind) {
    case EX_INT:
        return int_val(e->ival);
    case EX_FLOAT:
        return float_val(e->fval);
    case EX_BOOL:
        return (Val){.kind = V_BOOL, .b = e->bval};
    case EX_NAME:
        return eval_name(b, f, e);
    case EX_NEG:
        return eval_neg(b, f, e);
    case EX_BIN:
        return eval_bin(b, f, e);
    case EX_CALL: {
        const SrcOp *op = builtin_find(e->call.callee);
        if (op)
            return build_op_call(b, f, e, op);
        for (const Decl *d = b->ast->decls; d; d = d->next)
            if (d->kind == DECL_BLOCK && strcmp(d->fn.name, e->call.callee) == 0)
                return build_block_call(b, f, e, d);
        build_error(b, f, e->call.callee_span, "unknown op or block '%s'", e->call.callee);
        return err_val();
    }
    case EX_STRING:
    case EX_LIST:
        break;
    }
    build_error(b, f, e->span, "a %s cannot be used here", e->kind == EX_LIST ? "list" : "string");
    return err_val();
}

bool eval_int(Builder *b, Frame *f, const Expr *e, int64_t *out)
{
    Val v = eval_expr(b, f, e);
    if (v.kind == V_INT) {
        *out = v.i;
        return true;
    }
    if (v.kind != V_ERROR)
        build_error(b, f, e->span, "expected an integer here");
    return false;
}

bool eval_float(Builder *b, Frame *f, const Expr *e, double *out)
{
    Val v = eval_expr(b, f, e);
    if (v.kind == V_INT || v.kind == V_FLOAT) {
        *out = as_double(v);
        return true;
    }
    if (v.kind != V_ERROR)
        build_error(b, f, e->span, "expected a number here");
    return false;
}

bool eval_bool(Builder *b, Frame *f, const Expr *e, bool *out)
{
    Val v = eval_expr(b, f, e);
    if (v.kind == V_BOOL) {
        *out = v.b;
        return true;
    }
    if (v.kind != V_ERROR)
        build_error(b, f, e->span, "expected true or false here");
    return false;
}

/* ---- require ---- */

static bool compare(CmpOp op, int64_t l, int64_t r)
{
    switch (op) {
    case CMP_EQ:
        return l == r;
    case CMP_NE:
        return l != r;
    case CMP_LT:
        return l < r;
    case CMP_LE:
        return l <= r;
    case CMP_GT:
        return l > r;
    case CMP_GE:
        return l >= r;
    }
    FUSE_UNREACHABLE();
}

static void report_failed(Builder *b, Frame *f, const Cond *c, int64_t l, int64_t r)
{
    StrBuf why = {0};
    if (!is_literal(c->lhs))
        sb_printf(&why, "%s is %lld", build_span_text(b, c->lhs->span), (long long)l);
    if (!is_literal(c->rhs))
        sb_printf(&why, "%s%s is %lld", why.len ? " and " : "", build_span_text(b, c->rhs->span),
                  (long long)r);
    const char *text = build_span_text(b, span_join(c->lhs->span, c->rhs->span));
    if (why.len)
        build_error(b, f, c->span, "requirement '%s' failed: %s", text, sb_str(&why));
    else
        build_error(b, f, c->span, "requirement '%s' failed", text);
    sb_free(&why);
}

bool check_conds(Builder *b, Frame *f, const Cond *conds)
{
    bool ok = true;
    for (const Cond *c = conds; c; c = c->next) {
        int64_t l = 0, r = 0;
        bool have = eval_int(b, f, c->lhs, &l);
        have = eval_int(b, f, c->rhs, &r) && have;
        if (!have) {
            ok = false;
            continue;
        }
        if (!compare(c->op, l, r)) {
            report_failed(b, f, c, l, r);
            ok = false;
        }
    }
    return ok;
}
