"""Declarative weight maps: Keras variable path -> canonical (torch state_dict) name -> transform.

The one small framework-neutral helper a model folder may import (numpy only; copy this file next to a
model folder you lift out of the zoo). A folder's weights.py returns weight_map(config), a list of Rows;
get_weights and set_weights in shared/keras_weights.py are both derived from that one table.

A Row may join several Keras variables and several canonical tensors (a fused in-projection, a GRU's
two biases); its Transform says how, in both directions, and how gradients map when that differs
(a Keras bias that is the sum of torch's two biases receives the gradient of each of them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Arrays = list[np.ndarray]


@dataclass(frozen=True)
class Transform:
    name: str
    to_canonical: Callable[[Arrays], Arrays]
    from_canonical: Callable[[Arrays], Arrays]
    grad_to_canonical: Callable[[Arrays], Arrays] | None = None  # defaults to to_canonical

    def grads(self, keras_grads: Arrays) -> Arrays:
        return (self.grad_to_canonical or self.to_canonical)(keras_grads)


@dataclass(frozen=True)
class Row:
    keras: tuple[str, ...]  # Keras variable paths, e.g. ("layer1_0_conv1/kernel",)
    canonical: tuple[str, ...]  # canonical names, e.g. ("layer1.0.conv1.weight",)
    transform: Transform


def _one(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Arrays], Arrays]:
    return lambda arrays: [fn(arrays[0])]


IDENTITY = Transform("identity", _one(lambda a: a), _one(lambda a: a))
# Dense: Keras kernel (in, out) <-> torch weight (out, in).
DENSE = Transform("transpose", _one(lambda a: a.T), _one(lambda a: a.T))
# Conv2D: Keras (kh, kw, in, out) <-> torch (out, in, kh, kw).
CONV2D = Transform(
    "conv2d_hwio_to_oihw",
    _one(lambda a: a.transpose(3, 2, 0, 1)),
    _one(lambda a: a.transpose(2, 3, 1, 0)),
)
# Conv1D: Keras (k, in, out) <-> torch (out, in, k).
CONV1D = Transform(
    "conv1d_wio_to_oiw", _one(lambda a: a.transpose(2, 1, 0)), _one(lambda a: a.transpose(2, 1, 0))
)
# Conv2DTranspose: Keras (kh, kw, out, in) <-> torch ConvTranspose2d (in, out, kh, kw).
CONV2D_TRANSPOSE = Transform(
    "conv2d_transpose_hwoi_to_iohw",
    _one(lambda a: a.transpose(3, 2, 0, 1)),
    _one(lambda a: a.transpose(2, 3, 1, 0)),
)


def counter(dtype=np.int64) -> Transform:
    """A torch buffer Keras does not keep (BatchNorm's num_batches_tracked): 0 on export, ignored on import."""
    return Transform("torch_only_counter", lambda arrays: [np.zeros((), dtype)], lambda arrays: [])


def row(keras: str | Sequence[str], canonical: str | Sequence[str], transform: Transform = IDENTITY) -> Row:
    keras = (keras,) if isinstance(keras, str) else tuple(keras)
    canonical = (canonical,) if isinstance(canonical, str) else tuple(canonical)
    return Row(keras, canonical, transform)


def dense(keras_layer: str, canonical: str, bias: bool = True) -> list[Row]:
    rows = [row(f"{keras_layer}/kernel", f"{canonical}.weight", DENSE)]
    return rows + ([row(f"{keras_layer}/bias", f"{canonical}.bias")] if bias else [])


def conv2d(keras_layer: str, canonical: str, bias: bool = False) -> list[Row]:
    rows = [row(f"{keras_layer}/kernel", f"{canonical}.weight", CONV2D)]
    return rows + ([row(f"{keras_layer}/bias", f"{canonical}.bias")] if bias else [])


def batch_norm(keras_layer: str, canonical: str) -> list[Row]:
    """Keras BatchNormalization <-> torch BatchNorm (gamma, beta, moving statistics, counter)."""
    return [
        row(f"{keras_layer}/gamma", f"{canonical}.weight"),
        row(f"{keras_layer}/beta", f"{canonical}.bias"),
        row(f"{keras_layer}/moving_mean", f"{canonical}.running_mean"),
        row(f"{keras_layer}/moving_variance", f"{canonical}.running_var"),
        row((), f"{canonical}.num_batches_tracked", counter()),
    ]


def layer_norm(keras_layer: str, canonical: str) -> list[Row]:
    return [
        row(f"{keras_layer}/gamma", f"{canonical}.weight"),
        row(f"{keras_layer}/beta", f"{canonical}.bias"),
    ]


def embedding(keras_layer: str, canonical: str) -> list[Row]:
    return [row(f"{keras_layer}/embeddings", f"{canonical}.weight")]


def check_unique(rows: Sequence[Row]) -> None:
    """A weight map names every Keras variable and every canonical tensor at most once."""
    for side in ("keras", "canonical"):
        seen: set[str] = set()
        for r in rows:
            for name in getattr(r, side):
                if name in seen:
                    raise ValueError(f"weight map names {side} tensor {name!r} twice")
                seen.add(name)


def check_names_and_shapes(expected: dict[str, tuple], weights: dict[str, np.ndarray]) -> None:
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    misshaped = sorted(
        f"{k}: expected {tuple(expected[k])}, found {tuple(np.shape(weights[k]))}"
        for k in set(expected) & set(weights)
        if tuple(expected[k]) != tuple(np.shape(weights[k]))
    )
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped {'; '.join(misshaped)}")
    if problems:
        raise ValueError("weights do not fit the model: " + " | ".join(problems))
