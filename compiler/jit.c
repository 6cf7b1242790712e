/*
 * jit: LoopProgram -> machine code in this process (see jit.h). The kernels are split into one
 * part per available CPU (at most MAX_COMPILE_THREADS), balanced by emit_llvm_kernel_cost; each
 * part is built, optimized and compiled to an object file by emit_llvm on a thread of its own
 * (kernels never call each other, so the parts are independent). This file owns the ORC LLJIT
 * (one per Jit) that links the objects, registers the runtime and driver functions as absolute
 * symbols, looks up every kernel and wrapper, and holds the generic instance driver in C that
 * the module's fuse_k_<name>_create/_run/_destroy wrappers call with the Jit's address baked in.
 *
 * Instance layout (as emit_c's): every BUF_PREPARED buffer in one fuse_rt_alloc block at
 * 64-byte aligned offsets in buffer order; one scratch block of scratch_bytes + threads *
 * thread_scratch_bytes. A kernel gets bufs[buffer id] = the base of each buffer (inputs and
 * outputs of the call, the user's params during create, prepared and scratch pointers).
 * The Jit owns copies of every name and shape it exposes: the LoopProgram may be freed after
 * jit_compile. With FUSEC_JIT_TIME set in the environment, jit_compile prints how long it took
 * (setup, IR + O3 + codegen on the threads, linking) on stderr.
 */
#include "jit.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/TargetMachine.h>

#include "emit_llvm.h"

/* Where a buffer lives in an instance. */
typedef struct JitBuffer {
    LoopBufferKind kind;
    uint32_t index; /* inputs, outputs, params */
    int64_t offset; /* BUF_PREPARED: byte offset in the prepared block; BUF_SCRATCH: in scratch */
} JitBuffer;

struct Jit {
    fuse_rt_kernel_info info;      /* names, descriptors and function pointers below */
    char *name;                    /* owns */
    fuse_rt_tensor_desc *descs[3]; /* owns: inputs, outputs, params */
    char **strings;                /* owns: the descriptors' names */
    uint32_t nstrings;
    JitBuffer *buffers; /* owns: by buffer id */
    uint32_t nbuffers;
    int64_t prepared_alloc;          /* bytes of the prepared block */
    EmitLLVMKernelFn *prepare, *run; /* owns the arrays; the code lives in lljit */
    uint32_t nprepare, nrun;
    LLVMOrcLLJITRef lljit; /* owns */
};

struct fuse_rt_kernel {
    const Jit *jit;     /* borrowed */
    fuse_rt_pool *pool; /* borrowed */
    char *prepared;     /* owns (fuse_rt_alloc) */
    char *scratch;      /* owns (fuse_rt_alloc) */
    void **bufs;        /* owns: by buffer id */
};

/* ---- the instance driver (called from the module's wrappers) ---- */

static int fail(const Jit *jit, char *err, size_t errlen, int code, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "fuse_k_%s: %s", jit->name, msg);
    return code;
}

static void driver_destroy(const Jit *jit, fuse_rt_kernel *k)
{
    (void)jit;
    if (!k)
        return;
    fuse_rt_free(k->prepared);
    fuse_rt_free(k->scratch);
    free(k->bufs);
    free(k);
}

/* Points bufs[] at the instance's prepared and scratch buffers. */
static void point_owned(const Jit *jit, fuse_rt_kernel *k)
{
    for (uint32_t i = 0; i < jit->nbuffers; i++) {
        const JitBuffer *b = &jit->buffers[i];
        if (b->kind == BUF_PREPARED)
            k->bufs[i] = k->prepared + b->offset;
        else if (b->kind == BUF_SCRATCH)
            k->bufs[i] = k->scratch + b->offset;
    }
}

