/*
 * rt_alloc: the runtime's aligned allocator. size -> a block aligned to 64 bytes (one cache
 * line, and enough for any vector load the kernels emit), released with fuse_rt_free.
 *
 * Invariants: every non-NULL result is 64-byte aligned and may be passed to free();
 * fuse_rt_alloc(0) returns a unique, non-NULL, 64-byte block (so NULL always means failure);
 * blocks of 4 MiB or more are 2 MiB aligned, rounded up to a multiple of 2 MiB and advised as
 * transparent huge pages (a hint: failures are ignored); sizes near PTRDIFF_MAX give NULL
 * without asking the allocator.
 */
#include "fuse_rt.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define ALIGN_SMALL    ((size_t)64)
#define HUGE_THRESHOLD ((size_t)4 << 20) /* 4 MiB: from here on, huge pages pay off */
#define HUGE_PAGE      ((size_t)2 << 20) /* x86-64 and aarch64 (4 KiB granule) huge page */

void *fuse_rt_alloc(size_t size)
{
    size_t align = ALIGN_SMALL;
    // size 0: a real 64-byte block, so callers never confuse "empty" with "out of memory".
    size_t bytes = size ? size : ALIGN_SMALL;
    // No object may exceed PTRDIFF_MAX (pointer differences inside it must be defined).
    if (bytes > (size_t)PTRDIFF_MAX - (HUGE_PAGE - 1))
        return NULL;
    if (bytes >= HUGE_THRESHOLD) {
        align = HUGE_PAGE;
        bytes = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    }
    void *p = NULL;
    if (posix_memalign(&p, align, bytes) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (align == HUGE_PAGE)
        (void)madvise(p, bytes, MADV_HUGEPAGE);  // a hint; EINVAL without THP is fine
#endif
    return p;
}

void fuse_rt_free(void *p)
{
    free(p);
}
