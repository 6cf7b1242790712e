/*
 * outfile: outputs never over inputs, and written all or nothing (see outfile.h).
 */
#include "outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void outfile_dirname(const char *path, StrBuf *sb)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        sb_append(sb, ".");
    else if (slash == path)
        sb_append(sb, "/");
    else
        sb_append_n(sb, path, (size_t)(slash - path));
}

const char *outfile_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static bool same_inode(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

bool outfile_same_file(const char *a, const char *b)
{
    if (strcmp(a, b) == 0)
        return true;
    struct stat sa, sb;
    bool a_exists = stat(a, &sa) == 0, b_exists = stat(b, &sb) == 0;
    if (a_exists || b_exists)
        return a_exists && b_exists && same_inode(&sa, &sb);
    if (strcmp(outfile_basename(a), outfile_basename(b)) != 0)
        return false;
    StrBuf da = {0}, db = {0};
    outfile_dirname(a, &da);
    outfile_dirname(b, &db);
    bool same = stat(da.data, &sa) == 0 && stat(db.data, &sb) == 0 && same_inode(&sa, &sb);
    sb_free(&da);
    sb_free(&db);
    return same;
}

bool outfile_check_not_inputs(Diag *d, const char *const *outputs, size_t nout,
                              const InputFile *inputs, size_t nin)
{
    bool ok = true;
    for (size_t o = 0; o < nout; o++)
        for (size_t i = 0; i < nin; i++)
            if (outfile_same_file(outputs[o], inputs[i].path)) {
                diag_report_file(d, DIAG_ERROR, outputs[o],
                                 "is also an input (%s): writing it would destroy it",
                                 inputs[i].what);
                ok = false;
                break;
            }
    return ok;
}

/* name = path + tag + six letters, different at each call (pid, clock and attempt mixed). The
 * caller creates it with O_EXCL (or link), which fails if the name is taken. */
static void unique_name(StrBuf *name, const char *path, const char *tag, unsigned attempt)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 12) ^
                 ((uint64_t)attempt * 0x9e3779b97f4a7c15ULL);
    x ^= x >> 33, x *= 0xff51afd7ed558ccdULL, x ^= x >> 33; /* a 64-bit finalizer mix */
    char letters[7];
    for (int i = 0; i < 6; i++, x >>= 5)
        letters[i] = "abcdefghijklmnopqrstuvwxyz012345"[x & 31];
    letters[6] = '\0';
    sb_clear(name);
    sb_printf(name, "%s%s%s", path, tag, letters);
}

/* Adds path to set with a new, empty temporary beside it. Returns its descriptor, or -1 after
 * reporting to d. */
static int add_temp(OutputFiles *set, Diag *d, const char *path)
{
    // Not mkstemp: it makes the file 0600, and umask() cannot be read without changing it.
    // open(0666) lets the kernel apply the umask (and a folder's default ACL) as for any new
    // file; O_EXCL makes the name ours.
    StrBuf tmp = {0};
    int fd = -1;
    for (unsigned attempt = 0; fd < 0 && attempt < 100; attempt++) {
        unique_name(&tmp, path, ".tmp", attempt);
        fd = open(tmp.data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        diag_report_file(d, DIAG_ERROR, path, "cannot create a temporary file beside it: %s",
                         strerror(errno));
        sb_free(&tmp);
        return -1;
    }
    struct stat old;
    bool existed = lstat(path, &old) == 0;
    // A replaced file keeps its permission bits (those of the file a symlink points at). If
    // fchmod fails, the file gets a new file's mode: not worth failing the write for.
    if (stat(path, &old) == 0 && S_ISREG(old.st_mode))
        (void)fchmod(fd, old.st_mode & 0777);
    set->files = xrealloc(set->files, (set->n + 1) * sizeof(OutputFile));
    set->files[set->n++] = (OutputFile){.path = path, .tmp = tmp.data, .existed = existed};
    return fd;
}

/* Writes all of data[0..len) to fd. Returns 0 or errno. */
static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t put = write(fd, data, len < (1u << 30) ? len : (1u << 30));
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0)
            return errno;
        if (put == 0)
            return EIO;
        data += put;
        len -= (size_t)put;
    }
    return 0;
}

bool outfile_write(OutputFiles *set, Diag *d, const char *path, const void *data, size_t len)
{
    int fd = add_temp(set, d, path);
    if (fd < 0)
        return false;
    int e = write_all(fd, data, len);
    // fsync before the rename: after a crash the path holds the old file or the new, whole.
    if (!e && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (e)
        diag_report_file(d, DIAG_ERROR, path, "cannot write: %s", strerror(e));
    return e == 0;
}

const char *outfile_temp(OutputFiles *set, Diag *d, const char *path)
{
    int fd = add_temp(set, d, path);
    if (fd < 0)
        return NULL;
    close(fd);
    return set->files[set->n - 1].tmp;
}

void outfile_abort(OutputFiles *set)
{
    for (size_t i = 0; i < set->n; i++) {
        if (set->files[i].tmp)
            unlink(set->files[i].tmp);
        if (set->files[i].backup)
            unlink(set->files[i].backup);
        free(set->files[i].tmp);
        free(set->files[i].backup);
    }
    free(set->files);
    set->files = NULL;
    set->n = 0;
}

/* Gives the file at f->path a second name, f->backup, so that a failed commit can put it
 * back. Best effort: without one (a file system without hard links), a failed commit leaves
 * the new contents there. */
static void back_up(OutputFile *f)
{
    struct stat st;
    if (lstat(f->path, &st) != 0 || S_ISDIR(st.st_mode))
        return; /* nothing to keep; a rename over a folder fails anyway */
    StrBuf name = {0};
    for (unsigned attempt = 0; attempt < 100; attempt++) {
        unique_name(&name, f->path, ".old", attempt);
        if (link(f->path, name.data) == 0) {
            f->backup = name.data;
            return;
        }
        if (errno != EEXIST)
            break;
    }
    sb_free(&name);
}

bool outfile_commit(OutputFiles *set, Diag *d)
{
    for (size_t i = 0; i < set->n; i++)
        back_up(&set->files[i]);
    for (size_t i = 0; i < set->n; i++) {
        OutputFile *f = &set->files[i];
        if (rename(f->tmp, f->path) == 0) {
            free(f->tmp);
            f->tmp = NULL;
            continue;
        }
        diag_report_file(d, DIAG_ERROR, f->path, "cannot rename the temporary file over it: %s",
                         strerror(errno));
        // Undo the renames already made: the old file back under its name, a new one gone.
        for (size_t j = 0; j < i; j++) {
            OutputFile *done = &set->files[j];
            if (done->backup && rename(done->backup, done->path) == 0) {
                free(done->backup);
                done->backup = NULL;
            } else if (!done->existed) {
                unlink(done->path);
            }
        }
        outfile_abort(set);
        return false;
    }
    outfile_abort(set); /* every tmp is NULL now: this removes the backups */
    return true;
}
