"""Framework-free dataset registry: shared.data.load(name) -> datasets.DatasetDict (train/validation/test).

Embedded datasets need no network. Hub datasets load only when asked ("hub:ylecun/mnist[@revision]")
and can be served from a local mirror folder of parquet files (ZOO_HUB_MIRROR=/path/to/mirror holding
<repo_id>/<split>*.parquet), which is also how the tests exercise them offline.
"""

from __future__ import annotations

# Importing a loader module registers its datasets in the catalogue.
from shared.data import dna, images, recsys, roads, translation
from shared.data.catalog import HUB_LOADERS, LOADERS, register, register_hub
from shared.data.hub import load_hub
from shared.errors import UserError

__all__ = ["available", "dna", "images", "load", "recsys", "register", "register_hub", "roads", "translation"]


def available() -> list[str]:
    return sorted(LOADERS) + sorted(f"hub:{r}" for r in HUB_LOADERS)


def load(name: str, **kwargs):
    """Load a dataset by name: an embedded one ('mnist-5k') or 'hub:<repo_id>[@revision]'."""
    if name.startswith("hub:"):
        repo, _, revision = name[4:].partition("@")
        if repo not in HUB_LOADERS:
            raise UserError(
                f"no hub loader for {repo!r}: known hub datasets are {', '.join(sorted(HUB_LOADERS))}"
            )
        return HUB_LOADERS[repo](load_hub(repo, revision or None))
    prefix, sep, rest = name.partition(":")
    if sep and prefix in LOADERS:  # loaders that read a local path, e.g. movielens:/data/ml-1m
        return LOADERS[prefix](rest, **kwargs)
    if name not in LOADERS:
        raise UserError(f"unknown dataset {name!r}: expected one of {', '.join(available())}")
    return LOADERS[name](**kwargs)
