"""Framework-free dataset registry: shared.data.load(name) -> datasets.DatasetDict (train/validation/test).

Embedded datasets need no network. Hub datasets load only when asked ("hub:ylecun/mnist[@revision]")
and can be served from a local mirror folder of parquet files (ZOO_HUB_MIRROR=/path/to/mirror holding
<repo_id>/<split>*.parquet), which is also how the tests exercise them offline.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.errors import UserError

_LOADERS: dict[str, Callable] = {}
_HUB_LOADERS: dict[str, Callable] = {}


def register(name: str):
    """Decorator: register an embedded dataset loader under `name`."""

    def wrap(fn):
        _LOADERS[name] = fn
        return fn

    return wrap


def register_hub(repo_id: str):
    """Decorator: register a converter for a hub dataset `repo_id` (called as fn(raw_dataset_dict))."""

    def wrap(fn):
        _HUB_LOADERS[repo_id] = fn
        return fn

    return wrap


def _ensure_loaders() -> None:
    # Importing the modules registers their datasets; they import numpy/datasets only.
    from shared.data import images  # noqa: F401

    for optional in ("translation", "recsys", "dna", "roads"):
        try:
            __import__(f"shared.data.{optional}")
        except ModuleNotFoundError as err:
            if err.name != f"shared.data.{optional}":
                raise


def available() -> list[str]:
    _ensure_loaders()
    return sorted(_LOADERS) + sorted(f"hub:{r}" for r in _HUB_LOADERS)


def load(name: str, **kwargs):
    """Load a dataset by name: an embedded one ('mnist-5k') or 'hub:<repo_id>[@revision]'."""
    _ensure_loaders()
    if name.startswith("hub:"):
        from shared.data.hub import load_hub

        repo, _, revision = name[4:].partition("@")
        if repo not in _HUB_LOADERS:
            raise UserError(
                f"no hub loader for {repo!r}: known hub datasets are {', '.join(sorted(_HUB_LOADERS))}"
            )
        return _HUB_LOADERS[repo](load_hub(repo, revision or None))
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _LOADERS:  # loaders that read a local path, e.g. movielens:/data/ml-1m
        return _LOADERS[prefix](rest, **kwargs)
    if name not in _LOADERS:
        raise UserError(f"unknown dataset {name!r}: expected one of {', '.join(available())}")
    return _LOADERS[name](**kwargs)
