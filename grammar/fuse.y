/*
 * parse (stage 2): the pure bison parser. Tokens from the scanner (fuse.l) -> Ast
 * (LANGUAGE.md §6, plus file-level `require`).
 *
 * Invariants of the tree it builds (ast.h):
 *   - every node is in the AST arena and carries the byte Span of its text;
 *   - lists are linked in source order;
 *   - expressions are at most MAX_EXPR_DEPTH deep and brackets at most FUSE_MAX_NESTING deep,
 *     so the later stages may recurse over the tree;
 *   - a graph's single unnamed result is one output Param named "out" (unnamed_result set).
 * Syntax errors are reported through diag in the LANGUAGE.md §5 format; the parser recovers at
 * statement and declaration boundaries so that independent errors are all reported, and
 * parse_source() returns NULL when any error was reported. parse_source() is the only door in.
 */
%require "3.8"

%code requires {
#include <stdbool.h>
#include <stdint.h>

#include "ast.h"
#include "source.h" /* Span */
#include "util.h"   /* FUSE_PRINTF */

typedef void *yyscan_t;
typedef struct Parser Parser;

/* Lists under construction: head and tail, so that appending keeps source order. */
typedef struct ExprList { Expr *head, *tail; uint32_t n; } ExprList;
typedef struct ArgList { Arg *head, *tail; } ArgList;
typedef struct StmtList { Stmt *head, *tail; } StmtList;
typedef struct CondList { Cond *head, *tail; } CondList;
typedef struct ParamList { Param *head, *tail; } ParamList;
typedef struct DimDefList { DimDef *head, *tail; } DimDefList;
typedef struct DeclList { Decl *head, *tail; } DeclList;
typedef struct SegList { ScopeSeg *head, *tail; } SegList;
typedef struct PartList { ScopePart *head, *tail; } PartList;
/* A parameter list: tensor parameters, then a block's compile-time parameters. */
typedef struct ParamLists { ParamList tensors, consts; } ParamLists;
/* A result: the outputs, and whether it was a single unnamed type (named "out"). */
typedef struct Result { ParamList outputs; bool unnamed; } Result;
}

%code provides {
#define YY_DECL int fuse_yylex(FUSE_YYSTYPE *yylval_param, FUSE_YYLTYPE *yylloc_param, \
                               yyscan_t yyscanner, Parser *p)
YY_DECL; /* flex and bison agree on one lexer signature */

/* Deepest bracket nesting the scanner accepts: ( [ { and scope splices together. */
#define FUSE_MAX_NESTING 256

/* An open bracket: '(', '[', '{' (a body) or 's' (the '{' of a scope splice). */
typedef struct Bracket {
    char kind;
    Span at;
} Bracket;

/* The state shared by the scanner and the parser of one parse (or one token dump). */
struct Parser {
    const Source *src; /* borrowed: the text being scanned */
    Arena *arena;      /* borrowed: where the AST and identifiers go */
    Diag *diag;        /* borrowed */
    Ast *ast;          /* the tree being built */
    /* The scanner's bracket stack. */
    Bracket open[FUSE_MAX_NESTING];
    unsigned depth;
    bool stopped; /* after "nesting too deep": the scanner returns end of file */
    /* The token most recently returned, for error messages. */
    int tok_kind;
    Span tok_span;
    unsigned tok_depth;    /* bracket depth before that token */
    bool tok_mismatch;     /* that token closed a bracket that did not match ... */
    Bracket mismatch_open; /* ... this one */
    /* Where some errors go. */
    bool have_first;     /* first_span is set */
    Span first_span;     /* the first token: a missing version line is reported there */
    uint32_t last_end;   /* end of the last token but newlines: end of file is placed there */
    uint32_t error_line; /* line of the last error reported (0: none) */
    bool expr_depth_reported;
    /* A declaration keyword found inside bodies: the '}' tokens still to return, then it. */
    int pending; /* its token kind; 0: none */
    Span pending_span;
    unsigned pending_closers;
};

/* The scanner's life (fuse.l): scan_begin readies p and a scanner over src; scan_end frees
 * the scanner. */
