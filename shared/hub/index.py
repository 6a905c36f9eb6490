"""index.json, the store's table of contents: every model and version with its framework, data, metrics
and parity. `ls` reads only this file, and a version exists for readers once the index lists it.

    {"schema": 1, "updated": ..., "models": {<name>: {"model": "vision/cnn", "versions": {<version>: entry}}}}

An entry records where the version lives (<name>/<version>), the sha256 of its manifest.json (so the
manifest a reader fetches can be checked against what was pushed), and what the store card shows.
"""

from __future__ import annotations

import json

from shared.errors import UserError
from shared.hub.errors import one_line
from shared.hub.transport import Store

SCHEMA = 1
FILE = "index.json"


def read_index(store: Store) -> dict | None:
    """The store's index, or None when the store has none yet; a malformed index is refused."""
    raw = store.read(FILE)
    if raw is None:
        return None
    try:
        index = json.loads(raw)
        if not isinstance(index.get("models"), dict):
            raise ValueError("no 'models' object")
    except (ValueError, AttributeError) as err:
        raise UserError(
            f"{store.child_url(FILE)} is malformed ({one_line(err)}); "
            "restore it from the store's history or re-push the models"
        ) from None
    return index


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
