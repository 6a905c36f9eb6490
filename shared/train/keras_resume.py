"""A Keras Session's whole training state as numpy arrays + JSON (shared/train/snapshot.py stores them).

Arrays: model.<index> for every variable of the twin (weights, BatchNorm statistics and the
SeedGenerator states that drive dropout), optimizer.<index> for every optimizer variable (step count,
moments, the loss scale under fp16), rng.numpy / rng.python. JSON: the variables' paths and shapes, so
that a snapshot that does not fit the model is refused by name.
"""

from __future__ import annotations

import random

import numpy as np
from keras import ops

from shared.errors import UserError


def _variables(session) -> dict[str, list]:
    return {"model": list(session.model.variables), "optimizer": list(session.module.optimizer.variables)}


def capture(session) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, json) of the session's variables, optimizer and host RNGs."""
    session.build_optimizer()
    arrays, paths = {}, {}
    for group, variables in _variables(session).items():
        for i, v in enumerate(variables):
            arrays[f"{group}.{i}"] = np.asarray(ops.convert_to_numpy(v))
        paths[group] = [v.path for v in variables]
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, words, gauss = random.getstate()
    arrays["rng.numpy"] = np.array([*keys.tolist(), pos, has_gauss, cached], np.float64)
    arrays["rng.python"] = np.array([version, *words, float("nan") if gauss is None else gauss], np.float64)
    return arrays, {"paths": paths}


def restore(session, arrays: dict[str, np.ndarray], state: dict) -> None:
    """Put a snapshot back into a freshly built session (before its first step)."""
    session.build_optimizer()
    with session.runtime.scope():
        for group, variables in _variables(session).items():
            saved = state["paths"][group]
            if len(saved) != len(variables):
                raise UserError(
                    f"the snapshot holds {len(saved)} {group} variables; this model has {len(variables)}: "
                    "it was written by another model or optimizer"
                )
            for i, v in enumerate(variables):
                value = arrays[f"{group}.{i}"]
                if tuple(value.shape) != tuple(v.shape):
                    raise UserError(
                        f"snapshot variable {saved[i]} has shape {value.shape}; the model's {v.path} "
                        f"has {tuple(v.shape)}"
                    )
                v.assign(value)
    packed = arrays["rng.numpy"]
    np.random.set_state(
        ("MT19937", packed[:624].astype(np.uint32), int(packed[624]), int(packed[625]), float(packed[626]))
    )
    packed = arrays["rng.python"]
    random.setstate(
        (
            int(packed[0]),
            tuple(int(w) for w in packed[1:-1]),
            None if np.isnan(packed[-1]) else float(packed[-1]),
        )
    )