yyscan_t scan_begin(Parser *p, const Source *src, Arena *arena, Diag *d);
void scan_end(yyscan_t scanner);
/* Reports an error at `at`, unless one was already reported on its line: a second error there
 * is almost always a consequence of the first. Every error of the scanner and the parser goes
 * through here. Returns whether it was reported (so that a note may follow). */
bool scan_error(Parser *p, Span at, const char *fmt, ...) FUSE_PRINTF(3, 4);
/* True if only blanks precede byte offset `at` on its line. */
bool scan_starts_line(const Parser *p, uint32_t at);
}

%code {
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "diag.h"
#include "util.h"

/* Deepest expression tree the parser builds; the later stages recurse over expressions. */
#define MAX_EXPR_DEPTH 1000

/* Appends node n to the {head, tail} list l. Both are evaluated twice: pass plain values. */
#define LIST_PUSH(l, n)           \
    do {                          \
        if ((l).tail)             \
            (l).tail->next = (n); \
        else                      \
            (l).head = (n);       \
        (l).tail = (n);           \
    } while (0)

/* A rule spans its first to its last symbol; an empty rule sits where the previous ended. */
#define YYLLOC_DEFAULT(cur, rhs, n)                    \
    do {                                               \
        if (n) {                                       \
            (cur).lo = YYRHSLOC(rhs, 1).lo;            \
            (cur).hi = YYRHSLOC(rhs, n).hi;            \
        } else {                                       \
            (cur).lo = (cur).hi = YYRHSLOC(rhs, 0).hi; \
        }                                              \
    } while (0)

static void fuse_yyerror(const Span *loc, yyscan_t scanner, Parser *p, const char *msg);
static bool check_version(Parser *p, int64_t v, Span at);
static Expr *new_expr(Parser *p, ExprKind kind, Span at);
static Expr *new_int(Parser *p, int64_t v, Span at);
static Expr *new_float(Parser *p, double v, Span at);
static Expr *new_name(Parser *p, ExprKind kind, const char *name, Span at);
static Expr *new_bool(Parser *p, bool v, Span at);
static Expr *new_neg(Parser *p, Expr *operand, Span at);
static Expr *new_bin(Parser *p, BinOp op, Expr *lhs, Expr *rhs, Span at, Span op_at);
static Expr *new_call(Parser *p, const char *callee, Span callee_at, ArgList args, Span at);
static Expr *new_list(Parser *p, ExprList items, Span at);
static Expr *with_scope(Parser *p, Expr *call, Scope *scope, Span at);
static Arg *new_arg(Parser *p, const char *name, Span name_at, Expr *value);
static Stmt *new_stmt(Parser *p, StmtKind kind, Span at);
static Stmt *new_for(Parser *p, const char *var, Span var_at, Expr *lo, Expr *hi, Stmt *body,
                     Span body_at, Span at);
static Cond *new_cond(Parser *p, CmpOp op, Expr *lhs, Expr *rhs, Span at);
static Param *new_tparam(Parser *p, const char *name, Span name_at, TensorType type, Span at);
static Param *new_cparam(Parser *p, const char *name, Span name_at, CParamKind kind,
                         Expr *dflt, Span at);
static TensorType tensor_type(DType dtype, Span dtype_at, ExprList dims, Span at);
static DimDef *new_dimdef(Parser *p, const char *name, Span name_at, Expr *value);
static Decl *new_decl(Parser *p, DeclKind kind, Span at);
static Decl *new_fn(Parser *p, DeclKind kind, const char *name, Span name_at, ParamLists params,
                    Result result, bool has_result, Stmt *body, Span body_at, Span at);
static ScopePart *new_part(Parser *p, const char *text, Expr *splice);
static Result single_result(Parser *p, TensorType type, Span at);
static ScopeSeg *new_seg(Parser *p, PartList parts);
static Scope *new_scope(Parser *p, SegList segs, Span at);
static const char *keyword_name(Parser *p, const char *kw, Span at);
}

%define api.prefix {fuse_yy}
%define api.pure full
%define api.value.type union
%define api.location.type {Span}
%define api.token.prefix {TK_}
%define parse.error detailed
%define parse.lac full
%locations
%expect 0
%param {yyscan_t scanner} {Parser *p}

%token <const char *> IDENT "identifier"
%token <int64_t> INT "integer"
%token <double> FLOAT "float"
%token <const char *> STRING "string"
%token NL "newline"

