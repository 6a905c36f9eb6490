"""Canonical weights of a Keras twin, derived from its declarative weight map (shared/weight_map.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


COMPILED = "_zoo_inference"  # the model attribute holding its compiled inference functions


def inference(model: keras.Model, name: str, fn: Callable) -> Callable:
    """`fn(*args)` (Keras tensors or numpy arrays in, tensors out) for inference with `model`. On the JAX
    backend it is compiled (jax.jit), once per model, `name` and input shapes, and every call runs on the
    model's current variable values (passed in through a keras.StatelessScope: weights trained after the
    compilation are the ones used; what the call would assign is dropped). On the other backends it is
    `fn` itself: their eager ops are whole kernels, while eager JAX dispatches op by op, many times slower
    than one compiled program (a translation's validation on a GPU took seconds per epoch that way)."""
    if keras.backend.backend() != "jax":
        return fn
    import jax

    compiled = model.__dict__.get(COMPILED)  # on the model: the functions go when it goes
    if compiled is None:
        compiled = {}
        object.__setattr__(model, COMPILED, compiled)  # not a tracked Keras attribute
    if name not in compiled:
        variables = list(model.variables)

        def pure(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(*args)

        compiled[name] = (variables, jax.jit(pure))
    variables, jitted = compiled[name]
    return lambda *args: jitted([v.value for v in variables], *args)


def forward_numpy(impl, model: keras.Model, batch: dict[str, np.ndarray], training: bool) -> dict:
    if training:  # a train-mode forward may assign (BatchNorm statistics): eager
        outputs = impl.call(model, to_tensors(batch), training=True)
    else:
        outputs = inference(model, "call", lambda b: impl.call(model, b, training=False))(to_tensors(batch))
    return {k: np.asarray(keras.ops.convert_to_numpy(v)) for k, v in outputs.items()}
