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
from shared.checkpoint import check_safetensors  # noqa: F401  (the hub checks headers with the format's own check)
from shared.errors import UserError
from shared.hub.errors import one_line

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Names the store layout itself uses (compared case-insensitively: some file systems fold case): the store's
# index and card at its root, and the manifest.json a URL <store>/<name> is probed for.
RESERVED_NAMES = ("index.json", "readme.md", "manifest.json")
PARTIAL_SUFFIX = re.compile(r"\.partial-\d+$")  # a local store's file being written (shared/hub/transport.py)


def check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise UserError(
            f"{kind} {value!r} is not allowed: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit, at most 100 characters)"
        )
    if value.lower() in RESERVED_NAMES or PARTIAL_SUFFIX.search(value):
        raise UserError(
            f"{kind} {value!r} is reserved: the store uses index.json, README.md, manifest.json and "
            "*.partial-N files itself; pick another name"
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