%token FUSE "'fuse'" DIM "'dim'" BLOCK "'block'" GRAPH "'graph'" RETURN "'return'"
%token REQUIRE "'require'" FOR "'for'" IN "'in'" TRUE "'true'" FALSE "'false'"
%token INT_KW "'int'" FLOAT_KW "'float'" BOOL_KW "'bool'" F32 "'f32'" F16 "'f16'" BF16 "'bf16'"

%token PLUS "'+'" MINUS "'-'" STAR "'*'" SLASH "'/'" SLASHSLASH "'//'" PERCENT "'%'"
%token ASSIGN "'='" EQ "'=='" NE "'!='" LT "'<'" LE "'<='" GT "'>'" GE "'>='"
%token ARROW "'->'" DOTDOT "'..'" COMMA "','" SEMI "';'" COLON "':'"
%token LPAREN "'('" RPAREN "')'" LBRACKET "'['" RBRACKET "']'" LBRACE "'{'" RBRACE "'}'"

%token <const char *> SEGTEXT "scope segment"
%token AT "'@'" SEGDOT "'.' in a scope" SPLICE_OPEN "'{' in a scope" SPLICE_CLOSE "'}' in a scope"

%nterm <DeclList> decls
%nterm <Decl *> decl dimdecl requiredecl block graph
%nterm <DimDefList> dimdefs
%nterm <DimDef *> dimdef
%nterm <CondList> conds
%nterm <Cond *> cond
%nterm <CmpOp> cmpop
%nterm <ParamLists> block_params
%nterm <ParamList> tparams tparam_list cparam_list
%nterm <Param *> tparam cparam
%nterm <Result> graph_result block_result
%nterm <TensorType> ttype
%nterm <DType> dtype
%nterm <CParamKind> ckind
%nterm <StmtList> body stmts
%nterm <Stmt *> opt_stmt stmt
%nterm <Expr *> expr term unary primary atom call attr dimx dterm dunary
%nterm <ExprList> expr_list dimx_list attr_list
%nterm <ArgList> args arg_list
%nterm <Arg *> arg
%nterm <Scope *> scope
%nterm <SegList> segs
%nterm <ScopeSeg *> seg
%nterm <PartList> parts
%nterm <ScopePart *> part
%nterm <const char *> name sname keyword skeyword

%%

file:
    version decls { p->ast->decls = $2.head; }
    ;

version:
    FUSE INT { if (!check_version(p, $2, @2)) YYABORT; } /* the rest may be another language */
  | %empty   { scan_error(p, p->first_span, "missing version line 'fuse 1'"); }
    ;

decls:
    %empty      { $$ = (DeclList){0}; }
  | decls decl  { $$ = $1; if ($2) LIST_PUSH($$, $2); }
  | decls error { $$ = $1; }
    ;

decl: dimdecl | requiredecl | block | graph ;

/* Declarations. */

dimdecl:
    DIM dimdefs { $$ = new_decl(p, DECL_DIM, @$); $$->dim.defs = $2.head; }
    ;

dimdefs:
    dimdef               { $$ = (DimDefList){0}; LIST_PUSH($$, $1); }
  | dimdefs COMMA dimdef { $$ = $1; LIST_PUSH($$, $3); }
    ;

dimdef:
    name             { $$ = new_dimdef(p, $1, @1, NULL); }
  | name ASSIGN dimx { $$ = new_dimdef(p, $1, @1, $3); }
    ;

requiredecl:
    REQUIRE conds { $$ = new_decl(p, DECL_REQUIRE, @$); $$->require.conds = $2.head; }
    ;

block:
    BLOCK name LPAREN block_params RPAREN block_result body
        { $$ = new_fn(p, DECL_BLOCK, $2, @2, $4, $6, $6.outputs.head != NULL, $7.head, @7, @$); }
  | BLOCK error body { $$ = NULL; }
    ;

block_params:
    tparams                                { $$ = (ParamLists){$1, {0}}; }
  | tparam_list SEMI cparam_list opt_comma { $$ = (ParamLists){$1, $3}; }
    ;

block_result:
    %empty      { $$ = (Result){{0}, false}; }
  | ARROW ttype { $$ = single_result(p, $2, @2); }
    ;

