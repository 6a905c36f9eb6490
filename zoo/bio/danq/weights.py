"""bio/danq's weight map: Keras variable path -> torch state_dict name -> transform, one row per tensor
(numpy and weightmap.py only)."""

from __future__ import annotations

import numpy as np

from weightmap import CONV1D, DENSE, Row, Transform, dense, row

from .config import Config

# One Keras LSTM bias <-> torch's (bias_ih, bias_hh): export (b, 0), import b_ih + b_hh. bias_hh is frozen
# at zero in the torch twin, so only bias_ih has a gradient: the Keras bias gradient is bias_ih's.
LSTM_BIAS = Transform(
    "lstm_bias_sum",
    to_canonical=lambda arrays: [arrays[0], np.zeros_like(arrays[0])],
    from_canonical=lambda arrays: [arrays[0] + arrays[1]],
    grad_to_canonical=lambda grads: [grads[0]],
)


def lstm_rows(keras_layer: str, canonical: str, suffix: str) -> list[Row]:
    """One direction of the BiLSTM. Gate order is i, f, g(c), o in both frameworks: no reordering."""
    cell = f"{keras_layer}/lstm_cell"
    return [
        row(f"{cell}/kernel", f"{canonical}.weight_ih_l0{suffix}", DENSE),  # (F, 4H) <-> (4H, F)
        row(f"{cell}/recurrent_kernel", f"{canonical}.weight_hh_l0{suffix}", DENSE),  # (H, 4H) <-> (4H, H)
        row(f"{cell}/bias", [f"{canonical}.{b}_l0{suffix}" for b in ("bias_ih", "bias_hh")], LSTM_BIAS),
    ]


def weight_map(config: Config) -> list[Row]:
    return [
        row("danq/conv/kernel", "conv.weight", CONV1D),  # (k, 4, F) <-> (F, 4, k)
        row("danq/conv/bias", "conv.bias"),
        *lstm_rows("danq/bilstm/forward_lstm", "bilstm", ""),
        *lstm_rows("danq/bilstm/backward_lstm", "bilstm", "_reverse"),
        *dense("danq/dense", "dense"),
        *dense("danq/classifier", "classifier"),
    ]
