"""Keras layers and initialisers that behave as PyTorch's defaults, for twins that must match torch.

The one copyable helper a Keras twin may import (Keras only; copy this file next to a model folder you
lift out of the zoo). Each piece writes out a framework difference once:

- initialisers: torch's nn.Linear / nn.Conv / nn.Embedding / nn.GRU defaults and torchvision's He-normal
  convolutions. Every call returns a fresh initialiser: one unseeded Keras initialiser reused by several
  layers repeats its values, so same-shaped kernels would start identical.
- Conv2D with torch's symmetric zero padding (Keras' "same" pads more on the bottom/right when strided),
  and MaxPool2D with torch's symmetric -inf padding.
- BatchNormalization in torch's convention (momentum is the weight of the batch statistic in torch, of
  the running value in Keras; epsilon 1e-5 instead of 1e-3).
- Dropout with a named RNG state, so its variable path is stable across processes, and SharedDropout:
  several dropout sites drawing from one generator.
- GRU and GRUCell computing, initialised and called as torch.nn.GRU / nn.GRUCell.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops


def linear_init(fan_in: int, bias: bool = True) -> dict:
    """torch's nn.Linear / nn.Conv default: kernel and bias U(+-1/sqrt(fan_in)) (kaiming_uniform a=sqrt(5))."""
    bound = 1.0 / math.sqrt(fan_in)
    init = {"kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")}
    if bias:
        init["bias_initializer"] = keras.initializers.RandomUniform(-bound, bound)
    return init


def he_normal_fan_out() -> keras.initializers.Initializer:
    """torchvision's convolution init: kaiming_normal_(mode='fan_out', nonlinearity='relu')."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def uniform(bound: float) -> keras.initializers.Initializer:
    """U(-bound, bound): torch's nn.GRU / nn.LSTM default with bound = 1/sqrt(hidden_size)."""
    return keras.initializers.RandomUniform(-bound, bound)


def normal(std: float) -> keras.initializers.Initializer:
    """N(0, std^2): torch's nn.Embedding default with std = 1."""
    return keras.initializers.RandomNormal(0.0, std)


def Linear(in_features: int, out_features: int, bias: bool = True, name: str | None = None, **kwargs):
    """keras.layers.Dense initialised as torch's nn.Linear(in_features, out_features)."""
    return layers.Dense(out_features, use_bias=bias, name=name, **linear_init(in_features, bias), **kwargs)


def _pad_hw(inputs, p: int, value: float = 0.0):
    """torch's integer padding: p pixels of `value` on every side of height and width (channels last)."""
    return ops.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=value) if p else inputs


def _padded_shape(shape, p: int) -> tuple:
    b, h, w, c = shape
    return (b, None if h is None else h + 2 * p, None if w is None else w + 2 * p, c)


class Conv2D(layers.Conv2D):
    """keras.layers.Conv2D with torch's integer padding: `padding` zeros on every side (channels last)."""

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, padding: int = 0, **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding="valid", **kwargs)
        self.torch_padding = int(padding)

    def call(self, inputs):
        return super().call(_pad_hw(inputs, self.torch_padding))

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(_padded_shape(input_shape, self.torch_padding))

    def get_config(self):
        return {**super().get_config(), "padding": self.torch_padding}


def BatchNorm(eps: float = 1e-5, momentum: float = 0.1, name: str | None = None, **kwargs):
    """keras.layers.BatchNormalization with torch's arguments: torch momentum m is Keras momentum 1 - m."""
    return layers.BatchNormalization(epsilon=eps, momentum=1.0 - momentum, name=name, **kwargs)


class Dropout(layers.Layer):
    """Dropout whose RNG state is named after the layer (keras.layers.Dropout's carries a process-wide
    counter in its path). Identity when not training or when rate is 0."""

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.rate = float(rate)
        self.supports_masking = True
        self.seed_generator = keras.random.SeedGenerator(seed, name=f"{self.name}_seed") if rate > 0 else None

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            return keras.random.dropout(inputs, self.rate, seed=self.seed_generator)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


# ---- torch.nn.GRU and nn.GRUCell -------------------------------------------------------------------------


