"""Share checkpoints through a store: a local folder, file://, s3://, hf:// or any installed fsspec protocol.

A store is a folder (a prefix of a bucket, a Hugging Face repository) laid out as

    index.json                 every model and version: framework, data, metrics, parity; `ls` reads only this
    README.md                  the store's model card (Hugging Face YAML front matter), generated from the index
    <name>/<version>/          one checkpoint folder of shared/checkpoint.py, manifest.json included

Publishing order: the version's files, then its manifest.json, then README.md and index.json last, so a
reader that goes through the index never sees a half-pushed version. On hf:// the push is one commit.
Pulling checks the manifest against the index, every file's size and sha256 while it streams, and the
safetensors header, before anything is moved into place. Nothing here imports torch or tensorflow.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path, PurePosixPath
from typing import Any

from shared import checkpoint
from shared.errors import UserError

SCHEMA = 1
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
CHUNK = 1 << 20


# ---------------------------------------------------------------- errors a store can raise, as one line

_ERROR_HINTS = {
    "NoCredentialsError": "no credentials for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
    "AWS_PROFILE), or pass --option anon=true for a public bucket",
    "PartialCredentialsError": "incomplete credentials for {url} ({err}): set both AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY",
    "OfflineModeIsEnabled": "cannot reach {url}: HF_HUB_OFFLINE is set; unset it to use the Hugging Face Hub",
    "RepositoryNotFoundError": "no Hugging Face repository behind {url} (or no access to it): check the name "
    "and HF_TOKEN; create it with `hf repo create`",
    "RevisionNotFoundError": "the revision in {url} does not exist: pass an existing branch, tag or commit",
    "GatedRepoError": "{url} is gated: accept its terms on the Hub and set HF_TOKEN",
    "HFValidationError": "{url} does not name a Hugging Face repository ({err}): expected hf://user/repo[@rev]/path",
    "HfHubHTTPError": "the Hugging Face Hub refused the request for {url} ({err})",
    "ClientError": "the store {url} refused the request ({err}): check the bucket, endpoint and credentials",
    "PermissionError": "permission denied while using {url} ({err}): check the credentials and folder permissions",
    "FileNotFoundError": "{url} was not found ({err}): check the bucket, repository or folder",
    "EndpointConnectionError": "cannot reach the store {url} ({err}): check --endpoint-url / AWS_ENDPOINT_URL "
    "and the network",
    "ConnectError": "cannot reach the store {url} ({err}): check HF_ENDPOINT and the network",
    "ConnectionError": "cannot reach the store {url} ({err}): check the endpoint and the network",
    "TimeoutError": "the store {url} did not answer in time ({err}): check the endpoint and the network",
    "TimeoutException": "the store {url} did not answer in time ({err}): check the endpoint and the network",
    "OSError": "{url}: {err}",
}


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _as_user_error(url: str, err: Exception) -> UserError | None:
    """The first hint matching the error's class hierarchy, or None for a genuine bug."""
    for cls in type(err).__mro__:
        if cls.__name__ in _ERROR_HINTS:
            return UserError(_ERROR_HINTS[cls.__name__].format(url=url, err=_one_line(err)))
    return None


def _store_errors(fn: Callable) -> Callable:
    """Turn what a store client raises (botocore, httpx, huggingface_hub, OSError) into one-line UserErrors."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError:
            raise
        except Exception as err:
            url = inspect.signature(fn).bind(*args, **kwargs).arguments.get("url", "the store")
            friendly = _as_user_error(str(url), err)
            if friendly is None:
                raise
            raise friendly from None

    return wrapper


# ---------------------------------------------------------------- opening a store


@dataclass(frozen=True)
class HfTarget:
    """hf://[datasets/|spaces/]user/repo[@revision]/prefix, parsed without the network."""

    repo_type: str  # "model" | "dataset" | "space"
    repo_id: str
    revision: str | None
    prefix: str  # path inside the repository ("" for its root)

    def fs_path(self, revision: str | None, *parts: str) -> str:
        kind = {"model": "", "dataset": "datasets/", "space": "spaces/"}[self.repo_type]
        at = f"@{revision}" if revision else ""
        return "/".join(p for p in (f"{kind}{self.repo_id}{at}", self.prefix, *parts) if p)


