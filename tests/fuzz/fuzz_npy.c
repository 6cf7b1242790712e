/*
 * fuzz_npy: arbitrary bytes as a .npy file through fuse_rt_npy_read.
 *
 * Checked, besides the sanitizers: a failure leaves *data NULL and *rank 0 with a one-line
 * message; a success returns rank <= FUSE_RT_MAX_RANK, non-negative dims and exactly
 * product(shape) elements, which are all read (so ASan sees any short allocation) and must
 * survive fuse_rt_npy_write and a second read bit for bit.
 */
#include "fuzz.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuse_rt.h"

enum { MAX_ROUND_TRIP = 1 << 16 }; /* elements; larger arrays are only read */

static void check_message(const char *err)
{
    FUZZ_CHECK(err[0] != '\0');
    FUZZ_CHECK(strchr(err, '\n') == NULL);
}

static size_t element_count(uint32_t rank, const int64_t *shape)
{
    size_t n = 1;
    for (uint32_t d = 0; d < rank; d++) {
        FUZZ_CHECK(shape[d] >= 0);
        FUZZ_CHECK(shape[d] == 0 || n <= SIZE_MAX / (size_t)shape[d]);
        n *= (size_t)shape[d];
    }
    return n;
}

/* Writes the array back and reads it again: the shape and every bit must survive. */
static void round_trip(const float *data, size_t count, uint32_t rank, const int64_t *shape)
{
    char err[FUSE_RT_ERR_MAX] = "";
    const char *path = fuzz_scratch_path("round_trip.npy");
    FUZZ_CHECK(fuse_rt_npy_write(path, data, rank, shape, err, sizeof err) == FUSE_RT_OK);
    float *again = NULL;
    uint32_t rank2 = 99;
    int64_t shape2[FUSE_RT_MAX_RANK];
    FUZZ_CHECK(fuse_rt_npy_read(path, &again, &rank2, shape2, err, sizeof err) == FUSE_RT_OK);
    FUZZ_CHECK(rank2 == rank);
    FUZZ_CHECK(memcmp(shape2, shape, rank * sizeof *shape) == 0);
    FUZZ_CHECK(count == 0 || memcmp(again, data, count * sizeof *data) == 0);
    fuse_rt_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_input_path(data, size);
    static float sentinel;
    float *values = &sentinel; /* must be reset on every path */
    uint32_t rank = 99;
    int64_t shape[FUSE_RT_MAX_RANK];
    char err[FUSE_RT_ERR_MAX] = "";
    int rc = fuse_rt_npy_read(path, &values, &rank, shape, err, sizeof err);
    if (rc != FUSE_RT_OK) {
        FUZZ_CHECK(rc == FUSE_RT_EFORMAT || rc == FUSE_RT_EDTYPE || rc == FUSE_RT_EIO ||
                   rc == FUSE_RT_ENOMEM);
        FUZZ_CHECK(values == NULL && rank == 0);
        check_message(err);
        return 0;
    }
    FUZZ_CHECK(rank <= FUSE_RT_MAX_RANK);
    FUZZ_CHECK(values != NULL);
    size_t count = element_count(rank, shape);
    FUZZ_CHECK(count * 4 <= size); /* the data is in the file */
    uint32_t acc = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &values[i], 4);
        acc ^= bits;
    }
    // Every element is one of the file's 4-byte groups (the data is the file's tail).
    uint32_t want = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, data + size - 4 * count + 4 * i, 4);
        want ^= bits;
    }
    FUZZ_CHECK(acc == want);
    if (count <= MAX_ROUND_TRIP)
        round_trip(values, count, rank, shape);
    fuse_rt_free(values);
    return 0;
}