def gru_init(hidden_size: int) -> dict:
    """keras.layers.GRU / GRUCell arguments for torch's GRU: its formulation (the reset gate applied after
    the recurrent matmul, n = tanh(W_in x + b_in + r * (W_hn h + b_hn)): Keras' reset_after=True) and its
    initialisation, U(+-1/sqrt(hidden_size)) for every tensor (Keras' own: Glorot, orthogonal, zeros).
    The weights are stored differently (gates z, r, h in Keras, r, z, n in torch): a weight map converts."""
    bound = 1.0 / math.sqrt(hidden_size)
    return {
        "activation": "tanh",
        "recurrent_activation": "sigmoid",
        "reset_after": True,
        "kernel_initializer": uniform(bound),
        "recurrent_initializer": uniform(bound),
        "bias_initializer": uniform(bound),
    }


class GRUCell(layers.GRUCell):
    """torch.nn.GRUCell(input_size, hidden_size): computes and initialises as torch's, and is called as
    torch's, cell(x, h) -> h' (keras.layers.GRUCell returns (h', new states)). Its Keras variables:
    kernel (in, 3H), recurrent_kernel (H, 3H), bias (2, 3H); it is not for keras.layers.RNN."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, **kwargs):
        super().__init__(hidden_size, use_bias=bias, **gru_init(hidden_size), **kwargs)
        self.input_size = input_size

    def call(self, inputs, states, training=False):
        h, _ = super().call(inputs, states, training=training)
        return h


class GRU(layers.Layer):
    """torch.nn.GRU(input_size, hidden_size, num_layers, bidirectional=..., dropout=..., batch_first=True):
    call(x, mask) -> (output (B, S, directions * H), h_n (num_layers * directions, B, H)), as torch's.

    Layer i is a keras.layers.GRU (in a Bidirectional when bidirectional) named l{i}, torch's _l{i}. The
    mask (B, S; True on real steps, right-padded) stands for torch's packed sequence: a masked step
    carries the state through, so each direction reads the real steps only and h_n is the state at the
    last real step. dropout acts on the outputs of every layer but the last, as torch's."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.supports_masking = True  # it reads the mask; its outputs carry none (compute_mask)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional = bidirectional
        self.rnns = []
        for i in range(num_layers):
            rnn = layers.GRU(
                hidden_size, return_sequences=True, return_state=True, name=f"l{i}", **gru_init(hidden_size)
            )
            self.rnns.append(layers.Bidirectional(rnn, name=f"l{i}") if bidirectional else rnn)
        self.dropout = Dropout(dropout, seed, name=f"{self.name}_dropout")

    def build(self, input_shape):
        pass  # each layer builds on its first call, its input width known then

    def call(self, x, mask=None, training=False):
        final = []
        for i, rnn in enumerate(self.rnns):
            if i > 0:
                x = self.dropout(x, training=training)
            x, *states = rnn(x, mask=mask, training=training)  # (B, S, directions * H), directions x (B, H)
            final += states
        return x, ops.stack(final)  # (num_layers * directions, B, H)

    def compute_mask(self, x, mask=None):
        return None


def Embedding(num_embeddings: int, embedding_dim: int, std: float = 1.0, name: str | None = None, **kwargs):
    """keras.layers.Embedding initialised as torch's nn.Embedding(num_embeddings, embedding_dim): N(0, std^2)
    with std = 1 (torch's default; a torch twin that re-initialises with another std passes it here)."""
    return layers.Embedding(
        num_embeddings, embedding_dim, embeddings_initializer=normal(std), name=name, **kwargs
    )


class MaxPool2D(layers.MaxPooling2D):
    """keras.layers.MaxPooling2D as torch's nn.MaxPool2d(kernel_size, stride, padding): `padding` pixels of
    -inf on every side (channels last), so a padded position is never the maximum."""

    def __init__(self, pool_size: int, strides: int | None = None, padding: int = 0, **kwargs):
        super().__init__(pool_size, strides=strides, padding="valid", **kwargs)
        self.torch_padding = int(padding)

    def call(self, inputs):
        return super().call(_pad_hw(inputs, self.torch_padding, float("-inf")))

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(_padded_shape(input_shape, self.torch_padding))

    def get_config(self):
        return {**super().get_config(), "padding": self.torch_padding}


class SharedDropout(layers.Layer):
    """Dropout drawing its masks from a keras.random.SeedGenerator it is handed (the model owns it), so
    several layers draw from one RNG stream, in call order. Identity when not training or when rate is 0."""

    def __init__(
        self, rate: float, seed_generator: keras.random.SeedGenerator, name: str | None = None, **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.rate = float(rate)
        self.supports_masking = True
        self.seed_generator = seed_generator

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            return keras.random.dropout(inputs, self.rate, seed=self.seed_generator)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape
