"""Shared test helpers. Tests are parametrised over zoo.registry so every model gets every check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.frameworks import load_both

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
load_both()  # torch before TensorFlow, Triton kept out: the order that does not crash (shared/frameworks.py)
os.environ.setdefault("PYTHONHASHSEED", "0")
ROOT = Path(__file__).resolve().parent.parent


def run_tool(
    *args: str, cwd: Path = ROOT, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run `python tools/<args>` as a user would; returns the completed process (text output)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """stderr lines that are ours (framework start-up chatter removed)."""
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def frameworks():
    """torch and Keras (loaded in conftest's order), with fixed thread counts."""
    torch, keras = load_both()
    torch.set_num_threads(2)
    return keras, torch


def smoke_set_flags(spec) -> list[str]:
    """`--set key=value` flags of a model's smoke config, less epochs and batch size (the tests set those)."""
    return [
        arg
        for k, v in spec.smoke_config.items()
        if k not in ("epochs", "batch_size")
        for arg in ("--set", f"{k}={v}")
    ]
