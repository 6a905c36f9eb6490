"""Encoder-decoder Transformer (Vaswani et al. 2017) in Keras 3 from keras-hub layers (keras.ops only:
TensorFlow or PyTorch backend). Line-aligned with torch_impl.py; weight_map() maps every variable to the
torch twin's names (torch.nn.Transformer's) and joins Keras' per-head query/key/value kernels into
torch's fused in-projection.
"""

from __future__ import annotations

import warnings

import keras
import keras_hub
import numpy as np
from keras import layers, ops

from weightmap import DENSE, Row, Transform, embedding, layer_norm, row
from weightmap import dense as dense_rows
from zoo.nlp.transformer.config import Config

MODEL_NAME = "transformer"  # the first part of every Keras variable path
# torch.nn.init.xavier_uniform_ per projection matrix: EinsumDense hands Glorot the kernel's input and output
# axes, so an attention kernel (E, heads, head_dim) gets fans E and E, as torch's (E, E) blocks do.
GLOROT = keras.initializers.GlorotUniform()
# A dropout layer's RNG state: a Keras variable that is no weight (nothing in torch's state_dict).
KERAS_RNG = Transform("keras_only_rng_state", lambda arrays: [], lambda arrays: [])


def positions(config: Config, length: int, name: str) -> layers.Layer:
    if config.positions == "learned":
        init = keras.initializers.RandomNormal(stddev=config.embedding_std)
        return keras_hub.layers.PositionEmbedding(length, initializer=init, name=name)
    return keras_hub.layers.SinePositionEncoding(max_wavelength=config.max_wavelength, name=name)


def layer_options(config: Config) -> dict:
    """What keras_hub's TransformerEncoder and TransformerDecoder take, from the Config."""
    return dict(intermediate_dim=config.ffn_dim, num_heads=config.num_heads, dropout=config.dropout,
                activation=config.activation, layer_norm_epsilon=config.layer_norm_epsilon,
                kernel_initializer=GLOROT, bias_initializer="zeros", normalize_first=config.norm_first)


def layer_norm_layer(config: Config, name: str) -> layers.LayerNormalization:
    return layers.LayerNormalization(epsilon=config.layer_norm_epsilon, name=name)


def decoder_layer_with_scores(layer, x, memory, tgt_padding_mask, src_padding_mask):
    """keras_hub's TransformerDecoder.call in eval mode, replayed to return its attention probabilities too
    (the layer keeps them to itself). tests/test_transformer.py holds it equal to the layer's own call."""
    length = ops.shape(x)[1]
    causal = ops.tril(ops.ones((length, length), dtype="int32"))  # (T, T) 1 where j <= i
    self_mask = ops.minimum(ops.cast(tgt_padding_mask, "int32")[:, None, :], causal[None])  # (B, T, T)
    cross_mask = ops.cast(src_padding_mask, "int32")[:, None, :]  # (B, 1, S)
    residual = x
    if layer.normalize_first:
        x = layer._self_attention_layer_norm(x)
    x, self_scores = layer._self_attention_layer(query=x, value=x, attention_mask=self_mask,
                                                 return_attention_scores=True)  # (B, T, E); (B, H, T, T)
    x = x + residual
    if not layer.normalize_first:
        x = layer._self_attention_layer_norm(x)
    residual = x
    if layer.normalize_first:
        x = layer._cross_attention_layer_norm(x)
    x, cross_scores = layer._cross_attention_layer(query=x, value=memory, attention_mask=cross_mask,
                                                   return_attention_scores=True)  # (B, T, E); (B, H, T, S)
    x = x + residual
    if not layer.normalize_first:
        x = layer._cross_attention_layer_norm(x)
    residual = x
    if layer.normalize_first:
        x = layer._feedforward_layer_norm(x)
    x = layer._feedforward_output_dense(layer._feedforward_intermediate_dense(x))  # (B, T, F) -> (B, T, E)
    x = x + residual
    if not layer.normalize_first:
        x = layer._feedforward_layer_norm(x)
    return x, self_scores, cross_scores


class Encoder(layers.Layer):
    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [keras_hub.layers.TransformerEncoder(**layer_options(config), name=f"layers_{i}")
                       for i in range(config.num_encoder_layers)]
        # Pre-LN leaves the residual stream un-normalised: one LayerNorm closes the stack.
        self.norm = layer_norm_layer(config, "norm") if config.norm_first else None

    def call(self, x, padding_mask, need_weights: bool = False, training=None):
        maps = []
        for layer in self.blocks:
            if need_weights:
                x, scores = layer(x, padding_mask=padding_mask, return_attention_scores=True,
                                  training=training)  # (B, S, E); (B, H, S, S)
            else:
                x, scores = layer(x, padding_mask=padding_mask, training=training), None  # (B, S, E)
            maps.append(scores)
        if self.norm is not None:
            x = self.norm(x)
        return x, maps


