/*
 * fuzz: what the libFuzzer harnesses share. Each fuzz_<name>.c defines LLVMFuzzerTestOneInput.
 * It is linked either with libFuzzer (-fsanitize=fuzzer, option FUSE_FUZZ) or with
 * replay_main.c, which feeds it every file of its corpus (the fuzz/replay_<name> tests).
 *
 * A harness reports a bug by aborting (FUZZ_CHECK, fuzz_fail): libFuzzer records an abort as a
 * crash and keeps the input, and the replay test fails on it.
 */
#ifndef FUSE_FUZZ_H
#define FUSE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdnoreturn.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints "file:line: fuzz check failed: what" to stderr and aborts. */
noreturn void fuzz_fail(const char *file, int line, const char *what);

#define FUZZ_CHECK(c) ((c) ? (void)0 : fuzz_fail(__FILE__, __LINE__, #c))

/* For APIs that take a path: writes data to a file created once per process (unlinked at once,
 * so nothing is left behind, and reached through /proc/self/fd) and returns its path. */
const char *fuzz_input_path(const uint8_t *data, size_t size);

/* A private directory for files a harness writes, created on first use and removed (with the
 * files named by fuzz_scratch_path) at exit. */
const char *fuzz_scratch_path(const char *name);

/* A stream that discards what is written to it (diagnostics, dumps). */
FILE *fuzz_null_stream(void);

#endif
