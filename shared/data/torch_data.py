"""numpy batches -> torch tensors. Layout changes (NHWC -> NCHW) happen inside each torch twin."""

from __future__ import annotations

import sys

import numpy as np
import torch

# Triton (which torch's optimizers probe for through torch._dynamo) segfaults when it loads after
# TensorFlow in the same process (their LLVM copies clash). When TensorFlow is already here, torch
# runs without Triton; it only matters for torch.compile on a GPU, where TensorFlow is not loaded.
if "tensorflow" in sys.modules and "triton" not in sys.modules:
    sys.modules["triton"] = None


def to_tensors(batch: dict[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    return {
        k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True) for k, v in batch.items()
    }
