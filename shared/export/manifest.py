"""export.json: what an export folder holds, where it came from and how well it reproduces the twin.

`document(...)` builds it, `write` puts it beside the artefact and `read` checks a folder against it
(every file listed with its sha256 and size, none missing, none altered). Framework-free.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.checkpoint import sha256_file
from shared.errors import UserError

SCHEMA = 1
EXPORT_FILE = "export.json"
PACKAGES = ("numpy", "torch", "onnx", "onnxruntime", "onnxscript", "tensorflow", "keras", "keras-hub")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def files(folder: Path) -> dict[str, dict]:
    """Every file under `folder` but export.json: relative POSIX path -> {"sha256", "size"}."""
    folder = Path(folder)
    return {
        path.relative_to(folder).as_posix(): {"sha256": sha256_file(path), "size": path.stat().st_size}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() != EXPORT_FILE
    }


def document(
    *,
    fmt: str,
    framework: str,
    plan,
    config: dict,
    checkpoint: dict,
    source: str,
    graphs: dict,
    extra: dict,
    verification: dict,
    folder: Path,
) -> dict:
    doc = {
        "schema": SCHEMA,
        "format": fmt,
        "framework": framework,
        "model": plan.model,
        "task": plan.task,
        "config": config,
        "checkpoint": {
            "path": source,
            "folder": str(checkpoint["folder"]),
            "sha256": sha256_file(Path(checkpoint["folder"]) / "weights.safetensors"),
            "manifest_sha256": sha256_file(Path(checkpoint["folder"]) / "manifest.json"),
            "meta": checkpoint["meta"],
        },
        "versions": versions(),
        **extra,
        "graphs": {name: plan.graphs[name].entry(**where) for name, where in graphs.items()},
        "dims": {name: {"min": low, "max": high} for name, (low, high) in plan.dims.items()},
        "preprocessing": plan.preprocessing,
    }
    if plan.decoding is not None:
        doc["decoding"] = plan.decoding
        doc["tokenizers"] = {
            "file": "tokenizer.json",
            "format": "zoo-translation-tokenizers/1: {'source': tokenizer.json, 'target': tokenizer.json} "
            "(Hugging Face tokenizers)",
            "source": "source",
            "target": "target",
        }
    doc["files"] = files(folder)
    doc["verification"] = verification
    return doc


def write(folder: Path, doc: dict) -> Path:
    path = Path(folder) / EXPORT_FILE
    path.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    return path


def read(folder: str | Path) -> dict:
    """export.json of an export folder, after checking every file it lists (and no file it does not)."""
    folder = Path(folder)
    path = folder / EXPORT_FILE
    if not path.is_file():
        raise UserError(f"{folder} holds no {EXPORT_FILE}: not a folder written by tools/export.py")
    try:
        doc = json.loads(path.read_text())
        listed = doc["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(f"{path} is malformed ({err}); export the checkpoint again") from None
    if doc.get("schema") != SCHEMA:
        raise UserError(f"{path} has schema {doc.get('schema')}; this zoo reads schema {SCHEMA}")
    found = files(folder)
    for name, entry in listed.items():
        if name not in found:
            raise UserError(f"export file {folder / name} is missing; export the checkpoint again")
        if found[name] != {"sha256": entry["sha256"], "size": entry["size"]}:
            raise UserError(
                f"export file {folder / name} does not match {EXPORT_FILE} (altered or truncated)"
            )
    extra = sorted(set(found) - set(listed))
    if extra:
        raise UserError(f"{folder} holds files {EXPORT_FILE} does not list: {', '.join(extra[:5])}")
    return doc
