/*
 * outfile: how fusec writes the files it is told to write (run's .npy outputs, emit-c's three
 * files, emit-llvm's module): never over a file it reads, and all or nothing, through temporary
 * files beside the outputs that are renamed into place only when every one is written.
 */
#ifndef FUSE_OUTFILE_H
#define FUSE_OUTFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "diag.h"
#include "util.h"

/* The folder part of a path ("." when it has none), appended to sb. */
void outfile_dirname(const char *path, StrBuf *sb);
/* The last part of a path. */
const char *outfile_basename(const char *path);

/* True when paths a and b name one file: the same text; or, when either exists, the same
 * st_dev and st_ino; or, when neither exists yet, the same name in the same folder (so that
 * "k.h" and "./k.h" are one file). */
bool outfile_same_file(const char *a, const char *b);

/* A file a command reads, for outfile_check_not_inputs. */
typedef struct InputFile {
    const char *path;
    const char *what; /* for the message: "the spec", "the weights", ... */
} InputFile;

/* Reports each of outputs[0..nout) that is also one of inputs[0..nin) (outfile_same_file)
 * as "OUT: error: is also an input". Returns true when none is. */
bool outfile_check_not_inputs(Diag *d, const char *const *outputs, size_t nout,
                              const InputFile *inputs, size_t nin);

/* One output of an OutputFiles set. */
typedef struct OutputFile {
    const char *path; /* borrowed: where it goes */
    char *tmp;        /* owns: the temporary beside it */
    char *backup;     /* owns: a second name of the file it replaces, while committing */
    bool existed;     /* path named something when the temporary was made */
} OutputFile;

/* Files written all or nothing. Each is written to a temporary file beside its path (a new
 * file's mode: 0666 less the umask; a replaced file keeps its permission bits), and nothing is
 * renamed into place until every one is written, so that a failure leaves every existing file
 * as it was and no new one. Zero-initialize; commit or abort ends it. */
typedef struct OutputFiles {
    OutputFile *files; /* owns */
    size_t n;
} OutputFiles;

/* Adds path to set and writes data[0..len) to its temporary. Returns false after reporting to
 * d (the caller then aborts the set). */
bool outfile_write(OutputFiles *set, Diag *d, const char *path, const void *data, size_t len);
/* Adds path to set and returns the name of its temporary file, an empty file that the caller
 * writes over (borrowed from set), or NULL after reporting to d. */
const char *outfile_temp(OutputFiles *set, Diag *d, const char *path);
/* Renames every temporary into place. If a rename fails, puts back what the earlier ones
 * replaced and removes what they created, reports to d and returns false. Ends the set. */
bool outfile_commit(OutputFiles *set, Diag *d);
/* Removes the temporaries. Ends the set. */
void outfile_abort(OutputFiles *set);

#endif
