"""index.json, the store's table of contents: every model and version with its framework, data, metrics
and parity. `ls` reads only this file, and a version exists for readers once the index lists it.

    {"schema": 1, "updated": ..., "models": {<name>: {"model": "vision/cnn", "versions": {<version>: entry}}}}

An entry records where the version lives (<name>/<version>), the sha256 of its manifest.json (so the
manifest a reader fetches can be checked against what was pushed), and what the store card shows.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.errors import UserError
from shared.hub.errors import one_line
from shared.hub.transport import Store

SCHEMA = 1
FILE = "index.json"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _problem(entry: Any) -> str | None:
    """What is wrong with one version's entry (None when it has the schema's shape)."""
    if not isinstance(entry, dict):
        return f"is a {type(entry).__name__}, not an object"
    required = {"path": str, "manifest_sha256": str, "size": int, "files": int}
    for key, kind in required.items():
        if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
            return f"has {key}={entry.get(key)!r}; expected {kind.__name__}"
    if not re.fullmatch(r"[0-9a-f]{64}", entry["manifest_sha256"]):
        return "has a manifest_sha256 that is not 64 hex digits"
    for key in ("model", "framework", "data", "created", "pushed", "git_commit"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            return f"has {key}={entry[key]!r}; expected a string"
    for key in ("metrics", "results", "card"):
        if not isinstance(entry.get(key, {}), dict):
            return f"has {key}={entry[key]!r}; expected an object"
    for fw, result in entry.get("results", {}).items():
        if not isinstance(result, dict) or not isinstance(result.get("metrics", {}), dict):
            return f"has results[{fw!r}]={result!r}; expected an object with a 'metrics' object"
    parity = entry.get("parity")
    if parity is not None and not (
        isinstance(parity, dict)
        and isinstance(parity.get("checks"), int)
        and isinstance(parity.get("passed"), int)
        and isinstance(parity.get("max_error"), dict)
        and parity["max_error"]
        and all(_number(v) for v in parity["max_error"].values())
    ):
        return f"has parity={parity!r}; expected checks, passed and a non-empty max_error of numbers"
    return None


def check_index(index: Any, where: str) -> dict:
    """Validate a parsed index against its schema; the first bad model or version entry is named."""

    def bad(what: str, problem: str):
        return UserError(
            f"{where} is malformed: {what} {problem}; restore it from the store's history or re-push "
            "the models"
        )

    if not isinstance(index, dict) or not isinstance(index.get("models"), dict):
        raise bad("the file", "has no 'models' object")
    for name, model in index["models"].items():
        if not isinstance(model, dict) or not isinstance(model.get("versions"), dict):
            raise bad(f"model {name!r}", "has no 'versions' object")
        if not isinstance(model.get("model"), str):
            raise bad(
                f"model {name!r}", f"has model={model.get('model')!r}; expected a name such as vision/cnn"
            )
        for version, entry in model["versions"].items():
            problem = _problem(entry)
            if problem:
                raise bad(f"entry {name}/{version}", problem)
    return index


def parse_index(raw: bytes, where: str) -> dict:
    try:
        index = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(
            f"{where} is malformed ({one_line(err)}); restore it from the store's history or re-push the models"
        ) from None
    return check_index(index, where)


def read_index(store: Store) -> dict | None:
    """The store's index, or None when the store has none yet; a malformed index is refused."""
    raw = store.read(FILE)
    return None if raw is None else parse_index(raw, store.child_url(FILE))


def empty_index() -> dict:
    return {"schema": SCHEMA, "models": {}}


def next_version(versions: dict) -> str:
    """v<N+1> for N published versions, skipping names already taken."""
    number = len(versions) + 1
    while f"v{number}" in versions:
        number += 1
    return f"v{number}"


def add_version(index: dict, name: str, version: str, entry: dict) -> None:
    """Record `entry` as name/version (replacing an entry of that name), stamped with its push time."""
    index["models"].setdefault(name, {"model": entry["model"], "versions": {}})["versions"][version] = entry
    index["updated"] = entry["pushed"]


def encode_index(index: dict) -> bytes:
    return (json.dumps(index, indent=2) + "\n").encode()