graph:
    GRAPH name LPAREN tparams RPAREN ARROW graph_result body
        { $$ = new_fn(p, DECL_GRAPH, $2, @2, (ParamLists){$4, {0}}, $7, true, $8.head, @8, @$); }
  | GRAPH name LPAREN tparams RPAREN body
        {
            scan_error(p, (Span){@6.lo, @6.lo + 1},
                       "graph '%s' needs a result type ('-> f32[...]') before its body", $2);
            $$ = NULL;
        }
  | GRAPH error body { $$ = NULL; }
    ;

graph_result:
    ttype                 { $$ = single_result(p, $1, @1); }
  | LPAREN tparams RPAREN { $$ = (Result){$2, false}; }
    ;

tparams:
    tparam_list opt_comma { $$ = $1; }
    ;

tparam_list:
    tparam                   { $$ = (ParamList){0}; LIST_PUSH($$, $1); }
  | tparam_list COMMA tparam { $$ = $1; LIST_PUSH($$, $3); }
    ;

tparam:
    name COLON ttype { $$ = new_tparam(p, $1, @1, $3, @$); }
    ;

cparam_list:
    cparam                   { $$ = (ParamList){0}; LIST_PUSH($$, $1); }
  | cparam_list COMMA cparam { $$ = $1; LIST_PUSH($$, $3); }
    ;

cparam:
    name COLON ckind             { $$ = new_cparam(p, $1, @1, $3, NULL, @$); }
  | name COLON ckind ASSIGN attr { $$ = new_cparam(p, $1, @1, $3, $5, @$); }
    ;

ckind:
    INT_KW   { $$ = CP_INT; }
  | FLOAT_KW { $$ = CP_FLOAT; }
  | BOOL_KW  { $$ = CP_BOOL; }
    ;

ttype:
    dtype LBRACKET dimx_list RBRACKET { $$ = tensor_type($1, @1, $3, @$); }
    ;

dtype:
    F32  { $$ = DT_F32; }
  | F16  { $$ = DT_F16; }
  | BF16 { $$ = DT_BF16; }
    ;

dimx_list:
    dimx                 { $$ = (ExprList){0}; LIST_PUSH($$, $1); $$.n = 1; }
  | dimx_list COMMA dimx { $$ = $1; LIST_PUSH($$, $3); $$.n++; }
    ;

opt_comma: %empty | COMMA ;

/* Bodies and statements. Statements end at a newline or ';'; the scanner emits newlines only
 * inside a body and outside ( ) and [ ]. */

body:
    LBRACE stmts RBRACE { $$ = $2; }
    ;

stmts:
    opt_stmt           { $$ = (StmtList){0}; if ($1) LIST_PUSH($$, $1); }
  | stmts sep opt_stmt { $$ = $1; if ($3) LIST_PUSH($$, $3); }
    ;

sep: NL | SEMI ;

opt_stmt:
    %empty { $$ = NULL; }
  | stmt   { $$ = $1; }
  | error  { $$ = NULL; }
    ;

stmt:
    sname ASSIGN expr
        {
            $$ = new_stmt(p, ST_ASSIGN, @$);
            $$->assign.name = $1;
            $$->assign.name_span = @1;
            $$->assign.value = $3;
        }
  | RETURN expr_list
        {
            $$ = new_stmt(p, ST_RETURN, @$);
            $$->ret.values = $2.head;
            $$->ret.n = $2.n;
        }
  | REQUIRE conds
        {
            $$ = new_stmt(p, ST_REQUIRE, @$);
            $$->require.conds = $2.head;
        }
  | FOR sname IN dimx DOTDOT dimx body { $$ = new_for(p, $2, @2, $4, $6, $7.head, @7, @$); }
  | FOR sname IN dimx DOTDOT dimx nls body
        {
            scan_error(p, (Span){@8.lo, @8.lo + 1},
                       "the '{' of a for loop must be on the same line as 'for'");
            $$ = new_for(p, $2, @2, $4, $6, $8.head, @8, @$);
        }
    ;

nls: NL | nls NL ;

expr_list:
    expr                 { $$ = (ExprList){0}; LIST_PUSH($$, $1); $$.n = 1; }
  | expr_list COMMA expr { $$ = $1; LIST_PUSH($$, $3); $$.n++; }
    ;

