"""From a name or a checkpoint to a model: the registry lookups every tool shares.

This is the one place below the tools where a model is found by name: a checkpoint names its model, so
loading one needs the registry. Everything under it (tasks, checkpoint format, hub, trainers' helpers) is
handed a ModelSpec instead of looking one up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared import hub
from shared.errors import UserError
from shared.recipe import config_from_dict
from zoo import registry
from zoo.spec import ModelSpec


def get_spec(name: str) -> ModelSpec:
    """The model named `name` (vision/cnn, zoo/vision/cnn ...); an unknown name is a one-line UserError."""
    try:
        return registry.get(name)
    except ValueError as err:
        raise UserError(str(err)) from None


def load_model(path: str | Path, fw: str) -> tuple[ModelSpec, Any, Any, dict]:
    """Build a checkpoint's model in framework `fw` and load its weights: (spec, config, model, checkpoint).

    `path` is a checkpoint folder, a run folder or a store URL; the files are verified before the
    framework is imported.
    """
    ckpt = hub.load(path)
    spec = get_spec(ckpt["model"])
    config = config_from_dict(spec.config_cls, ckpt["config"])
    model = spec.build(fw, config)
    spec.set_weights(model, ckpt["weights"])
    return spec, config, model, ckpt
