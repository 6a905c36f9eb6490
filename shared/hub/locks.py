"""Pushes that run at the same time: a version is reserved before its files are written, and the index
is updated by read-modify-write that no other writer can interleave, so nothing is lost.

    reserve(store, name, version)   the version's reservation, held for the whole push
                                    local folder: an fcntl lock on .locks/<name>@<version>.lock (the kernel
                                    drops it when the process dies, so a killed push never blocks anyone);
                                    S3: the object .locks/<name>@<version>.lock created with If-None-Match,
                                    deleted once the version is in the index
    update_index(store, change)     index.json read, changed and written back
                                    local folder: under an fcntl lock on .locks/index.lock;
                                    S3: a PUT with If-Match on the ETag that was read (If-None-Match for a
                                    new index), retried on a lost race
    clean_partials(store)           removes the *.partial-PID files a killed local push left behind

After a reservation is taken the index is read again: a version published meanwhile (its reservation
already released) counts as taken. A push without --version then tries the next vN; a push naming its
version fails with one line. Other fsspec protocols (memory://, gcs ...) get the same scheme with a lock
object created by a check-then-write, which is not atomic there. hf:// needs none of this: a push is one
commit whose parent is the commit the index was read at (shared/hub/publish.py retries a lost race).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import UserError
from shared.hub.card import store_card
from shared.hub.index import FILE, empty_index, encode_index, parse_index
from shared.hub.integrity import PARTIAL_SUFFIX
from shared.hub.transport import Busy, Store, owner

LOCKS = ".locks"
INDEX_LOCK = f"{LOCKS}/index.lock"
INDEX_WAIT = 120.0  # seconds a push waits for another push's index update (each takes well under one)
INDEX_TRIES = 60  # conditional index writes before giving up (S3)
LOCK_OBJECT_STALE = 120.0  # seconds after which another fsspec store's index lock object is abandoned


def version_lock(name: str, version: str) -> str:
    return f"{LOCKS}/{name}@{version}.lock"


@dataclass
class Reservation:
    """A version held by this push until release()."""

    store: Store
    name: str
    version: str
    _release: Callable[[], None] = field(repr=False)
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._release()


def _describe(record: str) -> str:
    try:
        info = json.loads(record)
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (ValueError, TypeError, KeyError):
        return "another process"


def _try_reserve(store: Store, name: str, version: str, force: bool) -> Reservation | str:
    """The reservation, or the description of whoever holds it."""
    rel = version_lock(name, version)
    if store.local:
        held = store.flock(rel, wait=0, what=f"{name}/{version}")
        try:
            held.__enter__()
        except Busy as busy:
            return _describe(str(busy))
        return Reservation(store, name, version, lambda: held.__exit__(None, None, None))
    if not store.create(rel, owner().encode()):
        record = (store.read(rel) or b"").decode(errors="replace")
        if not force:
            return _describe(record) + " (a killed push leaves its reservation: pass --force to take it over)"
        store.write(rel, owner().encode())  # --force takes over a reservation that may be abandoned
    return Reservation(store, name, version, lambda: store.delete(rel))


def _published(store: Store, name: str) -> dict:
    raw = store.read(FILE)
    index = parse_index(raw, store.child_url(FILE)) if raw is not None else empty_index()
    return index["models"].get(name, {}).get("versions", {})


def reserve(store: Store, name: str, version: str | None, force: bool, next_version) -> Reservation:
    """Reserve `version` of `name`, or (version None) the first free vN from next_version(published)."""
    if version is not None:
        published = _published(store, name)
        if version in published and not force:
            raise already_exists(store, name, version)
        held = _try_reserve(store, name, version, force)
        if isinstance(held, str):
            raise UserError(
                f"{name}/{version} is being pushed to {store.url} right now by {held}; wait for that push "
                "or pass another --version"
            )
        if version in _published(store, name) and not force:  # published while we waited for it
            held.release()
            raise already_exists(store, name, version)
        return held
    taken: set[str] = set()
    for _ in range(200):
        published = _published(store, name)
        candidate = next_version({**dict.fromkeys(taken), **published})
        held = _try_reserve(store, name, candidate, force=False)
        if not isinstance(held, str):
            if candidate not in _published(store, name):
                return held
            held.release()  # another push published it between our two reads of the index
        taken.add(candidate)
    raise UserError(
        f"could not reserve a version of {name} in {store.url}: 200 were taken by other pushes; pass --version"
    )


def already_exists(store: Store, name: str, version: str) -> UserError:
    return UserError(
        f"{name}/{version} already exists in {store.url} and versions are immutable: pass another "
        "--version, or --force to replace it"
    )


def _write_index_and_card(store: Store, index: dict) -> None:
    store.write("README.md", store_card(index).encode())
    store.write(FILE, encode_index(index))


def update_index(store: Store, change: Callable[[dict], None]) -> dict:
    """Apply `change` to the store's current index and write it back (with the store card) so that no
    concurrent writer's change is lost; returns the index written."""
    where = store.child_url(FILE)
    if store.local:
        with store.flock(INDEX_LOCK, wait=INDEX_WAIT, what="index.json"):
            for leftover in Path(store.root).glob("*.partial-*"):  # a killed writer's, under the same lock
                if PARTIAL_SUFFIX.search(leftover.name):
                    leftover.unlink(missing_ok=True)
            raw = store.read(FILE)
            index = parse_index(raw, where) if raw is not None else empty_index()
            change(index)
            _write_index_and_card(store, index)
            return index
    if store.s3:
        for attempt in range(INDEX_TRIES):
            raw, tag = store.read_tagged(FILE)
            index = parse_index(raw, where) if raw is not None else empty_index()
            change(index)
            if store.replace_if(FILE, encode_index(index), tag):
                _card_after(store, index)
                return index
            time.sleep(random.uniform(0.01, 0.05 * (attempt + 1)))  # another push wrote first: merge again
        raise UserError(
            f"{where} kept changing under {INDEX_TRIES} attempts to record this push (many pushes at once?); "
            "push again"
        )
    return _update_with_lock_object(store, change, where)


