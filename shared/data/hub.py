"""Hub datasets through `datasets.load_dataset`, used only when asked; served from a local mirror if set.

A mirror is a folder holding <repo_id>/<split>-*.parquet (the hub's own parquet layout works), so an
offline machine or a test reads the same schema the hub serves.
"""

from __future__ import annotations

import os
from pathlib import Path

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


def load_hub(repo_id: str, revision: str | None):
    """The raw DatasetDict of a hub dataset (mirror first, then the hub at `revision`)."""
    import datasets

    files = mirror_files(repo_id)
    if files is not None:
        return datasets.load_dataset("parquet", data_files=files)
    try:
        return datasets.load_dataset(repo_id, revision=revision)
    except Exception as err:  # network, auth or missing revision: all user-fixable
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"could not load hub dataset {repo_id}@{revision or 'main'} ({first}); "
            "check the network or set ZOO_HUB_MIRROR to a folder of its parquet files"
        ) from None