conds:
    cond             { $$ = (CondList){0}; LIST_PUSH($$, $1); }
  | conds COMMA cond { $$ = $1; LIST_PUSH($$, $3); }
    ;

cond:
    dimx cmpop dimx { $$ = new_cond(p, $2, $1, $3, @$); }
    ;

cmpop:
    EQ { $$ = CMP_EQ; }
  | NE { $$ = CMP_NE; }
  | LT { $$ = CMP_LT; }
  | LE { $$ = CMP_LE; }
  | GT { $$ = CMP_GT; }
  | GE { $$ = CMP_GE; }
    ;

/* Tensor expressions. */

expr:
    term            { $$ = $1; }
  | expr PLUS term  { $$ = new_bin(p, BIN_ADD, $1, $3, @$, @2); }
  | expr MINUS term { $$ = new_bin(p, BIN_SUB, $1, $3, @$, @2); }
    ;

term:
    unary            { $$ = $1; }
  | term STAR unary  { $$ = new_bin(p, BIN_MUL, $1, $3, @$, @2); }
  | term SLASH unary { $$ = new_bin(p, BIN_DIV, $1, $3, @$, @2); }
    ;

unary:
    MINUS unary { $$ = new_neg(p, $2, @$); }
  | primary     { $$ = $1; }
    ;

primary:
    call       { $$ = $1; }
  | call scope { $$ = with_scope(p, $1, $2, @$); }
  | atom       { $$ = $1; }
  | atom scope
        {
            scan_error(p, @2, "a scope may only follow the ')' of a call");
            $$ = $1;
        }
    ;

atom:
    IDENT              { $$ = new_name(p, EX_NAME, $1, @$); }
  | INT                { $$ = new_int(p, $1, @$); }
  | FLOAT              { $$ = new_float(p, $1, @$); }
  | LPAREN expr RPAREN { $$ = $2; $$->span = @$; }
    ;

call:
    IDENT LPAREN RPAREN      { $$ = new_call(p, $1, @1, (ArgList){0}, @$); }
  | IDENT LPAREN args RPAREN { $$ = new_call(p, $1, @1, $3, @$); }
    ;

args:
    arg_list opt_comma { $$ = $1; }
    ;

arg_list:
    arg                { $$ = (ArgList){0}; LIST_PUSH($$, $1); }
  | arg_list COMMA arg { $$ = $1; LIST_PUSH($$, $3); }
    ;

arg:
    expr              { $$ = new_arg(p, NULL, @1, $1); }
  | IDENT ASSIGN attr { $$ = new_arg(p, $1, @1, $3); }
    ;

/* Attribute values (and compile-time parameter defaults). */

attr:
    dimx                                  { $$ = $1; }
  | FLOAT                                 { $$ = new_float(p, $1, @$); }
  | MINUS FLOAT                           { $$ = new_neg(p, new_float(p, $2, @2), @$); }
  | TRUE                                  { $$ = new_bool(p, true, @$); }
  | FALSE                                 { $$ = new_bool(p, false, @$); }
  | STRING                                { $$ = new_name(p, EX_STRING, $1, @$); }
  | LBRACKET attr_list opt_comma RBRACKET { $$ = new_list(p, $2, @$); }
    ;

attr_list:
    attr                 { $$ = (ExprList){0}; LIST_PUSH($$, $1); $$.n = 1; }
  | attr_list COMMA attr { $$ = $1; LIST_PUSH($$, $3); $$.n++; }
    ;

/* Dim expressions. */

dimx:
    dterm            { $$ = $1; }
  | dimx PLUS dterm  { $$ = new_bin(p, BIN_ADD, $1, $3, @$, @2); }
  | dimx MINUS dterm { $$ = new_bin(p, BIN_SUB, $1, $3, @$, @2); }
    ;

dterm:
    dunary                  { $$ = $1; }
  | dterm STAR dunary       { $$ = new_bin(p, BIN_MUL, $1, $3, @$, @2); }
  | dterm SLASHSLASH dunary { $$ = new_bin(p, BIN_FLOORDIV, $1, $3, @$, @2); }
  | dterm PERCENT dunary    { $$ = new_bin(p, BIN_MOD, $1, $3, @$, @2); }
    ;

