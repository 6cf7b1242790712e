"""Reading and writing safetensors files with numpy and torch alone.

The writer produces the bytes `safetensors.torch.save_file` writes: a little-endian u64 header
length, a compact JSON header (`__metadata__` first, then one entry per tensor in data order),
padded with spaces to a multiple of 8, then the tensors' little-endian data back to back.
Entries are ordered as safetensors orders them: by dtype (largest enum value first, so I64
before F32), then by key.
"""

import json
import struct

import numpy as np
import torch

# safetensors' Dtype enum, in declaration order.
_DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
                "I32", "U32", "F32", "F64", "I64", "U64"]
_TORCH_TO_ST = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16",
    torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32", torch.float32: "F32",
    torch.float64: "F64", torch.int64: "I64",
}
_ST_TO_NUMPY = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def _tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        # numpy has no bfloat16: the high half of each f32 is the bf16 value.
        u = t.float().numpy().view(np.uint32) >> 16
        return u.astype("<u2").tobytes()
    a = t.numpy()
    return a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()


def to_bytes(tensors, metadata=None, data_order="save_file"):
    """The bytes of a safetensors file holding `tensors` ({key: torch.Tensor}), in
    safetensors' own layout. `metadata` ({str: str}, {} included) becomes `__metadata__`.
    data_order="reversed" lays the data out in the opposite order: still a valid file, one
    that save_file never writes (for testing readers)."""
    items = []
    for key, t in tensors.items():
        if not isinstance(key, str):
            raise TypeError("safetensors: key %r is not a string" % (key,))
        if not isinstance(t, torch.Tensor):
            raise TypeError("safetensors: %s is a %s, not a tensor" % (key, type(t).__name__))
        if t.dtype not in _TORCH_TO_ST:
            raise ValueError("safetensors: unsupported dtype %s for %s" % (t.dtype, key))
        items.append((key, _TORCH_TO_ST[t.dtype], list(t.shape), _tensor_bytes(t)))
    items.sort(key=lambda it: (-_DTYPE_ORDER.index(it[1]), it[0]))
    if data_order == "reversed":
        items.reverse()
    elif data_order != "save_file":
        raise ValueError("safetensors: data_order %r is not 'save_file' or 'reversed'"
                         % (data_order,))
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for key, dtype, shape, data in items:
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(it[3] for it in items)


def save_file(tensors, path, metadata=None):
    """Writes `tensors` to `path` as safetensors (as safetensors.torch.save_file does)."""
    data = to_bytes(tensors, metadata)
    with open(path, "wb") as f:
        f.write(data)


def load_file(path):
    """Reads a safetensors file: returns ({key: torch.Tensor}, {key: dtype name}, metadata).
    Dtypes numpy cannot hold (BF16, F8, U16, ...) are an error."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    base = 8 + n
    tensors, dtypes = {}, {}
    metadata = header.pop("__metadata__", None)
    for key, e in header.items():
        if e["dtype"] not in _ST_TO_NUMPY:
            raise ValueError("%s: %s has dtype %s, which this reader does not convert"
                             % (path, key, e["dtype"]))
        a, b = e["data_offsets"]
        arr = np.frombuffer(blob[base + a:base + b], dtype=_ST_TO_NUMPY[e["dtype"]])
        tensors[key] = torch.from_numpy(arr.reshape(e["shape"]).copy())
        dtypes[key] = e["dtype"]
    return tensors, dtypes, metadata
