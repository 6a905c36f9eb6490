"""The dataset catalogue: each loader module registers its datasets here when it is imported.

Loader modules (images, translation, recsys, dna, roads) import this module, never the package, and the
package (shared/data/__init__.py) imports them all, so registration needs no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable

LOADERS: dict[str, Callable] = {}
HUB_LOADERS: dict[str, Callable] = {}


def register(name: str):
    """Decorator: register an embedded dataset loader under `name`."""

    def wrap(fn):
        LOADERS[name] = fn
        return fn

    return wrap


def register_hub(repo_id: str):
    """Decorator: register a converter for a hub dataset `repo_id` (called as fn(raw_dataset_dict))."""

    def wrap(fn):
        HUB_LOADERS[repo_id] = fn
        return fn

    return wrap
