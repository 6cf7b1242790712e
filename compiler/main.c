/*
 * main: the fusec command line (LANGUAGE.md §5). Reading this file top to bottom is reading
 * what each subcommand does: read the spec, run the front-end stages (scan, parse, sema,
 * build), then check, or bind weights and tensors and execute.
 *
 * Exit status: 0 success; 1 a problem in the user's input (spec, weights, tensors, files);
 * 2 a usage error (unknown subcommand or option, malformed option value, unknown or missing
 * --input/--output name, missing --entry). Only this file calls exit.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "ast.h"
#include "backend_c.h"
#include "bench.h"
#include "ctx.h"
#include "diag.h"
#include "dot.h"
#include "driver.h"
#include "fuse_rt.h"
#include "fusec.h"
#include "graph.h"
#include "interp.h"
#include "loop.h"
#include "outfile.h"
#include "passes.h"
#include "schedule.h"
#include "source.h"
#include "util.h"
#include "weights.h"

#ifdef FUSE_WITH_LLVM
#include "jit.h"
#endif

#ifdef FUSE_WITH_LLVM
#define FUSEC_BACKENDS "jit c interp"
#else
#define FUSEC_BACKENDS "c interp"
#endif

enum { EXIT_OK = 0, EXIT_INPUT = 1, EXIT_USAGE = 2 };

typedef enum Command { CMD_CHECK, CMD_RUN, CMD_EMIT_C, CMD_EMIT_LLVM, CMD_BENCH, CMD_DOT } Command;

static const char *const command_names[] = {"check", "run", "emit-c", "emit-llvm", "bench", "dot"};

/* An --input or --output argument: [NAME=]PATH. */
typedef struct IoArg {
    const char *name; /* NULL when not given */
    const char *path;
} IoArg;

typedef struct Options {
    Command cmd;
    const char *file;
    const char *entry;
    const char *weights;
    const char *prefix;
    const char *backend_name; /* as given, or the default */
    const char *dump;         /* tokens | ast | graph */
    const char *out_path;
    const char *header_path; /* emit-c: as given, or header_default */
    StrBuf header_default;   /* emit-c without --header: OUT.c's stem with .h */
    StrBuf rt_header;        /* emit-c: fuse_rt.h, beside the header */
    long threads;
    long runs;
    bool json;
    bool random_inputs;   /* run: fill inputs with deterministic random data */
    bool explain_fusion;  /* a note at each fusion the planner declined */
    long vector_width;    /* --vector-width; 0: the host's */
    KernelOptions kernel; /* backend, --vector-width, --bounds-checks, --cpu, --features */
    DimOverride *dims;    /* owns */
    size_t ndims;
    IoArg *inputs; /* owns */
    size_t ninputs;
    IoArg *outputs; /* owns */
    size_t noutputs;
} Options;

static void usage(FILE *out)
{
    fputs(
        "usage:\n"
        "  fusec check     FILE [--entry NAME] [--dim K=V[,K=V...]]... [--weights W.safetensors]\n"
        "                       [--prefix P] [--dump=tokens|ast|graph|loops] [--dump-after=PASS]\n"
        "  fusec run       FILE [same options] --input [NAME=]X.npy ... --output [NAME=]Y.npy ...\n"
        "                       [--backend jit|c|interp] [--threads N]\n"
        "  fusec run       FILE [same options] --random-inputs [--output ...]\n"
        "  fusec emit-c    FILE [same options] -o OUT.c [--header OUT.h]\n"
        "  fusec emit-llvm FILE [same options] -o OUT.ll\n"
        "  fusec bench     FILE [same options] [--backend ...] [--threads N] [--runs N] [--json]\n"
        "  fusec dot       FILE [same options] [-o OUT.dot]\n"
        "  fusec --help | --version\n"
        "\n"
        "check prints the entry's inputs, outputs, parameters, FLOPs and bytes; with --weights it\n"
        "also checks every weight key, dtype and shape. run computes the entry on .npy inputs\n"
        "(random weights when --weights is not given) and writes .npy outputs. emit-c writes the\n"
        "kernel as C, with its header and fuse_rt.h, for a program to compile in. dot writes the\n"
        "graph as written and after the passes, one cluster per fused kernel, for Graphviz.\n"
        "bench --entry a,b,c (or bench with no --entry on a file of several graphs) measures\n"
        "each graph and prints one table (with --json, one line per graph).\n"
        "Code generation: --vector-width 4|8|16 (default: the host's widest), --bounds-checks\n"
        "(generated code checks every index; c only; for testing), --cpu NAME and\n"
        "--features LIST (jit and emit-llvm: the LLVM target instead of the host's).\n"
        "The default backend is jit in a build with LLVM, else c.\n"
        "Graph passes (run before code generation; the interp backend runs the graph as\n"
        "built): --dump-after=PASS prints the graph after PASS and stops, --time-passes\n"
        "prints each pass's time and node counts on stderr, -O0 runs no pass, --explain-fusion\n"
        "notes each fusion the planner declined and why. Passes:\n",
        out);
    size_t npasses;
    const Pass *passes = passes_table(&npasses);
    for (size_t i = 0; i < npasses; i++)
        fprintf(out, "  %-18s %s\n", passes[i].name, passes[i].what);
    fputs("Exit status: 0 success, 1 a problem in the input files, 2 a usage error.\n", out);
}

/* A usage error: message, hint, and the status the caller returns. */
static int usage_error(const char *fmt, ...) FUSE_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fusec: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nTry 'fusec --help'.\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

