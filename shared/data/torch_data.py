"""numpy batches -> torch tensors. Layout changes (NHWC -> NCHW) happen inside each torch twin.

With a `decode` (shared/data/columns.py: per column, elementwise steps such as uint8 -> float32 / 255,
standardised), the stored rows cross to the device as they are (uint8 images are a quarter of their float32
size) and are converted there, with the same float32 results as the numpy decode.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from shared.data.columns import operand

# Triton (which torch's optimizers probe for through torch._dynamo) segfaults when it loads after
# TensorFlow in the same process (their LLVM copies clash). When TensorFlow is already here, torch
# runs without Triton; it only matters for torch.compile on a GPU, where TensorFlow is not loaded.
if "tensorflow" in sys.modules and "triton" not in sys.modules:
    sys.modules["triton"] = None


def decode_tensor(tensor: torch.Tensor, ops) -> torch.Tensor:
    """One column through its decode on the tensor's device. Operands are tensors on that device (never
    Python scalars: CUDA turns division by a scalar into multiplication by its reciprocal, which rounds
    differently)."""
    for op, arg in ops:
        if op == "cast":
            tensor = tensor.to(getattr(torch, str(np.dtype(arg))))
            continue
        other = torch.from_numpy(operand(arg)).to(tensor.device, non_blocking=True)
        if op == "mul":
            tensor = tensor * other
        elif op == "div":
            tensor = tensor / other
        elif op == "sub":
            tensor = tensor - other
        elif op == "add":
            tensor = tensor + other
        else:
            raise ValueError(f"unknown decode operation {op!r}")
    return tensor


def to_tensors(
    batch: dict[str, np.ndarray], device: torch.device | str = "cpu", decode: dict | None = None
) -> dict[str, torch.Tensor]:
    """A numpy batch on `device`; the columns named in `decode` are converted there after the copy."""
    decode = decode or {}
    out = {}
    for k, v in batch.items():
        tensor = torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True)
        out[k] = decode_tensor(tensor, decode[k]) if k in decode else tensor
    return out