def parse_hf(url: str) -> HfTarget:
    parts = [p for p in url.split("://", 1)[1].split("/") if p]
    repo_type = {"datasets": "dataset", "spaces": "space", "models": "model"}.get(parts[0] if parts else "")
    parts = parts[1:] if repo_type else parts
    if len(parts) < 2:
        raise UserError(
            f"{url} does not name a Hugging Face repository: expected hf://user/repo[@revision]/path"
        )
    repo, _, revision = parts[1].partition("@")
    return HfTarget(repo_type or "model", f"{parts[0]}/{repo}", revision or None, "/".join(parts[2:]))


def storage_options(url: str, endpoint_url: str | None = None, pairs: list[str] | None = None) -> dict:
    """fsspec options from the CLI: --endpoint-url and --option KEY=VALUE (VALUE parsed as JSON when it is)."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--option expects KEY=VALUE; found {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if endpoint_url:
        protocol = url.split("://", 1)[0] if "://" in url else "file"
        keys = {"s3": "endpoint_url", "s3a": "endpoint_url", "hf": "endpoint"}
        if protocol not in keys:
            raise UserError(f"--endpoint-url applies to s3:// and hf:// stores; {url} is {protocol}://")
        options[keys[protocol]] = endpoint_url
    return options


class Store:
    """One store root: reads through fsspec, writes file by file (hf://: one commit)."""

    def __init__(self, url: str, options: dict | None = None, *, for_push: bool = False):
        import fsspec

        self.url, self.options = url.rstrip("/") or url, dict(options or {})
        self.hf = parse_hf(self.url) if self.url.startswith("hf://") else None
        if self.hf:
            from huggingface_hub import HfApi, HfFileSystem

            if for_push and not (self.options.get("token") or _hf_token()):
                raise UserError(
                    f"no Hugging Face token to push to {url}: set HF_TOKEN or run `hf auth login`"
                )
            self.api = HfApi(endpoint=self.options.get("endpoint"), token=self.options.get("token"))
            self.fs = HfFileSystem(endpoint=self.options.get("endpoint"), token=self.options.get("token"))
            # Pin every read of this session to one commit; a push names it as its parent commit.
            info = self.api.repo_info(self.hf.repo_id, repo_type=self.hf.repo_type, revision=self.hf.revision)
            self.commit = info.sha
            self.root, self.local = self.hf.fs_path(self.commit), False
            return
        try:
            self.fs, self.root = fsspec.url_to_fs(self.url, **self.options)
        except ValueError as err:  # fsspec: "Protocol not known: xyz"
            raise UserError(
                f"unknown store protocol in {url} ({_one_line(err)}): use a local folder, file://, "
                "s3://, hf:// or another fsspec protocol whose package is installed"
            ) from None
        except ImportError as err:
            raise UserError(
                f"the store {url} needs a package that is not installed ({_one_line(err)})"
            ) from None
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        self.root = self.root.rstrip("/")

    def child_url(self, *parts: str) -> str:
        return "/".join([self.url, *parts])

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    def read(self, rel: str) -> bytes | None:
        """A file's bytes, or None when it does not exist."""
        try:
            return self.fs.cat_file(self.path(rel))
        except FileNotFoundError:
            return None

    def open(self, rel: str):
        return self.fs.open(self.path(rel), "rb")

    def read_index(self) -> dict | None:
        raw = self.read("index.json")
        if raw is None:
            return None
        try:
            index = json.loads(raw)
            if not isinstance(index.get("models"), dict):
                raise ValueError("no 'models' object")
        except (ValueError, AttributeError) as err:
            raise UserError(
                f"{self.child_url('index.json')} is malformed ({_one_line(err)}); "
                "restore it from the store's history or re-push the models"
            ) from None
        return index

    def publish(self, uploads: list[tuple[str, Path | bytes]], message: str) -> None:
        """Write uploads in order (rel path -> local file or bytes); hf:// writes them as one commit."""
        if self.hf:
            self.api.create_commit(
                self.hf.repo_id,
                hf_operations(self.hf, uploads),
                commit_message=message,
                repo_type=self.hf.repo_type,
                revision=self.hf.revision,
                parent_commit=self.commit,
            )
            return
        for rel, src in uploads:
            self._put(rel, src)

    def _put(self, rel: str, src: Path | bytes) -> None:
        # Object stores replace an object in one PUT; a local folder gets a temp file and a rename.
        target = self.path(rel)
        staging = f"{target}.partial-{os.getpid()}" if self.local else target
        if self.local:
            self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        if isinstance(src, Path):
            self.fs.put_file(str(src), staging)
        else:
            self.fs.pipe_file(staging, src)
        if staging != target:
            self.fs.mv(staging, target)


def hf_operations(target: HfTarget, uploads: list[tuple[str, Path | bytes]]) -> list:
    """The commit's operations: every upload under the store's prefix, in publishing order."""
    from huggingface_hub import CommitOperationAdd

    return [
        CommitOperationAdd(
            path_in_repo="/".join(p for p in (target.prefix, rel) if p),
            path_or_fileobj=str(src) if isinstance(src, Path) else src,
        )
        for rel, src in uploads
    ]


def _hf_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def is_store_url(text: str | Path) -> bool:
    """A URL (anything with '://') or a local store path naming a version as <store>/<name>@<version>."""
    text = str(text)
    return "://" in text or ("@" in Path(text).name and not Path(text).exists())


# ---------------------------------------------------------------- safety checks


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
        raise UserError(
            f"{where} is malformed ({_one_line(err)}); the checkpoint cannot be trusted"
        ) from None
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
        raise UserError(f"{path.name} has a bad safetensors header ({_one_line(err)})") from None
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


# ---------------------------------------------------------------- model cards


def front_matter(text: str, where: str) -> dict:
    """The YAML front matter of a model card ({} when it has none); malformed YAML is refused."""
    import yaml

    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    try:
        if end < 0:
            raise ValueError("no closing '---' line")
        data = yaml.safe_load(text[4:end]) or {}
        if not isinstance(data, dict):
            raise ValueError("front matter is not a mapping")
    except (ValueError, yaml.YAMLError) as err:
        raise UserError(
            f"{where} has malformed YAML front matter ({_one_line(err)}); the Hub would not "
            "render it: fix the card and re-save the checkpoint"
        ) from None
    return data


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value] if value else [])]