dunary:
    MINUS dunary       { $$ = new_neg(p, $2, @$); }
  | INT                { $$ = new_int(p, $1, @$); }
  | IDENT              { $$ = new_name(p, EX_NAME, $1, @$); }
  | LPAREN dimx RPAREN { $$ = $2; $$->span = @$; }
    ;

/* Scopes: the scanner splits one `@a.{i}b` token into AT SEGTEXT SEGDOT SPLICE_OPEN ... */

scope:
    AT segs { $$ = new_scope(p, $2, @$); }
    ;

segs:
    seg             { $$ = (SegList){0}; LIST_PUSH($$, $1); }
  | segs SEGDOT seg { $$ = $1; LIST_PUSH($$, $3); }
    ;

seg:
    parts { $$ = new_seg(p, $1); }
    ;

parts:
    part       { $$ = (PartList){0}; LIST_PUSH($$, $1); }
  | parts part { $$ = $1; LIST_PUSH($$, $2); }
    ;

part:
    SEGTEXT                       { $$ = new_part(p, $1, NULL); }
  | SPLICE_OPEN dimx SPLICE_CLOSE { $$ = new_part(p, NULL, $2); }
    ;

/* A name being defined. Keywords are reserved: naming with one is an error, reported here. */

name:
    IDENT   { $$ = $1; }
  | keyword { $$ = keyword_name(p, $1, @1); }
    ;

/* In a body, a declaration keyword is more likely the start of the next declaration after
 * a missing '}', so it is left to the syntax error (with its note at the '{'). */
sname:
    IDENT    { $$ = $1; }
  | skeyword { $$ = keyword_name(p, $1, @1); }
    ;

keyword:
    skeyword { $$ = $1; }
  | FUSE     { $$ = "fuse"; }
  | DIM      { $$ = "dim"; }
  | BLOCK    { $$ = "block"; }
  | GRAPH    { $$ = "graph"; }
    ;

skeyword:
    RETURN   { $$ = "return"; }
  | REQUIRE  { $$ = "require"; }
  | FOR      { $$ = "for"; }
  | IN       { $$ = "in"; }
  | TRUE     { $$ = "true"; }
  | FALSE    { $$ = "false"; }
  | INT_KW   { $$ = "int"; }
  | FLOAT_KW { $$ = "float"; }
  | BOOL_KW  { $$ = "bool"; }
  | F32      { $$ = "f32"; }
  | F16      { $$ = "f16"; }
  | BF16     { $$ = "bf16"; }
    ;

%%

/* ---- Diagnostics ---- */

static bool check_version(Parser *p, int64_t v, Span at)
{
    p->ast->version = v;
    p->ast->version_span = at;
    if (v == 1)
        return true;
    scan_error(p, at, "unsupported version %lld; this compiler reads 'fuse 1'", (long long)v);
    return false;
}

static char bracket_char(char kind)
{
    return kind == 's' ? '{' : kind;
}

static bool is_decl_keyword(int kind)
{
    return kind == TK_DIM || kind == TK_BLOCK || kind == TK_GRAPH || kind == TK_FUSE;
}

/* The bracket a syntax error at the last token probably leaves unclosed, or NULL. */
static const Bracket *unclosed_bracket(const Parser *p)
{
    if (p->tok_mismatch)
        return &p->mismatch_open;
    if (p->tok_depth == 0)
        return NULL;
    const Bracket *b = &p->open[p->tok_depth - 1];
    if (p->tok_kind == TK_YYEOF)
        return b;
    if (b->kind == '{')
        return is_decl_keyword(p->tok_kind) ? b : NULL;
    /* A ( [ or splice still open when a new line starts: likely a missing closer. */
    uint32_t line_b, line_t, col;
    source_line_col(p->src, b->at.lo, &line_b, &col);
    source_line_col(p->src, p->tok_span.lo, &line_t, &col);
    return line_t > line_b && scan_starts_line(p, p->tok_span.lo) ? b : NULL;
}

static void fuse_yyerror(const Span *loc, yyscan_t scanner, Parser *p, const char *msg)
{
    (void)scanner;
    if (strcmp(msg, "memory exhausted") == 0)
        msg = "expression nested too deeply";
    const Bracket *b = unclosed_bracket(p);
    if (scan_error(p, *loc, "%s", msg) && b)
        diag_report(p->diag, DIAG_NOTE, b->at, "'%c' opened here", bracket_char(b->kind));
}