static int driver_create(const Jit *jit, const fuse_rt_weight *weights, size_t nweights,
                         fuse_rt_pool *pool, fuse_rt_kernel **out, char *err, size_t errlen)
{
    if (!out)
        return fail(jit, err, errlen, FUSE_RT_EINVAL, "create: out is NULL");
    *out = NULL;
    const float **params = calloc(jit->info.nparams + 1, sizeof *params);
    if (!params)
        return fail(jit, err, errlen, FUSE_RT_ENOMEM, "create: out of memory");
    int rc = fuse_rt_bind_weights(&jit->info, weights, nweights, params, err, errlen);
    if (rc) {
        free(params);
        return rc;
    }
    fuse_rt_kernel *k = calloc(1, sizeof *k);
    if (k) {
        k->jit = jit;
        k->pool = pool;
        size_t threads = (size_t)fuse_rt_pool_threads(pool);
        k->prepared = fuse_rt_alloc((size_t)jit->prepared_alloc);
        k->scratch = fuse_rt_alloc((size_t)jit->info.scratch_bytes +
                                   threads * (size_t)jit->info.thread_scratch_bytes);
        k->bufs = calloc(jit->nbuffers + 1, sizeof(void *));
    }
    if (!k || !k->prepared || !k->scratch || !k->bufs) {
        driver_destroy(jit, k);
        free(params);
        return fail(jit, err, errlen, FUSE_RT_ENOMEM, "create: out of memory");
    }
    point_owned(jit, k);
    for (uint32_t i = 0; i < jit->nbuffers; i++)
        if (jit->buffers[i].kind == BUF_PARAM)  // read only: the kernels never write params
            k->bufs[i] = (void *)(uintptr_t)params[jit->buffers[i].index];
    for (uint32_t i = 0; i < jit->nprepare; i++)
        jit->prepare[i](k->bufs, pool, k->scratch);
    for (uint32_t i = 0; i < jit->nbuffers; i++)
        if (jit->buffers[i].kind == BUF_PARAM)
            k->bufs[i] = NULL; /* the instance borrows nothing after create */
    free(params);
    *out = k;
    return FUSE_RT_OK;
}

static int driver_run(const Jit *jit, fuse_rt_kernel *k, const float *const *inputs,
                      float *const *outputs, char *err, size_t errlen)
{
    if (!k || (jit->info.ninputs && !inputs) || (jit->info.noutputs && !outputs))
        return fail(jit, err, errlen, FUSE_RT_EINVAL, "run: NULL argument");
    for (uint32_t i = 0; i < jit->info.ninputs; i++)
        if (!inputs[i])
            return fail(jit, err, errlen, FUSE_RT_EINVAL, "run: an input is NULL");
    for (uint32_t i = 0; i < jit->info.noutputs; i++)
        if (!outputs[i])
            return fail(jit, err, errlen, FUSE_RT_EINVAL, "run: an output is NULL");
    for (uint32_t i = 0; i < jit->nbuffers; i++) {
        const JitBuffer *b = &jit->buffers[i];
        if (b->kind == BUF_INPUT)  // read only: run kernels never write inputs
            k->bufs[i] = (void *)(uintptr_t)inputs[b->index];
        else if (b->kind == BUF_OUTPUT)
            k->bufs[i] = outputs[b->index];
    }
    for (uint32_t i = 0; i < jit->nrun; i++)
        jit->run[i](k->bufs, k->pool, k->scratch);
    return FUSE_RT_OK;
}

/* ---- compilation ---- */

/* Reports an LLVMErrorRef (consumed) to cx->diag: "JIT: <what><name>: <LLVM's message>". */
static void report_error(Ctx *cx, const char *what, const char *name, LLVMErrorRef e)
{
    char *msg = LLVMGetErrorMessage(e); /* consumes e */
    diag_report_file(cx->diag, DIAG_ERROR, NULL, "JIT: %s%s: %s", what, name, msg);
    LLVMDisposeErrorMessage(msg);
}

