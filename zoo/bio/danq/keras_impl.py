"""DanQ (Quang and Xie 2016) in Keras 3 (keras.ops only: TensorFlow or PyTorch backend): Conv1D motif
scanners -> max pool -> BiLSTM -> dense -> one logit per label. Line-aligned with torch_impl.py;
weight_map() maps every variable to the torch twin's state_dict names.

LSTM biases: Keras' LSTM has one bias per direction, torch's two (bias_ih + bias_hh). Export writes the
Keras bias to bias_ih and zeros to bias_hh (which the torch twin keeps frozen at zero); import sums the
two, so any torch LSTM checkpoint computes the same function here.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from weightmap import CONV1D, DENSE, Row, Transform, row
from weightmap import dense as dense_rows
from zoo.bio.danq.config import Config


def torch_default_init(fan_in: int) -> dict:
    """torch's nn.Conv1d / nn.Linear initialisation, U(+-1/sqrt(fan_in)), for kernel and bias."""
    bound = 1.0 / math.sqrt(fan_in)
    return {"kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            "bias_initializer": keras.initializers.RandomUniform(-bound, bound)}


def reverse_complement(sequence):
    # (B, L, 4) -> (B, L, 4): positions reversed; channels A, C, G, T reversed is the complement T, G, C, A.
    return ops.flip(ops.flip(sequence, axis=1), axis=2)


class DanQ(keras.Model):
    def __init__(self, config: Config):
        super().__init__(name="danq")
        self.config = config
        self.conv = layers.Conv1D(config.conv_filters, config.conv_kernel, padding="valid", name="conv",
                                  **torch_default_init(4 * config.conv_kernel))  # motif scanners
        self.pool = layers.MaxPooling1D(config.pool_size, strides=config.pool_size, padding="valid", name="pool")
        self.bilstm = layers.Bidirectional(
            layers.LSTM(config.lstm_units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                        kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                        bias_initializer="zeros", unit_forget_bias=config.lstm_unit_forget_bias,
                        return_sequences=True, name="lstm"),
            merge_mode="concat", name="bilstm")
        self.dense = layers.Dense(config.dense_units, name="dense",
                                  **torch_default_init(config.pooled_length * 2 * config.lstm_units))
        self.classifier = layers.Dense(config.num_labels, name="classifier", **torch_default_init(config.dense_units))
        self.dropout_seed = keras.random.SeedGenerator(config.seed, name="dropout_seed")

    def dropout(self, x, rate: float, training: bool):
        return keras.random.dropout(x, rate, seed=self.dropout_seed) if training and rate > 0 else x

    def strand_logits(self, sequence, training: bool = False):
        config = self.config
        x = sequence  # (B, L, 4): Conv1D reads channels last
        x = ops.relu(self.conv(x))  # (B, L - kernel + 1, F)
        x = self.pool(x)  # (B, T, F), T = pooled_length
        x = self.dropout(x, config.conv_dropout, training)
        x = self.bilstm(x)  # (B, T, 2H): forward and backward states, concatenated
        x = self.dropout(x, config.lstm_dropout, training)
        x = ops.reshape(x, (-1, config.pooled_length * 2 * config.lstm_units))  # (B, T * 2H)
        x = ops.relu(self.dense(x))  # (B, dense_units)
        return self.classifier(x)  # (B, num_labels) logits

    def call(self, sequence, training: bool = False):
        logits = self.strand_logits(sequence, training)  # (B, K)
        if self.config.rc_average and not training:
            logits = (logits + self.strand_logits(reverse_complement(sequence), training)) / 2  # (B, K)
        return logits


def build_model(config: Config) -> DanQ:
    model = DanQ(config)
    model(np.zeros((1, config.sequence_length, 4), np.float32))  # creates the variables
    for direction in ("forward", "backward"):
        # Keras' LSTM cell always owns a dropout RNG state whose path carries a process-wide counter
        # ("seed_generator_7/seed_generator_state"); a stable path lets the weight map name it.
        state = getattr(model.bilstm, f"{direction}_layer").cell.seed_generator.state
        state._path = f"danq/bilstm/{direction}_lstm/lstm_cell/seed_generator_state"
    return model


# One Keras LSTM bias <-> torch's (bias_ih, bias_hh): export (b, 0), import b_ih + b_hh. bias_hh is frozen
# at zero in the torch twin, so only bias_ih has a gradient: the Keras bias gradient is bias_ih's.
LSTM_BIAS = Transform(
    "lstm_bias_sum",
    to_canonical=lambda arrays: [arrays[0], np.zeros_like(arrays[0])],
    from_canonical=lambda arrays: [arrays[0] + arrays[1]],
    grad_to_canonical=lambda grads: [grads[0]],
)
# Dropout RNG counters: Keras-only state, not weights; neither exported nor imported.
KERAS_RNG = Transform("keras_only_rng_state", lambda arrays: [], lambda arrays: [])


def lstm_rows(keras_layer: str, canonical: str, suffix: str) -> list[Row]:
    """One direction of the BiLSTM. Gate order is i, f, g(c), o in both frameworks: no reordering."""
    return [
        row(f"{keras_layer}/lstm_cell/kernel", f"{canonical}.weight_ih_l0{suffix}", DENSE),  # (F, 4H) <-> (4H, F)
        row(f"{keras_layer}/lstm_cell/recurrent_kernel", f"{canonical}.weight_hh_l0{suffix}", DENSE),  # (H, 4H)
        row(f"{keras_layer}/lstm_cell/bias", (f"{canonical}.bias_ih_l0{suffix}", f"{canonical}.bias_hh_l0{suffix}"),
            LSTM_BIAS),
        row(f"{keras_layer}/lstm_cell/seed_generator_state", (), KERAS_RNG),
    ]


def weight_map(config: Config) -> list[Row]:
    """Keras variable path -> torch state_dict name -> transform, one row per tensor."""
    return [
        row("danq/conv/kernel", "conv.weight", CONV1D),  # (k, 4, F) <-> (F, 4, k)
        row("danq/conv/bias", "conv.bias"),
        *lstm_rows("danq/bilstm/forward_lstm", "bilstm", ""),
        *lstm_rows("danq/bilstm/backward_lstm", "bilstm", "_reverse"),
        *dense_rows("danq/dense", "dense"),
        *dense_rows("danq/classifier", "classifier"),
        row("dropout_seed/seed_generator_state", (), KERAS_RNG),
    ]


def call(model: DanQ, batch: dict, training: bool = False) -> dict:
    return {"logits": model(batch["sequence"], training=training)}


def compute_loss(outputs: dict, batch: dict, config: Config):
    labels = ops.cast(batch["labels"], outputs["logits"].dtype)  # (B, K) 0/1
    labels = labels * (1 - config.label_smoothing) + 0.5 * config.label_smoothing
    return ops.mean(ops.binary_crossentropy(labels, outputs["logits"], from_logits=True))
