"""The Transformer's weight map: Keras variable path -> canonical (torch state_dict) name -> transform.

Keras layer names are the torch twin's attribute names, so most rows only swap "/" for "." and transpose
dense kernels. keras.layers.MultiHeadAttention keeps a kernel (E, heads, head_dim) and a bias
(heads, head_dim) per query / key / value projection where torch.nn.MultiheadAttention keeps one fused
in_proj_weight (3E, E) = [W_q; W_k; W_v] and in_proj_bias (3E,): one row joins three Keras variables.
numpy and weightmap.py only.
"""

from __future__ import annotations

import numpy as np

from weightmap import DENSE, Row, Transform, dense, embedding, layer_norm, row

from .config import Config

KERAS_ROOT = "transformer"  # the Keras model's name (keras_impl.Transformer): first part of every path


def fused_in_projection(config: Config) -> Transform:
    """Keras query/key/value kernels, each (E, H, D) <-> torch in_proj_weight (3E, E) = [Wq; Wk; Wv],
    each block (out, in)."""
    e, h, d = config.d_model, config.num_heads, config.head_dim
    return Transform(
        "qkv_kernels_to_in_proj_weight",
        lambda kernels: [
            np.concatenate([k.reshape(e, h * d).T for k in kernels], axis=0)
        ],  # 3 x (E, E) -> (3E, E)
        lambda arrays: [
            w.T.reshape(e, h, d) for w in np.split(arrays[0], 3, axis=0)
        ],  # (3E, E) -> 3 x (E, H, D)
    )


def fused_in_bias(config: Config) -> Transform:
    """Keras query/key/value biases, each (H, D) <-> torch in_proj_bias (3E,)."""
    h, d = config.num_heads, config.head_dim
    return Transform(
        "qkv_biases_to_in_proj_bias",
        lambda biases: [np.concatenate([b.reshape(h * d) for b in biases])],
        lambda arrays: [b.reshape(h, d) for b in np.split(arrays[0], 3)],
    )


def output_projection(config: Config) -> Transform:
    """Keras attention_output kernel (H, D, E) <-> torch out_proj.weight (E, E) (out, in)."""
    e, h, d = config.d_model, config.num_heads, config.head_dim
    return Transform(
        "attention_output_kernel_to_out_proj_weight",
        lambda arrays: [arrays[0].reshape(h * d, e).T],
        lambda arrays: [arrays[0].T.reshape(h, d, e)],
    )


def attention(config: Config, keras_layer: str, canonical: str) -> list[Row]:
    """keras.layers.MultiHeadAttention <-> torch.nn.MultiheadAttention."""
    qkv = [f"{keras_layer}/{part}" for part in ("query", "key", "value")]
    return [
        row([f"{p}/kernel" for p in qkv], f"{canonical}.in_proj_weight", fused_in_projection(config)),
        row([f"{p}/bias" for p in qkv], f"{canonical}.in_proj_bias", fused_in_bias(config)),
        row(
            f"{keras_layer}/attention_output/kernel",
            f"{canonical}.out_proj.weight",
            output_projection(config),
        ),
        row(f"{keras_layer}/attention_output/bias", f"{canonical}.out_proj.bias"),
    ]


def weight_map(config: Config) -> list[Row]:
    """One row per tensor. Dropout RNG states are no weights and have no row."""

    def k(name: str) -> str:  # canonical name -> Keras layer path
        return f"{KERAS_ROOT}/{name.replace('.', '/')}".replace("/layers/", "/layers_")

    rows = embedding(k("src_embed"), "src_embed") + embedding(k("tgt_embed"), "tgt_embed")
    if config.positions == "learned":
        rows += [row(f"{k(name)}/weight", f"{name}.weight") for name in ("src_positions", "tgt_positions")]
    stacks = [  # (stack, layers, attention sublayers, layer norms): torch_impl.EncoderLayer / DecoderLayer
        ("encoder", config.num_encoder_layers, ("self_attn",), ("norm1", "norm2")),
        ("decoder", config.num_decoder_layers, ("self_attn", "multihead_attn"), ("norm1", "norm2", "norm3")),
    ]
    for stack, num_layers, attentions, norms in stacks:
        for i in range(num_layers):
            c = f"{stack}.layers.{i}"
            for name in attentions:
                rows += attention(config, k(f"{c}.{name}"), f"{c}.{name}")
            for name in ("linear1", "linear2"):
                rows += dense(k(f"{c}.{name}"), f"{c}.{name}")
            for name in norms:
                rows += layer_norm(k(f"{c}.{name}"), f"{c}.{name}")
        if config.norm_first:
            rows += layer_norm(k(f"{stack}.norm"), f"{stack}.norm")
    if not config.tie_output_projection:
        rows += [row(f"{k('generator')}/kernel", "generator.weight", DENSE)]  # (E, V) <-> (V, E)
    return rows