def store_card(index: dict) -> str:
    """The store's README.md: Hugging Face front matter and, per model, a results table per framework."""
    import yaml

    cards = [v.get("card", {}) for m in index["models"].values() for v in m["versions"].values()]
    licenses = sorted({c.get("license") for c in cards if c.get("license")})
    meta = {
        "library_name": "zoo",
        "license": licenses[0] if len(licenses) == 1 else "other",
        "tags": sorted({"zoo", *(t for c in cards for t in _as_list(c.get("tags")))}),
        "datasets": sorted({d for c in cards for d in _as_list(c.get("datasets"))}),
        "metrics": sorted({m for c in cards for m in _as_list(c.get("metrics"))}),
    }
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        "# Zoo checkpoints",
        "",
        "Each model below is a framework-neutral checkpoint (safetensors + JSON) usable from Keras or "
        "PyTorch: `python tools/evaluate.py <store>/<name>/<version> --fw keras|torch`, or pull it with "
        "`python tools/hub.py pull <store>/<name>/<version> DEST` (sha256 verified).",
        "",
    ]
    for name, model in index["models"].items():
        rows = [
            (version, fw, result)
            for version, entry in model["versions"].items()
            for fw, result in entry.get("results", {}).items()
        ]
        metrics = sorted({k for _, _, r in rows for k in r.get("metrics", {})})
        lines += [
            f"## {name} ({model['model']})",
            "",
            "| version | evaluated in | trained in | data | split | " + " | ".join(metrics) + " |",
            "| --- " * (5 + len(metrics)) + "|",
        ]
        for version, fw, r in rows:
            values = [
                f"{r['metrics'][k]:.4f}" if isinstance(r["metrics"].get(k), int | float) else "-"
                for k in metrics
            ]
            trained = model["versions"][version].get("framework")
            lines.append(
                f"| {version} | {fw} | {trained} | {r.get('data')} | {r.get('split')} | "
                + " | ".join(values)
                + " |"
            )
        for version, entry in model["versions"].items():
            parity = entry.get("parity")
            if parity:
                worst = max(parity["max_error"].items(), key=lambda kv: kv[1])
                lines.append(
                    f"\n{version} parity (tools/crosscheck.py): {parity['passed']}/{parity['checks']} "
                    f"checks passed; largest error {worst[1]:.2e} ({worst[0]})."
                )
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- push


