"""Publishing a checkpoint as <name>/<version>/ in a store, and recording it in the index and store card.

Publishing order: the version's files, then its manifest.json, then README.md and index.json last, so a
reader that goes through the index never sees a half-pushed version. On hf:// the push is one commit.
Versions are immutable unless --force replaces one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from shared import checkpoint
from shared.errors import UserError
from shared.hub.card import front_matter, store_card
from shared.hub.errors import store_errors
from shared.hub.evidence import parity_summary, results_by_framework
from shared.hub.index import add_version, empty_index, encode_index, next_version, read_index
from shared.hub.integrity import check_manifest, check_name, check_safetensors
from shared.hub.retrieve import resolve
from shared.hub.transport import Store


@store_errors
def push(
    source: str | Path,
    url: str,
    *,
    name: str | None = None,
    version: str | None = None,
    force: bool = False,
    parity: str | Path | None = None,
    results: list[str | Path] | None = None,
    options: dict | None = None,
) -> dict:
    """Publish a checkpoint (or run folder) as <name>/<version>/ in the store at `url`; returns its index entry."""
    folder = resolve(source)
    manifest = checkpoint.verify(folder)
    manifest_raw = (folder / "manifest.json").read_bytes()
    check_manifest(manifest_raw, f"{folder}/manifest.json")
    check_safetensors(folder / "weights.safetensors")
    model = json.loads((folder / "config.json").read_text())["model"]
    meta = json.loads((folder / "meta.json").read_text())
    card = (
        front_matter((folder / "README.md").read_text(), f"{folder}/README.md")
        if "README.md" in manifest["files"]
        else {}
    )
    name = check_name("--name", name or model.replace("/", "-"))

    store = Store(url, options, for_push=True)
    index = read_index(store) or empty_index()
    versions = index["models"].get(name, {}).get("versions", {})
    version = check_name("--version", next_version(versions) if version is None else version)
    if version in versions and not force:
        raise UserError(
            f"{name}/{version} already exists in {url} and versions are immutable: pass another "
            "--version, or --force to replace it"
        )

    entry = {
        "path": f"{name}/{version}",
        "model": model,
        "manifest_sha256": hashlib.sha256(manifest_raw).hexdigest(),
        "files": len(manifest["files"]) + 1,
        "size": sum(e["size"] for e in manifest["files"].values()) + len(manifest_raw),
        "framework": meta.get("framework"),
        "data": meta.get("data"),
        "created": meta.get("created"),
        "pushed": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": meta.get("git_commit"),
        "metrics": meta.get("metrics", {}).get("test", {}),
        "results": results_by_framework(results or [], model, meta),
        "parity": parity_summary(parity, model) if parity else meta.get("parity"),
        "card": {k: card[k] for k in ("license", "tags", "datasets", "metrics") if k in card},
    }
    add_version(index, name, version, entry)
    uploads: list[tuple[str, Path | bytes]] = [
        (f"{name}/{version}/{f}", folder / f) for f in sorted(manifest["files"])
    ]
    uploads += [
        (f"{name}/{version}/manifest.json", manifest_raw),
        ("README.md", store_card(index).encode()),
        ("index.json", encode_index(index)),
    ]
    store.publish(uploads, f"zoo: push {name} {version} ({model}, trained in {entry['framework']})")
    return {"url": store.child_url(name, version), **entry}