static char *keep(Jit *jit, const char *s)
{
    jit->strings = xrealloc(jit->strings, (jit->nstrings + 1) * sizeof(char *));
    return jit->strings[jit->nstrings++] = xstrdup(s ? s : "");
}

/* Copies the descriptors of p's buffers of `kind` in index order. */
static fuse_rt_tensor_desc *copy_descs(Jit *jit, const LoopProgram *p, LoopBufferKind kind,
                                       uint32_t *count)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->nbuffers; i++)
        n += p->buffers[i]->kind == kind;
    *count = n;
    fuse_rt_tensor_desc *d = xcalloc(n + 1, sizeof *d);
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const LoopBuffer *b = p->buffers[i];
        if (b->kind != kind)
            continue;
        FUSE_ASSERT(b->index < n && b->rank <= FUSE_RT_MAX_RANK);
        fuse_rt_tensor_desc *t = &d[b->index];
        t->name = keep(jit, kind == BUF_PARAM && b->key ? b->key : b->name);
        t->rank = b->rank;
        for (uint32_t r = 0; r < b->rank; r++)
            t->shape[r] = b->shape[r];
    }
    return d;
}

/* Fills the descriptor part of jit->info and the buffer table from p. */
static void describe(Jit *jit, const LoopProgram *p)
{
    fuse_rt_kernel_info *info = &jit->info;
    jit->name = xstrdup(p->name);
    info->abi_version = FUSE_RT_ABI_VERSION;
    info->name = jit->name;
    info->inputs = jit->descs[0] = copy_descs(jit, p, BUF_INPUT, &info->ninputs);
    info->outputs = jit->descs[1] = copy_descs(jit, p, BUF_OUTPUT, &info->noutputs);
    info->params = jit->descs[2] = copy_descs(jit, p, BUF_PARAM, &info->nparams);
    info->flops = p->flops;
    info->bytes = p->bytes;
    info->scratch_bytes = p->scratch_bytes;
    info->thread_scratch_bytes = p->thread_scratch_bytes;
    info->prepared_bytes = p->prepared_bytes;
    jit->nbuffers = p->nbuffers;
    jit->buffers = xcalloc(p->nbuffers + 1, sizeof *jit->buffers);
    int64_t at = 0;
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const LoopBuffer *b = p->buffers[i];
        FUSE_ASSERT(b->id == i);
        JitBuffer *jb = &jit->buffers[i];
        jb->kind = b->kind;
        jb->index = b->index;
        if (b->kind == BUF_PREPARED) {
            jb->offset = at;
            at += (b->elems * 4 + 63) & ~(int64_t)63;
        } else if (b->kind == BUF_SCRATCH) {
            jb->offset = b->offset;
        }
    }
    jit->prepared_alloc = at > p->prepared_bytes ? at : p->prepared_bytes;
}

static LLVMOrcCSymbolMapPair absolute(LLVMOrcLLJITRef lljit, const char *name, uintptr_t addr)
{
    LLVMOrcCSymbolMapPair pair = {
        LLVMOrcLLJITMangleAndIntern(lljit, name),
        {(LLVMOrcJITTargetAddress)addr,
         {LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable, 0}}};
    return pair;
}

