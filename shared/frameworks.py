"""Loading torch and TensorFlow/Keras into one process (cross-framework checks), in the order that works.

Both wheels bundle native libraries (oneDNN, OpenMP, LLVM in Triton). Loaded TensorFlow-first, torch's
autograd crashed intermittently here (segfaults, glibc heap corruption), and Triton segfaults when it
loads after TensorFlow. So: Triton is kept out (it is only used by torch.compile on GPUs), torch loads
first, TensorFlow second. This module imports neither framework until load_both() is called.
"""

from __future__ import annotations

import sys


def load_both():
    """Import torch, then keras (TensorFlow backend); returns (torch, keras)."""
    sys.modules.setdefault("triton", None)
    import torch  # noqa: I001  (the order matters: TensorFlow first broke torch's autograd, see above)
    import keras

    return torch, keras
