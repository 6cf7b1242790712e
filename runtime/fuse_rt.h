/*
 * fuse_rt.h: the fusec runtime ABI. Generated kernels and programs that embed them include
 * this header and nothing else of fusec. It depends only on <stddef.h> and <stdint.h>, compiles
 * as C99 and as C++, and never includes compiler headers.
 *
 * Error convention: functions return 0 on success and a nonzero FUSE_RT_E* code on failure,
 * writing a one-line message (naming the file and the problem) into `err` when err != NULL.
 */
#ifndef FUSE_RT_H
#define FUSE_RT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FUSE_RT_ABI_VERSION 1
#define FUSE_RT_MAX_RANK    8
/* Size of the message buffers the API fills. */
#define FUSE_RT_ERR_MAX 512

enum {
    FUSE_RT_OK = 0,
    FUSE_RT_EIO = 1,     /* a file could not be opened, read, mapped or written */
    FUSE_RT_EFORMAT = 2, /* a file is malformed */
    FUSE_RT_EDTYPE = 3,  /* a well-formed file holds a dtype or layout we do not accept */
    FUSE_RT_ENOMEM = 4,  /* an allocation failed */
    FUSE_RT_EINVAL = 5,  /* a bad argument */
};

/* ---- safetensors (read-only, memory-mapped) ---- */

typedef enum fuse_rt_dtype {
    FUSE_RT_BOOL,
    FUSE_RT_U8,
    FUSE_RT_I8,
    FUSE_RT_U16,
    FUSE_RT_I16,
    FUSE_RT_F16,
    FUSE_RT_BF16,
    FUSE_RT_U32,
    FUSE_RT_I32,
    FUSE_RT_F32,
    FUSE_RT_U64,
    FUSE_RT_I64,
    FUSE_RT_F64,
    FUSE_RT_F8_E4M3,
    FUSE_RT_F8_E5M2,
} fuse_rt_dtype;

typedef struct fuse_rt_tensor_info {
    const char *key; /* NUL-terminated, owned by the file object */
    fuse_rt_dtype dtype;
    const char *dtype_name; /* as written in the header, e.g. "F32" */
    uint32_t rank;
    int64_t shape[FUSE_RT_MAX_RANK];
    const void *data; /* inside the mapping; F32 data is 4-byte aligned or copied */
    size_t nbytes;
} fuse_rt_tensor_info;

typedef struct fuse_rt_safetensors fuse_rt_safetensors;

/* Maps and validates a whole safetensors file: the 8-byte header length, the JSON header,
 * every entry's dtype, shape x element size == byte range, offsets inside the data area,
 * neither overflowing nor overlapping. `__metadata__` is accepted and ignored. A dtype name
 * outside fuse_rt_dtype is FUSE_RT_EDTYPE. On success *out owns the mapping (the file must not
 * be truncated while it is open); close it with fuse_rt_safetensors_close. On failure *out is
 * NULL. */
int fuse_rt_safetensors_open(const char *path, fuse_rt_safetensors **out, char *err, size_t errlen);
void fuse_rt_safetensors_close(fuse_rt_safetensors *st);
size_t fuse_rt_safetensors_count(const fuse_rt_safetensors *st);
/* Entries in header order; i < count. */
const fuse_rt_tensor_info *fuse_rt_safetensors_entry(const fuse_rt_safetensors *st, size_t i);
/* The entry with this key, or NULL. */
const fuse_rt_tensor_info *fuse_rt_safetensors_find(const fuse_rt_safetensors *st, const char *key);
/* "F32", "I64", ... as in safetensors headers; NULL for a value outside the enum. */
const char *fuse_rt_dtype_name(fuse_rt_dtype dt);
/* Element size in bytes; 0 for a value outside the enum. */
size_t fuse_rt_dtype_size(fuse_rt_dtype dt);

/* ---- .npy (format versions 1.0, 2.0 and 3.0; little-endian f32 only) ---- */

/* Reads a '<f4' array in C order, or Fortran order (transposed on load into C order). Another
 * dtype is FUSE_RT_EDTYPE with a message suggesting .astype(np.float32). On success *data is
 * allocated with fuse_rt_free-compatible allocation (release with fuse_rt_free), *rank and
 * shape[0..rank) are set (rank <= FUSE_RT_MAX_RANK; a 0-d array has rank 0 and one element).
 * On failure *data is NULL and *rank 0. */
int fuse_rt_npy_read(const char *path, float **data, uint32_t *rank,
                     int64_t shape[FUSE_RT_MAX_RANK], char *err, size_t errlen);
/* Writes a C-order '<f4' array (version 1.0, or 2.0 if the header needs it). Writes to a
 * temporary file beside `path` and renames it, so a failure leaves no partial output. */
int fuse_rt_npy_write(const char *path, const float *data, uint32_t rank, const int64_t *shape,
                      char *err, size_t errlen);

/* ---- memory ---- */

/* Returns a 64-byte aligned block of `size` bytes, or NULL if the allocation fails (or `size`
 * exceeds PTRDIFF_MAX once rounded up). Blocks of 4 MiB or more are 2 MiB aligned and advised as
 * huge pages. size 0 returns a unique non-NULL block of no usable bytes, so NULL always means
 * failure. Owns: the caller; release with fuse_rt_free. */
