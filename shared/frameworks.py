"""The two frameworks: their names, which one a model belongs to, and loading both into one process.

Loading torch and TensorFlow/Keras into one process (cross-framework checks) needs the order that works.

Both wheels bundle native libraries (oneDNN, OpenMP, LLVM in Triton). Loaded TensorFlow-first, torch's
autograd crashed intermittently here (segfaults, glibc heap corruption), and Triton segfaults when it
loads after TensorFlow. So: Triton is kept out (it is only used by torch.compile on GPUs), torch loads
first, TensorFlow second. This module imports neither framework until load_both() is called.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import Any

from shared.errors import UserError

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


# What native code writes straight to file descriptor 2 while TensorFlow loads and probes for CUDA: absl's
# pre-initialisation banner and glog-style lines ("I0000 00:00:1795799002.536991   29972 port.cc:153] ...").
# TF_CPP_MIN_LOG_LEVEL no longer reaches these, so they are filtered at the descriptor.
NATIVE_LOG = re.compile(
    r"(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] .*)\s*"
)


@contextlib.contextmanager
def native_logs_quiet():
    """Drop the native log lines written to stderr while the block runs; everything else written there
    (Python warnings, a crash's own output) is passed on. If the block fails with anything but a
    UserError (a bug, a broken install), nothing is dropped: the native lines may explain it."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        failed = False
        try:
            yield
        except UserError:
            raise
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if failed or not NATIVE_LOG.fullmatch(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader, finder):
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self.finder)  # once is enough: the native libraries load with the package
        with native_logs_quiet():
            self.loader.exec_module(module)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` through the other finders, and has its import run inside native_logs_quiet()."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader, self)
                return spec
        return None


def quiet_native_imports() -> None:
    """Filter TensorFlow's native start-up logging wherever it is first imported (keras imports it too).
    Call before any framework import; the CLIs do (shared/cli.py)."""
    if "tensorflow" not in sys.modules and not any(
        isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


# Keras' backend: fixed per process when keras is first imported, so it is chosen (framework-free) first.
KERAS_BACKENDS = ("jax", "tensorflow", "torch")
# The backend `--fw keras` trains on when none is named: on GPUs the fastest whose CUDA libraries live beside
# torch's CUDA 13 stack (JAX ran the ResNet-18 twin 3-4x faster than the PyTorch backend on an H100; the
# locked TensorFlow is built for CUDA 12 and sees no GPU there); on the CPU TensorFlow, as before.
GPU_BACKEND_ORDER = ("jax", "torch")
CPU_BACKEND_ORDER = ("tensorflow", "jax", "torch")


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def choose_keras_backend(requested: str | None, gpus: int = 0, env=None) -> str:
    """The Keras backend of a run: `requested` (a --keras-backend flag), else KERAS_BACKEND, else the first
    installed of GPU_BACKEND_ORDER (gpus > 0) or CPU_BACKEND_ORDER. UserError when it cannot load here."""
    env = os.environ if env is None else env
    name = requested or env.get("KERAS_BACKEND") or None
    if name is None:
        order = GPU_BACKEND_ORDER if gpus else CPU_BACKEND_ORDER
        name = next((b for b in order if installed(b)), order[0])
    where = "--keras-backend" if requested else "KERAS_BACKEND"
    if name not in KERAS_BACKENDS:
        raise UserError(f"{where} must be one of {', '.join(KERAS_BACKENDS)}; found {name!r}")
    if not installed(name):
        extra = ' (GPUs: pip install -e ".[gpu]", docs/SCALING.md)' if name == "jax" else ""
        raise UserError(
            f"the Keras backend {name} is not installed{extra}; pick another with --keras-backend"
        )
    return name


def set_keras_backend(name: str, cpu_devices: int = 1) -> None:
    """Fix this process's Keras backend before keras is imported; for JAX on the CPU, split the host into
    `cpu_devices` XLA devices (data parallel on the CPU), which must happen before jax loads."""
    loaded = sys.modules.get("keras")
    if loaded is not None and loaded.backend.backend() != name:
        raise UserError(
            f"Keras was already loaded with the {loaded.backend.backend()} backend in this process; "
            f"start a new process for {name} (tools/train.py does)"
        )
    os.environ["KERAS_BACKEND"] = name
    if name == "jax" and cpu_devices > 1:
        flag = f"--xla_force_host_platform_device_count={cpu_devices}"
        if "jax" in sys.modules:
            raise UserError(f"{flag}: JAX was loaded in this process before the CPU could be split")
        kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
        os.environ["XLA_FLAGS"] = " ".join([*kept, flag])
