#!/usr/bin/python3
"""Writes the seed corpora of the fuzz harnesses into tests/fuzz/corpus/<harness>/.

    /usr/bin/python3 tests/fuzz/make_corpus.py

Seeds are named seed-*; the script rewrites those and leaves every other file alone: the
reproducers of fixed bugs (crash-*, mismatch-*) and, for the fast harnesses, the inputs a
campaign added to the seeds' coverage (cov-*, from libFuzzer's -merge=1). Its output is
committed, so the replay tests need neither Python nor numpy; rerun it after changing it and
commit the difference.

  spec         the examples, every error golden and the valid golden specs
  safetensors  valid files (every dtype, __metadata__, 0-d and empty entries, an unaligned
               header that forces F32 copies, more entries than the runtime scans linearly) and
               broken ones (truncated, bad lengths, bad JSON, overlaps, duplicates, bad shapes)
  npy          what numpy writes (versions 1.0, 2.0 and 3.0, C and Fortran order, 0-d and empty
               arrays, other dtypes) and broken files (bad magic, header, shape, truncated data)
  graph        byte strings for the graph generator (fuzz_graph.c): byte 0 holds the flags, the
               rest drives the generator; two of them run the C backend
"""
import io
import json
import os
import random
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def clear_seeds(name):
    d = os.path.join(CORPUS, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.remove(os.path.join(d, f))
    return d


def write(d, name, data):
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---- spec ----

# Specs that unroll to the build limits: seconds per run, too slow for a seed.
SLOW_SPECS = {"guard-graph-too-large.fuse", "guard-too-many-weights.fuse"}

def spec_corpus():
    d = clear_seeds("spec")
    sources = [("example", os.path.join(ROOT, "examples"))]
    sources += [("error", os.path.join(ROOT, "tests", "golden", "errors"))]
    for stage in ("ast", "graph", "loops"):
        sources.append((stage, os.path.join(ROOT, "tests", "golden", stage)))
    for prefix, folder in sources:
        for f in sorted(os.listdir(folder)):
            if f.endswith(".fuse") and f not in SLOW_SPECS:
                shutil.copyfile(os.path.join(folder, f), os.path.join(d, "seed-%s-%s" % (prefix, f)))


# ---- safetensors ----

DTYPES = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16,
          "F16": np.float16, "U32": np.uint32, "I32": np.int32, "F32": np.float32,
          "U64": np.uint64, "I64": np.int64, "F64": np.float64}


