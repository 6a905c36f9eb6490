"""Opening a store and moving bytes: a local folder, file://, s3://, hf:// or any installed fsspec protocol.

Reads go through fsspec. Writes go file by file in the order given (a local folder: a temporary file and
a rename each), and on hf:// as one commit whose parent is the commit every read of the session was
pinned to. A local store is read through regular files only: a symlink anywhere below the store's root,
or a device file, is refused. This module knows nothing of checkpoints or of the index; it moves files,
and offers the three primitives concurrent writers need (shared/hub/locks.py builds on them): create a
file only if it does not exist, replace a file only if it is unchanged since it was read (S3's
If-None-Match / If-Match), and a process-held lock on a local file (fcntl.flock, released by the kernel
when the process dies).
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import stat
import time
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
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.local = "file" in protocols
        self.s3 = bool({"s3", "s3a"} & set(protocols))
        self.root = self.root.rstrip("/")

    def child_url(self, *parts: str) -> str:
        return "/".join([self.url, *parts])

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    def _check_local(self, rel: str) -> None:
        """A local store serves regular files reached without a symlink: a link in the store (to
        /etc/passwd, to another folder) would hand out files that were never pushed."""
        if not self.local:
            return
        root = os.path.realpath(self.root)
        expected = os.path.normpath(os.path.join(root, rel))
        if os.path.realpath(self.path(rel)) != expected or not expected.startswith(root + os.sep):
            raise UserError(
                f"{self.child_url(rel)} is, or lies under, a symbolic link out of its place in the store; "
                "refusing it (a store holds regular files only)"
            )
        try:
            mode = os.lstat(expected).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISREG(mode):
            raise UserError(f"{self.child_url(rel)} is not a regular file in the store; refusing it")

    def read(self, rel: str) -> bytes | None:
        """A file's bytes, or None when it does not exist."""
        self._check_local(rel)
        try:
            return self.fs.cat_file(self.path(rel))
        except FileNotFoundError:
            return None

    def open(self, rel: str):
        self._check_local(rel)
        return self.fs.open(self.path(rel), "rb")

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(rel))

    def write(self, rel: str, src: Path | bytes) -> None:
        """Write (or replace) one file from a local file or bytes: a local folder gets a temp file and a
        rename, an object store one PUT."""
        self._put(rel, src)

    def create(self, rel: str, data: bytes) -> bool:
        """Write `rel` only if nothing is there; False when it exists. Atomic on a local folder (O_EXCL)
        and on S3 (If-None-Match: *); other fsspec stores check and write (not atomic)."""
        target = self.path(rel)
        if self.local:
            os.makedirs(posixpath.dirname(target), exist_ok=True)
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        try:
            self.fs.pipe_file(target, data, mode="create")
        except FileExistsError:
            return False
        except OSError as err:
            if conflict(err):
                return False
            raise
        return True

    def read_tagged(self, rel: str) -> tuple[bytes | None, str | None]:
        """A file's bytes and its version tag (S3: the ETag) for replace_if; (None, None) when absent."""
        if not self.s3:
            return self.read(rel), None
        try:
            tag = self.fs.info(self.path(rel), refresh=True).get("ETag")
            return self.fs.cat_file(self.path(rel)), tag
        except FileNotFoundError:
            return None, None

    def replace_if(self, rel: str, data: bytes, tag: str | None) -> bool:
        """S3: PUT `rel` only if it still has ETag `tag` (only if absent, for tag None). False when another
        writer changed it since it was read."""
        condition = {"IfMatch": tag} if tag else {"IfNoneMatch": "*"}
        try:
            self.fs.pipe_file(self.path(rel), data, **condition)
        except FileExistsError:
            return False
        except OSError as err:
            if conflict(err):
                return False
            raise
        self.fs.invalidate_cache(self.path(rel))
        return True

    @contextlib.contextmanager
    def flock(self, rel: str, *, wait: float, what: str):
        """Hold an exclusive fcntl lock on a local file for the block. wait=0: raise Busy at once when
        another process holds it; otherwise wait up to `wait` seconds, then a UserError naming `what`."""
        import fcntl

        target = self.path(rel)
        os.makedirs(posixpath.dirname(target), exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        if not wait:
                            raise Busy(os.pread(fd, 4096, 0).decode(errors="replace")) from None
                        raise UserError(
                            f"{what} in {self.url} stayed locked for {wait:.0f} s by another push "
                            f"({os.pread(fd, 4096, 0).decode(errors='replace') or 'unknown process'}); "
                            "try again when it has finished"
                        ) from None
                    time.sleep(0.02)
            os.ftruncate(fd, 0)
            os.pwrite(fd, owner().encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

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
        try:
            if isinstance(src, Path):
                self.fs.put_file(str(src), staging)
            else:
                self.fs.pipe_file(staging, src)
            if staging != target:
                self.fs.mv(staging, target)
        except BaseException:
            if staging != target:
                with contextlib.suppress(OSError):
                    os.unlink(staging)
            raise


class Busy(Exception):
    """A lock held by another live process; the message is its owner's record."""


def owner() -> str:
    """Who holds a lock or reservation: host, process id and start time (shown when another push waits)."""
    import datetime as dt
    import socket

    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": started})


def conflict(err: BaseException) -> bool:
    """Whether an S3 error is a lost conditional write (412 PreconditionFailed, 409 ConditionalRequestConflict)."""
    for e in (err, err.__cause__, err.__context__):
        response = getattr(e, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in (
            "PreconditionFailed",
            "ConditionalRequestConflict",
        ):
            return True
    text = str(err)
    return "pre-conditions you specified did not hold" in text or "ConditionalRequestConflict" in text


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