void *fuse_rt_alloc(size_t size);
/* Releases a block from fuse_rt_alloc (or one the runtime documents as such); NULL is a no-op. */
void fuse_rt_free(void *p);

/* ---- thread pool ---- */

typedef struct fuse_rt_pool fuse_rt_pool;

/* A persistent pool of `threads` workers (the calling thread counts as one of them, so
 * threads == 1 starts none). Owns: the caller; release with fuse_rt_pool_destroy. */
int fuse_rt_pool_create(int threads, fuse_rt_pool **out, char *err, size_t errlen);
void fuse_rt_pool_destroy(fuse_rt_pool *pool);
/* Number of threads of the pool; 1 for NULL. */
int fuse_rt_pool_threads(const fuse_rt_pool *pool);

/* Body of a parallel loop: runs iterations [begin, end) on thread `thread` (0-based, below
 * fuse_rt_pool_threads). */
typedef void (*fuse_rt_task)(void *ctx, int64_t begin, int64_t end, int thread);

/* Runs fn over [0, n) split into static contiguous chunks, chunk t = [t*n/T, (t+1)*n/T) on
 * thread t of T, and returns when all are done. The partition depends only on n and T, so a
 * kernel whose chunks are independent gives bit-identical results at any thread count. With
 * pool == NULL it calls fn(ctx, 0, n, 0) on the caller. n <= 0 runs nothing; empty chunks
 * are skipped. Not reentrant: one parallel_for per
 * pool at a time, and never from inside a task. */
void fuse_rt_parallel_for(fuse_rt_pool *pool, int64_t n, fuse_rt_task fn, void *ctx);

/* ---- compiled kernels: the API shared by build-time (emit-c) and JIT kernels ---- */

/* A weight handed to create(): an f32 tensor the caller owns, contiguous, row-major. */
typedef struct fuse_rt_weight {
    const char *key;
    const float *data;
    uint32_t rank;
    const int64_t *shape;
} fuse_rt_weight;

/* A named tensor of a kernel's signature (an input, an output, or a parameter by its key). */
typedef struct fuse_rt_tensor_desc {
    const char *name;
    uint32_t rank;
    int64_t shape[FUSE_RT_MAX_RANK];
} fuse_rt_tensor_desc;

typedef struct fuse_rt_kernel fuse_rt_kernel; /* an instance: prepared weights + scratch */

/* Everything a program needs to use a compiled graph. Generated C defines one per graph as
 * `const fuse_rt_kernel_info fuse_k_<graph>_info`; the JIT returns the same structure, so a
 * program moves between the two by changing the one line that obtains it. */
typedef struct fuse_rt_kernel_info {
    uint32_t abi_version; /* FUSE_RT_ABI_VERSION */
    const char *name;     /* the graph's name */
    uint32_t ninputs, noutputs, nparams;
    const fuse_rt_tensor_desc *inputs;  /* in the graph's order */
    const fuse_rt_tensor_desc *outputs; /* in the graph's order */
    const fuse_rt_tensor_desc *params;  /* name = safetensors key, what create() needs */
    double flops;                       /* of the graph as written (LANGUAGE.md section 5) */
    double bytes;                       /* each input, output and weight once */
    int64_t scratch_bytes; /* per instance, per-thread buffers for the pool's threads excluded */
    int64_t thread_scratch_bytes; /* per thread */
    int64_t prepared_bytes;       /* weights as prepared by create() */
    /* Binds weights (every params[i] key must be in the table, f32, with that shape; extra
     * entries are ignored), prepares them (folding, packing), copies what it keeps, and
     * allocates scratch. The instance borrows nothing afterwards except `pool` (NULL: single
     * threaded), which must outlive it. */
    int (*create)(const fuse_rt_weight *weights, size_t nweights, fuse_rt_pool *pool,
                  fuse_rt_kernel **out, char *err, size_t errlen);
    /* Computes the outputs. Buffers are contiguous f32 in the graph's shapes; inputs and
     * outputs must not overlap. One instance per concurrent caller. */
    int (*run)(fuse_rt_kernel *k, const float *const *inputs, float *const *outputs, char *err,
               size_t errlen);
    void (*destroy)(fuse_rt_kernel *k);
} fuse_rt_kernel_info;

/* Finds each of info's params in the table and checks its shape; on success data[i] points at
 * params[i]'s values. A key the kernel needs that is missing, has another shape, or appears
 * twice in the table is an error (FUSE_RT_EINVAL); entries it does not need are ignored.
 * Used by generated create() functions. */
int fuse_rt_bind_weights(const fuse_rt_kernel_info *info, const fuse_rt_weight *weights,
                         size_t nweights, const float **data, char *err, size_t errlen);

/* create() with weights from a safetensors file: keys are looked up as prefix + params[i].name
 * (a '.' is inserted after a non-empty prefix that lacks one). The file is closed before this
 * returns. */
int fuse_rt_kernel_create_from_file(const fuse_rt_kernel_info *info, const char *path,
                                    const char *prefix, fuse_rt_pool *pool, fuse_rt_kernel **out,
                                    char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
