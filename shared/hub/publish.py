"""Publishing a checkpoint as <name>/<version>/ in a store, and recording it in the index and store card.

Publishing order: the version is reserved (shared/hub/locks.py), then its files are written, then its
manifest.json, and the index (with README.md) is updated last, by a read-modify-write no concurrent push
can interleave; so a reader that goes through the index never sees a half-pushed version, and two pushes
at once get two versions. On hf:// the push is one commit whose parent is the commit the index was read
at; a push that loses that race reads the index again and retries. Versions are immutable unless --force
replaces one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path

from shared import checkpoint
from shared.errors import UserError
from shared.hub.card import front_matter, store_card
from shared.hub.errors import store_errors
from shared.hub.evidence import parity_summary, results_by_framework
from shared.hub.index import add_version, empty_index, encode_index, next_version, read_index
from shared.hub.integrity import check_manifest, check_name, check_safetensors
from shared.hub.locks import already_exists, clean_partials, reserve, update_index
from shared.hub.retrieve import resolve
from shared.hub.transport import Store

HF_TRIES = 5  # commits retried when another push moved the branch since the index was read


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
    check: Callable[[Path], None] | None = None,
) -> dict:
    """Publish a checkpoint (or run folder) as <name>/<version>/ in the store at `url`; returns its index entry.

    `check(folder)` runs on the verified local checkpoint before anything is written (tools/hub.py passes
    shared.models.check_weights_fit: the weights must fit the model that config.json describes).
    """
    folder = resolve(source)
    manifest = checkpoint.verify(folder)
    manifest_raw = (folder / "manifest.json").read_bytes()
    check_manifest(manifest_raw, f"{folder}/manifest.json")
    check_safetensors(folder / "weights.safetensors")
    model = checkpoint.read_object(folder, "config.json").get("model")
    if not isinstance(model, str):
        raise UserError(f'{folder}/config.json names no model (expected e.g. "model": "vision/cnn")')
    meta = checkpoint.read_object(folder, "meta.json")
    card = (
        front_matter((folder / "README.md").read_text(), f"{folder}/README.md")
        if "README.md" in manifest["files"]
        else {}
    )
    name = check_name("--name", name or model.replace("/", "-"))
    if version is not None:
        check_name("--version", version)
    if check is not None:
        check(folder)
    evidence = {
        "results": results_by_framework(results or [], model, meta),
        "parity": parity_summary(parity, model) if parity else meta.get("parity"),
    }

    def entry_for(version: str) -> dict:
        return {
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
            **evidence,
            "card": {k: card[k] for k in ("license", "tags", "datasets", "metrics") if k in card},
        }

    def files_of(version: str) -> list[tuple[str, Path | bytes]]:
        uploads: list[tuple[str, Path | bytes]] = [
            (f"{name}/{version}/{f}", folder / f) for f in sorted(manifest["files"])
        ]
        return uploads + [(f"{name}/{version}/manifest.json", manifest_raw)]

    store = Store(url, options, for_push=True)
    if store.hf:
        return _push_hf(store, url, options, name, version, force, model, entry_for, files_of)

    clean_partials(store)
    held = reserve(store, name, version, force, next_version)
    version, written, indexing = held.version, [], False
    try:
        replacing = version in (read_index(store) or empty_index())["models"].get(name, {}).get(
            "versions", {}
        )
        entry = entry_for(version)
        for rel, src in files_of(version):
            written.append(rel)
            store.write(rel, src)
        indexing = True
        update_index(store, lambda index: add_version(index, name, version, entry))
    except BaseException:
        if not indexing and not replacing:  # nothing of an unpublished version is left behind
            for rel in written:
                store.delete(rel)
        raise
    finally:
        held.release()
    return {"url": store.child_url(name, version), **entry}


def _push_hf(store, url, options, name, version, force, model, entry_for, files_of) -> dict:
    """One commit per push, its parent the commit the index was read at; a lost race is retried."""
    for attempt in range(HF_TRIES):
        if attempt:
            store = Store(url, options, for_push=True)  # pinned to the branch's new head
        index = read_index(store) or empty_index()
        versions = index["models"].get(name, {}).get("versions", {})
        chosen = version or next_version(versions)
        if chosen in versions and not force:
            raise already_exists(store, name, chosen)
        entry = entry_for(chosen)
        add_version(index, name, chosen, entry)
        uploads = files_of(chosen) + [
            ("README.md", store_card(index).encode()),
            ("index.json", encode_index(index)),
        ]
        try:
            store.publish(uploads, f"zoo: push {name} {chosen} ({model}, trained in {entry['framework']})")
        except Exception as err:
            if getattr(getattr(err, "response", None), "status_code", None) not in (409, 412):
                raise
            continue  # another commit landed since the index was read: read it again
        return {"url": store.child_url(name, chosen), **entry}
    raise UserError(
        f"{url} moved under each of {HF_TRIES} attempts to commit {name} (many pushes at once?); push again"
    )
