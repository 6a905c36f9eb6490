"""The two frameworks: their names, which one a model belongs to, and loading both into one process.

Loading torch and TensorFlow/Keras into one process (cross-framework checks) needs the order that works.

Both wheels bundle native libraries (oneDNN, OpenMP, LLVM in Triton). Loaded TensorFlow-first, torch's
autograd crashed intermittently here (segfaults, glibc heap corruption), and Triton segfaults when it
loads after TensorFlow. So: Triton is kept out (it is only used by torch.compile on GPUs), torch loads
first, TensorFlow second. This module imports neither framework until load_both() is called.
"""

from __future__ import annotations

import sys
from typing import Any

FRAMEWORKS = ("torch", "keras")


def check_framework(fw: str) -> str:
    if fw not in FRAMEWORKS:
        raise ValueError(f"unknown framework {fw!r}: expected one of {', '.join(FRAMEWORKS)}")
    return fw


def framework_of(model: Any) -> str:
    """'torch' or 'keras', read from the model's class hierarchy (imports nothing)."""
    for cls in type(model).__mro__:
        root = cls.__module__.split(".")[0]
        if root == "torch":
            return "torch"
        if root in ("keras", "keras_hub"):
            return "keras"
    raise ValueError(f"expected a torch.nn.Module or a keras.Model, found {type(model).__name__}")


def load_both():
    """Import torch, then keras (TensorFlow backend); returns (torch, keras)."""
    sys.modules.setdefault("triton", None)
    import torch  # noqa: I001  (the order matters: TensorFlow first broke torch's autograd, see above)
    import keras

    return torch, keras
