/*
 * backend_c: write generated C, compile it with the system compiler and load it (see
 * backend_c.h).
 */
#include "backend_c.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "diag.h"
#include "emit_c.h"
#include "outfile.h"
#include "util.h"

uint32_t backend_c_host_vector_lanes(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return 16;
    if (__builtin_cpu_supports("avx2"))
        return 8;
#endif
    return 4;
}

void backend_c_rt_header_path(const char *h_path, StrBuf *out)
{
    outfile_dirname(h_path, out);
    sb_append(out, "/fuse_rt.h");
}

bool backend_c_write(Ctx *cx, const LoopProgram *p, const char *c_path, const char *h_path,
                     bool bounds_checks)
{
    StrBuf source = {0}, header = {0}, rt_path = {0};
    EmitCOptions opt = {.header_name = outfile_basename(h_path), .bounds_checks = bounds_checks};
    emit_c_program(p, &opt, &source, &header);
    backend_c_rt_header_path(h_path, &rt_path);
    OutputFiles set = {0};
    bool ok = outfile_write(&set, cx->diag, c_path, sb_str(&source), source.len) &&
              outfile_write(&set, cx->diag, h_path, sb_str(&header), header.len) &&
              outfile_write(&set, cx->diag, sb_str(&rt_path), fuse_rt_header_text,
                            (size_t)fuse_rt_header_text_size);
    if (ok)
        ok = outfile_commit(&set, cx->diag);
    else
        outfile_abort(&set);
    sb_free(&source);
    sb_free(&header);
    sb_free(&rt_path);
    return ok;
}

/* Runs argv (no shell), with the child's output going to `log`. Returns the exit status, or -1
 * if it could not be started. */
static int run_command(char *const *argv, const char *log)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        FILE *out = freopen(log, "w", stdout);
        if (!out || dup2(fileno(stdout), 2) < 0)
            _exit(127);
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            StrBuf path = {0};
            sb_printf(&path, "%s/%s", dir, e->d_name);
            unlink(path.data);
            sb_free(&path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static char *make_temp_dir(void)
{
    const char *base = getenv("TMPDIR");
    StrBuf dir = {0};
    sb_printf(&dir, "%s/fusec-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(dir.data)) {
        sb_free(&dir);
        return NULL;
    }
    return dir.data;
}

/* Compiles <dir>/kernel.c into <dir>/kernel.so with $CC (default cc); $FUSEC_CFLAGS adds
 * space-separated flags (the sanitizer tests use it to instrument generated kernels). */
static bool compile(Ctx *cx, const char *dir)
{
    StrBuf src = {0}, so = {0}, log = {0};
    sb_printf(&src, "%s/kernel.c", dir);
    sb_printf(&so, "%s/kernel.so", dir);
    sb_printf(&log, "%s/cc.log", dir);
    const char *cc = getenv("CC");
    const char *extra = getenv("FUSEC_CFLAGS");
    char *extra_copy = xstrdup(extra ? extra : "");
    static const char *const flags[] = {
        "-std=c11", "-O3", "-march=native", "-fno-math-errno", "-fPIC", "-shared", "-o"};
    PtrVec argv = {0};
    ptrvec_push(&argv, (void *)(uintptr_t)(cc && cc[0] ? cc : "cc"));
    for (size_t i = 0; i < countof(flags); i++)
        ptrvec_push(&argv, (void *)(uintptr_t)flags[i]);
    ptrvec_push(&argv, so.data);
    ptrvec_push(&argv, src.data);
    for (char *tok = strtok(extra_copy, " "); tok; tok = strtok(NULL, " "))
        ptrvec_push(&argv, tok);
    ptrvec_push(&argv, (void *)(uintptr_t) "-lm");
    ptrvec_push(&argv, NULL);
    int status = run_command((char *const *)argv.items, log.data);
    if (status != 0)
        diag_report_file(cx->diag, DIAG_ERROR, NULL,
                         "internal error: the C compiler '%s' failed (status %d) on the "
                         "generated kernel; its output is in %s, the code in %s",
                         (const char *)argv.items[0], status, log.data, src.data);
    ptrvec_free(&argv);
    free(extra_copy);
    sb_free(&src);
    sb_free(&so);
    sb_free(&log);
    return status == 0;
}

bool backend_c_load(Ctx *cx, const LoopProgram *p, bool bounds_checks, CKernel *out)
{
    memset(out, 0, sizeof *out);
    out->dir = make_temp_dir();
    if (!out->dir) {
        diag_report_file(cx->diag, DIAG_ERROR, NULL, "cannot create a temporary directory: %s",
                         strerror(errno));
        return false;
    }
    StrBuf c_path = {0}, h_path = {0}, so_path = {0}, symbol = {0};
    sb_printf(&c_path, "%s/kernel.c", out->dir);
    sb_printf(&h_path, "%s/kernel.h", out->dir);
    sb_printf(&so_path, "%s/kernel.so", out->dir);
    sb_printf(&symbol, "fuse_k_%s_info", p->name);
    bool ok = backend_c_write(cx, p, c_path.data, h_path.data, bounds_checks);
    if (ok && !compile(cx, out->dir)) {
        free(out->dir); /* keep the files for inspection */
        out->dir = NULL;
        ok = false;
    }
    if (ok) {
        out->handle = dlopen(so_path.data, RTLD_NOW | RTLD_LOCAL);
        if (out->handle)
            out->info = dlsym(out->handle, symbol.data);
        if (!out->info) {
            diag_report_file(cx->diag, DIAG_ERROR, NULL, "internal error: cannot load %s: %s",
                             so_path.data, dlerror());
            ok = false;
        }
    }
    sb_free(&c_path);
    sb_free(&h_path);
    sb_free(&so_path);
    sb_free(&symbol);
    if (!ok)
        backend_c_unload(out);
    return ok;
}

void backend_c_unload(CKernel *k)
{
    if (k->handle)
        dlclose(k->handle);
    if (k->dir) {
        remove_dir(k->dir);
        free(k->dir);
    }
    memset(k, 0, sizeof *k);
}
