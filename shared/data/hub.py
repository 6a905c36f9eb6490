"""Hub datasets through `datasets.load_dataset`, used only when asked; served from a local mirror if set.

A mirror is a folder holding <repo_id>/<split>-*.parquet (the hub's own parquet layout works), so an
offline machine or a test reads the same schema the hub serves.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from shared.errors import UserError

SPLIT_ALIASES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}


def mirror_files(repo_id: str) -> dict[str, list[str]] | None:
    root = os.environ.get("ZOO_HUB_MIRROR")
    if not root:
        return None
    folder = Path(root) / repo_id
    if not folder.is_dir():
        raise UserError(f"ZOO_HUB_MIRROR={root} has no folder {repo_id}/: add its parquet files or unset it")
    files: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*.parquet")):
        split = SPLIT_ALIASES.get(path.name.split("-")[0].split(".")[0])
        if split:
            files.setdefault(split, []).append(str(path))
    if "train" not in files:
        raise UserError(f"{folder} holds no train*.parquet file")
    return files


CONNECT_TIMEOUT = 3.0  # seconds for the one check that the hub (or the proxy to it) answers


def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be reached (None when a TCP connection opens): checked once, fast,
    against HF_ENDPOINT or the HTTPS proxy in between, so an offline machine is not retried for 25 s."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    proxy = next(
        (
            os.environ[k]
            for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
            if os.environ.get(k)
        ),
        None,
    )
    target = urlsplit(proxy if proxy and "://" in proxy else f"http://{proxy}" if proxy else endpoint)
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((target.hostname or "", port), timeout=CONNECT_TIMEOUT):
            return None
    except OSError as err:
        return f"{target.hostname}:{port}: {err.strerror or err}"


def go_offline() -> None:
    """Make the hub clients read their caches only, in this process (set before or after their import)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    for module, name in (
        ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_HUB_OFFLINE"),
    ):
        if module in sys.modules:
            setattr(sys.modules[module], name, True)
    if "datasets.config" in sys.modules:
        sys.modules["datasets.config"].HF_DATASETS_OFFLINE = True


def load_hub(repo_id: str, revision: str | None):
    """The raw DatasetDict of a hub dataset (mirror first, then the hub at `revision`, or its local cache
    when the hub cannot be reached)."""
    files = mirror_files(repo_id)
    unreachable = None if files is not None else hub_unreachable()
    if unreachable:
        go_offline()
    import datasets

    if files is not None:
        return datasets.load_dataset("parquet", data_files=files)
    try:
        return datasets.load_dataset(repo_id, revision=revision)
    except Exception as err:  # network, auth or missing revision: all user-fixable
        if unreachable:
            raise UserError(
                f"hub dataset {repo_id}@{revision or 'main'} is not in the local cache and the Hugging Face "
                f"Hub cannot be reached ({unreachable}); check the network, or set ZOO_HUB_MIRROR to a "
                "folder of its parquet files"
            ) from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"could not load hub dataset {repo_id}@{revision or 'main'} ({first}); "
            "check the network or set ZOO_HUB_MIRROR to a folder of its parquet files"
        ) from None