/* Creates the LLJIT for tm (consumed) with the runtime and driver symbols. */
static LLVMOrcLLJITRef make_lljit(Ctx *cx, LLVMTargetMachineRef tm)
{
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    /* the JTMB takes tm; the builder takes the JTMB; LLVMOrcCreateLLJIT takes the builder */
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
        builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
    LLVMOrcLLJITRef lljit = NULL;
    LLVMErrorRef e = LLVMOrcCreateLLJIT(&lljit, builder);
    if (e) {
        report_error(cx, "cannot create the JIT", "", e);
        return NULL;
    }
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(lljit);
    /* memset/memcpy that the optimizer may introduce come from the process */
    LLVMOrcDefinitionGeneratorRef gen = NULL;
    e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
        &gen, LLVMOrcLLJITGetGlobalPrefix(lljit), NULL, NULL);
    if (e) {
        report_error(cx, "cannot search the process for symbols", "", e);
        LLVMOrcDisposeLLJIT(lljit);
        return NULL;
    }
    LLVMOrcJITDylibAddGenerator(jd, gen); /* jd takes gen */
    LLVMOrcCSymbolMapPair syms[4] = {
        absolute(lljit, EMIT_LLVM_PARALLEL_FOR, (uintptr_t)&fuse_rt_parallel_for),
        absolute(lljit, EMIT_LLVM_DRIVER_CREATE, (uintptr_t)&driver_create),
        absolute(lljit, EMIT_LLVM_DRIVER_RUN, (uintptr_t)&driver_run),
        absolute(lljit, EMIT_LLVM_DRIVER_DESTROY, (uintptr_t)&driver_destroy),
    };
    /* the materialization unit takes the interned names; jd takes the unit on success */
    LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(syms, countof(syms));
    e = LLVMOrcJITDylibDefine(jd, mu);
    if (e) {
        LLVMOrcDisposeMaterializationUnit(mu);
        report_error(cx, "cannot define the runtime symbols", "", e);
        LLVMOrcDisposeLLJIT(lljit);
        return NULL;
    }
    return lljit;
}

static bool lookup(Ctx *cx, Jit *jit, const char *name, LLVMOrcExecutorAddress *addr)
{
    LLVMErrorRef e = LLVMOrcLLJITLookup(jit->lljit, addr, name);
    if (e) {
        report_error(cx, "cannot compile ", name, e);
        return false;
    }
    return true;
}

