/*
 * fuzz_support: see fuzz.h.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
    fflush(stderr);
    abort();
}

/* /dev/shm when it is there: writes to tmpfs cost no disk I/O and fsync is free. */
static const char *temp_root(void)
{
    struct stat sb;
    if (stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0)
        return "/dev/shm";
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

static void die_errno(const char *what, const char *path)
{
    fprintf(stderr, "fuzz: cannot %s %s: %s\n", what, path, strerror(errno));
    abort();
}

static void write_all(int fd, const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        ssize_t n = pwrite(fd, data + off, size - off, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die_errno("write", "the input file");
        off += (size_t)n;
    }
}

const char *fuzz_input_path(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        char name[4096];
        snprintf(name, sizeof name, "%s/fuse-fuzz-input-XXXXXX", temp_root());
        fd = mkstemp(name);
        if (fd < 0)
            die_errno("create", name);
        unlink(name);
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0)
        die_errno("truncate", path);
    write_all(fd, data, size);
    return path;
}

static char scratch_dir[4096];

static void remove_scratch(void)
{
    DIR *d = opendir(scratch_dir);
    if (!d)
        return;
    char path[8192];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", scratch_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(scratch_dir);
}

const char *fuzz_scratch_path(const char *name)
{
    static char path[8192];
    if (!scratch_dir[0]) {
        snprintf(scratch_dir, sizeof scratch_dir, "%s/fuse-fuzz-XXXXXX", temp_root());
        if (!mkdtemp(scratch_dir))
            die_errno("create", scratch_dir);
        atexit(remove_scratch);
    }
    snprintf(path, sizeof path, "%s/%s", scratch_dir, name);
    return path;
}

FILE *fuzz_null_stream(void)
{
    static FILE *f;
    if (!f && !(f = fopen("/dev/null", "w")))
        die_errno("open", "/dev/null");
    return f;
}
