"""Canonical weights of a Keras twin, derived from its declarative weight map (shared/weight_map.py)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from shared.data.keras_data import to_tensors
from weightmap import Row, check_names_and_shapes, check_unique


def is_rng_state(variable: keras.Variable) -> bool:
    """A keras.random.SeedGenerator's counter (dropout's RNG): training state, not a weight.

    Keras names it after a process-wide counter unless the generator is named; weight maps leave it out
    and resume snapshots (shared/train/keras_resume.py) keep it by position.
    """
    return variable.path.rsplit("/", 1)[-1] == "seed_generator_state"


def variables_by_path(model: keras.Model) -> dict[str, keras.Variable]:
    """The model's weights by path (RNG states left out)."""
    return {v.path: v for v in model.variables if not is_rng_state(v)}


def _weight_rows(rows: Sequence[Row]) -> list[Row]:
    """Rows of weights: a row naming only RNG states (older maps had them) maps nothing."""
    return [r for r in rows if not r.keras or not all(p.endswith("/seed_generator_state") for p in r.keras)]


def _check_map_covers_model(model: keras.Model, rows: Sequence[Row]) -> dict[str, keras.Variable]:
    check_unique(rows)
    rows = _weight_rows(rows)
    variables = variables_by_path(model)
    mapped = {p for r in rows for p in r.keras}
    unmapped = sorted(set(variables) - mapped)
    unknown = sorted(mapped - set(variables))
    if unmapped or unknown:
        raise ValueError(
            "weight map and Keras model disagree: "
            f"variables without a row: {unmapped or 'none'}; rows naming no variable: {unknown or 'none'}"
        )
    return variables


def get_weights(model: keras.Model, rows: Sequence[Row]) -> dict[str, np.ndarray]:
    variables = _check_map_covers_model(model, rows)
    out: dict[str, np.ndarray] = {}
    for r in _weight_rows(rows):
        arrays = r.transform.to_canonical(
            [np.array(keras.ops.convert_to_numpy(variables[p])) for p in r.keras]
        )
        out.update(zip(r.canonical, arrays))
    return out


def set_weights(model: keras.Model, rows: Sequence[Row], weights: dict[str, np.ndarray]) -> None:
    variables = _check_map_covers_model(model, rows)
    expected = {name: np.shape(a) for name, a in get_weights(model, rows).items()}
    check_names_and_shapes(expected, weights)
    for r in _weight_rows(rows):
        arrays = r.transform.from_canonical([np.asarray(weights[n]) for n in r.canonical])
        for path, value in zip(r.keras, arrays):
            variable = variables[path]
            if tuple(variable.shape) != tuple(value.shape):
                raise ValueError(f"{path}: expected {tuple(variable.shape)}, found {tuple(value.shape)}")
            variable.assign(value.astype(variable.dtype))


def grads_to_canonical(model: keras.Model, rows: Sequence[Row], grads: dict[str, np.ndarray]) -> dict:
    """Gradients per Keras variable path -> gradients per canonical name (trainable tensors only)."""
    out = {}
    for r in rows:
        if r.keras and all(p in grads for p in r.keras):
            out.update(zip(r.canonical, r.transform.grads([grads[p] for p in r.keras])))
    return out


def forward_numpy(impl, model: keras.Model, batch: dict[str, np.ndarray], training: bool) -> dict:
    outputs = impl.call(model, to_tensors(batch), training=training)
    return {k: np.asarray(keras.ops.convert_to_numpy(v)) for k, v in outputs.items()}
