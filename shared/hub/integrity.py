"""What a store must prove before its files are trusted: names, manifests and safetensors headers.

A store can be altered by anyone who can write to it, so nothing a store says is used before it passes
these checks: names are plain (no path escapes), a manifest lists only allowed, plain file names with a
sha256 and a size, and a safetensors header describes tensors that tile the file exactly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from shared import checkpoint
from shared.errors import UserError
from shared.hub.errors import one_line

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
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


def check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise UserError(
            f"{kind} {value!r} is not allowed: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit, at most 100 characters)"
        )
    return value


def check_file_name(name: Any, where: str) -> str:
    """A manifest entry must be a plain, allowed file name inside the checkpoint folder."""
    if (
        not isinstance(name, str)
        or not name
        or "\x00" in name
        or "\\" in name
        or name in (".", "..")
        or PurePosixPath(name).name != name
        or name.startswith(".")
    ):
        raise UserError(
            f"{where} names {name!r}, which is not a plain file name inside the checkpoint "
            "folder (a path escape); refusing the whole checkpoint"
        )
    checkpoint.refuse_unsafe(Path(name))
    if PurePosixPath(name).suffix.lower() not in checkpoint.ALLOWED_SUFFIXES:
        raise UserError(
            f"{where} names {name!r}: only {', '.join(sorted(checkpoint.ALLOWED_SUFFIXES))} "
            "files are accepted in a shared checkpoint"
        )
    return name


def check_manifest(raw: bytes, where: str) -> dict:
    """Parse a manifest and check every entry before any file is fetched."""
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{where} is malformed ({one_line(err)}); the checkpoint cannot be trusted") from None
    for name, entry in files.items():
        check_file_name(name, where)
        if (
            name == "manifest.json"
            or not isinstance(entry, dict)
            or not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256")))
            or not isinstance(entry.get("size"), int)
            or entry["size"] < 0
        ):
            raise UserError(f"{where} has a bad entry for {name!r} (expected sha256 hex and a size in bytes)")
    for required in ("weights.safetensors", "config.json", "meta.json"):
        if required not in files:
            raise UserError(f"{where} does not list {required}; the checkpoint is incomplete")
    return manifest


def check_safetensors(path: Path) -> None:
    """Check a safetensors header (length, JSON, dtypes, shapes, offsets tiling the data) before loading."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if length < 2 or length > min(size - 8, SAFETENSORS_MAX_HEADER):
            raise UserError(
                f"{path.name} is not a valid safetensors file (header length {length} for a {size}-byte file)"
            )
        raw = f.read(length)
    try:
        header = json.loads(raw)
        metadata = header.pop("__metadata__", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError("__metadata__ must map strings to strings")
        spans = []
        for name, info in header.items():
            if (
                set(info) != {"dtype", "shape", "data_offsets"}
                or info["dtype"] not in SAFETENSORS_DTYPE_BYTES
            ):
                raise ValueError(f"tensor {name!r} has entry {info}")
            shape, (begin, end) = info["shape"], info["data_offsets"]
            if not all(isinstance(d, int) and d >= 0 for d in shape) or not 0 <= begin <= end:
                raise ValueError(f"tensor {name!r} has shape {shape} and offsets {[begin, end]}")
            count = 1
            for d in shape:
                count *= d
            if end - begin != count * SAFETENSORS_DTYPE_BYTES[info["dtype"]]:
                raise ValueError(f"tensor {name!r}: offsets span {end - begin} bytes for shape {shape}")
            spans.append((begin, end, name))
    except (ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{path.name} has a bad safetensors header ({one_line(err)})") from None
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