static const char *keyword_name(Parser *p, const char *kw, Span at)
{
    scan_error(p, at, "'%s' is a keyword and cannot be used as a name", kw);
    return kw;
}

/* ---- Expressions ---- */

/* An expression with its depth (the longest path to a leaf), which bounds recursion. */
typedef struct ExprNode {
    Expr e; /* first: an Expr * is also an ExprNode * */
    uint32_t depth;
} ExprNode;

static uint32_t depth_of(const Expr *e)
{
    return e ? ((const ExprNode *)e)->depth : 0;
}

/* Records that e sits above a child of depth `below`. */
static void set_depth(Parser *p, Expr *e, uint32_t below)
{
    ExprNode *n = (ExprNode *)e;
    if (below + 1 > n->depth)
        n->depth = below + 1;
    if (n->depth > MAX_EXPR_DEPTH && !p->expr_depth_reported) {
        p->expr_depth_reported = true;
        scan_error(p, e->span, "expression nested too deeply (more than %d levels)",
                   MAX_EXPR_DEPTH);
    }
}

static Expr *new_expr(Parser *p, ExprKind kind, Span at)
{
    ExprNode *n = ARENA_NEW(p->arena, ExprNode);
    n->e.kind = kind;
    n->e.span = at;
    n->depth = 1;
    return &n->e;
}

static Expr *new_int(Parser *p, int64_t v, Span at)
{
    Expr *e = new_expr(p, EX_INT, at);
    e->ival = v;
    return e;
}

static Expr *new_float(Parser *p, double v, Span at)
{
    Expr *e = new_expr(p, EX_FLOAT, at);
    e->fval = v;
    return e;
}

static Expr *new_name(Parser *p, ExprKind kind, const char *name, Span at)
{
    Expr *e = new_expr(p, kind, at);
    e->name = name;
    return e;
}

static Expr *new_bool(Parser *p, bool v, Span at)
{
    Expr *e = new_expr(p, EX_BOOL, at);
    e->bval = v;
    return e;
}

static Expr *new_neg(Parser *p, Expr *operand, Span at)
{
    Expr *e = new_expr(p, EX_NEG, at);
    e->unary.operand = operand;
    set_depth(p, e, depth_of(operand));
    return e;
}

static Expr *new_bin(Parser *p, BinOp op, Expr *lhs, Expr *rhs, Span at, Span op_at)
{
    Expr *e = new_expr(p, EX_BIN, at);
    e->bin.op = op;
    e->bin.op_span = op_at;
    e->bin.lhs = lhs;
    e->bin.rhs = rhs;
    set_depth(p, e, depth_of(lhs));
    set_depth(p, e, depth_of(rhs));
    return e;
}

static Expr *new_call(Parser *p, const char *callee, Span callee_at, ArgList args, Span at)
{
    Expr *e = new_expr(p, EX_CALL, at);
    e->call.callee = callee;
    e->call.callee_span = callee_at;
    e->call.args = args.head;
    for (const Arg *a = args.head; a; a = a->next)
        set_depth(p, e, depth_of(a->value));
    return e;
}

static Expr *new_list(Parser *p, ExprList items, Span at)
{
    Expr *e = new_expr(p, EX_LIST, at);
    e->list.items = items.head;
    e->list.n = items.n;
    for (const Expr *i = items.head; i; i = i->next)
        set_depth(p, e, depth_of(i));
    return e;
}

static Expr *with_scope(Parser *p, Expr *call, Scope *scope, Span at)
{
    call->call.scope = scope;
    call->span = at;
    for (const ScopeSeg *s = scope->segs; s; s = s->next)
        for (const ScopePart *q = s->parts; q; q = q->next)
            set_depth(p, call, depth_of(q->splice));
    return call;
}

static Arg *new_arg(Parser *p, const char *name, Span name_at, Expr *value)
{
    Arg *a = ARENA_NEW(p->arena, Arg);
    a->name = name;
    a->name_span = name ? name_at : value->span;
    a->value = value;
    return a;
}

/* ---- Scopes ---- */

static ScopePart *new_part(Parser *p, const char *text, Expr *splice)
{
    ScopePart *q = ARENA_NEW(p->arena, ScopePart);
    q->text = text;
    q->splice = splice;
    return q;
}

