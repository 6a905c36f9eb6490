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
import stat
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
SAFETENSORS_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}
SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own limit


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


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def check_plain_file(path: Path, folder: Path) -> None:
    """A checkpoint file must be a regular file inside `folder`: no symlink, device, pipe or socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"checkpoint file {path} is missing; re-download or re-save the checkpoint") from None
    if stat.S_ISLNK(mode):
        raise UserError(
            f"{path} is a symbolic link (to {os.readlink(path)}); a checkpoint holds regular files only: "
            "replace the link by a copy of the file, or remove it"
        )
    if not stat.S_ISREG(mode):
        raise UserError(
            f"{path} is not a regular file (a device, pipe or socket); a checkpoint holds regular files only"
        )
    if path.resolve().parent != folder.resolve():
        raise UserError(f"{path} resolves outside the checkpoint folder {folder}; refusing it")


def check_safetensors(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Check a safetensors header before anything loads the file: header length, JSON, dtypes, shapes,
    offsets tiling the data exactly, string metadata. Returns {tensor name: (dtype, shape)}."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if length < 2 or length > min(size - 8, SAFETENSORS_MAX_HEADER):
            raise UserError(
                f"{path.name} is not a valid safetensors file (header length {length} for a {size}-byte "
                "file; a pickle or another format under that name?)"
            )
        raw = f.read(length)
    tensors = {}
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        metadata = header.pop("__metadata__", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError("__metadata__ must map strings to strings")
        spans = []
        for name, info in header.items():
            if (
                not isinstance(info, dict)
                or set(info) != {"dtype", "shape", "data_offsets"}
                or info["dtype"] not in SAFETENSORS_DTYPE_BYTES
            ):
                raise ValueError(f"tensor {name!r} has entry {info}")
            shape, offsets = info["shape"], info["data_offsets"]
            if (
                not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
                or not isinstance(offsets, list)
                or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]
            ):
                raise ValueError(f"tensor {name!r} has shape {shape} and offsets {offsets}")
            begin, end = offsets
            count = 1
            for d in shape:
                count *= d
            if end - begin != count * SAFETENSORS_DTYPE_BYTES[info["dtype"]]:
                raise ValueError(f"tensor {name!r}: offsets span {end - begin} bytes for shape {shape}")
            spans.append((begin, end, name))
            tensors[name] = (info["dtype"], tuple(shape))
    except (ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{path.name} has a bad safetensors header ({_first_line(err)})") from None
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise UserError(
                f"{path.name} has a bad safetensors header: tensor {name!r} starts at {begin}, "
                f"expected {position} (overlapping or gapped data)"
            )
        position = end
    if position != size - 8 - length:
        raise UserError(
            f"{path.name} has a bad safetensors header: tensors cover {position} bytes of "
            f"{size - 8 - length} (truncated or padded file)"
        )
    return tensors


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


def read_object(folder: Path, name: str) -> dict:
    """A JSON object file of the checkpoint; anything else (not JSON, a list, a number) is refused."""
    try:
        value = json.loads((folder / name).read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(
            f"{folder / name} is malformed (not JSON: {_first_line(err)}); re-save or re-download the checkpoint"
        ) from None
    if not isinstance(value, dict):
        raise UserError(
            f"{folder / name} is malformed (a JSON {type(value).__name__}, not an object); re-save or "
            "re-download the checkpoint"
        )
    return value


def verify(folder: Path) -> dict:
    """Check every file against manifest.json (sha256 and size); refuse pickle-bearing files, symlinks,
    device files and anything resolving outside the folder."""
    for path in folder.iterdir():
        refuse_unsafe(path)
        if not path.is_dir() or path.is_symlink():
            check_plain_file(path, folder)
    manifest = read_object(folder, "manifest.json")
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
        for e in listed.values()
    ):
        raise UserError(
            f"{folder}/manifest.json is malformed (expected 'files' mapping each name to its sha256 and "
            "size); the checkpoint cannot be trusted"
        )
    for name, entry in listed.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise UserError(
                f"manifest names {name!r}, which is not a plain file name in the checkpoint folder"
            )
        path = folder / name
        check_plain_file(path, folder)
        if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise UserError(f"checkpoint file {path} does not match manifest.json (altered or truncated)")
    for required in ("weights.safetensors", "config.json", "meta.json"):
        if required not in listed:
            raise UserError(f"{folder}/manifest.json does not list {required}; the checkpoint is incomplete")
    return manifest


def load(path: str | Path) -> dict:
    """Verify and read a checkpoint: {'folder', 'model', 'config', 'weights', 'meta', 'files'}.

    Every file is checked against the manifest and the safetensors header is checked before the
    weights are read (a forged header or a pickle under that name is a UserError, never a crash)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = resolve(path)
    manifest = verify(folder)
    config = read_object(folder, "config.json")
    if config.get("schema") != SCHEMA:
        raise UserError(
            f"{folder}/config.json has schema {config.get('schema')}; this zoo reads schema {SCHEMA}"
        )
    if not isinstance(config.get("model"), str) or not isinstance(config.get("config"), dict):
        raise UserError(
            f"{folder}/config.json must hold 'model' (a name such as vision/cnn) and 'config' (an object "
            "of Config fields); re-save the checkpoint"
        )
    meta = read_object(folder, "meta.json")
    check_safetensors(folder / "weights.safetensors")
    try:
        weights = load_file(str(folder / "weights.safetensors"))
    except SafetensorError as err:  # the header passed; the library still refused the file
        raise UserError(f"{folder}/weights.safetensors cannot be read ({_first_line(err)})") from None
    return {
        "folder": folder,
        "model": config["model"],
        "config": config["config"],
        "weights": weights,
        "meta": meta,
        "files": sorted(manifest["files"]),
    }


def read_json(checkpoint: dict, name: str) -> Any:
    path = checkpoint["folder"] / name
    if name not in checkpoint["files"]:
        raise UserError(f"checkpoint {checkpoint['folder']} lacks {name}; it was saved without that state")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(
            f"{path} is not JSON ({_first_line(err)}); re-save or re-download the checkpoint"
        ) from None
