"""Encoder-decoder Transformer (Vaswani et al. 2017) in Keras 3, on keras.layers.MultiHeadAttention.

Layer names are torch_impl.py's attribute names (encoder/layers_0/self_attn/query/kernel, decoder/layers_0/
multihead_attn/attention_output/kernel, linear1, norm3 ...); weights.py maps each variable to the torch
twin's name and joins the per-head query/key/value kernels into torch's fused in-projection. keras.ops
only: TensorFlow or PyTorch backend. This file mirrors torch_impl.py class for class and attribute for
attribute; Keras' defaults (Glorot-uniform kernels, zero biases) are the Config's initialisation.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import layers, ops

from .config import Config

ACTIVATIONS = {"relu": keras.activations.relu, "gelu": keras.activations.gelu}  # exact erf gelu, as F.gelu


def normal(config: Config) -> keras.initializers.Initializer:
    """N(0, embedding_std^2): embeddings, position tables, the untied projection (a fresh one for each)."""
    return keras.initializers.RandomNormal(stddev=config.embedding_std)


class SinePositionEncoding(layers.Layer):
    """Sinusoidal positions (section 3.5): sin on even features, cos on odd ones, no weights."""

    def __init__(self, max_wavelength: float, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength

    def call(self, x):
        length, dim = ops.shape(x)[1], ops.shape(x)[2]  # x: (B, T, E); computed in x's dtype, as in torch
        positions = ops.cast(ops.arange(length), self.compute_dtype)  # (T,)
        features = ops.arange(dim)
        min_freq = ops.cast(1.0 / self.max_wavelength, self.compute_dtype)
        timescales = ops.power(min_freq, ops.cast(2 * (features // 2), self.compute_dtype) / dim)  # (E,)
        angles = positions[:, None] * timescales[None, :]  # (T, E)
        cos_mask = ops.cast(features % 2, self.compute_dtype)
        encoding = ops.sin(angles) * (1 - cos_mask) + ops.cos(angles) * cos_mask  # (T, E)
        return ops.broadcast_to(encoding, ops.shape(x))  # (B, T, E)


class PositionEmbedding(layers.Layer):
    """Learned positions: a (length, E) table, sliced to the sequence."""

    def __init__(self, length: int, dim: int, initializer, **kwargs):
        super().__init__(**kwargs)
        self.table_shape, self.initializer = (length, dim), initializer

    def call(self, x):
        return ops.broadcast_to(self.weight[: ops.shape(x)[1]], ops.shape(x))  # (B, T, E)

    def build(self, input_shape):  # Keras creates weights when it first sees an input
        self.weight = self.add_weight(shape=self.table_shape, initializer=self.initializer, name="weight")


def embedding(config: Config, vocab_size: int, name: str) -> layers.Embedding:
    return layers.Embedding(vocab_size, config.d_model, embeddings_initializer=normal(config), name=name)


def positions(config: Config, length: int, name: str) -> layers.Layer:
    if config.positions == "learned":
        return PositionEmbedding(length, config.d_model, normal(config), name=name)
    return SinePositionEncoding(config.max_wavelength, name=name)


def attention(config: Config, name: str) -> layers.MultiHeadAttention:
    return layers.MultiHeadAttention(config.num_heads, config.head_dim, dropout=config.dropout, name=name)


def layer_norm(config: Config, name: str) -> layers.LayerNormalization:
    return layers.LayerNormalization(epsilon=config.layer_norm_epsilon, name=name)


class ResidualLayer(layers.Layer):
    """What EncoderLayer and DecoderLayer share: the residual sublayer and the feed-forward."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.norm_first, self.activation = config.norm_first, ACTIVATIONS[config.activation]

    def sublayer(self, x, norm: layers.LayerNormalization, dropout: layers.Dropout, f):
        """Post-LN (the paper): norm(x + dropout(f(x))); pre-LN: x + dropout(f(norm(x))).
        f returns (y, attention probabilities or None)."""
        y, scores = f(norm(x) if self.norm_first else x)
        x = x + dropout(y)
        return x if self.norm_first else norm(x), scores

    def feed_forward(self, x):
        return self.linear2(self.activation(self.linear1(x))), None  # (B, T, F) -> (B, T, E); no map


