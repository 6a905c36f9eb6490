"""DanQ (Quang and Xie 2016) in Keras 3 (keras.ops only: TensorFlow or PyTorch backend): Conv1D motif
scanners -> max pool -> BiLSTM -> dense -> one logit per label. It mirrors torch_impl.py class for class,
attribute for attribute; weights.py maps its variables to the torch twin's state_dict names.

LSTM biases: Keras' LSTM has one bias per direction, torch's two (bias_ih + bias_hh). Export writes the
Keras bias to bias_ih and zeros to bias_hh (which the torch twin keeps frozen at zero); import sums the
two, so any torch LSTM checkpoint computes the same function here.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from torchlike import Linear, SharedDropout, uniform

from .config import Config


def reverse_complement(sequence):
    # (B, L, 4) -> (B, L, 4): positions reversed; channels A, C, G, T reversed is the complement T, G, C, A.
    return ops.flip(ops.flip(sequence, axis=1), axis=2)


class DanQ(keras.Model):
    def __init__(self, config: Config):
        super().__init__(name="danq")
        dropout_seed = keras.random.SeedGenerator(config.seed, name="dropout_seed")  # one stream, both dropouts
        self.config = config
        self.conv = layers.Conv1D(config.conv_filters, config.conv_kernel, name="conv")  # scanners, 'valid'
        self.pool = layers.MaxPooling1D(config.pool_size, strides=config.pool_size, name="pool")  # floor
        self.conv_dropout = SharedDropout(config.conv_dropout, dropout_seed, name="conv_dropout")
        self.bilstm = layers.Bidirectional(
            layers.LSTM(config.lstm_units, return_sequences=True, name="lstm"), name="bilstm"
        )
        self.lstm_dropout = SharedDropout(config.lstm_dropout, dropout_seed, name="lstm_dropout")
        self.dense = Linear(config.pooled_length * 2 * config.lstm_units, config.dense_units, name="dense")
        self.classifier = Linear(config.dense_units, config.num_labels, name="classifier")
        self(ops.zeros((1, config.sequence_length, 4)))  # creates the variables now
        self.reset_parameters(config)

    def reset_parameters(self, config: Config):
        # Convolution and dense layers: torch's default, U(+-1/sqrt(fan_in)) for weights and biases.
        for layer in (self.conv, self.dense, self.classifier):
            bound = 1 / math.sqrt(math.prod(layer.kernel.shape[:-1]))  # fan_in: ([k,] in, out)
            layer.kernel.assign(uniform(bound)(layer.kernel.shape))
            layer.bias.assign(uniform(bound)(layer.bias.shape))
        # LSTM: Keras' default, per direction (gate order i, f, g, o in both frameworks).
        units = config.lstm_units
        for cell in (self.bilstm.forward_layer.cell, self.bilstm.backward_layer.cell):
            cell.kernel.assign(keras.initializers.GlorotUniform()(cell.kernel.shape))  # (F, 4H)
            cell.recurrent_kernel.assign(keras.initializers.Orthogonal()(cell.recurrent_kernel.shape))
            bias = np.zeros(4 * units, np.float32)  # (4H,)
            if config.lstm_unit_forget_bias:
                bias[units : 2 * units] = 1.0
            cell.bias.assign(bias)
            # This one bias is torch's bias_ih; the torch twin keeps its second one, bias_hh, at 0 and out of
            # training (see the module docstring).

    def strand_logits(self, sequence, training=False):
        x = sequence  # (B, L, 4): Conv1D reads channels last
        x = ops.relu(self.conv(x))  # (B, L - kernel + 1, F)
        x = self.pool(x)  # (B, T, F), T = pooled_length
        x = self.conv_dropout(x, training=training)
        x = self.bilstm(x)  # (B, T, 2H): forward and backward states, concatenated
        x = self.lstm_dropout(x, training=training)
        x = ops.reshape(x, (-1, self.config.pooled_length * 2 * self.config.lstm_units))  # (B, T * 2H)
        x = ops.relu(self.dense(x))  # (B, dense_units)
        return self.classifier(x)  # (B, num_labels) logits

    def call(self, sequence, training=False):
        logits = self.strand_logits(sequence, training)  # (B, K)
        if self.config.rc_average and not training:
            logits = (logits + self.strand_logits(reverse_complement(sequence), training)) / 2  # (B, K)
        return logits


def build_model(config: Config) -> DanQ:
    return DanQ(config)


def call(model: DanQ, batch: dict, training: bool = False) -> dict:
    return {"logits": model(batch["sequence"], training=training)}


def compute_loss(outputs: dict, batch: dict, config: Config):
    labels = ops.cast(batch["labels"], outputs["logits"].dtype)  # (B, K) 0/1
    labels = labels * (1 - config.label_smoothing) + 0.5 * config.label_smoothing
    return ops.mean(ops.binary_crossentropy(labels, outputs["logits"], from_logits=True))
