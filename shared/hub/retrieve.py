"""Reading a store: find a published version, pull it into a folder, or fetch it into the local cache.

Pulling checks the manifest against the sha256 the index recorded at push time, every file's size and
sha256 while it streams, and the safetensors header, before anything is moved into place. `resolve` and
`load` are how the rest of the zoo opens a checkpoint that may live in a store: a store URL is fetched
into the cache, a local folder is handed to shared/checkpoint.py as it is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared import checkpoint
from shared.errors import UserError
from shared.hub.errors import store_errors
from shared.hub.index import read_index
from shared.hub.integrity import check_manifest, check_name, check_safetensors
from shared.hub.transport import Store, is_store_url, parse_hf

CHUNK = 1 << 20


@dataclass
class Version:
    store: Store
    name: str
    version: str
    entry: dict | None  # the index entry (None for a bare checkpoint folder outside any store)
    manifest_raw: bytes
    manifest: dict

    @property
    def url(self) -> str:
        return self.store.child_url(self.name, self.version) if self.entry else self.store.url


def _split(url: str) -> tuple[str, str]:
    head, sep, tail = url.rstrip("/").rpartition("/")
    head = head if sep else "."
    if not tail or head.endswith(":/") or (url.startswith("hf://") and len(parse_hf(url).prefix) == 0):
        raise UserError(
            f"{url} names no model: expected <store>/<name>[/<version>] or <store>/<name>@<version>"
        )
    return head, tail


def _target(url: str, options: dict | None) -> tuple[Store, str, str | None, Store | None]:
    """(store, name, version or None for the latest, the version folder's own store when the URL named it)."""
    head, tail = _split(url)
    if "@" in tail:
        name, _, version = tail.partition("@")
        return Store(head, options), name, version, None
    folder = Store(url, options)
    if folder.read("manifest.json") is not None:
        try:
            grand, name = _split(head)
        except UserError:  # a checkpoint folder at the top of a bucket or repository: not in a store
            return folder, tail, "", folder
        return Store(grand, options), name, tail, folder
    return Store(head, options), tail, None, None


@store_errors
def locate(url: str, options: dict | None = None) -> Version:
    """Find a published version: <store>/<name>/<version>, <store>/<name>@<version> or <store>/<name> (latest)."""
    store, name, version, folder = _target(url, options)
    index = read_index(store)
    if index is None and folder is not None:  # a bare checkpoint folder, not in a store
        raw = folder.read("manifest.json")
        return Version(folder, name, version, None, raw, check_manifest(raw, f"{url}/manifest.json"))
    if index is None and version is None and "@" not in name:  # <store>/<name>/<version> without a manifest?
        grand, parent = _split(store.url)
        upper = Store(grand, options)
        if (upper_index := read_index(upper)) is not None:
            store, index, name, version = upper, upper_index, parent, name
    if index is None:
        raise UserError(
            f"no zoo store at {store.url} (no index.json): check the URL; `tools/hub.py push` creates one"
        )
    model = index["models"].get(check_name("model name", name))
    if model is None:
        raise UserError(f"{store.url} has no model {name!r}; it has: {', '.join(index['models']) or 'none'}")
    version = check_name("version", version or list(model["versions"])[-1])
    entry = model["versions"].get(version)
    if entry is None:
        raise UserError(
            f"{name} has no published version {version!r} in {store.url} (an unfinished push is not "
            f"published); versions: {', '.join(model['versions'])}"
        )
    if entry.get("path") != f"{name}/{version}":
        raise UserError(
            f"the index of {store.url} places {name}/{version} at {entry.get('path')!r}, outside "
            f"{name}/{version}/; refusing it"
        )
    raw = store.read(f"{entry['path']}/manifest.json")
    where = store.child_url(entry["path"], "manifest.json")
    if raw is None:
        raise UserError(f"{where} is missing although the index lists {name}/{version}; the store is damaged")
    if hashlib.sha256(raw).hexdigest() != entry["manifest_sha256"]:
        raise UserError(
            f"{where} does not match the sha256 the index recorded at push time (altered in the "
            "store); refusing it"
        )
    return Version(store, name, version, entry, raw, check_manifest(raw, where))


def _download(v: Version, staging: Path) -> None:
    """Fetch every file into `staging`, checking size and sha256 while streaming, then the safetensors header."""
    base = v.entry["path"] if v.entry else ""
    for fname, expected in sorted(v.manifest["files"].items()):
        digest, size = hashlib.sha256(), 0
        try:
            with v.store.open(f"{base}/{fname}".lstrip("/")) as src, open(staging / fname, "wb") as dst:
                while chunk := src.read(CHUNK):
                    size += len(chunk)
                    if size > expected["size"]:
                        break
                    digest.update(chunk)
                    dst.write(chunk)
        except FileNotFoundError:
            raise UserError(
                f"{fname}, listed in the manifest of {v.url}, is missing from the store; nothing was kept"
            ) from None
        if size != expected["size"] or digest.hexdigest() != expected["sha256"]:
            found = f"more than {expected['size']}" if size > expected["size"] else str(size)
            raise UserError(
                f"{fname} from {v.url} does not match its manifest ({found} bytes, expected "
                f"{expected['size']}; sha256 {'differs' if size == expected['size'] else 'not checked'}):"
                " altered or truncated in the store; nothing was kept"
            )
    (staging / "manifest.json").write_bytes(v.manifest_raw)
    check_safetensors(staging / "weights.safetensors")
    checkpoint.verify(staging)


@store_errors
def pull(url: str, dest: str | Path, options: dict | None = None) -> Path:
    """Pull a version into the new (or empty) folder `dest`; nothing is written outside it."""
    v = locate(url, options)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserError(f"{dest} exists and is not an empty folder: pass a new DEST (nothing was changed)")
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".zoo-pull-", dir=dest))
    try:
        _download(v, staging)
        for path in staging.iterdir():
            path.rename(dest / path.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    staging.rmdir()
    return dest


def cache_root() -> Path:
    return Path(os.environ.get("ZOO_CACHE") or Path.home() / ".cache" / "zoo") / "checkpoints"


@store_errors
def fetch(url: str, options: dict | None = None) -> Path:
    """A verified local copy of a published version, cached by the sha256 of its manifest."""
    v = locate(url, options)
    target = cache_root() / hashlib.sha256(v.manifest_raw).hexdigest()
    if (target / "manifest.json").is_file():
        try:
            checkpoint.verify(target)
            return target
        except UserError:
            shutil.rmtree(target)  # our own cache entry, damaged: fetch it again
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
    try:
        _download(v, staging)
        shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:  # another process cached the same checkpoint meanwhile
            if not (target / "manifest.json").is_file():
                raise
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# ---------------------------------------------------------------- ls, show


@store_errors
def list_store(url: str, options: dict | None = None) -> dict:
    index = read_index(Store(url, options))
    if index is None:
        raise UserError(
            f"no zoo store at {url} (no index.json): check the URL; `tools/hub.py push` creates one"
        )
    return index


@store_errors
def show(url: str, options: dict | None = None) -> dict:
    """A version (<store>/<name>/<version> or @<version>) with its files, or every version of <store>/<name>."""
    head, tail = _split(url)
    if "@" not in tail and Store(url, options).read("manifest.json") is None:
        index = list_store(head, options)
        if tail not in index["models"]:
            raise UserError(f"{head} has no model {tail!r}; it has: {', '.join(index['models']) or 'none'}")
        return {"store": head, "name": tail, **index["models"][tail]}
    v = locate(url, options)
    return {
        "url": v.url,
        "name": v.name,
        "version": v.version,
        "entry": v.entry,
        "files": v.manifest["files"],
    }


# ---------------------------------------------------------------- checkpoints from anywhere


def resolve(path: str | Path) -> Path:
    """A local checkpoint folder for a checkpoint folder, a run folder, or a store URL (fetched into the cache)."""
    if is_store_url(path):  # s3://bucket/zoo/vision-cnn/v1, hf://user/repo/vision-cnn, store/vision-cnn@v1
        return fetch(str(path))
    return checkpoint.resolve(path)


def load(path: str | Path) -> dict:
    """shared.checkpoint.load for a folder, a run folder or a store URL (verified before anything is read)."""
    return checkpoint.load(resolve(path))