class EncoderLayer(ResidualLayer):
    """Self-attention, then feed-forward, each a residual sublayer."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(config, **kwargs)
        self.self_attn = attention(config, "self_attn")
        self.norm1 = layer_norm(config, "norm1")
        self.dropout1 = layers.Dropout(config.dropout, name="dropout1")
        self.linear1 = layers.Dense(config.ffn_dim, name="linear1")
        self.linear2 = layers.Dense(config.d_model, name="linear2")
        self.norm2 = layer_norm(config, "norm2")
        self.dropout2 = layers.Dropout(config.dropout, name="dropout2")

    def call(self, x, padding_mask, need_weights: bool = False):  # the maps come back whatever need_weights
        # x: (B, S, E); padding_mask: (B, S), True on real tokens (Keras attends where True).
        x, scores = self.sublayer(x, self.norm1, self.dropout1, lambda y: self.self_attn(
            y, y, y, attention_mask=padding_mask[:, None, :],
            return_attention_scores=True))  # (B, S, E); (B, H, S, S)
        x, _ = self.sublayer(x, self.norm2, self.dropout2, self.feed_forward)  # (B, S, E)
        return x, scores


class DecoderLayer(ResidualLayer):
    """Causal self-attention, cross-attention over the encoder's output, feed-forward."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(config, **kwargs)
        self.self_attn = attention(config, "self_attn")
        self.norm1 = layer_norm(config, "norm1")
        self.dropout1 = layers.Dropout(config.dropout, name="dropout1")
        self.multihead_attn = attention(config, "multihead_attn")
        self.norm2 = layer_norm(config, "norm2")
        self.dropout2 = layers.Dropout(config.dropout, name="dropout2")
        self.linear1 = layers.Dense(config.ffn_dim, name="linear1")
        self.linear2 = layers.Dense(config.d_model, name="linear2")
        self.norm3 = layer_norm(config, "norm3")
        self.dropout3 = layers.Dropout(config.dropout, name="dropout3")

    def call(self, x, memory, tgt_padding_mask, src_padding_mask, need_weights: bool = False):
        # x: (B, T, E); memory: (B, S, E); masks (B, T) and (B, S), True on real tokens.
        length = ops.shape(x)[1]
        past = ops.tril(ops.ones((length, length), dtype="bool"))  # (T, T) True where j <= i
        x, self_scores = self.sublayer(x, self.norm1, self.dropout1, lambda y: self.self_attn(
            y, y, y, attention_mask=ops.logical_and(tgt_padding_mask[:, None, :], past),
            return_attention_scores=True))  # (B, T, E); (B, H, T, T)
        x, cross_scores = self.sublayer(x, self.norm2, self.dropout2, lambda y: self.multihead_attn(
            y, memory, memory, attention_mask=src_padding_mask[:, None, :],
            return_attention_scores=True))  # (B, T, E); (B, H, T, S)
        x, _ = self.sublayer(x, self.norm3, self.dropout3, self.feed_forward)  # (B, T, E)
        return x, self_scores, cross_scores


class Encoder(layers.Layer):
    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.layers = [EncoderLayer(config, name=f"layers_{i}") for i in range(config.num_encoder_layers)]
        # Pre-LN leaves the residual stream un-normalised: one LayerNorm closes the stack.
        self.norm = layer_norm(config, "norm") if config.norm_first else None

    def call(self, x, padding_mask, need_weights: bool = False):
        maps = []
        for layer in self.layers:
            x, scores = layer(x, padding_mask, need_weights=need_weights)  # (B, S, E); (B, H, S, S)
            maps.append(scores)
        if self.norm is not None:
            x = self.norm(x)
        return x, maps


class Decoder(layers.Layer):
    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.layers = [DecoderLayer(config, name=f"layers_{i}") for i in range(config.num_decoder_layers)]
        self.norm = layer_norm(config, "norm") if config.norm_first else None

    def call(self, x, memory, tgt_padding_mask, src_padding_mask, need_weights: bool = False):
        maps = []
        for layer in self.layers:
            x, self_scores, cross_scores = layer(x, memory, tgt_padding_mask, src_padding_mask,
                                                 need_weights=need_weights)  # (B, T, E)
            maps.append((self_scores, cross_scores))  # (B, H, T, T), (B, H, T, S)
        if self.norm is not None:
            x = self.norm(x)
        return x, maps


class Transformer(keras.Model):
    def __init__(self, config: Config, **kwargs):
        super().__init__(name="transformer", **kwargs)
        self.config = config
        self.src_embed = embedding(config, config.src_vocab_size, "src_embed")
        self.tgt_embed = embedding(config, config.tgt_vocab_size, "tgt_embed")
        self.src_positions = positions(config, config.max_src_len, "src_positions")
        self.tgt_positions = positions(config, config.max_tgt_len, "tgt_positions")
        self.embed_dropout = layers.Dropout(config.dropout, name="embed_dropout")
        self.encoder = Encoder(config, name="encoder")
        self.decoder = Decoder(config, name="decoder")
        # Tied: the target embedding is the output projection; else a separate bias-free projection.
        self.generator = None if config.tie_output_projection else layers.Dense(
            config.tgt_vocab_size, use_bias=False, kernel_initializer=normal(config), name="generator")

    def embed(self, tokens, embedding: layers.Layer, table: layers.Layer):
        x = embedding(tokens) * self.config.embedding_scale  # (B, T, E)
        return self.embed_dropout(x + table(x))

    def encode(self, src, src_mask, need_weights: bool = False):
        return self.encoder(self.embed(src, self.src_embed, self.src_positions), ops.cast(src_mask, "bool"),
                            need_weights=need_weights)  # (B, S, E), maps

    def decode(self, tgt_in, memory, tgt_mask, src_mask, need_weights: bool = False):
        x, maps = self.decoder(self.embed(tgt_in, self.tgt_embed, self.tgt_positions), memory,
                               ops.cast(tgt_mask, "bool"), ops.cast(src_mask, "bool"),
                               need_weights=need_weights)  # (B, T, E)
        if self.generator is not None:
            return self.generator(x), maps  # (B, T, V) logits
        return ops.matmul(x, ops.transpose(self.tgt_embed.embeddings)), maps  # (B, T, V) logits: x @ (V, E)^T

    def call(self, src, src_mask, tgt_in, tgt_mask):  # Keras hands `training` on to every Dropout
        memory, _ = self.encode(src, src_mask)
        logits, _ = self.decode(tgt_in, memory, tgt_mask, src_mask)
        return logits


