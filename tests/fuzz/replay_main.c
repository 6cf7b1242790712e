/*
 * replay_main: runs a harness without libFuzzer. Every argument is a file or a directory; each
 * file, and each regular file of each directory (in name order, dot files skipped), is read
 * and passed to LLVMFuzzerTestOneInput once (or, with --random N, N pseudo-random inputs). A
 * harness that finds a bug aborts, so the exit status says whether every input still passes. An
 * empty or missing directory is an error, so that a moved corpus cannot make the test pass
 * vacuously.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *grown = realloc(buf, cap *= 2);
            if (!grown)
                free(buf);
            buf = grown;
        }
    }
    bool failed = ferror(f) || !buf;
    fclose(f);
    if (failed) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(buf);
        return NULL;
    }
    *size = len;
    return buf;
}

static int run_file(const char *path)
{
    size_t size = 0;
    uint8_t *data = read_file(path, &size);
    if (!data)
        return 1;
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
    // An exact-size copy, so that ASan catches a harness reading past the input.
    uint8_t *exact = malloc(size ? size : 1);
    if (!exact) {
        free(data);
        return 1;
    }
    memcpy(exact, data, size);
    free(data);
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
    return 0;
}

/* `--random N`: N inputs of 1 to 256 bytes from a fixed pseudo-random sequence (input i is the
 * same in every run), beyond what a corpus holds: how the random-graph test runs fuzz_graph in
 * every build. */
static int run_random(unsigned count)
{
    uint64_t state = 0x9e3779b97f4a7c15u;
    uint8_t buf[256];
    for (unsigned i = 0; i < count; i++) {
        state = state * 6364136223846793005u + 1442695040888963407u;
        size_t size = 1 + (size_t)(state >> 33) % sizeof buf;
        for (size_t b = 0; b < size; b++) {
            state = state * 6364136223846793005u + 1442695040888963407u;
            buf[b] = (uint8_t)(state >> 56);
        }
        fprintf(stderr, "replay: random input %u (%zu bytes)\n", i, size);
        uint8_t *exact = malloc(size); /* exact size: ASan catches a read past the input */
        if (!exact)
            return 1;
        memcpy(exact, buf, size);
        LLVMFuzzerTestOneInput(exact, size);
        free(exact);
    }
    fprintf(stderr, "replay: %u random inputs passed\n", count);
    return 0;
}

static int skip_dot(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static int run_dir(const char *dir, unsigned *count)
{
    struct dirent **names;
    int n = scandir(dir, &names, skip_dot, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: cannot list %s: %s\n", dir, strerror(errno));
        return 1;
    }
    int rc = 0;
    char path[8192];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        struct stat sb;
        if (rc == 0 && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            rc = run_file(path);
            ++*count;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE... | --random N\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "--random") == 0) {
        char *end = NULL;
        unsigned long n = argc == 3 ? strtoul(argv[2], &end, 10) : 0;
        if (!end || *end || n == 0 || n > 1000000) {
            fprintf(stderr, "usage: %s --random N (1 <= N <= 1000000)\n", argv[0]);
            return 2;
        }
        return run_random((unsigned)n);
    }
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        unsigned count = 0;
        int rc = S_ISDIR(sb.st_mode) ? run_dir(argv[i], &count) : (count = 1, run_file(argv[i]));
        if (rc)
            return rc;
        if (count == 0) {
            fprintf(stderr, "replay: %s holds no inputs\n", argv[i]);
            return 1;
        }
        fprintf(stderr, "replay: %u input%s from %s passed\n", count, count == 1 ? "" : "s",
                argv[i]);
    }
    return 0;
}