def _parity(path: str | Path, model: str) -> dict:
    """Summarise `tools/crosscheck.py MODEL --json` output: checks passed and each check's max error."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise UserError(f"cannot read --parity {path} ({_one_line(err)})") from None
    checks = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                checks.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(
                    f"--parity {path} line {n} is not JSON: pass `tools/crosscheck.py --json` output"
                ) from None
    if not checks or any(c.get("model") != model or "max_error" not in c for c in checks):
        raise UserError(f"--parity {path} is not `tools/crosscheck.py --json` output for {model}")
    return {
        "checks": len(checks),
        "passed": sum(bool(c.get("passed")) for c in checks),
        "max_error": {c["name"]: c["max_error"] for c in checks},
    }


def _results(paths: list[str | Path], model: str, meta: dict) -> dict:
    """Metrics per framework: the training run's test metrics, plus `tools/evaluate.py --json` outputs."""
    results = {}
    if meta.get("framework") and isinstance(meta.get("metrics", {}).get("test"), dict):
        results[meta["framework"]] = {
            "data": meta.get("data"),
            "split": "test",
            "metrics": meta["metrics"]["test"],
        }
    for path in paths:
        try:
            result = json.loads(Path(path).read_text())
            fw, metrics = result["framework"], result["metrics"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(
                f"--results {path} is not `tools/evaluate.py --json` output ({_one_line(err)})"
            ) from None
        if result.get("model") != model:
            raise UserError(f"--results {path} evaluates {result.get('model')!r}, not {model!r}")
        results[fw] = {"data": result.get("data"), "split": result.get("split"), "metrics": metrics}
    return results


@_store_errors
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
    folder = checkpoint.resolve(source)
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
    index = store.read_index() or {"schema": SCHEMA, "models": {}}
    versions = index["models"].get(name, {}).get("versions", {})
    if version is None:
        number = len(versions) + 1
        while f"v{number}" in versions:
            number += 1
        version = f"v{number}"
    check_name("--version", version)
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
        "results": _results(results or [], model, meta),
        "parity": _parity(parity, model) if parity else meta.get("parity"),
        "card": {k: card[k] for k in ("license", "tags", "datasets", "metrics") if k in card},
    }
    index["models"].setdefault(name, {"model": model, "versions": {}})["versions"][version] = entry
    index["updated"] = entry["pushed"]
    uploads: list[tuple[str, Path | bytes]] = [
        (f"{name}/{version}/{f}", folder / f) for f in sorted(manifest["files"])
    ]
    uploads += [
        (f"{name}/{version}/manifest.json", manifest_raw),
        ("README.md", store_card(index).encode()),
        ("index.json", (json.dumps(index, indent=2) + "\n").encode()),
    ]
    store.publish(uploads, f"zoo: push {name} {version} ({model}, trained in {entry['framework']})")
    return {"url": store.child_url(name, version), **entry}


# ---------------------------------------------------------------- locate, pull, fetch


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


@_store_errors
def locate(url: str, options: dict | None = None) -> Version:
    """Find a published version: <store>/<name>/<version>, <store>/<name>@<version> or <store>/<name> (latest)."""
    store, name, version, folder = _target(url, options)
    index = store.read_index()
    if index is None and folder is not None:  # a bare checkpoint folder, not in a store
        raw = folder.read("manifest.json")
        return Version(folder, name, version, None, raw, check_manifest(raw, f"{url}/manifest.json"))
    if index is None and version is None and "@" not in name:  # <store>/<name>/<version> without a manifest?
        grand, parent = _split(store.url)
        upper = Store(grand, options)
        if (upper_index := upper.read_index()) is not None:
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


@_store_errors
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


@_store_errors
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


@_store_errors
def list_store(url: str, options: dict | None = None) -> dict:
    index = Store(url, options).read_index()
    if index is None:
        raise UserError(
            f"no zoo store at {url} (no index.json): check the URL; `tools/hub.py push` creates one"
        )
    return index


@_store_errors
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