/* Looks up every kernel and wrapper (this compiles the module). */
static bool link_symbols(Ctx *cx, Jit *jit, const LoopProgram *p)
{
    char name[600];
    LLVMOrcExecutorAddress addr = 0;
    jit->nprepare = p->nprepare;
    jit->nrun = p->nkernels;
    jit->prepare = xcalloc(p->nprepare + 1, sizeof(EmitLLVMKernelFn));
    jit->run = xcalloc(p->nkernels + 1, sizeof(EmitLLVMKernelFn));
    for (uint32_t pass = 0; pass < 2; pass++) {
        uint32_t n = pass == 0 ? p->nprepare : p->nkernels;
        EmitLLVMKernelFn *fns = pass == 0 ? jit->prepare : jit->run;
        for (uint32_t i = 0; i < n; i++) {
            emit_llvm_kernel_symbol(p, pass == 0, i, name, sizeof name);
            if (!lookup(cx, jit, name, &addr))
                return false;
            fns[i] = (EmitLLVMKernelFn)(uintptr_t)addr;
        }
    }
    emit_llvm_wrapper_symbol(p, "create", name, sizeof name);
    if (!lookup(cx, jit, name, &addr))
        return false;
    jit->info.create = (int (*)(const fuse_rt_weight *, size_t, fuse_rt_pool *, fuse_rt_kernel **,
                                char *, size_t))(uintptr_t)addr;
    emit_llvm_wrapper_symbol(p, "run", name, sizeof name);
    if (!lookup(cx, jit, name, &addr))
        return false;
    jit->info.run = (int (*)(fuse_rt_kernel *, const float *const *, float *const *, char *,
                             size_t))(uintptr_t)addr;
    emit_llvm_wrapper_symbol(p, "destroy", name, sizeof name);
    if (!lookup(cx, jit, name, &addr))
        return false;
    jit->info.destroy = (void (*)(fuse_rt_kernel *))(uintptr_t)addr;
    return true;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* At most this many threads compile one program (one module each). */
#define MAX_COMPILE_THREADS 8

/* One module of a program: a part of its kernels, emitted, optimized and compiled to an object
 * file on a thread of its own (each with its own LLVM context and target machine). */
typedef struct CompileJob {
    const LoopProgram *p;
    uintptr_t driver;
    LLVMTargetMachineRef tm; /* owns */
    bool *prepare, *run;     /* owns: the part's kernels */
    EmitLLVMPart part;       /* points at prepare and run */
    uint64_t cost;
    LLVMMemoryBufferRef object; /* out: owns until the JIT takes it */
    char *error;                /* out: LLVM's message (LLVMDisposeMessage) */
} CompileJob;

static void *compile_job(void *arg)
{
    CompileJob *job = arg;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef m = emit_llvm_module(job->p, ctx, job->tm, job->driver, &job->part);
    if (LLVMTargetMachineEmitToMemoryBuffer(job->tm, m, LLVMObjectFile, &job->error, &job->object))
        job->object = NULL;
    LLVMDisposeModule(m);
    LLVMContextDispose(ctx);
    return NULL;
}

/* Splits p's kernels into jobs[0..njobs) of about equal cost, largest first, each kernel to the
 * cheapest job so far; job 0 also takes the wrappers. */
static void partition(const LoopProgram *p, CompileJob *jobs, uint32_t njobs)
{
    uint32_t n = p->nprepare + p->nkernels;
    uint64_t *cost = xcalloc(n + 1, sizeof *cost);
    bool *placed = xcalloc(n + 1, sizeof *placed);
    for (uint32_t i = 0; i < n; i++)
        cost[i] =
            emit_llvm_kernel_cost(i < p->nprepare ? p->prepare[i] : p->kernels[i - p->nprepare]);
    for (uint32_t round = 0; round < n; round++) {
        uint32_t best = n;
        for (uint32_t i = 0; i < n; i++)
            if (!placed[i] && (best == n || cost[i] > cost[best]))
                best = i;
        CompileJob *to = &jobs[0];
        for (uint32_t j = 1; j < njobs; j++)
            if (jobs[j].cost < to->cost)
                to = &jobs[j];
        placed[best] = true;
        to->cost += cost[best];
        if (best < p->nprepare)
            to->prepare[best] = true;
        else
            to->run[best - p->nprepare] = true;
    }
    jobs[0].part.wrappers = true;
    free(placed);
    free(cost);
}

/* Compiles jobs[0..njobs) on njobs threads (this one included); false after reporting an
 * error. */
static bool run_jobs(Ctx *cx, CompileJob *jobs, uint32_t njobs)
{
    pthread_t threads[MAX_COMPILE_THREADS];
    bool started[MAX_COMPILE_THREADS] = {false};
    for (uint32_t j = 1; j < njobs; j++)
        started[j] = pthread_create(&threads[j], NULL, compile_job, &jobs[j]) == 0;
    compile_job(&jobs[0]);
    for (uint32_t j = 1; j < njobs; j++) {
        if (started[j])
            pthread_join(threads[j], NULL);
        else
            compile_job(&jobs[j]); /* no thread to be had: compile it here */
    }
    for (uint32_t j = 0; j < njobs; j++)
        if (!jobs[j].object) {
            diag_report_file(cx->diag, DIAG_ERROR, NULL, "JIT: cannot compile %s: %s",
                             jobs[j].p->name, jobs[j].error ? jobs[j].error : "");
            return false;
        }
    return true;
}

static uint32_t compile_threads(const LoopProgram *p, const JitOptions *opt)
{
    long want = opt && opt->compile_threads ? (long)opt->compile_threads : available_cpus();
    uint32_t n = p->nprepare + p->nkernels;
    uint32_t t = want > MAX_COMPILE_THREADS ? MAX_COMPILE_THREADS : (uint32_t)want;
    return n < t ? (n ? n : 1) : t;
}

Jit *jit_compile(Ctx *cx, const LoopProgram *p, const JitOptions *opt)
{
    double t0 = now_ms();
    Jit *jit = xcalloc(1, sizeof *jit);
    describe(jit, p);
    /* a target machine per compile thread, one more for the JIT (it takes it) */
    uint32_t njobs = compile_threads(p, opt);
    CompileJob jobs[MAX_COMPILE_THREADS] = {{0}};
    bool ok = true;
    for (uint32_t j = 0; j < njobs && ok; j++) {
        jobs[j] = (CompileJob){.p = p, .driver = (uintptr_t)jit};
        jobs[j].prepare = xcalloc(p->nprepare + 1, sizeof(bool));
        jobs[j].run = xcalloc(p->nkernels + 1, sizeof(bool));
        jobs[j].part = (EmitLLVMPart){.prepare = jobs[j].prepare, .run = jobs[j].run};
        ok = (jobs[j].tm = emit_llvm_target_machine(cx, opt)) != NULL;
    }
    LLVMTargetMachineRef jit_tm = ok ? emit_llvm_target_machine(cx, opt) : NULL;
    if (jit_tm)
        jit->lljit = make_lljit(cx, jit_tm); /* takes jit_tm */
    double t_setup = now_ms();
    ok = jit->lljit != NULL;
    if (ok) {
        partition(p, jobs, njobs);
        ok = run_jobs(cx, jobs, njobs);
    }
    double t_compiled = now_ms();
    LLVMOrcJITDylibRef jd = ok ? LLVMOrcLLJITGetMainJITDylib(jit->lljit) : NULL;
    for (uint32_t j = 0; j < njobs; j++) {
        if (ok) {
            /* the JIT takes the object, even on failure (LLJIT.h) */
            LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(jit->lljit, jd, jobs[j].object);
            if (e) {
                report_error(cx, "cannot add the object code", "", e);
                ok = false;
            }
        } else if (jobs[j].object) {
            LLVMDisposeMemoryBuffer(jobs[j].object);
        }
        LLVMDisposeMessage(jobs[j].error);
        if (jobs[j].tm)
            LLVMDisposeTargetMachine(jobs[j].tm);
        free(jobs[j].prepare);
        free(jobs[j].run);
    }
    if (!ok || !link_symbols(cx, jit, p)) {
        jit_free(jit);
        return NULL;
    }
    if (getenv("FUSEC_JIT_TIME"))  // compile-time measurement, on stderr
        fprintf(stderr,
                "fusec: jit %s: %.1f ms (target and JIT setup %.1f ms, IR + O3 + codegen on %u "
                "thread%s %.1f ms, linking %.1f ms)\n",
                p->name, now_ms() - t0, t_setup - t0, njobs, njobs == 1 ? "" : "s",
                t_compiled - t_setup, now_ms() - t_compiled);
    return jit;
}

const fuse_rt_kernel_info *jit_kernel_info(const Jit *jit)
{
    return &jit->info;
}

void jit_free(Jit *jit)
{
    if (!jit)
        return;
    if (jit->lljit) {
        LLVMErrorRef e = LLVMOrcDisposeLLJIT(jit->lljit);
        if (e) {
            char *msg = LLVMGetErrorMessage(e);
            fprintf(stderr, "fusec: warning: JIT: %s\n", msg);
            LLVMDisposeErrorMessage(msg);
        }
    }
    free(jit->prepare);
    free(jit->run);
    free(jit->buffers);
    for (uint32_t i = 0; i < jit->nstrings; i++)
        free(jit->strings[i]);
    free(jit->strings);
    for (int i = 0; i < 3; i++)
        free(jit->descs[i]);
    free(jit->name);
    free(jit);
}

bool jit_emit_llvm(Ctx *cx, const LoopProgram *p, const JitOptions *opt, StrBuf *out)
{
    LLVMTargetMachineRef tm = emit_llvm_target_machine(cx, opt);
    if (!tm)
        return false;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef m = emit_llvm_module(p, ctx, tm, 0, NULL);
    char *text = LLVMPrintModuleToString(m);
    sb_append(out, text);
    LLVMDisposeMessage(text);
    LLVMDisposeModule(m);
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    return true;
}