class Decoder(layers.Layer):
    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [keras_hub.layers.TransformerDecoder(**layer_options(config), name=f"layers_{i}")
                       for i in range(config.num_decoder_layers)]
        self.norm = layer_norm_layer(config, "norm") if config.norm_first else None

    def call(self, x, memory, tgt_padding_mask, src_padding_mask, need_weights: bool = False, training=None):
        maps = []
        for layer in self.blocks:
            if need_weights:  # eval only: the replay has no dropout
                x, self_scores, cross_scores = decoder_layer_with_scores(layer, x, memory, tgt_padding_mask,
                                                                         src_padding_mask)  # (B, T, E)
            else:
                x, self_scores, cross_scores = layer(x, memory, decoder_padding_mask=tgt_padding_mask,
                                                     encoder_padding_mask=src_padding_mask, use_causal_mask=True,
                                                     training=training), None, None  # (B, T, E)
            maps.append((self_scores, cross_scores))  # (B, H, T, T), (B, H, T, S)
        if self.norm is not None:
            x = self.norm(x)
        return x, maps


class Transformer(keras.Model):
    def __init__(self, config: Config, **kwargs):
        super().__init__(name=MODEL_NAME, **kwargs)
        self.config = config
        init = keras.initializers.RandomNormal(stddev=config.embedding_std)
        self.src_embed = layers.Embedding(config.src_vocab_size, config.d_model, embeddings_initializer=init,
                                          name="src_embed")
        # Tied: the target embedding is the output projection (reverse=True); else a separate (E, V) one.
        self.tgt_embed = keras_hub.layers.ReversibleEmbedding(
            config.tgt_vocab_size, config.d_model, tie_weights=config.tie_output_projection,
            embeddings_initializer=init, name="tgt_embed")
        self.src_positions = positions(config, config.max_src_len, "src_positions")
        self.tgt_positions = positions(config, config.max_tgt_len, "tgt_positions")
        self.embed_dropout = layers.Dropout(config.dropout, name="embed_dropout")
        self.encoder = Encoder(config, name="encoder")
        self.decoder = Decoder(config, name="decoder")

    def embed(self, tokens, embedding: layers.Layer, table: layers.Layer, training=None):
        x = embedding(tokens) * self.config.embedding_scale  # (B, T, E)
        return self.embed_dropout(x + table(x), training=training)

    def encode(self, src, src_mask, need_weights: bool = False, training=None):
        return self.encoder(self.embed(src, self.src_embed, self.src_positions, training), ops.cast(src_mask, "bool"),
                            need_weights=need_weights, training=training)  # (B, S, E), maps

    def decode(self, tgt_in, memory, tgt_mask, src_mask, need_weights: bool = False, training=None):
        x, maps = self.decoder(self.embed(tgt_in, self.tgt_embed, self.tgt_positions, training), memory,
                               ops.cast(tgt_mask, "bool"), ops.cast(src_mask, "bool"), need_weights=need_weights,
                               training=training)  # (B, T, E)
        return self.tgt_embed(x, reverse=True), maps  # (B, T, V) logits

    def call(self, src, src_mask, tgt_in, tgt_mask, training=None):
        memory, _ = self.encode(src, src_mask, training=training)
        logits, _ = self.decode(tgt_in, memory, tgt_mask, src_mask, training=training)
        return logits


def build_model(config: Config) -> Transformer:
    model = Transformer(config)
    tokens, mask = np.full((1, 2), 2, np.int64), np.ones((1, 2), bool)
    model(tokens, mask, tokens, mask)  # creates every variable
    for path, dropout in dropout_layers(model).items():
        if getattr(dropout, "seed_generator", None) is not None:  # only when dropout > 0
            # Its RNG variable's path carries a process-wide counter ("seed_generator_7/seed_generator_state");
            # a path after the layer lets the weight map name it (zoo/bio/danq and nlp/seq2seq do the same).
            dropout.seed_generator.state._path = f"{path}/seed_generator_state"
    return model


