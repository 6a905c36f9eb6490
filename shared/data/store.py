"""The dataset cache: generated datasets are written once, as Arrow files, and memory-mapped afterwards.

    <cache>/<name>-<key>/<split>.arrow   one file per split (the `datasets` Arrow stream format)
    <cache>/<name>-<key>/meta.json       splits, description, the parameters the key was made from

<cache> is $ZOO_DATA_CACHE, else ~/.cache/zoo/datasets. The key hashes the generator's name, its
parameters and the source of the module that generates it, so a changed generator writes a new entry.
A generator yields each split's rows in batches, so a split larger than memory costs disk, not memory;
the files are written in a temporary folder and renamed into place, so concurrent or interrupted
writers never leave a partial entry.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

WRITER_BATCH = 256  # rows per Arrow record batch


def cache_root() -> Path:
    root = os.environ.get("ZOO_DATA_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "zoo" / "datasets"


def entry_key(name: str, params: dict, module: str) -> str:
    source = inspect.getsource(sys.modules[module])
    text = json.dumps({"name": name, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256((text + "\0" + source).encode()).hexdigest()[:16]


def entry_path(name: str, params: dict, module: str) -> Path:
    return cache_root() / f"{name}-{entry_key(name, params, module)}"


def open_entry(folder: Path):
    """The cached DatasetDict of an entry folder (memory-mapped files)."""
    import datasets

    meta = json.loads((folder / "meta.json").read_text())
    info = {"description": meta["description"]} if meta.get("description") is not None else {}
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_file(
                str(folder / f"{split}.arrow"), info=datasets.DatasetInfo(**info), split=split
            )
            for split in meta["splits"]
        }
    )


def generated(
    name: str,
    params: dict,
    module: str,
    features,
    splits: Callable[[], dict[str, Iterable[dict]]],
    description: str | None = None,
):
    """The DatasetDict of generator `name` with `params`: read from the cache, or written there first.

    features: the datasets.Features of every split (or a dict of them by split); splits(): split name -> an
    iterable of column batches
    (dicts of arrays), produced lazily; module: the generator's module (its source is part of the key)."""
    from datasets.arrow_writer import ArrowWriter

    folder = entry_path(name, params, module)
    if (folder / "meta.json").is_file():
        return open_entry(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        written = []
        for split, batches in splits().items():
            kind = features[split] if type(features) is dict else features  # Features is a dict subclass
            writer = ArrowWriter(features=kind, path=str(work / f"{split}.arrow"))
            for batch in batches:
                if isinstance(batch, dict):
                    writer.write_batch(batch, writer_batch_size=WRITER_BATCH)
                else:  # an Arrow table already in the features' storage types
                    writer.write_table(batch, writer_batch_size=WRITER_BATCH)
            writer.finalize()
            writer.close()
            written.append(split)
        meta = {"name": name, "params": params, "splits": written, "description": description}
        (work / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        try:
            os.rename(work, folder)
        except OSError:  # another process wrote the same entry first: use theirs
            if not (folder / "meta.json").is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return open_entry(folder)


def from_dataset_dict(name: str, params: dict, module: str, build: Callable):
    """Cache a small generator that builds its DatasetDict in memory: written once, memory-mapped after.
    The description of its first split (recommender metadata) is kept."""
    folder = entry_path(name, params, module)
    if (folder / "meta.json").is_file():
        return open_entry(folder)
    dataset = build()
    first = dataset[next(iter(dataset))]

    def batches(split):
        part = dataset[split]
        yield (part.flatten_indices() if part._indices is not None else part).data.table

    return generated(
        name,
        params,
        module,
        {split: dataset[split].features for split in dataset},
        lambda: {split: batches(split) for split in dataset},
        description=first.info.description or None,
    )


def cached(name: str):
    """Decorator for a loader that generates its DatasetDict in memory from its arguments: the first call
    with given arguments writes the result to the cache, every later one memory-maps it from there. Bad
    arguments raise before anything is written."""

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def load(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return from_dataset_dict(name, dict(bound.arguments), fn.__module__, lambda: fn(*args, **kwargs))

        return load

    return wrap
