/*
 * rt_internal: helpers shared by the runtime's own files. Not part of the ABI (fuse_rt.h);
 * symbols carry the fuse_rt__ prefix so that they cannot collide with a user program's.
 */
#ifndef FUSE_RT_INTERNAL_H
#define FUSE_RT_INTERNAL_H

#include <stddef.h>

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* Writes "path: message" into err (if err != NULL and errlen > 0), with control characters
 * replaced by '?' so the message stays on one line. Returns code. */
int fuse_rt__fail(int code, char *err, size_t errlen, const char *path, const char *fmt, ...)
    PRINTF_LIKE(5, 6);

#endif
