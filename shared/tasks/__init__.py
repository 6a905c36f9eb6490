"""Framework-free task modules: example batches, input checks, data preparation and metrics.

A task module defines:
    example_batch(config, batch_size, seed) -> dict[str, np.ndarray]
    check_batch(config, batch)                -> None, or ValueError naming the bad key/shape/dtype
    prepare(dataset_dict, config, state=None) -> (splits {name: {key: array}}, state)
        state is the preprocessing state (normalisation statistics, vocabularies) that travels with
        the checkpoint; pass it back to prepare new data exactly as the training data was prepared.
    metrics(outputs, batch) -> dict[str, float]   on whole-split numpy outputs and targets
    PRIMARY_METRIC, HIGHER_IS_BETTER
and optionally evaluate(spec, model, arrays, config, batch_size) when metrics need more than one
forward pass (decoding, ranking).
"""

from __future__ import annotations

import importlib

from shared.checkpoint import read_json
from shared.errors import UserError


def get(name: str):
    try:
        return importlib.import_module(f"shared.tasks.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"shared.tasks.{name}":
            raise UserError(f"unknown task {name!r}: no module shared/tasks/{name}.py") from None
        raise


def check_keys(batch: dict, required: dict[str, tuple[str, int | None]]) -> None:
    """required: key -> (dtype kind 'f'|'i'|'b', rank or None). ValueError names the first problem."""
    import numpy as np

    for key, (kind, rank) in required.items():
        if key not in batch:
            raise ValueError(
                f"batch lacks {key!r}: expected keys {', '.join(required)}; found {', '.join(batch)}"
            )
        array = np.asarray(batch[key])
        if array.dtype.kind not in kind:
            raise ValueError(f"batch[{key!r}] has dtype {array.dtype}; expected kind {kind!r}")
        if rank is not None and array.ndim != rank:
            raise ValueError(f"batch[{key!r}] has shape {array.shape}; expected {rank} dimensions")


def load_state(spec, checkpoint: dict):
    """The preprocessing state saved with a checkpoint (the task may read extra files such as tokenizers)."""
    task = spec.task_module
    if hasattr(task, "load_state"):
        return task.load_state(checkpoint)
    return read_json(checkpoint, "preprocessing.json")
