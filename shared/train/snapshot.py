"""Exact-resume snapshots: the whole training state beside the checkpoint, safetensors + JSON, no pickle.

    RUN/snapshots/step-00000120/state.safetensors   weights, optimizer moments, RNG states (numpy arrays)
    RUN/snapshots/step-00000120/state.json          step, data position, schedule, RNG counters, log rows
    RUN/snapshots/step-00000120/manifest.json       sha256 and size of both
    RUN/snapshots/latest.json                       {"folder": "step-00000120", "step": 120}

(A second snapshot at the same step, an epoch end on a snapshot step, is written as step-00000120-1.)

A snapshot folder is written beside its final name and renamed into place; latest.json is then replaced
with os.replace, so a process killed at any instant leaves the previous snapshot readable. Older
snapshot folders are removed after latest.json points past them. Framework-free (numpy + safetensors);
shared/train/{torch,keras}_resume.py turn a trainer's state into these arrays and back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from shared.checkpoint import sha256_file
from shared.errors import UserError

SCHEMA = 1
FOLDER = "snapshots"
FILES = ("state.safetensors", "state.json")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(run_dir: str | Path, tensors: dict[str, np.ndarray], state: dict) -> Path:
    """Write one snapshot atomically and point latest.json at it; returns its folder."""
    from safetensors.numpy import save_file

    root = Path(run_dir) / FOLDER
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{int(state['step']):08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        # reshape keeps 0-d arrays 0-d (ascontiguousarray alone makes them shape (1,)).
        arrays = {k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in tensors.items()}
        save_file(arrays, str(tmp / "state.safetensors"), metadata={"format": "zoo-snapshot"})
        (tmp / "state.json").write_text(json.dumps({"schema": SCHEMA, **state}, indent=1) + "\n")
        manifest = {n: {"sha256": sha256_file(tmp / n), "size": (tmp / n).stat().st_size} for n in FILES}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        for path in tmp.iterdir():
            _fsync(path)
        _fsync(tmp)
        final, k = root / name, 1
        while final.exists():  # the same step saved twice (an epoch end on a snapshot step): a new name
            final, k = root / f"{name}-{k}", k + 1
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = root / ".latest.json.tmp"
    pointer.write_text(json.dumps({"folder": final.name, "step": int(state["step"])}) + "\n")
    _fsync(pointer)
    os.replace(pointer, root / "latest.json")
    _fsync(root)
    for old in root.iterdir():
        if old.name != final.name and (old.name.startswith("step-") or old.name.startswith(".step-")):
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run_dir: str | Path) -> Path | None:
    """The folder latest.json names, or None when the run has no snapshot."""
    pointer = Path(run_dir) / FOLDER / "latest.json"
    if not pointer.is_file():
        return None
    try:
        folder = Path(run_dir) / FOLDER / json.loads(pointer.read_text())["folder"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(
            f"{pointer} is corrupted (not the JSON this zoo writes); the run cannot be resumed"
        ) from None
    if folder.parent != Path(run_dir) / FOLDER or not folder.name.startswith("step-"):
        raise UserError(f"{pointer} names {folder.name!r}, which is not a snapshot folder of this run")
    return folder


def read(run_dir: str | Path, tensors: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """Verify and load the latest snapshot: (tensors, state); tensors=False verifies every file but loads
    only the state. Any damage -> UserError, and nothing is touched."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = latest(run_dir)
    if folder is None:
        raise UserError(
            f"{run_dir} holds no {FOLDER}/latest.json: it was not trained by tools/train.py with "
            "snapshots, or it was killed before its first snapshot; train it again without --resume"
        )
    if not folder.is_dir():
        raise UserError(f"{folder} named by {FOLDER}/latest.json is missing; the run cannot be resumed")
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        for name in FILES:
            entry, path = manifest[name], folder / name
            if (
                not path.is_file()
                or path.stat().st_size != entry["size"]
                or sha256_file(path) != entry["sha256"]
            ):
                raise UserError(
                    f"snapshot file {path} does not match its manifest (altered or truncated); "
                    "the run cannot be resumed from it"
                )
        state = json.loads((folder / "state.json").read_text())
        arrays = load_file(str(folder / "state.safetensors")) if tensors else {}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, SafetensorError) as err:
        raise UserError(
            f"snapshot {folder} is unreadable ({type(err).__name__}: {err}); "
            "the run cannot be resumed from it"
        ) from None
    if state.get("schema") != SCHEMA:
        raise UserError(f"snapshot {folder} has schema {state.get('schema')}; this zoo reads schema {SCHEMA}")
    return arrays, state


def check_compatible(state: dict, run_dir, *, model: str, fw: str, world_size: int, precision: str) -> None:
    """Exact resume continues the same run: same model, framework, replica count and precision."""
    wanted = {"model": model, "framework": fw, "world_size": world_size, "precision": precision}
    flags = {
        "model": "the model argument",
        "framework": "--fw",
        "world_size": "--gpus/--cpu-replicas/--nnodes",
        "precision": "--precision",
    }
    for key, value in wanted.items():
        if state.get(key) != value:
            raise UserError(
                f"{run_dir} is a run of {key} {state.get(key)!r}; this command asks for {value!r}: "
                f"resume it with {flags[key]} matching the run, or train a new run without --resume"
            )
