/*
 * ast: the syntax tree of a .fuse file, as parse_source() (grammar/fuse.y) builds it.
 *
 * Every node lives in the AST arena and carries the byte Span of the text it came from.
 * Lists are singly linked through `next` fields, in source order. Names are NUL-terminated
 * copies in the arena. The AST is untyped: dims, attributes and tensor expressions share one
 * Expr type, and sema/build decide what each must be in its context (LANGUAGE.md §3).
 */
#ifndef FUSE_AST_H
#define FUSE_AST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "source.h"

typedef struct Arena Arena;
typedef struct Expr Expr;
typedef struct Stmt Stmt;
typedef struct Decl Decl;

typedef enum ExprKind {
    EX_INT,    /* ival: a non-negative integer literal */
    EX_FLOAT,  /* fval: a float literal, as parsed (sema rounds it to f32) */
    EX_NAME,   /* name: a value, dim, parameter, loop variable or enum word */
    EX_BOOL,   /* bval: true / false */
    EX_STRING, /* name: the string's contents without quotes */
    EX_NEG,    /* unary.operand: unary minus */
    EX_BIN,    /* bin: + - * / // % */
    EX_CALL,   /* call: op or block call with optional @scope */
    EX_LIST,   /* list: [a, b, ...] (attribute values only) */
} ExprKind;

typedef enum BinOp { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_FLOORDIV, BIN_MOD } BinOp;
typedef enum CmpOp { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE } CmpOp;

/* One piece of a scope segment: literal text, or a {dimx} splice. Exactly one is set. */
typedef struct ScopePart {
    const char *text; /* letters, digits, '_' */
    Expr *splice;     /* a dim expression, printed in decimal when the key is formed */
    struct ScopePart *next;
} ScopePart;

/* A segment between dots: `layers`, `{i}`, `layer{i+1}`. */
typedef struct ScopeSeg {
    ScopePart *parts;
    struct ScopeSeg *next;
} ScopeSeg;

typedef struct Scope {
    ScopeSeg *segs;
    Span span; /* the whole @... token */
} Scope;

/* A call argument: positional (name == NULL) or keyword `name=value`. */
typedef struct Arg {
    const char *name;
    Span name_span;
    Expr *value;
    struct Arg *next;
} Arg;

struct Expr {
    ExprKind kind;
    Span span;
    Expr *next; /* next item when this expression is in a list (EX_LIST items, return values) */
    union {
        int64_t ival;     /* EX_INT */
        double fval;      /* EX_FLOAT */
        bool bval;        /* EX_BOOL */
        const char *name; /* EX_NAME, EX_STRING */
        struct {
            Expr *operand;
        } unary; /* EX_NEG */
        struct {
            BinOp op;
            Span op_span; /* the operator token, where e.g. a division by zero is reported */
            Expr *lhs, *rhs;
        } bin; /* EX_BIN */
        struct {
            const char *callee;
            Span callee_span;
            Arg *args;
            Scope *scope; /* NULL without @scope */
        } call;           /* EX_CALL */
        struct {
            Expr *items; /* linked through next */
            uint32_t n;
        } list; /* EX_LIST */
    };
};

typedef struct Cond {
    CmpOp op;
    Span span;
    Expr *lhs, *rhs;
    struct Cond *next;
} Cond;

typedef enum StmtKind {
    ST_ASSIGN,  /* assign */
    ST_RETURN,  /* ret */
    ST_REQUIRE, /* require */
    ST_FOR,     /* loop */
} StmtKind;

struct Stmt {
    StmtKind kind;
    Span span;
    Stmt *next;
    union {
        struct {
            const char *name;
            Span name_span;
            Expr *value;
        } assign;
        struct {
            Expr *values; /* linked through next */
            uint32_t n;
        } ret;
        struct {
            Cond *conds;
        } require;
        struct {
            const char *var;
            Span var_span;
            Expr *lo, *hi; /* for var in lo..hi */
            Stmt *body;
            Span body_span; /* from '{' to '}' */
        } loop;
    };
};

typedef enum DType { DT_F32, DT_F16, DT_BF16 } DType; /* f16/bf16 are reserved: sema rejects */

typedef struct TensorType {
    DType dtype;
    Span dtype_span;
    Expr *dims; /* dim expressions linked through next */
    uint32_t rank;
    Span span; /* from the dtype to ']' */
} TensorType;

typedef enum CParamKind { CP_INT, CP_FLOAT, CP_BOOL } CParamKind;

/* A parameter: a tensor parameter `x: f32[...]` (also used for named graph outputs), or a
 * compile-time parameter `r: int = 16` of a block. */
typedef struct Param {
    const char *name;
    Span name_span;
    Span span;       /* the whole parameter */
    bool is_tensor;  /* selects type or ckind/default_value */
    TensorType type; /* tensor parameters */
    CParamKind ckind;
    Expr *default_value; /* compile-time parameters; NULL when required */
    struct Param *next;
} Param;

typedef struct DimDef {
    const char *name;
    Span name_span;
    Expr *value; /* NULL: must be given with --dim */
    struct DimDef *next;
} DimDef;

typedef enum DeclKind {
    DECL_DIM,     /* dim */
    DECL_BLOCK,   /* fn */
    DECL_GRAPH,   /* fn */
    DECL_REQUIRE, /* require: file-level require */
} DeclKind;

struct Decl {
    DeclKind kind;
    Span span; /* the whole declaration */
    Decl *next;
    union {
        struct {
            DimDef *defs;
        } dim;
        struct {
            Cond *conds;
        } require;
        struct {
            const char *name;
            Span name_span;
            Param *params;  /* tensor parameters */
            Param *cparams; /* compile-time parameters (blocks only) */
            bool has_result;
            /* Result: a block's `-> f32[...]`, or a graph's outputs. A graph with a single
             * unnamed result has one output named "out" and unnamed_result set. */
            Param *outputs;
            bool unnamed_result;
            Stmt *body;
            Span body_span; /* from '{' to '}' */
        } fn;
    };
};

typedef struct Ast {
    int64_t version; /* from `fuse N` */
    Span version_span;
    Decl *decls;
} Ast;

/* Parses src into an AST allocated in `arena`. Reports syntax errors to d (which must refer to
 * src). Returns NULL if there were syntax errors. Implemented in grammar/fuse.y. */
typedef struct Diag Diag;
Ast *parse_source(const Source *src, Arena *arena, Diag *d);

/* Writes the AST as indented text (--dump=ast). */
void ast_dump(const Ast *ast, FILE *out);

/* Names used in dumps and diagnostics. */
const char *binop_text(BinOp op);
const char *cmpop_text(CmpOp op);

/* Scans src and writes its tokens to `out`, one per line: `LINE:COL KIND 'text'` (the text
 * quoted with \n, \', \\ and \xNN escapes), ending with an EOF line (--dump=tokens). Lexical
 * errors are reported to d (which must refer to src) and printed as ERROR tokens. Returns false
 * if any error was reported. Implemented in grammar/fuse.l. */
bool scan_dump_tokens(const Source *src, Diag *d, FILE *out);

#endif
