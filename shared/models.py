"""From a name or a checkpoint to a model: the registry lookups every tool shares.

This is the one place below the tools where a model is found by name: a checkpoint names its model, so
loading one needs the registry. Everything under it (tasks, checkpoint format, hub, trainers' helpers) is
handed a ModelSpec instead of looking one up.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from shared import checkpoint, hub
from shared.errors import UserError
from shared.recipe import config_from_dict
from weightmap import check_names_and_shapes
from zoo import registry
from zoo.spec import ModelSpec

_WARNED: set[str] = set()  # checkpoints whose unknown config fields were named once already


def get_spec(name: str) -> ModelSpec:
    """The model named `name` (vision/cnn, zoo/vision/cnn ...); an unknown name is a one-line UserError."""
    try:
        return registry.get(name)
    except ValueError as err:
        raise UserError(str(err)) from None


def checkpoint_config(ckpt: dict) -> tuple[ModelSpec, Any]:
    """The spec and Config a loaded checkpoint describes; an unknown model or a config.json value outside
    its field's range is a one-line UserError, and fields this zoo's Config lacks are named in a warning."""
    spec = get_spec(ckpt["model"])
    names = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(ckpt["config"]) - names)
    if unknown and str(ckpt["folder"]) not in _WARNED:
        _WARNED.add(str(ckpt["folder"]))
        print(
            f"warning: {ckpt['folder']}/config.json sets {', '.join(unknown)}, which {spec.name}'s Config "
            "does not have; ignored (a checkpoint from another version of the zoo?)",
            file=sys.stderr,
        )
    try:
        config = config_from_dict(spec.config_cls, ckpt["config"])
    except UserError as err:
        raise UserError(f"{ckpt['folder']}/config.json: {err}") from None
    return spec, config


def check_weights_fit(folder: str | Path) -> None:
    """The weights' names and shapes (read from the safetensors header) are those of the model config.json
    describes. Builds the model on torch's meta device (no memory, no initialisation cost), or in Keras
    where torch is missing; with neither framework installed the check is skipped with a warning."""
    folder = Path(folder)
    described = checkpoint.read_object(folder, "config.json")
    if not isinstance(described.get("model"), str) or not isinstance(described.get("config"), dict):
        raise UserError(f"{folder}/config.json must hold 'model' and 'config'; re-save the checkpoint")
    ckpt = {"folder": folder, "model": described["model"], "config": described["config"]}
    spec, config = checkpoint_config(ckpt)
    found = {  # shapes only: nothing is read but the header
        k: SimpleNamespace(shape=shape)
        for k, (_, shape) in checkpoint.check_safetensors(folder / "weights.safetensors").items()
    }
    try:
        import torch

        spec.impl("torch")  # imported outside the meta context: module-level tensors stay real
        with torch.device("meta"):
            model = spec.build("torch", config)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    except ImportError:
        try:
            model = spec.build("keras", config)
        except ImportError:
            print(
                f"warning: neither torch nor keras is installed: the weights of {folder} were not checked "
                "against config.json",
                file=sys.stderr,
            )
            return
        expected = {k: v.shape for k, v in spec.get_weights(model).items()}
    try:
        check_names_and_shapes(expected, found)
    except ValueError as err:
        raise misfit(folder, err) from None


def misfit(folder, err: ValueError) -> UserError:
    """weightmap.check_names_and_shapes' message, each kind of problem cut to its first three tensors."""
    groups = []
    for group in str(err).removeprefix("weights do not fit the model: ").split(" | "):
        kind, _, items = group.partition(" ")
        names = items.split("; " if kind == "mis-shaped" else ", ")
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        groups.append(f"{kind} {('; ' if kind == 'mis-shaped' else ', ').join(names[:3])}{more}")
    detail = " | ".join(groups)
    return UserError(
        f"the weights in {folder} do not fit the model its config.json describes ({detail}); "
        "config.json was edited or the files come from different runs: re-save the checkpoint from its run"
    )


def load_model(path: str | Path, fw: str) -> tuple[ModelSpec, Any, Any, dict]:
    """Build a checkpoint's model in framework `fw` and load its weights: (spec, config, model, checkpoint).

    `path` is a checkpoint folder, a run folder or a store URL; the files are verified before the
    framework is imported. Weights that do not fit the model config.json describes are a UserError.
    """
    ckpt = hub.load(path)
    spec, config = checkpoint_config(ckpt)
    model = spec.build(fw, config)
    try:
        spec.set_weights(model, ckpt["weights"])
    except ValueError as err:  # weightmap.check_names_and_shapes: missing, unexpected or mis-shaped tensors
        raise misfit(ckpt["folder"], err) from None
    return spec, config, model, ckpt
