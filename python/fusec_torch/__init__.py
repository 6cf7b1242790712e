"""fusec_torch: from a PyTorch nn.Module to a fusec spec and its weights.

    import torch
    import fusec_torch

    model = MyBlock(...).eval()
    fusec_torch.export(model, (torch.rand(1, 64, 32, 32),), "block.fuse")
    fusec_torch.save_weights(model, "block.safetensors")

    # fusec check block.fuse --weights block.safetensors
    # fusec run block.fuse --weights block.safetensors --input x.npy --output y.npy

export() traces forward with torch.fx, running every node on the example inputs, and writes a
.fuse spec whose scopes are the module paths, so it reads exactly the keys of
model.state_dict(). save_weights() writes that state_dict as safetensors (float tensors as
F32) without the safetensors package. Only torch and numpy are needed. See docs/pytorch.md.
"""

import torch

from . import safetensors
from .errors import ExportError
from .export import ExportResult, export

__all__ = ["export", "save_weights", "load_weights", "ExportError", "ExportResult"]
__version__ = "0.1.0"


def save_weights(module_or_state_dict, path, *, num_batches_tracked="keep", metadata=None):
    """Writes a module's state_dict (or a state_dict) to `path` as safetensors.

    Floating-point tensors are written as F32 (f16/bf16/f64 converted). Integer tensors keep
    their dtype: with num_batches_tracked="keep" (the default) BatchNorm's 0-d I64 counters are
    written as they are (fusec ignores them); with "drop" they are left out. metadata defaults
    to {"format": "pt"}, as transformers writes it. Returns the list of keys written."""
    if num_batches_tracked not in ("keep", "drop"):
        raise ValueError("num_batches_tracked must be 'keep' or 'drop'")
    if isinstance(module_or_state_dict, torch.nn.Module):
        sd = module_or_state_dict.state_dict()
    elif isinstance(module_or_state_dict, dict):
        sd = module_or_state_dict
    else:
        raise TypeError("save_weights takes an nn.Module or a state_dict, not %s"
                        % type(module_or_state_dict).__name__)
    out = {}
    for key, t in sd.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError("state_dict entry %s is a %s, not a tensor" % (key, type(t).__name__))
        if key.endswith("num_batches_tracked") and num_batches_tracked == "drop":
            continue
        t = t.detach().cpu()
        if t.is_floating_point():
            t = t.to(torch.float32)
        out[key] = t
    safetensors.save_file(out, path, {"format": "pt"} if metadata is None else metadata)
    return list(out.keys())


def load_weights(path):
    """Reads a safetensors file: ({key: tensor}, {key: dtype name such as "F32"})."""
    tensors, dtypes, _ = safetensors.load_file(path)
    return tensors, dtypes