def safetensors(tensors, metadata=None, misalign=False):
    """The bytes of a safetensors file: tensors is a list of (key, dtype name, array). The data
    starts 8-byte aligned, or with misalign 1 byte past a multiple of 4."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for key, dtype, arr in tensors:
        raw = np.ascontiguousarray(arr).tobytes()
        header[key] = {"dtype": dtype, "shape": list(arr.shape),
                       "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    while (8 + len(text)) % (4 if misalign else 8) != (1 if misalign else 0):
        text += b" "
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def raw_safetensors(header_text, data=b""):
    if isinstance(header_text, str):
        header_text = header_text.encode()
    return struct.pack("<Q", len(header_text)) + header_text + data


def safetensors_corpus():
    d = clear_seeds("safetensors")
    rng = np.random.default_rng(7)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    conv = [("conv.weight", "F32", f32(4, 3, 1, 1)), ("conv.bias", "F32", f32(4))]
    write(d, "conv.safetensors", safetensors(conv))
    bn = [("bn.weight", "F32", f32(4)), ("bn.bias", "F32", f32(4)),
          ("bn.running_mean", "F32", f32(4)), ("bn.running_var", "F32", np.abs(f32(4)) + 0.5),
          ("bn.num_batches_tracked", "I64", np.array(3, dtype=np.int64))]
    write(d, "batchnorm-metadata.safetensors",
          safetensors(conv + bn, metadata={"format": "pt", "note": "caf\u00e9 \ud83d\ude00"}))
    # A header length that is not a multiple of 4: the F32 entries must be copied to aligned memory.
    write(d, "unaligned.safetensors", safetensors(conv, misalign=True))
    text = json.dumps({"a.w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}) + " "
    write(d, "unaligned-header.safetensors", raw_safetensors(text, f32(2).tobytes()))
    every = [("t.%s" % k, k, (rng.integers(0, 2, size=(2, 3)) if k == "BOOL"
                              else rng.integers(0, 100, size=(2, 3))).astype(v))
             for k, v in DTYPES.items()]
    every.append(("t.BF16", "BF16", np.zeros((3,), dtype=np.uint16)))
    every.append(("t.F8_E4M3", "F8_E4M3", np.zeros((5,), dtype=np.uint8)))
    every.append(("t.F8_E5M2", "F8_E5M2", np.zeros((1, 1), dtype=np.uint8)))
    write(d, "every-dtype.safetensors", safetensors(every))
    empty = [("e.zero", "F32", np.zeros((0, 3), dtype=np.float32)),
             ("e.scalar", "F32", np.array(1.5, dtype=np.float32)),
             ("e.rank8", "F32", f32(1, 2, 1, 2, 1, 1, 2, 1))]
    write(d, "empty-and-scalar.safetensors", safetensors(empty))
    many = [("layers.%d.w" % i, "F32", f32(i % 3 + 1)) for i in range(20)]
    write(d, "many-entries.safetensors", safetensors(many))
    write(d, "empty-header.safetensors", raw_safetensors("{}"))
    write(d, "escapes.safetensors", raw_safetensors(
        '{"k\\u00e9\\ud83d\\ude00\\n\\"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        b"\0\0\x80\x3f"))
    # Broken files.
    good = safetensors(conv)
    write(d, "bad-truncated.safetensors", good[:len(good) - 5])
    write(d, "bad-short.safetensors", b"\x10\0\0")
    write(d, "bad-length-huge.safetensors", struct.pack("<Q", 1 << 62) + good[8:])
    write(d, "bad-length-zero.safetensors", struct.pack("<Q", 0) + good[8:])
    write(d, "bad-json.safetensors", raw_safetensors('{"a":{"dtype":"F32",}}'))
    write(d, "bad-not-object.safetensors", raw_safetensors('[1, 2]'))
    write(d, "bad-trailing.safetensors", raw_safetensors('{} x'))
    write(d, "bad-nul-key.safetensors", raw_safetensors(
        '{"a\\u0000b":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', b"\0" * 4))
    write(d, "bad-deep.safetensors", raw_safetensors('{"__metadata__":' + "[" * 70 + "]" * 70 + "}"))
    write(d, "bad-surrogate.safetensors", raw_safetensors('{"\\ud800":1}'))
    write(d, "bad-utf8.safetensors", raw_safetensors(b'{"\xc0\xaf":1}'))
    entry = lambda dt, shape, offs: {"dtype": dt, "shape": shape, "data_offsets": offs}
    cases = {
        "overlap": {"a": entry("F32", [2], [0, 8]), "b": entry("F32", [2], [4, 12])},
        "reversed": {"a": entry("F32", [1], [8, 4])},
        "past-end": {"a": entry("F32", [4], [0, 16])},
        "size-mismatch": {"a": entry("F32", [3], [0, 8])},
        "unknown-dtype": {"a": entry("F128", [1], [0, 4])},
        "negative-dim": {"a": entry("F32", [-1], [0, 4])},
        "rank9": {"a": entry("F32", [1] * 9, [0, 4])},
        "huge-dims": {"a": entry("F64", [1 << 40, 1 << 40], [0, 8])},
        "three-offsets": {"a": entry("F32", [1], [0, 4, 8])},
        "float-offset": {"a": entry("F32", [1], [0, 4.0])},
        "missing-shape": {"a": {"dtype": "F32", "data_offsets": [0, 4]}},
        "extra-field": {"a": dict(entry("F32", [1], [0, 4]), extra=1)},
        "entry-not-object": {"a": [1, 2]},
    }
    for name, header in cases.items():
        write(d, "bad-%s.safetensors" % name, raw_safetensors(json.dumps(header), b"\0" * 12))
    write(d, "bad-duplicate.safetensors", raw_safetensors(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8))


# ---- npy ----

def npy_bytes(arr, version=None, fortran=False):
    f = io.BytesIO()
    if fortran:
        arr = np.asfortranarray(arr)
    np.lib.format.write_array(f, arr, version=version)
    return f.getvalue()


def npy_raw(header, data=b"", version=1):
    header = header.encode()
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(header)) + header + data


def npy_corpus():
    d = clear_seeds("npy")
    rng = np.random.default_rng(11)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    write(d, "f32-2x3.npy", npy_bytes(f32(2, 3)))
    write(d, "f32-0d.npy", npy_bytes(np.array(2.5, dtype=np.float32)))
    write(d, "f32-1d.npy", npy_bytes(f32(7)))
    write(d, "f32-nchw.npy", npy_bytes(f32(1, 3, 4, 5)))
    write(d, "f32-empty.npy", npy_bytes(np.zeros((2, 0, 3), dtype=np.float32)))
    write(d, "f32-rank8.npy", npy_bytes(f32(1, 2, 1, 2, 1, 2, 1, 1)))
    write(d, "f32-fortran.npy", npy_bytes(f32(3, 4, 2), fortran=True))
    write(d, "f32-v2.npy", npy_bytes(f32(2, 2), version=(2, 0)))
    write(d, "f32-v3.npy", npy_bytes(f32(3), version=(3, 0)))
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45], dtype=np.float32)
    write(d, "f32-special.npy", npy_bytes(special))
    write(d, "f64.npy", npy_bytes(f32(2, 2).astype(np.float64)))
    write(d, "i32.npy", npy_bytes(np.arange(6, dtype=np.int32).reshape(2, 3)))
    write(d, "f32-big-endian.npy", npy_bytes(f32(4).astype(">f4")))
    write(d, "structured.npy", npy_bytes(np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])))
    # Headers numpy would accept but does not write.
    write(d, "header-double-quotes.npy", npy_raw(
        '{"descr": "<f4", "shape": (2,), "fortran_order": False}\n', b"\0" * 8))
    write(d, "header-trailing-comma.npy", npy_raw(
        "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 1,), }   \n", b"\0" * 8))
    # Broken files.
    good = npy_bytes(f32(2, 3))
    write(d, "bad-magic.npy", b"\x93NUMPZ" + good[6:])
    write(d, "bad-version.npy", good[:6] + b"\x04\x00" + good[8:])
    write(d, "bad-truncated-data.npy", good[:-3])
    write(d, "bad-trailing-data.npy", good + b"\0\0\0\0")
    write(d, "bad-header-length.npy", good[:8] + b"\xff\xff" + good[10:])
    write(d, "bad-short.npy", good[:9])
    write(d, "bad-rank9.npy", npy_raw(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1), }\n",
        b"\0" * 4))
    write(d, "bad-int-shape.npy", npy_raw(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3), }\n", b"\0" * 12))
    write(d, "bad-huge-shape.npy", npy_raw(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n"))
    write(d, "bad-negative.npy", npy_raw(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n"))
    write(d, "bad-duplicate-key.npy", npy_raw(
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", b"\0" * 4))
    write(d, "bad-unterminated.npy", npy_raw("{'descr': '<f4", version=2))
    write(d, "bad-fortran-word.npy", npy_raw(
        "{'descr': '<f4', 'fortran_order': Truee, 'shape': (), }\n", b"\0" * 4, version=3))


# ---- graph ----

def graph_corpus():
    d = clear_seeds("graph")
    rng = random.Random(5)
    # Flags (byte 0): bits 0-1 vector lanes, bit 2 two threads, bit 3 a block, bit 4 named
    # dims, bits 4-7 all set: the C backend too.
    for i, flags in enumerate([0x00, 0x01, 0x02, 0x07, 0x08, 0x13, 0x1e, 0x05, 0x0a, 0x11]):
        n = rng.randint(8, 120)
        write(d, "random-%02d" % i, bytes([flags] + [rng.randrange(256) for _ in range(n)]))
    write(d, "empty", b"")
    write(d, "c-backend-1", bytes([0xf0] + [rng.randrange(256) for _ in range(60)]))
    write(d, "c-backend-2", bytes([0xff] + [rng.randrange(256) for _ in range(90)]))


def main():
    spec_corpus()
    safetensors_corpus()
    npy_corpus()
    graph_corpus()
    total = 0
    for root, _, files in os.walk(CORPUS):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print("corpus: %d KiB in %s" % (total // 1024, CORPUS))


if __name__ == "__main__":
    sys.exit(main())
