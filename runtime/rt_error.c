/*
 * rt_error: the runtime's one way of reporting a problem (see rt_internal.h).
 */
#include "rt_internal.h"

#include <stdarg.h>
#include <stdio.h>

int fuse_rt__fail(int code, char *err, size_t errlen, const char *path, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return code;
    int n = snprintf(err, errlen, "%s: ", path ? path : "(null)");
    size_t used = n < 0 ? 0 : (size_t)n;
    if (used < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + used, errlen - used, fmt, ap);
        va_end(ap);
    }
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            *p = '?';
    return code;
}
