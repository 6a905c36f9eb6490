"""Framework-neutral checkpoints: a folder of safetensors + JSON, written atomically, verified on load.

    weights.safetensors   canonical (torch state_dict) names
    config.json           {"model": ..., "schema": 1, "config": {...}}
    meta.json             framework trained in, data, recipe, metrics, seed, versions, git commit, created
    preprocessing.json    normalisation statistics, vocabularies ... (any other state: extra files)
    README.md             model card with Hugging Face style YAML front matter
    manifest.json         sha256 and size of every other file

No pickle anywhere: .pt, .pth, .pkl, .bin, .h5 and .keras files are refused with a one-line reason.

This module reads, writes and verifies folders; it knows no model and no store. A store URL is resolved
by shared/hub (which calls this module), and a model is built from a checkpoint by shared/models.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import UserError

SCHEMA = 1
REFUSED_SUFFIXES = {
    ".pt": "a torch pickle",
    ".pth": "a torch pickle",
    ".pkl": "a pickle",
    ".pickle": "a pickle",
    ".bin": "a pickle-based torch file",
    ".h5": "an HDF5 Keras file that can carry code",
    ".keras": "a Keras archive that can carry code",
    ".ckpt": "an opaque framework checkpoint",
}
ALLOWED_SUFFIXES = {".safetensors", ".json", ".md", ".txt", ".csv", ".png", ".model", ".vocab"}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def refuse_unsafe(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix in REFUSED_SUFFIXES:
        raise UserError(
            f"refusing {path}: {REFUSED_SUFFIXES[suffix]}; zoo checkpoints are safetensors + JSON only"
        )


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("numpy", "torch", "keras", "tensorflow", "keras-hub", "safetensors", "datasets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(
    folder: str | Path,
    *,
    model_name: str,
    config: dict,
    weights: dict[str, np.ndarray],
    meta: dict,
    extra_files: dict[str, Any] | None = None,
    card: str | None = None,
) -> Path:
    """Write a checkpoint folder atomically: a temp folder beside it, fsync, then rename into place."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        # ascontiguousarray turns 0-d arrays (BatchNorm counters) into shape (1,): keep each shape.
        tensors = {k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in weights.items()}
        save_file(tensors, str(tmp / "weights.safetensors"), metadata={"format": "zoo", "model": model_name})
        _write_json(tmp / "config.json", {"model": model_name, "schema": SCHEMA, "config": config})
        meta = {
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "git_commit": git_commit(),
            "versions": versions(),
            **meta,
        }
        _write_json(tmp / "meta.json", meta)
        for name, value in (extra_files or {}).items():
            refuse_unsafe(Path(name))
            target = tmp / name
            if isinstance(value, str | bytes) and not isinstance(value, dict):
                target.write_bytes(value.encode() if isinstance(value, str) else value)
            else:
                _write_json(target, value)
        (tmp / "README.md").write_text(card or f"# {model_name}\n")
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {
            "schema": SCHEMA,
            "model": model_name,
            "files": {n: {"sha256": sha256_file(tmp / n), "size": (tmp / n).stat().st_size} for n in files},
        }
        _write_json(tmp / "manifest.json", manifest)
        _fsync_tree(tmp)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def resolve(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder holding one in checkpoint/ (store URLs: shared.hub.resolve)."""
    if "://" in str(path):
        raise UserError(f"{path} is a store URL: open it with shared.hub.resolve, which fetches it first")
    path = Path(path)
    if path.is_file():
        refuse_unsafe(path)
        raise UserError(f"{path} is a file; pass the checkpoint folder (it holds manifest.json)")
    for candidate in (path, path / "checkpoint"):
        if (candidate / "manifest.json").is_file():
            return candidate
    if not path.exists():
        raise UserError(
            f"checkpoint {path} does not exist: pass a run folder from tools/train.py or a checkpoint folder"
        )
    raise UserError(f"{path} holds no manifest.json (nor checkpoint/manifest.json): not a zoo checkpoint")


def verify(folder: Path) -> dict:
    """Check every file against manifest.json (sha256 and size); refuse pickle-bearing files."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        listed = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(
            f"{folder}/manifest.json is malformed ({err}); the checkpoint cannot be trusted"
        ) from None
    for path in folder.iterdir():
        refuse_unsafe(path)
    for name, entry in listed.items():
        if Path(name).name != name:
            raise UserError(
                f"manifest names {name!r}, which is not a plain file name in the checkpoint folder"
            )
        path = folder / name
        if not path.is_file():
            raise UserError(f"checkpoint file {path} is missing; re-download or re-save the checkpoint")
        if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise UserError(f"checkpoint file {path} does not match manifest.json (altered or truncated)")
    for required in ("weights.safetensors", "config.json", "meta.json"):
        if required not in listed:
            raise UserError(f"{folder}/manifest.json does not list {required}; the checkpoint is incomplete")
    return manifest


def load(path: str | Path) -> dict:
    """Verify and read a checkpoint: {'folder', 'model', 'config', 'weights', 'meta', 'files'}."""
    from safetensors.numpy import load_file

    folder = resolve(path)
    manifest = verify(folder)
    config = json.loads((folder / "config.json").read_text())
    if config.get("schema") != SCHEMA:
        raise UserError(
            f"{folder}/config.json has schema {config.get('schema')}; this zoo reads schema {SCHEMA}"
        )
    return {
        "folder": folder,
        "model": config["model"],
        "config": config["config"],
        "weights": load_file(str(folder / "weights.safetensors")),
        "meta": json.loads((folder / "meta.json").read_text()),
        "files": sorted(manifest["files"]),
    }


def read_json(checkpoint: dict, name: str) -> Any:
    path = checkpoint["folder"] / name
    if name not in checkpoint["files"]:
        raise UserError(f"checkpoint {checkpoint['folder']} lacks {name}; it was saved without that state")
    return json.loads(path.read_text())
