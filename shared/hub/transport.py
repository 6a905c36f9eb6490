"""Opening a store and moving bytes: a local folder, file://, s3://, hf:// or any installed fsspec protocol.

Reads go through fsspec. Writes go file by file in the order given (a local folder: a temporary file and
a rename each), and on hf:// as one commit whose parent is the commit every read of the session was
pinned to. This module knows nothing of checkpoints or of the index; it moves files.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import UserError
from shared.hub.errors import one_line


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

            if for_push and not (self.options.get("token") or hf_token()):
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
                f"unknown store protocol in {url} ({one_line(err)}): use a local folder, file://, "
                "s3://, hf:// or another fsspec protocol whose package is installed"
            ) from None
        except ImportError as err:
            raise UserError(
                f"the store {url} needs a package that is not installed ({one_line(err)})"
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


def hf_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def is_store_url(text: str | Path) -> bool:
    """A URL (anything with '://') or a local store path naming a version as <store>/<name>@<version>."""
    text = str(text)
    return "://" in text or ("@" in Path(text).name and not Path(text).exists())