static bool is_identifier(const char *s, size_t n)
{
    if (n == 0 || !(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(s[i] == '_' || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* Parses "K=V[,K=V...]" into opt->dims. Returns an exit status. */
static int parse_dims(Options *opt, char *text)
{
    for (char *item = text, *next; item; item = next) {
        next = strchr(item, ',');
        if (next)
            *next++ = '\0';
        char *eq = strchr(item, '=');
        if (!eq || !is_identifier(item, (size_t)(eq - item)))
            return usage_error("malformed --dim '%s': expected NAME=INTEGER", item);
        *eq = '\0';
        const char *value = eq + 1;
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (end == value || *end != '\0')
            return usage_error("malformed --dim %s=%s: '%s' is not an integer", item, value, value);
        if (errno == ERANGE) {
            fprintf(stderr, "fusec: error: --dim %s=%s: value out of range\n", item, value);
            return EXIT_INPUT;
        }
        opt->dims = xrealloc(opt->dims, (opt->ndims + 1) * sizeof(DimOverride));
        opt->dims[opt->ndims].name = item;
        opt->dims[opt->ndims].value = (int64_t)v;
        opt->ndims++;
    }
    return EXIT_OK;
}

/* Adds an --input or --output argument. Returns an exit status. */
static int add_io(const char *option, IoArg **list, size_t *n, const char *text)
{
    *list = xrealloc(*list, (*n + 1) * sizeof(IoArg));
    IoArg *a = &(*list)[(*n)++];
    const char *eq = strchr(text, '=');
    if (eq && is_identifier(text, (size_t)(eq - text))) {
        char *name = xmalloc((size_t)(eq - text) + 1);
        memcpy(name, text, (size_t)(eq - text));
        name[eq - text] = '\0';
        a->name = name;
        a->path = eq + 1;
    } else {
        a->name = NULL;
        a->path = text;
    }
    if (a->path[0] == '\0')
        return usage_error("%s %s needs a file name", option, text[0] ? text : "''");
    return EXIT_OK;
}

static void options_free(Options *opt)
{
    free(opt->dims);
    for (size_t i = 0; i < opt->ninputs; i++)
        free((void *)(uintptr_t)opt->inputs[i].name);
    for (size_t i = 0; i < opt->noutputs; i++)
        free((void *)(uintptr_t)opt->outputs[i].name);
    free(opt->inputs);
    free(opt->outputs);
    sb_free(&opt->header_default);
    sb_free(&opt->rt_header);
}

static int parse_long(const char *opt, const char *text, long min, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || v < min)
        return usage_error("malformed %s '%s': expected an integer >= %ld", opt, text, min);
    *out = v;
    return EXIT_OK;
}

/* Splits "--name=value" or takes the next argument. Returns NULL (after a usage error) if the
 * value is missing. */
static const char *option_value(int argc, char **argv, int *i, const char *name, char *arg)
{
    size_t n = strlen(name);
    if (strncmp(arg, name, n) == 0 && arg[n] == '=')
        return arg + n + 1;
    if (*i + 1 >= argc) {
        usage_error("option %s needs a value", name);
        return NULL;
    }
    return argv[++*i];
}

static bool option_is(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

/* --dump-after names a pass of the pipeline and needs the pipeline to run. */
static int check_dump_after(const Options *opt)
{
    const char *name = opt->kernel.passes.dump_after;
    if (!name)
        return EXIT_OK;
    if (opt->dump)
        return usage_error("--dump and --dump-after exclude each other");
    if (opt->kernel.passes.disabled)
        return usage_error("--dump-after=%s needs the passes, and -O0 turns them off", name);
    if (passes_find(name))
        return EXIT_OK;
    fprintf(stderr, "fusec: error: unknown pass '%s' for --dump-after: expected one of ", name);
    passes_list_names(stderr, ", ");
    fputs("\nTry 'fusec --help'.\n", stderr);
    return EXIT_USAGE;
}

/* Sets *path to the value of an option that names a file (-o, --header). Returns an exit
 * status: an empty value is a usage error. */
static int file_name(const char *option, const char *value, const char **path)
{
    if (value[0] == '\0')
        return usage_error("%s '' needs a file name", option);
    *path = value;
    return EXIT_OK;
}

/* The files a command writes must be different files (outfile_same_file): two outputs
 * given one path, or emit-c's -o naming its own header, is a usage error. emit-c's header
 * path (given or derived from -o) and its fuse_rt.h path are set here. */
static int check_output_args(Options *opt)
{
    for (size_t i = 0; i < opt->noutputs; i++)
        for (size_t j = 0; j < i; j++)
            if (outfile_same_file(opt->outputs[i].path, opt->outputs[j].path)) {
                if (strcmp(opt->outputs[i].path, opt->outputs[j].path) == 0)
                    return usage_error("--output %s given twice", opt->outputs[i].path);
                return usage_error("--output %s and %s are one file, given twice",
                                   opt->outputs[j].path, opt->outputs[i].path);
            }
    if (opt->cmd != CMD_EMIT_C)
        return EXIT_OK;
    if (!opt->header_path) {
        const char *c = opt->out_path;
        const char *dot = strrchr(c, '.'), *slash = strrchr(c, '/');
        size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - c) : strlen(c);
        sb_append_n(&opt->header_default, c, stem);
        sb_append(&opt->header_default, ".h");
        opt->header_path = opt->header_default.data;
    }
    backend_c_rt_header_path(opt->header_path, &opt->rt_header);
    const char *rt = sb_str(&opt->rt_header);
    if (outfile_same_file(opt->out_path, rt))
        return usage_error("-o %s: the runtime header %s would be written over it", opt->out_path,
                           rt);
    if (outfile_same_file(opt->out_path, opt->header_path))
        return usage_error("-o %s: the header %s would be written over it; give --header "
                           "another path",
                           opt->out_path, opt->header_path);
    if (outfile_same_file(opt->header_path, rt))
        return usage_error("--header %s: the runtime header %s would be written over it",
                           opt->header_path, rt);
    return EXIT_OK;
}

static int parse_args(int argc, char **argv, Options *opt)
{
    static const char *const value_options[] = {
        "--entry",  "--dim",      "--weights",      "--prefix",     "--input",
        "--output", "--backend",  "--threads",      "--runs",       "--dump",
        "--header", "-o",         "--vector-width", "--dump-after",
#ifdef FUSE_WITH_LLVM
        "--cpu",    "--features",
#endif
    };
    const char *cmd = argv[1];
    size_t c = 0;
    while (c < countof(command_names) && strcmp(cmd, command_names[c]) != 0)
        c++;
    if (c == countof(command_names)) {
        const char *near = closest_name(cmd, command_names, countof(command_names));
        if (near)
            return usage_error("unknown command '%s'; did you mean '%s'?", cmd, near);
        return usage_error("unknown command '%s'", cmd);
    }
    opt->cmd = (Command)c;
    opt->runs = 10;
    for (int i = 2; i < argc; i++) {
        char *arg = argv[i];
        if (arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (opt->file)
                return usage_error("unexpected argument '%s' (the spec is '%s')", arg, opt->file);
            opt->file = arg;
            continue;
        }
        if (strcmp(arg, "--json") == 0) {
            opt->json = true;
            continue;
        }
        if (strcmp(arg, "--random-inputs") == 0) {
            opt->random_inputs = true;
            continue;
        }
        if (strcmp(arg, "--bounds-checks") == 0) {
            opt->kernel.bounds_checks = true;
            continue;
        }
        if (strcmp(arg, "--time-passes") == 0) {
            opt->kernel.passes.time_out = stderr;
            continue;
        }
        if (strcmp(arg, "--explain-fusion") == 0) {
            opt->explain_fusion = true;
            continue;
        }
        if (strcmp(arg, "-O0") == 0) {
            opt->kernel.passes.disabled = true;
            continue;
        }
        size_t k = 0;
        while (k < countof(value_options) && !option_is(arg, value_options[k]))
            k++;
        if (k == countof(value_options)) {
            const char *eq = strchr(arg, '=');
            size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(len < 63 ? len : 63), arg);
            const char *near = closest_name(name, value_options, countof(value_options));
            if (near)
                return usage_error("unknown option '%s'; did you mean '%s'?", name, near);
            return usage_error("unknown option '%s'", name);
        }
        const char *name = value_options[k];
        const char *value = option_value(argc, argv, &i, name, arg);
        if (!value)
            return EXIT_USAGE;
        int status = EXIT_OK;
        if (strcmp(name, "--entry") == 0)
            opt->entry = value;
        else if (strcmp(name, "--dim") == 0)
            status = parse_dims(opt, (char *)(uintptr_t)value);
        else if (strcmp(name, "--weights") == 0)
            opt->weights = value;
        else if (strcmp(name, "--prefix") == 0)
            opt->prefix = value;
        else if (strcmp(name, "--input") == 0)
            status = add_io(name, &opt->inputs, &opt->ninputs, value);
        else if (strcmp(name, "--output") == 0)
            status = add_io(name, &opt->outputs, &opt->noutputs, value);
        else if (strcmp(name, "--backend") == 0)
            opt->backend_name = value;
        else if (strcmp(name, "--threads") == 0)
            status = parse_long("--threads", value, 1, &opt->threads);
        else if (strcmp(name, "--runs") == 0)
            status = parse_long("--runs", value, 1, &opt->runs);
        else if (strcmp(name, "--dump") == 0)
            opt->dump = value;
        else if (strcmp(name, "--dump-after") == 0)
            opt->kernel.passes.dump_after = value;
        else if (strcmp(name, "--header") == 0)
            status = file_name(name, value, &opt->header_path);
        else if (strcmp(name, "--vector-width") == 0)
            status = parse_long("--vector-width", value, 1, &opt->vector_width);
#ifdef FUSE_WITH_LLVM
        else if (strcmp(name, "--cpu") == 0)
            opt->kernel.cpu = value;
        else if (strcmp(name, "--features") == 0)
            opt->kernel.features = value;
#endif
        else
            status = file_name(name, value, &opt->out_path);
        if (status != EXIT_OK)
            return status;
    }
    if (!opt->file)
        return usage_error("%s needs a spec file", command_names[opt->cmd]);
    if (opt->dump && strcmp(opt->dump, "tokens") != 0 && strcmp(opt->dump, "ast") != 0 &&
        strcmp(opt->dump, "graph") != 0 && strcmp(opt->dump, "loops") != 0)
        return usage_error("unknown --dump '%s': expected tokens, ast, graph or loops", opt->dump);
    int dump_status = check_dump_after(opt);
    if (dump_status != EXIT_OK)
        return dump_status;
    if (!opt->backend_name)
        opt->kernel.backend = driver_default_backend();
    else if (!driver_parse_backend(opt->backend_name, &opt->kernel.backend)) {
        if (strcmp(opt->backend_name, "jit") == 0)
            return usage_error("backend 'jit' is not available in this build; use c or interp");
        return usage_error("unknown backend '%s': expected jit, c or interp", opt->backend_name);
    }
    opt->backend_name = driver_backend_name(opt->kernel.backend);
    if (opt->vector_width && opt->vector_width != 4 && opt->vector_width != 8 &&
        opt->vector_width != 16)
        return usage_error("--vector-width %ld: expected 4, 8 or 16", opt->vector_width);
    opt->kernel.vector_lanes = (uint32_t)opt->vector_width;
    if (opt->kernel.bounds_checks && opt->kernel.backend == BACKEND_JIT)
        return usage_error("--bounds-checks needs --backend c: the JIT has no checked mode");
    if (opt->cmd == CMD_EMIT_C && !opt->out_path)
        return usage_error("emit-c needs -o OUT.c");
#ifdef FUSE_WITH_LLVM
    if (opt->cmd == CMD_EMIT_LLVM && !opt->out_path)
        return usage_error("emit-llvm needs -o OUT.ll");
#endif
    if (opt->cmd == CMD_BENCH && opt->kernel.backend == BACKEND_INTERP)
        return usage_error("bench measures compiled kernels: use --backend jit or c");
    if (opt->cmd != CMD_RUN && (opt->ninputs || opt->noutputs || opt->random_inputs))
        return usage_error("--input, --output and --random-inputs belong to 'fusec run'");
    if (opt->random_inputs && opt->ninputs)
        return usage_error("--random-inputs and --input exclude each other");
    return check_output_args(opt);
}

/* The front end: parse, sema, build, or a --dump of tokens or the AST on the way. Returns the
 * graph, or NULL with *status set. */
static Graph *compile(Ctx *cx, const Options *opt, int *status)
{
    *status = EXIT_INPUT;
    if (opt->dump && strcmp(opt->dump, "tokens") == 0) {
        bool ok = scan_dump_tokens(cx->src, cx->diag, stdout);
        *status = ok ? EXIT_OK : EXIT_INPUT;
        return NULL;
    }
    Ast *ast = driver_parse(cx);
    if (!ast)
        return NULL;
    if (opt->dump && strcmp(opt->dump, "ast") == 0) {
        ast_dump(ast, stdout);
        *status = EXIT_OK;
        return NULL;
    }
    DriverStatus ds;
    Graph *g = driver_build(cx, ast, command_names[opt->cmd], &ds);
    *status = (int)ds;
    return g;
}

static void print_si(double v, const char *unit)
{
    if (v >= 1e9)
        printf("%.3f G%s", v / 1e9, unit);
    else if (v >= 1e6)
        printf("%.3f M%s", v / 1e6, unit);
    else if (v >= 1e3)
        printf("%.3f k%s", v / 1e3, unit);
    else
        printf("%.0f %s", v, unit);
}

static void print_summary(const Graph *g)
{
    char shape[SHAPE_TEXT_MAX];
    printf("graph %s\n", g->name);
    printf("  inputs:\n");
    for (uint32_t i = 0; i < g->ninputs; i++)
        printf("    %s: f32%s\n", g->inputs[i]->attr.input.name,
               shape_format(&g->inputs[i]->shape, shape, sizeof shape));
    printf("  outputs:\n");
    for (uint32_t i = 0; i < g->noutputs; i++)
        printf("    %s: f32%s\n", g->output_names[i],
               shape_format(&g->outputs[i]->shape, shape, sizeof shape));
    double values = 0;
    for (uint32_t i = 0; i < g->nparams; i++)
        values += (double)shape_numel(&g->params[i]->shape);
    printf("  parameters: %u (%.0f values)\n", g->nparams, values);
    for (uint32_t i = 0; i < g->nparams; i++)
        printf("    %s: f32%s\n", g->params[i]->attr.param.key,
               shape_format(&g->params[i]->shape, shape, sizeof shape));
    double flops = graph_flops(g), bytes = graph_bytes(g);
    printf("  flops: %.0f (", flops);
    print_si(flops, "FLOP");
    printf(")\n  bytes: %.0f (", bytes);
    print_si(bytes, "B");
    printf(")\n");
}

/* Matches --input/--output arguments to the graph's names. slots[i] gets the argument for
 * name i (or NULL). Returns an exit status. */
static int match_io(const char *what, const IoArg *args, size_t nargs, const char *const *names,
                    uint32_t nnames, const IoArg **slots, bool all_required)
{
    for (uint32_t i = 0; i < nnames; i++)
        slots[i] = NULL;
    for (size_t a = 0; a < nargs; a++) {
        uint32_t at = nnames;
        if (!args[a].name) {
            if (nnames != 1)
                return usage_error("--%s %s: the graph has %u %ss; write NAME=%s", what,
                                   args[a].path, nnames, what, args[a].path);
            at = 0;
        } else {
            for (uint32_t i = 0; i < nnames; i++)
                if (strcmp(args[a].name, names[i]) == 0)
                    at = i;
        }
        if (at == nnames) {
            const char *near = closest_name(args[a].name, names, nnames);
            if (near)
                return usage_error("--%s %s=...: the graph has no %s named '%s'; did you mean "
                                   "'%s'?",
                                   what, args[a].name, what, args[a].name, near);
            return usage_error("--%s %s=...: the graph has no %s named '%s'", what, args[a].name,
                               what, args[a].name);
        }
        if (slots[at])
            return usage_error("--%s '%s' given twice", what, names[at]);
        slots[at] = &args[a];
    }
    for (uint32_t i = 0; all_required && i < nnames; i++)
        if (!slots[i])
            return usage_error("missing --%s %s=FILE.npy", what, names[i]);
    return EXIT_OK;
}

/* Fills the inputs with deterministic values in [-1, 1) (--random-inputs). */
static int random_inputs(const Graph *g, float **data)
{
    uint64_t state = 0x2545f4914f6cdd1dULL;
    for (uint32_t i = 0; i < g->ninputs; i++) {
        int64_t n = shape_numel(&g->inputs[i]->shape);
        data[i] = fuse_rt_alloc((size_t)n * sizeof(float));
        if (!data[i]) {
            fprintf(stderr, "fusec: error: out of memory for input '%s'\n",
                    g->inputs[i]->attr.input.name);
            return EXIT_INPUT;
        }
        for (int64_t k = 0; k < n; k++) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17; /* xorshift64 */
            data[i][k] = (float)((double)(state >> 11) * 0x1.0p-52 - 1.0);
        }
    }
    return EXIT_OK;
}

/* Reads the graph's inputs. Returns an exit status; buffers are freed by the caller. */
static int read_inputs(Ctx *cx, const Graph *g, const IoArg *const *slots, float **data)
{
    char err[FUSE_RT_ERR_MAX];
    for (uint32_t i = 0; i < g->ninputs; i++) {
        const Node *in = g->inputs[i];
        uint32_t rank;
        int64_t shape[FUSE_RT_MAX_RANK];
        if (fuse_rt_npy_read(slots[i]->path, &data[i], &rank, shape, err, sizeof err)) {
            diag_report_runtime(cx->diag, DIAG_ERROR, slots[i]->path, err);
            return EXIT_INPUT;
        }
        Shape got = {.rank = rank};
        for (uint32_t d = 0; d < rank; d++)
            got.dim[d] = shape[d];
        if (!shape_equal(&got, &in->shape)) {
            char want_text[SHAPE_TEXT_MAX], got_text[SHAPE_TEXT_MAX];
            diag_report_file(cx->diag, DIAG_ERROR, slots[i]->path,
                             "input '%s' has shape %s; the graph declares f32%s",
                             in->attr.input.name, shape_format(&got, got_text, sizeof got_text),
                             shape_format(&in->shape, want_text, sizeof want_text));
            return EXIT_INPUT;
        }
    }
    return EXIT_OK;
}

/* Writes the requested outputs all or nothing (an OutputFiles set): a failed run leaves every
 * file as it was. */
static int write_outputs(Ctx *cx, const Graph *g, const IoArg *const *slots, float *const *data)
{
    OutputFiles set = {0};
    char err[FUSE_RT_ERR_MAX];
    for (uint32_t i = 0; i < g->noutputs; i++) {
        if (!slots[i])
            continue;
        const char *path = slots[i]->path;
        const char *tmp = outfile_temp(&set, cx->diag, path);
        const Shape *s = &g->outputs[i]->shape;
        if (tmp && fuse_rt_npy_write(tmp, data[i], s->rank, s->dim, err, sizeof err)) {
            // The runtime names the temporary; the user knows the output.
            const char *msg = err;
            size_t n = strlen(tmp);
            if (strncmp(msg, tmp, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
                msg += n + 2;
            diag_report_file(cx->diag, DIAG_ERROR, path, "%s", msg);
            tmp = NULL;
        }
        if (!tmp) {
            outfile_abort(&set);
            return EXIT_INPUT;
        }
    }
    return outfile_commit(&set, cx->diag) ? EXIT_OK : EXIT_INPUT;
}

/* The host side of one execution: weights (bound from the file or generated), the table
 * create() takes, inputs and outputs. */
typedef struct HostTensors {
    const float **params;      /* g->params[i]'s values: in the file or in owned_params */
    float **owned_params;      /* owns: generated weights */
    fuse_rt_weight *weights;   /* the table create() takes, over params */
    float **inputs, **outputs; /* owns */
    fuse_rt_safetensors *file; /* owns */
} HostTensors;

static void host_init(HostTensors *t, const Graph *g)
{
    t->params = xcalloc(g->nparams + 1, sizeof(float *));
    t->owned_params = xcalloc(g->nparams + 1, sizeof(float *));
    t->weights = xcalloc(g->nparams + 1, sizeof(fuse_rt_weight));
    t->inputs = xcalloc(g->ninputs + 1, sizeof(float *));
    t->outputs = xcalloc(g->noutputs + 1, sizeof(float *));
    t->file = NULL;
}

static void host_free(HostTensors *t, const Graph *g)
{
    for (uint32_t i = 0; i < g->ninputs; i++)
        fuse_rt_free(t->inputs[i]);
    for (uint32_t i = 0; i < g->noutputs; i++)
        fuse_rt_free(t->outputs[i]);
    for (uint32_t i = 0; i < g->nparams; i++)
        fuse_rt_free(t->owned_params[i]);
    if (t->file)
        fuse_rt_safetensors_close(t->file);
    free(t->params);
    free(t->owned_params);
    free(t->weights);
    free(t->inputs);
    free(t->outputs);
}

/* Weights: from the file, or deterministic random values (with a warning). */
static int host_bind_weights(Ctx *cx, const Graph *g, const char *path, HostTensors *t)
{
    if (path) {
        t->file = weights_bind_file(cx, g, path, t->params);
        if (!t->file)
            return EXIT_INPUT;
    } else if (g->nparams) {
        diag_report_file(cx->diag, DIAG_WARNING, NULL,
                         "no --weights given: filling %u parameter%s with deterministic "
                         "pseudo-random values",
                         g->nparams, g->nparams == 1 ? "" : "s");
    }
    for (uint32_t i = 0; i < g->nparams; i++) {
        const Node *param = g->params[i];
        if (!path) {
            t->owned_params[i] = fuse_rt_alloc((size_t)shape_numel(&param->shape) * sizeof(float));
            if (!t->owned_params[i]) {
                diag_report_file(cx->diag, DIAG_ERROR, NULL, "out of memory for weight '%s'",
                                 param->attr.param.key);
                return EXIT_INPUT;
            }
            weights_fill_random(param, t->owned_params[i]);
            t->params[i] = t->owned_params[i];
        }
        t->weights[i] = (fuse_rt_weight){param->attr.param.key, t->params[i], param->shape.rank,
                                         param->shape.dim};
    }
    return EXIT_OK;
}

static int host_alloc_outputs(Ctx *cx, const Graph *g, HostTensors *t)
{
    for (uint32_t i = 0; i < g->noutputs; i++) {
        t->outputs[i] = fuse_rt_alloc((size_t)shape_numel(&g->outputs[i]->shape) * sizeof(float));
        if (!t->outputs[i]) {
            diag_report_file(cx->diag, DIAG_ERROR, NULL, "out of memory for output '%s'",
                             g->output_names[i]);
            return EXIT_INPUT;
        }
    }
    return EXIT_OK;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* What `run` did, on stdout: the backend and time, and per output its shape, a few
 * statistics and where it went. */
static void print_run_report(const Graph *g, const Options *opt, const IoArg *const *slots,
                             float *const *data, double elapsed_ms)
{
    char shape[SHAPE_TEXT_MAX];
    printf("ran graph %s (%.3f GFLOP) with backend %s in %.1f ms%s\n", g->name,
           graph_flops(g) / 1e9, opt->backend_name, elapsed_ms,
           opt->random_inputs ? " on random inputs" : "");
    for (uint32_t i = 0; i < g->noutputs; i++) {
        int64_t n = shape_numel(&g->outputs[i]->shape);
        double lo = INFINITY, hi = -INFINITY, sum = 0;
        for (int64_t k = 0; k < n; k++) {
            double v = data[i][k];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            sum += v;
        }
        printf("  %s: f32%s min %.6g max %.6g mean %.6g%s%s\n", g->output_names[i],
               shape_format(&g->outputs[i]->shape, shape, sizeof shape), lo, hi, sum / (double)n,
               slots[i] ? " -> " : "", slots[i] ? slots[i]->path : "");
    }
}

/* The --threads pool (NULL for one thread). */
static int make_pool(Ctx *cx, const Options *opt, fuse_rt_pool **pool)
{
    long threads = opt->threads ? opt->threads : available_cpus();
    char err[FUSE_RT_ERR_MAX];
    *pool = NULL;
    if (threads > 1 && fuse_rt_pool_create((int)threads, pool, err, sizeof err) != FUSE_RT_OK) {
        diag_report_file(cx->diag, DIAG_ERROR, NULL, "%s", err);
        return EXIT_INPUT;
    }
    return EXIT_OK;
}

/* Runs g with a code generator: compile, create, run once (timed), destroy. */
static int execute_compiled(Ctx *cx, const Graph *g, const Options *opt, const HostTensors *t,
                            double *elapsed_ms)
{
    Compiled kernel;
    int status = (int)driver_compile_graph(cx, g, &opt->kernel, &kernel);
    if (status != EXIT_OK) {
        driver_release(&kernel);
        return status;
    }
    const fuse_rt_kernel_info *info = kernel.info;
    char err[FUSE_RT_ERR_MAX] = "";
    fuse_rt_pool *pool = NULL;
    fuse_rt_kernel *k = NULL;
    int rc = make_pool(cx, opt, &pool) == EXIT_OK ? FUSE_RT_OK : FUSE_RT_EINVAL;
    if (rc == FUSE_RT_OK)
        rc = info->create(t->weights, g->nparams, pool, &k, err, sizeof err);
    if (rc == FUSE_RT_OK) {
        double t0 = now_ms();
        rc = info->run(k, (const float *const *)t->inputs, t->outputs, err, sizeof err);
        *elapsed_ms = now_ms() - t0;
    }
    if (rc != FUSE_RT_OK && err[0])
        diag_report_file(cx->diag, DIAG_ERROR, NULL, "%s", err);
    if (k)
        info->destroy(k);
    fuse_rt_pool_destroy(pool);
    driver_release(&kernel);
    return rc == FUSE_RT_OK ? EXIT_OK : EXIT_INPUT;
}

/* Binds every weight of g to the file at path, as `run` would, and lets it go. Returns an exit
 * status (the problems reported). */
static int verify_weights(Ctx *cx, const Graph *g, const char *path)
{
    const float **data = xcalloc(g->nparams + 1, sizeof(float *));
    fuse_rt_safetensors *file = weights_bind_file(cx, g, path, data);
    free(data);
    if (!file)
        return EXIT_INPUT;
    fuse_rt_safetensors_close(file);
    return EXIT_OK;
}

#ifdef FUSE_WITH_LLVM
/* emit-llvm: the optimized module as LLVM assembly in -o OUT.ll. */
static int emit_llvm(Ctx *cx, const Graph *g, const Options *opt)
{
    if (opt->weights && verify_weights(cx, g, opt->weights) != EXIT_OK)
        return EXIT_INPUT;
    LoopProgram *p = driver_lower(cx, g, &opt->kernel);
    JitOptions target = {.cpu = opt->kernel.cpu, .features = opt->kernel.features};
    StrBuf text = {0};
    if (!p || !jit_emit_llvm(cx, p, &target, &text)) {
        sb_free(&text);
        return EXIT_INPUT;
    }
    OutputFiles set = {0};
    bool ok = outfile_write(&set, cx->diag, opt->out_path, sb_str(&text), text.len);
    if (ok)
        ok = outfile_commit(&set, cx->diag);
    else
        outfile_abort(&set);
    sb_free(&text);
    return ok ? EXIT_OK : EXIT_INPUT;
}
#endif

/* Computes g's outputs with the chosen backend. */
static int execute(Ctx *cx, const Graph *g, const Options *opt, const HostTensors *t,
                   double *elapsed_ms)
{
    if (opt->kernel.backend != BACKEND_INTERP)
        return execute_compiled(cx, g, opt, t, elapsed_ms);
    char err[256];
    double t0 = now_ms();
    bool ok =
        interp_run(g, t->params, (const float *const *)t->inputs, t->outputs, err, sizeof err);
    *elapsed_ms = now_ms() - t0;
    if (!ok) {
        diag_report_file(cx->diag, DIAG_ERROR, NULL, "%s", err);
        return EXIT_INPUT;
    }
    return EXIT_OK;
}

/* emit-c: the kernel's C source and header (default: OUT.c with .h, set by
 * check_output_args), and fuse_rt.h beside the header. */
static int emit_c(Ctx *cx, const Graph *g, const Options *opt)
{
    if (opt->weights && verify_weights(cx, g, opt->weights) != EXIT_OK)
        return EXIT_INPUT;
    LoopProgram *p = driver_lower(cx, g, &opt->kernel);
    if (!p)
        return EXIT_INPUT;
    bool ok = backend_c_write(cx, p, opt->out_path, opt->header_path, opt->kernel.bounds_checks);
    return ok ? EXIT_OK : EXIT_INPUT;
}

/* What bench measured for one graph, printed as text, as one JSON line (LANGUAGE.md section
 * 5), or as one row of a table of several graphs. */
typedef struct BenchReport {
    char graph[128];
    long runs;
    int threads;
    double median_ms, min_ms, max_ms;
    double flops, executed_flops, bytes, compile_ms, peak_gflops;
    int64_t scratch_bytes, prepared_bytes, params; /* params: weight elements */
} BenchReport;

static double bench_gflops(const BenchReport *r)
{
    return r->flops / r->median_ms / 1e6;
}

static double bench_peak_fraction(const BenchReport *r)
{
    return r->executed_flops / r->median_ms / 1e6 / r->peak_gflops;
}

static void print_bench_json(const Options *opt, const BenchReport *r)
{
    printf("{\"graph\": \"%s\", \"backend\": \"%s\", \"threads\": %d, \"runs\": %ld, "
           "\"median_ms\": %.6g, \"min_ms\": %.6g, \"max_ms\": %.6g, \"flops\": %.0f, "
           "\"executed_flops\": %.0f, \"gflops\": %.3f, \"peak_gflops\": %.3f, "
           "\"peak_fraction\": %.4f, \"bytes\": %.0f, \"compile_ms\": %.3f, "
           "\"scratch_bytes\": %" PRId64 ", \"prepared_bytes\": %" PRId64 ", \"params\": %" PRId64
           "}\n",
           r->graph, opt->backend_name, r->threads, r->runs, r->median_ms, r->min_ms, r->max_ms,
           r->flops, r->executed_flops, bench_gflops(r), r->peak_gflops, bench_peak_fraction(r),
           r->bytes, r->compile_ms, r->scratch_bytes, r->prepared_bytes, r->params);
}

static void print_bench(const Options *opt, const BenchReport *r)
{
    if (opt->json) {
        print_bench_json(opt, r);
        return;
    }
    printf("bench %s: backend %s, %d thread%s, %ld runs\n", r->graph, opt->backend_name, r->threads,
           r->threads == 1 ? "" : "s", r->runs);
    printf("  median %.3f ms (min %.3f, max %.3f)\n", r->median_ms, r->min_ms, r->max_ms);
    printf("  %.3f GFLOP: %.1f GFLOP/s, %.1f%% of the measured FMA peak (%.1f GFLOP/s)\n",
           r->flops / 1e9, bench_gflops(r), 100 * bench_peak_fraction(r), r->peak_gflops);
    printf("  %" PRId64 " parameters, compile %.1f ms, scratch %.1f MiB, prepared weights %.1f "
           "MiB, moves %.1f MiB\n",
           r->params, r->compile_ms, (double)r->scratch_bytes / 1048576.0,
           (double)r->prepared_bytes / 1048576.0, r->bytes / 1048576.0);
}

/* Several graphs side by side: the cost of each choice (add, multiply or concat; conv or
 * linear; which attention) in one table. */
static void print_bench_table(const Options *opt, const BenchReport *rows, size_t n)
{
    if (opt->json) {
        for (size_t i = 0; i < n; i++)
            print_bench_json(opt, &rows[i]);
        return;
    }
    int width = 5;
    for (size_t i = 0; i < n; i++) {
        int len = (int)strlen(rows[i].graph);
        width = len > width ? len : width;
    }
    printf("bench %s: backend %s, %d thread%s, %ld runs each, measured FMA peak %.1f GFLOP/s\n",
           opt->file, opt->backend_name, rows[0].threads, rows[0].threads == 1 ? "" : "s",
           opt->runs, rows[0].peak_gflops);
    printf("%-*s %12s %10s %10s %12s %11s %9s %7s\n", width, "graph", "parameters", "GFLOP",
           "executed", "scratch MiB", "median ms", "GFLOP/s", "% peak");
    for (size_t i = 0; i < n; i++) {
        const BenchReport *r = &rows[i];
        printf("%-*s %12" PRId64 " %10.3f %10.3f %12.1f %11.3f %9.1f %7.1f\n", width, r->graph,
               r->params, r->flops / 1e9, r->executed_flops / 1e9,
               (double)r->scratch_bytes / 1048576.0, r->median_ms, bench_gflops(r),
               100 * bench_peak_fraction(r));
    }
}

/* bench: random inputs (and weights unless given), everything allocated once, one warm-up
 * call, then --runs timed calls, reported in *r. compile_ms runs from the spec text to a
 * created kernel, excluding what is not compiling: reading the weights file, drawing the
 * random inputs and allocating the outputs (seconds for the gigabytes of a large --dim).
 * *peak_gflops: the FMA peak, measured when it is 0 (once for a table of graphs). */
static int bench_graph(Ctx *cx, const Graph *g, const Options *opt, double compile_start_ms,
                       double *peak_gflops, BenchReport *r)
{
    HostTensors t;
    host_init(&t, g);
    double *ms = xcalloc((size_t)opt->runs, sizeof(double));
    fuse_rt_pool *pool = NULL;
    fuse_rt_kernel *k = NULL;
    Compiled kernel = {0};
    char err[FUSE_RT_ERR_MAX] = "";

    double data_start = bench_now_ms();
    int status = host_bind_weights(cx, g, opt->weights, &t);
    if (status == EXIT_OK)
        status = random_inputs(g, t.inputs);
    if (status == EXIT_OK)
        status = host_alloc_outputs(cx, g, &t);
    double data_ms = bench_now_ms() - data_start;
    if (status == EXIT_OK)
        status = make_pool(cx, opt, &pool);
    if (status == EXIT_OK)
        status = (int)driver_compile_graph(cx, g, &opt->kernel, &kernel);
    if (status == EXIT_OK &&
        kernel.info->create(t.weights, g->nparams, pool, &k, err, sizeof err) != FUSE_RT_OK)
        status = EXIT_INPUT;
    *r = (BenchReport){.runs = opt->runs, .threads = fuse_rt_pool_threads(pool)};
    snprintf(r->graph, sizeof r->graph, "%s", g->name);
    r->compile_ms = bench_now_ms() - compile_start_ms - data_ms;
    if (status == EXIT_OK && !bench_time_runs(kernel.info, k, (const float *const *)t.inputs,
                                              t.outputs, opt->runs, ms, err, sizeof err))
        status = EXIT_INPUT;
    if (status == EXIT_OK && *peak_gflops <= 0) {
        *peak_gflops = bench_fma_peak_gflops(cx, pool, &opt->kernel, kernel.vector_lanes);
        if (*peak_gflops <= 0)
            status = EXIT_INPUT;
    }
    if (status == EXIT_OK) {
        long n = opt->runs; /* ms is sorted; an even count has two middle times */
        r->median_ms = n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
        r->min_ms = ms[0];
        r->max_ms = ms[n - 1];
        r->peak_gflops = *peak_gflops;
        r->flops = kernel.info->flops;
        r->executed_flops = kernel.executed_flops; /* the optimized graph */
        r->bytes = kernel.info->bytes;
        r->scratch_bytes =
            kernel.info->scratch_bytes + r->threads * kernel.info->thread_scratch_bytes;
        r->prepared_bytes = kernel.info->prepared_bytes;
        for (uint32_t i = 0; i < g->nparams; i++)
            r->params += shape_numel(&g->params[i]->shape);
    } else if (err[0]) {
        diag_report_file(cx->diag, DIAG_ERROR, NULL, "%s", err);
    }

    if (k)
        kernel.info->destroy(k);
    driver_release(&kernel);
    fuse_rt_pool_destroy(pool);
    host_free(&t, g);
    free(ms);
    return status;
}

static int run_graph(Ctx *cx, const Graph *g, const Options *opt)
{
    const char **in_names = xcalloc(g->ninputs + 1, sizeof(char *));
    for (uint32_t i = 0; i < g->ninputs; i++)
        in_names[i] = g->inputs[i]->attr.input.name;
    const IoArg **in_slots = xcalloc(g->ninputs + 1, sizeof(IoArg *));
    const IoArg **out_slots = xcalloc(g->noutputs + 1, sizeof(IoArg *));
    HostTensors t;
    host_init(&t, g);

    int status = match_io("input", opt->inputs, opt->ninputs, in_names, g->ninputs, in_slots,
                          !opt->random_inputs);
    if (status == EXIT_OK)
        status = match_io("output", opt->outputs, opt->noutputs, g->output_names, g->noutputs,
                          out_slots, false);
    if (status == EXIT_OK)
        status = host_bind_weights(cx, g, opt->weights, &t);
    if (status == EXIT_OK)
        status = opt->random_inputs ? random_inputs(g, t.inputs)
                                    : read_inputs(cx, g, in_slots, t.inputs);
    if (status == EXIT_OK)
        status = host_alloc_outputs(cx, g, &t);
    double elapsed_ms = 0;
    if (status == EXIT_OK)
        status = execute(cx, g, opt, &t, &elapsed_ms);
    if (status == EXIT_OK)
        status = write_outputs(cx, g, out_slots, t.outputs);
    if (status == EXIT_OK)
        print_run_report(g, opt, out_slots, t.outputs, elapsed_ms);

    host_free(&t, g);
    free(in_names);
    free(in_slots);
    free(out_slots);
    return status;
}

static int check_weights(Ctx *cx, const Graph *g, const char *path)
{
    if (verify_weights(cx, g, path) != EXIT_OK)
        return EXIT_INPUT;
    printf("  weights: %s: all %u keys present with the right dtype and shape\n", path, g->nparams);
    return EXIT_OK;
}

/* dot: the graph as written, and after the passes with its fused kernels (stdout or -o). */
static int write_dot(Ctx *cx, const Graph *g, const Options *opt)
{
    const Graph *optimized = driver_optimize(cx, g, &opt->kernel);
    if (!optimized)
        return EXIT_INPUT;
    const FusionPlan *plan = schedule_plan(cx, optimized);
    DotGroups groups = {plan->ngroups, plan->group_of, plan->group_name, plan->prepared};
    FILE *out = opt->out_path ? fopen(opt->out_path, "wb") : stdout;
    if (!out) {
        diag_report_file(cx->diag, DIAG_ERROR, NULL, "cannot write '%s': %s", opt->out_path,
                         strerror(errno));
        return EXIT_INPUT;
    }
    dot_write(out, g, optimized, &groups);
    bool ok = !ferror(out);
    if (out != stdout && fclose(out) != 0)
        ok = false;
    if (!ok) {
        diag_report_file(cx->diag, DIAG_ERROR, NULL, "cannot write '%s'",
                         opt->out_path ? opt->out_path : "standard output");
        if (opt->out_path)
            remove(opt->out_path);
    }
    return ok ? EXIT_OK : EXIT_INPUT;
}

/* No file the command writes may be one it reads: writing it would destroy the input (the
 * output is renamed over it) before, or while, it is read. Checked before the spec is read. */
static bool check_not_inputs(Diag *d, const Options *opt)
{
    const char **outputs = xcalloc(opt->noutputs + 3, sizeof(char *));
    size_t nout = 0;
    for (size_t i = 0; i < opt->noutputs; i++)
        outputs[nout++] = opt->outputs[i].path;
    bool writes_o = opt->cmd == CMD_EMIT_C || opt->cmd == CMD_EMIT_LLVM || opt->cmd == CMD_DOT;
    if (writes_o && opt->out_path)
        outputs[nout++] = opt->out_path;
    if (opt->cmd == CMD_EMIT_C) {
        outputs[nout++] = opt->header_path;
        outputs[nout++] = sb_str(&opt->rt_header);
    }
    InputFile *inputs = xcalloc(opt->ninputs + 2, sizeof(InputFile));
    size_t nin = 0;
    inputs[nin++] = (InputFile){opt->file, "the spec"};
    if (opt->weights)
        inputs[nin++] = (InputFile){opt->weights, "the weights"};
    for (size_t i = 0; i < opt->ninputs; i++)
        inputs[nin++] = (InputFile){opt->inputs[i].path, "an --input tensor"};
    bool ok = outfile_check_not_inputs(d, outputs, nout, inputs, nin);
    free(inputs);
    free(outputs);
    return ok;
}

static void setup_ctx(Ctx *cx, Source *src, Diag *diag, const Options *opt, const char *entry)
{
    ctx_init(cx, src, diag);
    cx->entry = entry;
    cx->prefix = opt->prefix;
    cx->dims = opt->dims;
    cx->ndims = opt->ndims;
    cx->explain_fusion = opt->explain_fusion;
}

/* The graphs bench compares, into *names (each owned; free_names): the --entry list a,b,c, or
 * without --entry every graph of a file that has several. Returns EXIT_OK with *n < 2 when
 * bench measures one graph as usual, or an exit status after reporting. */
static int bench_entries(Diag *diag, Source *src, const Options *opt, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    PtrVec list = {0};
    if (opt->entry && strchr(opt->entry, ',')) {
        for (const char *at = opt->entry;;) {
            const char *comma = strchr(at, ',');
            size_t len = comma ? (size_t)(comma - at) : strlen(at);
            if (len == 0) {
                for (size_t i = 0; i < list.len; i++)
                    free(list.items[i]);
                ptrvec_free(&list);
                return usage_error("--entry %s: an empty graph name", opt->entry);
            }
            char *name = xmalloc(len + 1);
            memcpy(name, at, len);
            name[len] = '\0';
            ptrvec_push(&list, name);
            if (!comma)
                break;
            at = comma + 1;
        }
    } else if (!opt->entry && opt->cmd == CMD_BENCH) {
        Ctx cx;
        setup_ctx(&cx, src, diag, opt, NULL);
        Ast *ast = driver_parse(&cx);
        for (const Decl *d = ast ? ast->decls : NULL; d; d = d->next)
            if (d->kind == DECL_GRAPH)
                ptrvec_push(&list, xstrdup(d->fn.name));
        ctx_free(&cx);
        if (!ast)
            return EXIT_INPUT; /* the parser has reported why */
    }
    *names = (char **)list.items;
    *n = list.len;
    return EXIT_OK;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* bench of several graphs: each compiled and measured as bench measures one, the FMA peak
 * once, then one table (or one JSON line per graph). */
static int bench_table(Diag *diag, Source *src, const Options *opt, char *const *names, size_t n)
{
    BenchReport *rows = xcalloc(n, sizeof *rows);
    double peak = 0;
    int status = EXIT_OK;
    for (size_t i = 0; i < n && status == EXIT_OK; i++) {
        Ctx cx;
        setup_ctx(&cx, src, diag, opt, names[i]);
        double start = bench_now_ms();
        Graph *g = compile(&cx, opt, &status);
        if (g)
            status = bench_graph(&cx, g, opt, start, &peak, &rows[i]);
        if (status == EXIT_OK && diag_has_errors(diag))
            status = EXIT_INPUT;
        ctx_free(&cx);
    }
    if (status == EXIT_OK)
        print_bench_table(opt, rows, n);
    free(rows);
    return status;
}

static int run_command(const Options *opt)
{
#ifndef FUSE_WITH_LLVM
    if (opt->cmd == CMD_EMIT_LLVM)
        return usage_error("'%s' is not available in this build yet", command_names[opt->cmd]);
#endif
    Diag diag;
    diag_init(&diag, NULL, stderr);
    if (!check_not_inputs(&diag, opt))
        return EXIT_INPUT;
    Source *src = driver_read_spec(&diag, opt->file);
    if (!src)
        return EXIT_INPUT;
    diag.src = src;
    if (opt->cmd == CMD_BENCH && !opt->dump && !opt->kernel.passes.dump_after) {
        char **names;
        size_t n;
        int status = bench_entries(&diag, src, opt, &names, &n);
        if (status == EXIT_OK && n > 1)
            status = bench_table(&diag, src, opt, names, n);
        free_names(names, n);
        if (status != EXIT_OK || n > 1) {
            source_free(src);
            return status;
        }
    }
    Ctx cx;
    setup_ctx(&cx, src, &diag, opt, opt->entry);

    int status;
    double compile_start_ms = bench_now_ms();
    Graph *g = compile(&cx, opt, &status);
    if (g && opt->dump && strcmp(opt->dump, "loops") == 0) {
        LoopProgram *p = driver_lower(&cx, g, &opt->kernel);
        if (p)
            loop_dump(p, stdout);
        else
            status = EXIT_INPUT;
    } else if (g && opt->dump)
        graph_dump(g, stdout);
    else if (g && opt->kernel.passes.dump_after) {
        PassOptions po = opt->kernel.passes;
        po.dump_out = stdout;
        passes_run(&cx, g, &po);
    } else if (g && opt->cmd == CMD_CHECK) {
        print_summary(g);
        if (opt->weights)
            status = check_weights(&cx, g, opt->weights);
    } else if (g && opt->cmd == CMD_RUN)
        status = run_graph(&cx, g, opt);
    else if (g && opt->cmd == CMD_EMIT_C)
        status = emit_c(&cx, g, opt);
#ifdef FUSE_WITH_LLVM
    else if (g && opt->cmd == CMD_EMIT_LLVM)
        status = emit_llvm(&cx, g, opt);
#endif
    else if (g && opt->cmd == CMD_BENCH) {
        double peak = 0;
        BenchReport r;
        status = bench_graph(&cx, g, opt, compile_start_ms, &peak, &r);
        if (status == EXIT_OK)
            print_bench(opt, &r);
    } else if (g && opt->cmd == CMD_DOT)
        status = write_dot(&cx, g, opt);
    if (status == EXIT_OK && diag_has_errors(&diag))
        status = EXIT_INPUT;
    ctx_free(&cx);
    source_free(src);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("fusec %s (.fuse language 1, runtime ABI %d, backends: %s)\n", FUSEC_VERSION,
               FUSE_RT_ABI_VERSION, FUSEC_BACKENDS);
        return EXIT_OK;
    }
    Options opt = {0};
    int status = parse_args(argc, argv, &opt);
    if (status == EXIT_OK)
        status = run_command(&opt);
    options_free(&opt);
    return status;
}
