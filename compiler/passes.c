/*
 * passes: the pass table and its runner (see passes.h).
 */
#include "passes.h"

#include <string.h>
#include <time.h>

#include "util.h"

/* The optimization pipeline, in order. Reading this table is reading what the compiler does to
 * a graph. Why this order:
 * - layout first: it turns permute -> linear -> permute into a conv2d and removes layout nodes
 *   between producers and consumers, so the passes below see contractions next to what feeds
 *   them and what follows them.
 * - fold-batchnorm before split-concat: the BatchNorm is folded into the one weight of the
 *   contraction, and split-concat then slices the folded weight. Split first, the BatchNorm
 *   would follow a sum of contractions and could only become an elementwise affine.
 * - split-concat before commute-upsample: a conv over concat(h, upsample(l)) has an upsample
 *   input only once the concat is split into one contraction per part.
 * - attention after layout: permute chains on k are composed into the one transpose it looks
 *   for.
 * - factor-sigmoid after fold-batchnorm: BAM's per-pixel operand is a folded conv's output.
 * - cse after the rewrites: they build weight-only subgraphs per site, and merging repeats of
 *   them (and of the user's own code) is cheaper than not making them.
 * - dce last: it removes what the rewrites replaced (they leave the old nodes dead). */
static const Pass passes[] = {
    {"layout", "permute-linear-permute as a 1x1 conv; view and permute chains simplified",
     pass_layout},
    {"fold-batchnorm", "eval BatchNorm folded into the conv/linear before it, else an affine",
     pass_fold_batchnorm},
    {"split-concat", "a contraction over a channel concat as a sum of contractions",
     pass_split_concat},
    {"commute-upsample", "conv1x1(upsample(x)) as upsample(conv1x1(x)) when that is cheaper",
     pass_commute_upsample},
    {"attention", "matmul(softmax(q k^T * s), v) as one streaming attention op", pass_attention},
    {"factor-sigmoid", "sigmoid(a + b) of broadcast a, b from the sigmoids of a and b",
     pass_factor_sigmoid},
    {"cse", "common subexpressions merged", pass_cse},
    {"dce", "nodes no output depends on removed", pass_dce},
};

const Pass *passes_table(size_t *count)
{
    *count = countof(passes);
    return passes;
}

const Pass *passes_find(const char *name)
{
    for (size_t i = 0; i < countof(passes); i++)
        if (strcmp(passes[i].name, name) == 0)
            return &passes[i];
    return NULL;
}

void passes_list_names(FILE *out, const char *sep)
{
    for (size_t i = 0; i < countof(passes); i++)
        fprintf(out, "%s%s", i ? sep : "", passes[i].name);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The kernel's interface must survive every pass: a difference is a pass's bug. */
static void check_interface(const Graph *before, const Graph *after, const char *pass)
{
    bool same = before->ninputs == after->ninputs && before->nparams == after->nparams &&
                before->noutputs == after->noutputs;
    for (uint32_t i = 0; same && i < before->ninputs; i++)
        same = strcmp(before->inputs[i]->attr.input.name, after->inputs[i]->attr.input.name) == 0 &&
               shape_equal(&before->inputs[i]->shape, &after->inputs[i]->shape);
    for (uint32_t i = 0; same && i < before->nparams; i++)
        same = strcmp(before->params[i]->attr.param.key, after->params[i]->attr.param.key) == 0 &&
               shape_equal(&before->params[i]->shape, &after->params[i]->shape);
    for (uint32_t i = 0; same && i < before->noutputs; i++)
        same = strcmp(before->output_names[i], after->output_names[i]) == 0 &&
               shape_equal(&before->outputs[i]->shape, &after->outputs[i]->shape);
    if (!same)
        fuse_panic(__FILE__, __LINE__, "pass %s changed the graph's interface", pass);
}

typedef struct PassTime {
    double ms;
    uint32_t before, after, rewritten;
} PassTime;

static void print_times(FILE *out, const PassTime *t, size_t n)
{
    double total = 0;
    fprintf(out, "%-18s %9s %8s %8s %9s\n", "pass", "ms", "before", "after", "rewrites");
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%-18s %9.3f %8u %8u %9u\n", passes[i].name, t[i].ms, t[i].before, t[i].after,
                t[i].rewritten);
        total += t[i].ms;
    }
    fprintf(out, "%-18s %9.3f\n", "total", total);
}

const Graph *passes_run(Ctx *cx, const Graph *g, const PassOptions *opt)
{
    static const PassOptions defaults = {0};
    if (!opt)
        opt = &defaults;
    if (opt->disabled)
        return g;
    PassTime times[countof(passes)];
    size_t ran = 0;
    for (size_t i = 0; i < countof(passes); i++) {
        double t0 = now_ms();
        uint32_t rewritten = 0;
        Graph *next = passes[i].run(cx, g, &rewritten);
        times[i] = (PassTime){now_ms() - t0, g->nnodes, next->nnodes, rewritten};
        ran = i + 1;
        if (!graph_verify(next, stderr))
            fuse_panic(__FILE__, __LINE__, "graph invalid after pass %s", passes[i].name);
        check_interface(g, next, passes[i].name);
        g = next;
        if (opt->dump_after && strcmp(opt->dump_after, passes[i].name) == 0) {
            graph_dump(g, opt->dump_out ? opt->dump_out : stdout);
            break;
        }
    }
    if (opt->time_out)
        print_times(opt->time_out, times, ran);
    return g;
}