def build_model(config: Config) -> Transformer:
    model = Transformer(config)
    tokens, mask = np.full((1, 2), 2, np.int64), np.ones((1, 2), bool)
    model(tokens, mask, tokens, mask)  # creates every variable
    return model


def call(model: Transformer, batch: dict, training: bool = False) -> dict:
    model.config.check_lengths(batch["src"].shape[1], batch["tgt_in"].shape[1])  # before Keras wraps errors
    return {"logits": model(batch["src"], batch["src_mask"], batch["tgt_in"], batch["tgt_mask"],
                            training=training)}


def compute_loss(outputs: dict, batch: dict, config: Config):
    """Label-smoothed cross-entropy, averaged over the real (unpadded) target tokens."""
    logits = outputs["logits"]  # (B, T, V)
    losses = keras.losses.categorical_crossentropy(ops.one_hot(batch["tgt_out"], config.tgt_vocab_size),
                                                   logits, from_logits=True,
                                                   label_smoothing=config.label_smoothing)  # (B, T)
    mask = ops.cast(batch["tgt_mask"], losses.dtype)
    return ops.sum(losses * mask) / ops.maximum(ops.sum(mask), 1.0)


# ---- decoding: numpy in, numpy out (the zoo's shared/decoding.py drives encode and decode_step) -------

def tensor(model: Transformer, array: np.ndarray):
    return ops.convert_to_tensor(np.ascontiguousarray(array))


def encode(model: Transformer, src: np.ndarray, src_mask: np.ndarray) -> tuple[dict, dict]:
    model.config.check_lengths(src.shape[1])
    memory, _ = model.encode(tensor(model, src), tensor(model, src_mask))  # (N, S, E); eval: no call context
    state = {"prefix": np.zeros((len(src), 0), np.int64)}  # the decoder's input so far: BOS, y1, ..., y_t-1
    return {"memory": ops.convert_to_numpy(memory), "src_mask": np.asarray(src_mask, bool)}, state


def decode_step(model: Transformer, memory: dict, state: dict, tokens: np.ndarray):
    """Re-reads the whole prefix (no key/value cache): causal masking makes position t's output the same."""
    prefix = np.concatenate([state["prefix"], tokens[:, None]], axis=1)  # (N, t)
    model.config.check_lengths(tgt_length=prefix.shape[1])
    with warnings.catch_warnings():  # Keras warns of a softmax over one key: the first step has only BOS
        warnings.filterwarnings("ignore", message="You are using a softmax over axis", category=UserWarning)
        logits, maps = model.decode(tensor(model, prefix), tensor(model, memory["memory"]),
                                    tensor(model, np.ones(prefix.shape, bool)),
                                    tensor(model, memory["src_mask"]), need_weights=True)  # (N, t, V)
    attention = ops.mean(maps[-1][1][:, :, -1], axis=1)  # new token's last-layer cross-attention: (N, S)
    return ops.convert_to_numpy(logits[:, -1]), {"prefix": prefix}, ops.convert_to_numpy(attention)


def attention_maps(model: Transformer, batch: dict) -> dict[str, np.ndarray]:
    """Eval-mode attention probabilities of every layer and head: {name: (L, B, H, T_query, T_key)}."""
    model.config.check_lengths(batch["src"].shape[1], batch["tgt_in"].shape[1])
    memory, encoder_maps = model.encode(tensor(model, batch["src"]), tensor(model, batch["src_mask"]),
                                        need_weights=True)
    _, decoder_maps = model.decode(tensor(model, batch["tgt_in"]), memory, tensor(model, batch["tgt_mask"]),
                                   tensor(model, batch["src_mask"]), need_weights=True)
    maps = {"encoder_self": encoder_maps, "decoder_self": [m[0] for m in decoder_maps],
            "cross": [m[1] for m in decoder_maps]}
    return {name: ops.convert_to_numpy(ops.stack(per_layer)) for name, per_layer in maps.items()}
