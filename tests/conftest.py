"""Shared test helpers. Tests are parametrised over zoo.registry so every model gets every check."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.frameworks import load_both
from shared.train.threads import default_threads

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `make test` runs the suite in pytest-xdist workers, one per core (two on the 2-core CI machine): each
# worker, and every process it starts, then computes on its share of the cores, and idle OpenMP threads sleep
# (shared/train/threads.py), so that the workers do not take each other's cores. Set before the frameworks
# load; an OMP_NUM_THREADS already set is kept.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
TEST_THREADS = max(1, len(os.sched_getaffinity(0)) // WORKERS)
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(TEST_THREADS))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", os.environ["OMP_NUM_THREADS"])
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
load_both()  # torch before TensorFlow, Triton kept out: the order that does not crash (shared/frameworks.py)
os.environ.setdefault("PYTHONHASHSEED", "0")
ROOT = Path(__file__).resolve().parent.parent
SLOW_TIMEOUT = 3600  # seconds: a slow test without its own @pytest.mark.timeout (the default is in pyproject)


def pytest_collection_modifyitems(config, items):
    """Slow tests (whole training runs) get SLOW_TIMEOUT unless they set their own."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


@contextlib.contextmanager
def reserved_port(host: str = "127.0.0.1"):
    """A TCP port no other process is handed while the block runs: bound with SO_REUSEADDR and never
    listening, so the kernel gives it to nobody else, yet a server that also sets SO_REUSEADDR (Python's
    socket.create_server, torch's TCPStore) may bind and listen on it. (Binding port 0 and closing the socket
    before use, as free_port does, lets another process take the port in between.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 0))
        yield s.getsockname()[1]


@pytest.fixture
def closed_port():
    """A port that refuses connections for the whole test: bound, so nobody else can listen on it, and
    never listening itself (a connection gets ECONNREFUSED)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.02):
    """Poll condition() until it returns something true (returned) or `timeout` seconds pass (AssertionError
    naming `what`): a poll loop with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


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
    torch.set_num_threads(default_threads())  # OMP_NUM_THREADS under xdist, else this process's cores
    return keras, torch


def smoke_set_flags(spec) -> list[str]:
    """`--set key=value` flags of a model's smoke config, less epochs and batch size (the tests set those)."""
    return [
        arg
        for k, v in spec.smoke_config.items()
        if k not in ("epochs", "batch_size")
        for arg in ("--set", f"{k}={v}")
    ]