def _card_after(store: Store, index: dict) -> None:
    """S3: README.md follows the index. Rewrite it until the index it was made from is still current, so a
    slower writer's card never replaces a newer one."""
    for _ in range(INDEX_TRIES):
        raw_before, tag_before = store.read_tagged(FILE)
        current = parse_index(raw_before, store.child_url(FILE)) if raw_before is not None else index
        store.write("README.md", store_card(current).encode())
        if store.read_tagged(FILE)[1] == tag_before:
            return


def _update_with_lock_object(store: Store, change: Callable[[dict], None], where: str) -> dict:
    deadline = time.monotonic() + INDEX_WAIT
    while not store.create(INDEX_LOCK, json.dumps({"time": time.time(), "owner": owner()}).encode()):
        try:
            since = json.loads(store.read(INDEX_LOCK) or b"{}").get("time", 0)
        except ValueError:
            since = 0
        if time.time() - since > LOCK_OBJECT_STALE:
            store.delete(INDEX_LOCK)  # abandoned by a killed push
        elif time.monotonic() > deadline:
            raise UserError(
                f"{store.child_url(INDEX_LOCK)} stayed locked for {INDEX_WAIT:.0f} s by another push; "
                "try again when it has finished"
            )
        time.sleep(random.uniform(0.01, 0.1))
    try:
        raw = store.read(FILE)
        index = parse_index(raw, where) if raw is not None else empty_index()
        change(index)
        _write_index_and_card(store, index)
        return index
    finally:
        store.delete(INDEX_LOCK)


def clean_partials(store: Store) -> int:
    """Remove *.partial-PID files that killed pushes left in version folders nobody is pushing to now
    (a local store; the index's own leftovers go under the index lock). Returns how many were removed."""
    if not store.local:
        return 0
    removed = 0
    folders = {p.parent for p in Path(store.root).glob("*/*/*.partial-*") if PARTIAL_SUFFIX.search(p.name)}
    for folder in sorted(folders):
        name, version = folder.parent.name, folder.name
        try:
            with store.flock(version_lock(name, version), wait=0, what=f"{name}/{version}"):
                for leftover in folder.glob("*.partial-*"):
                    if PARTIAL_SUFFIX.search(leftover.name):
                        leftover.unlink(missing_ok=True)
                        removed += 1
        except Busy:
            continue  # a live push is writing that version
    return removed