static ScopeSeg *new_seg(Parser *p, PartList parts)
{
    ScopeSeg *s = ARENA_NEW(p->arena, ScopeSeg);
    s->parts = parts.head;
    return s;
}

static Scope *new_scope(Parser *p, SegList segs, Span at)
{
    Scope *s = ARENA_NEW(p->arena, Scope);
    s->segs = segs.head;
    s->span = at;
    return s;
}

/* ---- Statements ---- */

static Stmt *new_stmt(Parser *p, StmtKind kind, Span at)
{
    Stmt *s = ARENA_NEW(p->arena, Stmt);
    s->kind = kind;
    s->span = at;
    return s;
}

static Stmt *new_for(Parser *p, const char *var, Span var_at, Expr *lo, Expr *hi, Stmt *body,
                     Span body_at, Span at)
{
    Stmt *s = new_stmt(p, ST_FOR, at);
    s->loop.var = var;
    s->loop.var_span = var_at;
    s->loop.lo = lo;
    s->loop.hi = hi;
    s->loop.body = body;
    s->loop.body_span = body_at;
    return s;
}

static Cond *new_cond(Parser *p, CmpOp op, Expr *lhs, Expr *rhs, Span at)
{
    Cond *c = ARENA_NEW(p->arena, Cond);
    c->op = op;
    c->span = at;
    c->lhs = lhs;
    c->rhs = rhs;
    return c;
}

/* ---- Declarations ---- */

static TensorType tensor_type(DType dtype, Span dtype_at, ExprList dims, Span at)
{
    TensorType t = {0};
    t.dtype = dtype;
    t.dtype_span = dtype_at;
    t.dims = dims.head;
    t.rank = dims.n;
    t.span = at;
    return t;
}

static Param *new_tparam(Parser *p, const char *name, Span name_at, TensorType type, Span at)
{
    Param *q = ARENA_NEW(p->arena, Param);
    q->name = name;
    q->name_span = name_at;
    q->span = at;
    q->is_tensor = true;
    q->type = type;
    return q;
}

static Param *new_cparam(Parser *p, const char *name, Span name_at, CParamKind kind,
                         Expr *dflt, Span at)
{
    Param *q = ARENA_NEW(p->arena, Param);
    q->name = name;
    q->name_span = name_at;
    q->span = at;
    q->ckind = kind;
    q->default_value = dflt;
    return q;
}

static DimDef *new_dimdef(Parser *p, const char *name, Span name_at, Expr *value)
{
    DimDef *d = ARENA_NEW(p->arena, DimDef);
    d->name = name;
    d->name_span = name_at;
    d->value = value;
    return d;
}

static Decl *new_decl(Parser *p, DeclKind kind, Span at)
{
    Decl *d = ARENA_NEW(p->arena, Decl);
    d->kind = kind;
    d->span = at;
    return d;
}

/* A single unnamed result: one output named "out". */
static Result single_result(Parser *p, TensorType type, Span at)
{
    Result r = {{0}, true};
    Param *out = new_tparam(p, "out", at, type, at);
    LIST_PUSH(r.outputs, out);
    return r;
}

static Decl *new_fn(Parser *p, DeclKind kind, const char *name, Span name_at, ParamLists params,
                    Result result, bool has_result, Stmt *body, Span body_at, Span at)
{
    Decl *d = new_decl(p, kind, at);
    d->fn.name = name;
    d->fn.name_span = name_at;
    d->fn.params = params.tensors.head;
    d->fn.cparams = params.consts.head;
    d->fn.has_result = has_result;
    d->fn.outputs = result.outputs.head;
    d->fn.unnamed_result = result.unnamed;
    d->fn.body = body;
    d->fn.body_span = body_at;
    return d;
}

/* ---- The entry point ---- */

Ast *parse_source(const Source *src, Arena *arena, Diag *d)
{
    unsigned errors_before = d->nerrors;
    Parser parser;
    yyscan_t scanner = scan_begin(&parser, src, arena, d);
    parser.ast = ARENA_NEW(arena, Ast);
    int rc = fuse_yyparse(scanner, &parser);
    scan_end(scanner);
    Ast *ast = parser.ast;
    if (rc != 0 || d->nerrors != errors_before)
        return NULL;
    return ast;
}