def dropout_layers(model: Transformer) -> dict[str, layers.Dropout]:
    """Every dropout layer of the model by a stable path, keras-hub's inner ones included."""
    m = MODEL_NAME
    found = {f"{m}/embed_dropout": model.embed_dropout}
    for i, block in enumerate(model.encoder.blocks):
        k = f"{m}/encoder/layers_{i}"
        found[f"{k}/self_attention_layer/dropout"] = block._self_attention_layer._dropout_layer
        found[f"{k}/self_attention_dropout"] = block._self_attention_dropout
        found[f"{k}/feedforward_dropout"] = block._feedforward_dropout
    for i, block in enumerate(model.decoder.blocks):
        k = f"{m}/decoder/layers_{i}"
        found[f"{k}/self_attention/dropout"] = block._self_attention_layer._dropout_layer
        found[f"{k}/self_attention_dropout"] = block._self_attention_dropout
        found[f"{k}/cross_attention/dropout"] = block._cross_attention_layer._dropout_layer
        found[f"{k}/cross_attention_dropout"] = block._cross_attention_dropout
        found[f"{k}/feedforward_dropout"] = block._feedforward_dropout
    return found


def fused_in_projection(config: Config) -> Transform:
    """Keras query/key/value kernels, each (E, H, D) <-> torch in_proj_weight (3E, E) = [Wq; Wk; Wv] (out, in)."""
    e, h, d = config.d_model, config.num_heads, config.head_dim
    return Transform(
        "qkv_kernels_to_in_proj_weight",
        lambda kernels: [np.concatenate([k.reshape(e, h * d).T for k in kernels], axis=0)],  # 3 x (E, E) -> (3E, E)
        lambda arrays: [w.T.reshape(e, h, d) for w in np.split(arrays[0], 3, axis=0)],  # (3E, E) -> 3 x (E, H, D)
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
    return Transform("attention_output_kernel_to_out_proj_weight", lambda a: [a[0].reshape(h * d, e).T],
                     lambda a: [a[0].T.reshape(h, d, e)])


def attention_rows(config: Config, keras_layer: str, canonical: str) -> list[Row]:
    """keras.layers.MultiHeadAttention <-> torch.nn.MultiheadAttention."""
    qkv = [f"{keras_layer}/{part}" for part in ("query", "key", "value")]
    rows = [
        row([f"{p}/kernel" for p in qkv], f"{canonical}.in_proj_weight", fused_in_projection(config)),
        row([f"{p}/bias" for p in qkv], f"{canonical}.in_proj_bias", fused_in_bias(config)),
        row(f"{keras_layer}/attention_output/kernel", f"{canonical}.out_proj.weight", output_projection(config)),
        row(f"{keras_layer}/attention_output/bias", f"{canonical}.out_proj.bias"),
    ]
    return rows + rng_rows(config, f"{keras_layer}/dropout")  # dropout on the attention probabilities


def rng_rows(config: Config, *keras_layers: str) -> list[Row]:
    return [row(f"{k}/seed_generator_state", (), KERAS_RNG) for k in keras_layers] if config.dropout > 0 else []


def weight_map(config: Config) -> list[Row]:
    """Keras variable path -> canonical (torch) name -> transform, one row per tensor."""
    m = MODEL_NAME
    rows = embedding(f"{m}/src_embed", "src_embed") + embedding(f"{m}/tgt_embed", "tgt_embed")
    if config.positions == "learned":
        rows += embedding(f"{m}/src_positions", "src_positions") + embedding(f"{m}/tgt_positions", "tgt_positions")
    rows += rng_rows(config, f"{m}/embed_dropout")
    for i in range(config.num_encoder_layers):
        k, c = f"{m}/encoder/layers_{i}", f"encoder.layers.{i}"
        rows += attention_rows(config, f"{k}/self_attention_layer", f"{c}.self_attn")
        rows += layer_norm(f"{k}/self_attention_layer_norm", f"{c}.norm1")
        rows += dense_rows(f"{k}/feedforward_intermediate_dense", f"{c}.linear1")
        rows += dense_rows(f"{k}/feedforward_output_dense", f"{c}.linear2")
        rows += layer_norm(f"{k}/feedforward_layer_norm", f"{c}.norm2")
        rows += rng_rows(config, f"{k}/self_attention_dropout", f"{k}/feedforward_dropout")
    for i in range(config.num_decoder_layers):
        k, c = f"{m}/decoder/layers_{i}", f"decoder.layers.{i}"
        rows += attention_rows(config, f"{k}/self_attention", f"{c}.self_attn")
        rows += layer_norm(f"{k}/self_attention_layer_norm", f"{c}.norm1")
        rows += attention_rows(config, f"{k}/cross_attention", f"{c}.multihead_attn")
        rows += layer_norm(f"{k}/cross_attention_layer_norm", f"{c}.norm2")
        rows += dense_rows(f"{k}/feedforward_intermediate_dense", f"{c}.linear1")
        rows += dense_rows(f"{k}/feedforward_output_dense", f"{c}.linear2")
        rows += layer_norm(f"{k}/feedforward_layer_norm", f"{c}.norm3")
        rows += rng_rows(config, f"{k}/self_attention_dropout", f"{k}/cross_attention_dropout",
                         f"{k}/feedforward_dropout")
    if config.norm_first:
        rows += layer_norm(f"{m}/encoder/norm", "encoder.norm") + layer_norm(f"{m}/decoder/norm", "decoder.norm")
    if not config.tie_output_projection:
        rows += [row(f"{m}/tgt_embed/reverse_embeddings", "generator.weight", DENSE)]  # (E, V) <-> (V, E)
    return rows


def call(model: Transformer, batch: dict, training: bool = False) -> dict:
    model.config.check_lengths(batch["src"].shape[1], batch["tgt_in"].shape[1])  # before Keras wraps the error
    return {"logits": model(batch["src"], batch["src_mask"], batch["tgt_in"], batch["tgt_mask"], training=training)}


def compute_loss(outputs: dict, batch: dict, config: Config):
    """Label-smoothed cross-entropy, averaged over the real (unpadded) target tokens."""
    logits = outputs["logits"]  # (B, T, V)
    labels = ops.one_hot(batch["tgt_out"], config.tgt_vocab_size)  # (B, T, V)
    losses = keras.losses.categorical_crossentropy(labels, logits, from_logits=True,
                                                   label_smoothing=config.label_smoothing)  # (B, T)
    mask = ops.cast(batch["tgt_mask"], losses.dtype)
    return ops.sum(losses * mask) / ops.maximum(ops.sum(mask), 1.0)


# ---- decoding (shared/decoding.py drives these; numpy in, numpy out) ---------------------------------

def tensor(model: Transformer, array: np.ndarray):
    return ops.convert_to_tensor(np.ascontiguousarray(array))


def encode(model: Transformer, src: np.ndarray, src_mask: np.ndarray) -> tuple[dict, dict]:
    model.config.check_lengths(src.shape[1])
    memory, _ = model.encode(tensor(model, src), tensor(model, src_mask), training=False)  # (N, S, E)
    state = {"prefix": np.zeros((len(src), 0), np.int64)}  # the decoder's input so far: BOS, y1, ..., y_t-1
    return {"memory": ops.convert_to_numpy(memory), "src_mask": np.asarray(src_mask, bool)}, state


def decode_step(model: Transformer, memory: dict, state: dict, tokens: np.ndarray):
    """Re-reads the whole prefix (no key/value cache): causal masking makes position t's output the same."""
    prefix = np.concatenate([state["prefix"], tokens[:, None]], axis=1)  # (N, t)
    model.config.check_lengths(tgt_length=prefix.shape[1])
    with warnings.catch_warnings():  # Keras warns of a softmax over one key: the first step has only BOS
        warnings.filterwarnings("ignore", message="You are using a softmax over axis", category=UserWarning)
        logits, maps = model.decode(tensor(model, prefix), tensor(model, memory["memory"]),
                                    tensor(model, np.ones(prefix.shape, bool)), tensor(model, memory["src_mask"]),
                                    need_weights=True, training=False)  # (N, t, V)
    attention = ops.mean(maps[-1][1][:, :, -1], axis=1)  # last layer's cross-attention of the new token, head mean: (N, S)
    return ops.convert_to_numpy(logits[:, -1]), {"prefix": prefix}, ops.convert_to_numpy(attention)


def attention_maps(model: Transformer, batch: dict) -> dict[str, np.ndarray]:
    """Eval-mode attention probabilities of every layer and head: {name: (L, B, H, T_query, T_key)}."""
    model.config.check_lengths(batch["src"].shape[1], batch["tgt_in"].shape[1])
    memory, encoder_maps = model.encode(tensor(model, batch["src"]), tensor(model, batch["src_mask"]),
                                        need_weights=True, training=False)
    _, decoder_maps = model.decode(tensor(model, batch["tgt_in"]), memory, tensor(model, batch["tgt_mask"]),
                                   tensor(model, batch["src_mask"]), need_weights=True, training=False)
    maps = {"encoder_self": encoder_maps, "decoder_self": [m[0] for m in decoder_maps],
            "cross": [m[1] for m in decoder_maps]}
    return {name: ops.convert_to_numpy(ops.stack(per_layer)) for name, per_layer in maps.items()}
