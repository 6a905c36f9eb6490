"""nlp/seq2seq's weight map: every Keras variable of keras_impl.py <-> torch_impl.py's state_dict names.

GRU gates: torchlike.GRU / GRUCell (Keras GRU with reset_after=True) compute what torch.nn.GRU computes,
but store it differently. Keras kernel (in, 3H) and recurrent_kernel (H, 3H) hold the gates in the order
z, r, h and one bias (2, 3H) whose rows are the input and recurrent biases; torch's weight_ih_l0 (3H, in)
and weight_hh_l0 (3H, H) hold r, z, n, with bias_ih_l0 and bias_hh_l0 apart. The map transposes,
reorders the gate blocks and splits (or stacks) the bias; a bidirectional layer adds torch's *_reverse
tensors. Dropout RNG states are Keras-only training state, not weights: they have no row.
"""

from __future__ import annotations

import numpy as np

from weightmap import Row, Transform, row
from weightmap import dense as dense_rows
from weightmap import embedding as embedding_rows

from .config import Config


def zrh_to_rzn(a: np.ndarray, axis: int) -> np.ndarray:
    z, r, h = np.split(a, 3, axis=axis)
    return np.concatenate([r, z, h], axis=axis)


def rzn_to_zrh(a: np.ndarray, axis: int) -> np.ndarray:
    r, z, n = np.split(a, 3, axis=axis)
    return np.concatenate([z, r, n], axis=axis)


# Keras kernel (in, 3H) gates z, r, h <-> torch weight (3H, in) gates r, z, n. Same for recurrent kernels.
GRU_KERNEL = Transform(
    "gru_kernel_zrh_to_rzn_transposed",
    to_canonical=lambda arrays: [zrh_to_rzn(arrays[0], axis=1).T],
    from_canonical=lambda arrays: [rzn_to_zrh(arrays[0], axis=0).T],
)
# Keras bias (2, 3H): rows input, recurrent; gates z, r, h <-> torch bias_ih (3H,), bias_hh (3H,): r, z, n.
GRU_BIAS = Transform(
    "gru_bias_split_zrh_to_rzn",
    to_canonical=lambda arrays: [zrh_to_rzn(arrays[0][0], axis=0), zrh_to_rzn(arrays[0][1], axis=0)],
    from_canonical=lambda arrays: [np.stack([rzn_to_zrh(arrays[0], axis=0), rzn_to_zrh(arrays[1], axis=0)])],
)


def gru_rows(keras_cell: str, canonical: str, suffix: str) -> list[Row]:
    """One GRU (one direction of one layer): kernel, recurrent kernel and the two biases."""
    return [
        row(f"{keras_cell}/kernel", f"{canonical}.weight_ih{suffix}", GRU_KERNEL),  # (in, 3H) <-> (3H, in)
        row(
            f"{keras_cell}/recurrent_kernel", f"{canonical}.weight_hh{suffix}", GRU_KERNEL
        ),  # (H, 3H) <-> (3H, H)
        row(f"{keras_cell}/bias", (f"{canonical}.bias_ih{suffix}", f"{canonical}.bias_hh{suffix}"), GRU_BIAS),
    ]


def weight_map(config: Config) -> list[Row]:
    """Keras variable path -> torch state_dict name -> transform, one row per tensor."""
    rows = embedding_rows("seq2seq/encoder/embedding", "encoder.embedding")
    for i in range(config.encoder_layers):  # torchlike.GRU: layer i is l{i}, torch's _l{i}
        layer = f"seq2seq/encoder/rnn/l{i}"
        if config.bidirectional:
            rows += gru_rows(f"{layer}/forward_l{i}/gru_cell", "encoder.rnn", f"_l{i}")
            rows += gru_rows(f"{layer}/backward_l{i}/gru_cell", "encoder.rnn", f"_l{i}_reverse")
        else:
            rows += gru_rows(f"{layer}/gru_cell", "encoder.rnn", f"_l{i}")
    rows += dense_rows("seq2seq/bridge", "bridge")
    rows += dense_rows("seq2seq/key_proj", "key_proj", bias=False)
    rows += embedding_rows("seq2seq/decoder/embedding", "decoder.embedding")
    rows += dense_rows("seq2seq/decoder/attention/query_proj", "decoder.attention.query_proj", bias=False)
    rows += dense_rows("seq2seq/decoder/attention/score_proj", "decoder.attention.score_proj", bias=False)
    for i in range(config.decoder_layers):
        rows += gru_rows(f"seq2seq/decoder/rnn_{i}", f"decoder.rnn.{i}", "")
    rows += dense_rows("seq2seq/decoder/out_proj", "decoder.out_proj")
    return rows
