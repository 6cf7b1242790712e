/*
 * fusec_api: the embedding API (fusec.h) over the driver. Diagnostics are captured in a memory
 * stream and handed back as text; driver statuses become runtime error codes.
 */
#include "fusec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ctx.h"
#include "diag.h"
#include "driver.h"
#include "util.h"

struct fusec_module {
    Compiled code;
    double compile_ms;
};

/* One compilation's diagnostics, captured as text. */
typedef struct Capture {
    Diag diag;
    char *text;
    size_t len;
    FILE *stream;
} Capture;

static bool capture_open(Capture *c)
{
    memset(c, 0, sizeof *c);
    c->stream = open_memstream(&c->text, &c->len);
    diag_init(&c->diag, NULL, c->stream);
    return c->stream != NULL;
}

/* Copies what was diagnosed (or `fallback` if nothing was) into err, and closes c. */
static void capture_close(Capture *c, const char *fallback, char *err, size_t errlen)
{
    if (c->stream)
        fclose(c->stream);
    const char *text = c->text && c->len ? c->text : fallback;
    if (err && errlen)
        snprintf(err, errlen, "%s", text ? text : "");
    free(c->text);
}

static void set_error(char *err, size_t errlen, const char *message)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", message);
}

/* Checks the options that the driver takes on trust, and translates them. */
static int check_options(const fusec_options *opt, KernelOptions *kernel, DimOverride **dims,
                         char *err, size_t errlen)
{
    memset(kernel, 0, sizeof *kernel);
    kernel->backend = driver_default_backend();
    *dims = NULL;
    if (!opt)
        return FUSE_RT_OK;
    if (opt->backend && (!driver_parse_backend(opt->backend, &kernel->backend) ||
                         kernel->backend == BACKEND_INTERP)) {
        char msg[128];
        snprintf(msg, sizeof msg,
                 "fusec: error: backend '%.40s' is not a code generator of this build",
                 opt->backend);
        set_error(err, errlen, msg);
        return FUSE_RT_EINVAL;
    }
    if (opt->vector_lanes && opt->vector_lanes != 4 && opt->vector_lanes != 8 &&
        opt->vector_lanes != 16) {
        set_error(err, errlen, "fusec: error: vector_lanes must be 0, 4, 8 or 16");
        return FUSE_RT_EINVAL;
    }
    if (opt->ndims && !opt->dims) {
        set_error(err, errlen, "fusec: error: ndims is set but dims is NULL");
        return FUSE_RT_EINVAL;
    }
    for (size_t i = 0; i < opt->ndims; i++)
        if (!opt->dims[i].name || !opt->dims[i].name[0]) {
            set_error(err, errlen, "fusec: error: a dim binding has no name");
            return FUSE_RT_EINVAL;
        }
    kernel->vector_lanes = opt->vector_lanes;
    kernel->cpu = opt->cpu;
    kernel->features = opt->features;
    if (opt->ndims) {
        *dims = xcalloc(opt->ndims, sizeof(DimOverride));
        for (size_t i = 0; i < opt->ndims; i++)
            (*dims)[i] = (DimOverride){opt->dims[i].name, opt->dims[i].value};
    }
    return FUSE_RT_OK;
}

static int status_code(DriverStatus s)
{
    return s == DRIVER_OK ? FUSE_RT_OK : s == DRIVER_USAGE ? FUSE_RT_EINVAL : FUSE_RT_EFORMAT;
}

/* Spec -> module, for both entry points. `path` set: read the file; else compile text. */
static int compile(const char *path, const char *text, size_t len, const char *name,
                   const fusec_options *opt, fusec_module **out, char *err, size_t errlen)
{
    double start_ms = bench_now_ms();
    if (!out) {
        set_error(err, errlen, "fusec: error: no place for the module (out is NULL)");
        return FUSE_RT_EINVAL;
    }
    *out = NULL;
    KernelOptions kernel;
    DimOverride *dims;
    int rc = check_options(opt, &kernel, &dims, err, errlen);
    if (rc != FUSE_RT_OK)
        return rc;
    Capture cap;
    if (!capture_open(&cap)) {
        free(dims);
        set_error(err, errlen, "fusec: error: out of memory");
        return FUSE_RT_ENOMEM;
    }
    Source *src = NULL;
    if (path) {
        src = driver_read_spec(&cap.diag, path);
        rc = src ? FUSE_RT_OK : FUSE_RT_EIO;
    } else if (len > FUSE_MAX_SOURCE_BYTES) {
        diag_report_file(&cap.diag, DIAG_ERROR, name, "the spec is larger than %u bytes",
                         FUSE_MAX_SOURCE_BYTES);
        rc = FUSE_RT_EFORMAT;
    } else {
        src = source_new(name, text, len);
    }
    if (src) {
        cap.diag.src = src;
        Ctx cx;
        ctx_init(&cx, src, &cap.diag);
        cx.entry = opt ? opt->entry : NULL;
        cx.prefix = opt ? opt->prefix : NULL;
        cx.dims = dims;
        cx.ndims = opt ? opt->ndims : 0;
        DriverStatus status = DRIVER_INPUT;
        Ast *ast = driver_parse(&cx);
        Graph *g = ast ? driver_build(&cx, ast, "compile", &status) : NULL;
        fusec_module *m = xcalloc(1, sizeof *m);
        if (g)
            status = driver_compile_graph(&cx, g, &kernel, &m->code);
        if (status == DRIVER_OK && !diag_has_errors(&cap.diag)) {
            m->compile_ms = bench_now_ms() - start_ms;
            *out = m;
        } else {
            driver_release(&m->code);
            free(m);
            if (status == DRIVER_OK)
                status = DRIVER_INPUT;
        }
        rc = status_code(status);
        ctx_free(&cx);
        source_free(src);
    }
    free(dims);
    capture_close(&cap, rc == FUSE_RT_OK ? "" : "fusec: error: compilation failed", err, errlen);
    if (rc == FUSE_RT_OK && err && errlen)
        err[0] = '\0';
    return rc;
}

int fusec_compile_string(const char *text, size_t len, const char *name, const fusec_options *opt,
                         fusec_module **out, char *err, size_t errlen)
{
    if (!text && len) {
        set_error(err, errlen, "fusec: error: text is NULL");
        return FUSE_RT_EINVAL;
    }
    return compile(NULL, text ? text : "", len, name ? name : "<string>", opt, out, err, errlen);
}

int fusec_compile_file(const char *path, const fusec_options *opt, fusec_module **out, char *err,
                       size_t errlen)
{
    if (!path) {
        set_error(err, errlen, "fusec: error: path is NULL");
        return FUSE_RT_EINVAL;
    }
    return compile(path, NULL, 0, NULL, opt, out, err, errlen);
}

const fuse_rt_kernel_info *fusec_module_info(const fusec_module *m)
{
    return m ? m->code.info : NULL;
}

double fusec_module_compile_ms(const fusec_module *m)
{
    return m ? m->compile_ms : 0;
}

void fusec_module_free(fusec_module *m)
{
    if (!m)
        return;
    driver_release(&m->code);
    free(m);
}

const char *fusec_version(void)
{
#ifdef FUSE_WITH_LLVM
    return FUSEC_VERSION " (backends: jit c)";
#else
    return FUSEC_VERSION " (backends: c)";
#endif
}
