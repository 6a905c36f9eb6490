"""GRU encoder-decoder with Bahdanau (additive) attention (Bahdanau, Cho and Bengio 2015) in Keras 3
(keras.ops only: TensorFlow or PyTorch backend). Line-aligned with torch_impl.py; weight_map() maps every
variable to the torch twin's state_dict names.

GRU gates: Keras' GRU(reset_after=True) computes what torch.nn.GRU computes, but stores it differently.
Keras kernel (in, 3H) and recurrent_kernel (H, 3H) hold the gates in the order z, r, h and one bias
(2, 3H) whose rows are the input and recurrent biases; torch's weight_ih_l0 (3H, in) and weight_hh_l0
(3H, H) hold r, z, n, with bias_ih_l0 and bias_hh_l0 apart. The weight map transposes, reorders the gate
blocks and splits (or stacks) the bias; a bidirectional layer adds torch's *_reverse tensors.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from weightmap import Row, Transform, row
from weightmap import dense as dense_rows
from weightmap import embedding as embedding_rows
from zoo.nlp.seq2seq.config import ATTENTION_MASK_VALUE, Config


def linear_init(fan_in: int) -> dict:
    """torch's nn.Linear initialisation, U(+-1/sqrt(fan_in)), for kernel and bias."""
    bound = 1.0 / math.sqrt(fan_in)
    return {
        "kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        "bias_initializer": keras.initializers.RandomUniform(-bound, bound),
    }


def gru_init(config: Config) -> dict:
    """torch's nn.GRU / nn.GRUCell initialisation, U(+-1/sqrt(H)) for every tensor; torch's formulation."""
    uniform = keras.initializers.RandomUniform(
        -1.0 / math.sqrt(config.hidden_size), 1.0 / math.sqrt(config.hidden_size)
    )
    return {
        "activation": "tanh",
        "recurrent_activation": "sigmoid",
        "reset_after": config.gru_reset_after,
        "kernel_initializer": uniform,
        "recurrent_initializer": uniform,
        "bias_initializer": uniform,
    }


def embedding_init(config: Config) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(0.0, config.embedding_init_std)


class Dropout(layers.Layer):
    """Dropout with a named RNG state (keras.layers.Dropout's path carries a process-wide counter)."""

    def __init__(self, rate: float, seed: int, name: str):
        super().__init__(name=name)
        self.rate = rate
        self.supports_masking = True  # passes the GRU's mask on, as keras.layers.Dropout does
        self.seed_generator = keras.random.SeedGenerator(seed, name=f"{name}_seed")

    def call(self, x, training=False):
        return (
            keras.random.dropout(x, self.rate, seed=self.seed_generator) if training and self.rate > 0 else x
        )


class Encoder(layers.Layer):
    """Embedding, then a (bidirectional, stacked) GRU over the real tokens of each source."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.embedding = layers.Embedding(
            config.src_vocab_size,
            config.embedding_dim,
            embeddings_initializer=embedding_init(config),
            name="embedding",
        )
        self.dropout = Dropout(config.embedding_dropout, config.seed, name="encoder_dropout")
        self.rnn = []
        for i in range(config.encoder_layers):
            gru = layers.GRU(
                config.hidden_size,
                return_sequences=True,
                return_state=True,
                name=f"gru_{i}",
                **gru_init(config),
            )
            self.rnn.append(
                layers.Bidirectional(gru, merge_mode="concat", name=f"rnn_{i}")
                if config.bidirectional
                else gru
            )
        self.rnn_dropout = Dropout(config.rnn_dropout, config.seed + 1, name="encoder_rnn_dropout")

    def build(self, src_shape, src_mask_shape=None):
        pass  # each sub-layer builds on its first call, its input width known then

    def call(self, src, src_mask, training=False):
        x = self.dropout(self.embedding(src), training=training)  # (B, S, D)
        # The mask keeps each direction on the real tokens: a masked step carries the state through
        # unchanged, so the backward GRU starts at the last real token.
        for i, rnn in enumerate(self.rnn):
            if i > 0:
                x = self.rnn_dropout(x, training=training)
            x, *final = rnn(x, mask=src_mask, training=training)  # (B, S, E), directions x (B, H)
        final = ops.concatenate(final, axis=-1)  # top layer, both directions: (B, E)
        return x, final


class AdditiveAttention(layers.Layer):
    """score(s, h_j) = v^T tanh(W_q s + W_k h_j), softmax over the real source positions.
    The keys W_k h_j are computed once per source, by Seq2Seq.encode (Seq2Seq.key_proj)."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.query_proj = layers.Dense(
            config.attention_dim, use_bias=False, name="query_proj", **linear_init(config.hidden_size)
        )  # W_q
        self.score_proj = layers.Dense(
            1, use_bias=False, name="score_proj", **linear_init(config.attention_dim)
        )  # v

    def call(self, query, keys, values, src_mask):
        # query (B, H): the decoder state; keys (B, S, A) = W_k h, computed once per source; values (B, S, E)
        scores = self.score_proj(ops.tanh(self.query_proj(query)[:, None, :] + keys))[..., 0]  # (B, S)
        scores = ops.where(src_mask, scores, ops.full_like(scores, ATTENTION_MASK_VALUE))
        weights = ops.softmax(scores, axis=-1)  # (B, S)
        context = ops.sum(weights[..., None] * values, axis=1)  # (B, E)
        return context, weights


class Decoder(layers.Layer):
    """One step: attend with the previous state, feed [y_{t-1}; context] to the GRU, read out logits."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.embedding = layers.Embedding(
            config.tgt_vocab_size,
            config.embedding_dim,
            embeddings_initializer=embedding_init(config),
            name="embedding",
        )
        self.dropout = Dropout(config.embedding_dropout, config.seed + 2, name="decoder_dropout")
        self.attention = AdditiveAttention(config, name="attention")
        self.rnn = [
            layers.GRUCell(config.hidden_size, name=f"rnn_{i}", **gru_init(config))
            for i in range(config.decoder_layers)
        ]
        self.rnn_dropout = Dropout(config.rnn_dropout, config.seed + 3, name="decoder_rnn_dropout")
        # The readout sees the new state, the context and the previous token, as in the paper.
        self.out_proj = layers.Dense(
            config.tgt_vocab_size,
            name="out_proj",
            **linear_init(config.hidden_size + config.encoder_dim + config.embedding_dim),
        )

    def call(self, tokens, hidden, keys, values, src_mask, training=False):
        # tokens (B,): y_{t-1}; hidden: decoder_layers states (B, H), the last one is s_{t-1}
        embedded = self.dropout(self.embedding(tokens), training=training)  # (B, D)
        context, weights = self.attention(hidden[-1], keys, values, src_mask)  # (B, E), (B, S)
        x = ops.concatenate([embedded, context], axis=-1)  # (B, D + E)
        new_hidden = []
        for i, cell in enumerate(self.rnn):
            if i > 0:
                x = self.rnn_dropout(x, training=training)
            x, _ = cell(x, hidden[i], training=training)  # (B, H)
            new_hidden.append(x)
        readout = self.rnn_dropout(
            ops.concatenate([x, context, embedded], axis=-1), training=training
        )  # (B, H + E + D)
        return self.out_proj(readout), new_hidden, weights  # (B, V), [(B, H)], (B, S)


class Seq2Seq(keras.Model):
    def __init__(self, config: Config):
        super().__init__(name="seq2seq")
        self.config = config
        self.encoder = Encoder(config, name="encoder")
        # s_0 = tanh(W_s [h_fwd; h_bwd]) for every decoder layer (the paper: tanh(W_s h_bwd_1)).
        self.bridge = layers.Dense(
            config.decoder_layers * config.hidden_size, name="bridge", **linear_init(config.encoder_dim)
        )
        self.key_proj = layers.Dense(
            config.attention_dim, use_bias=False, name="key_proj", **linear_init(config.encoder_dim)
        )  # the attention's W_k
        self.decoder = Decoder(config, name="decoder")

    def encode(self, src, src_mask, training=False):
        values, final = self.encoder(src, src_mask, training=training)  # (B, S, E), (B, E)
        keys = self.key_proj(values)  # (B, S, A): W_k h, once per source
        hidden = ops.tanh(self.bridge(final))  # (B, layers * H)
        hidden = ops.reshape(
            hidden, (-1, self.config.decoder_layers, self.config.hidden_size)
        )  # (B, layers, H)
        return keys, values, [hidden[:, i] for i in range(self.config.decoder_layers)]

    def call(self, src, src_mask, tgt_in, training=False):
        keys, values, hidden = self.encode(src, src_mask, training=training)
        if tgt_in.shape[1] is None:
            raise ValueError(
                "the Keras twin unrolls the decoder over the target length, which must be static"
            )
        logits, attention = [], []
        for t in range(tgt_in.shape[1]):  # teacher forcing: step t reads the reference token t - 1
            step_logits, hidden, weights = self.decoder(
                tgt_in[:, t], hidden, keys, values, src_mask, training=training
            )
            logits.append(step_logits)
            attention.append(weights)
        return ops.stack(logits, axis=1), ops.stack(attention, axis=1)  # (B, T, V), (B, T, S)


def gru_cells(model: Seq2Seq) -> dict[str, layers.GRUCell]:
    """Every GRU cell by its weight-map path."""
    config, cells = model.config, {}
    for i, rnn in enumerate(model.encoder.rnn):
        if config.bidirectional:
            cells[f"seq2seq/encoder/rnn_{i}/forward_gru_{i}/gru_cell"] = rnn.forward_layer.cell
            cells[f"seq2seq/encoder/rnn_{i}/backward_gru_{i}/gru_cell"] = rnn.backward_layer.cell
        else:
            cells[f"seq2seq/encoder/gru_{i}/gru_cell"] = rnn.cell
    for i, cell in enumerate(model.decoder.rnn):
        cells[f"seq2seq/decoder/rnn_{i}"] = cell
    return cells


def build_model(config: Config) -> Seq2Seq:
    model = Seq2Seq(config)
    src, src_mask = np.full((1, 2), 4, np.int64), np.ones((1, 2), bool)
    model(src, src_mask, np.full((1, 1), 2, np.int64))  # creates the variables
    for path, cell in gru_cells(model).items():
        # Keras' GRU cell always owns a dropout RNG state whose path carries a process-wide counter
        # ("seed_generator_7/seed_generator_state"); a stable path lets the weight map name it.
        cell.seed_generator.state._path = f"{path}/seed_generator_state"
    return model


# ---- weight map -------------------------------------------------------------------------------------


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
# Dropout RNG counters: Keras-only state, not weights; neither exported nor imported.
KERAS_RNG = Transform("keras_only_rng_state", lambda arrays: [], lambda arrays: [])


def gru_rows(keras_cell: str, canonical: str, suffix: str) -> list[Row]:
    """One GRU (one direction of one layer): kernel, recurrent kernel, the two biases, the RNG state."""
    return [
        row(f"{keras_cell}/kernel", f"{canonical}.weight_ih{suffix}", GRU_KERNEL),  # (in, 3H) <-> (3H, in)
        row(
            f"{keras_cell}/recurrent_kernel", f"{canonical}.weight_hh{suffix}", GRU_KERNEL
        ),  # (H, 3H) <-> (3H, H)
        row(f"{keras_cell}/bias", (f"{canonical}.bias_ih{suffix}", f"{canonical}.bias_hh{suffix}"), GRU_BIAS),
        row(f"{keras_cell}/seed_generator_state", (), KERAS_RNG),
    ]


def weight_map(config: Config) -> list[Row]:
    """Keras variable path -> torch state_dict name -> transform, one row per tensor."""
    rows = embedding_rows("seq2seq/encoder/embedding", "encoder.embedding")
    for i in range(config.encoder_layers):
        if config.bidirectional:
            rows += gru_rows(f"seq2seq/encoder/rnn_{i}/forward_gru_{i}/gru_cell", "encoder.rnn", f"_l{i}")
            rows += gru_rows(
                f"seq2seq/encoder/rnn_{i}/backward_gru_{i}/gru_cell", "encoder.rnn", f"_l{i}_reverse"
            )
        else:
            rows += gru_rows(f"seq2seq/encoder/gru_{i}/gru_cell", "encoder.rnn", f"_l{i}")
    rows += dense_rows("seq2seq/bridge", "bridge")
    rows += dense_rows("seq2seq/key_proj", "key_proj", bias=False)
    rows += embedding_rows("seq2seq/decoder/embedding", "decoder.embedding")
    rows += dense_rows("seq2seq/decoder/attention/query_proj", "decoder.attention.query_proj", bias=False)
    rows += dense_rows("seq2seq/decoder/attention/score_proj", "decoder.attention.score_proj", bias=False)
    for i in range(config.decoder_layers):
        rows += gru_rows(f"seq2seq/decoder/rnn_{i}", f"decoder.rnn.{i}", "")
    rows += dense_rows("seq2seq/decoder/out_proj", "decoder.out_proj")
    for name in ("encoder_dropout", "encoder_rnn_dropout", "decoder_dropout", "decoder_rnn_dropout"):
        rows.append(row(f"{name}_seed/seed_generator_state", (), KERAS_RNG))
    return rows


def call(model: Seq2Seq, batch: dict, training: bool = False) -> dict:
    logits, attention = model(batch["src"], batch["src_mask"], batch["tgt_in"], training=training)
    return {"logits": logits, "attention": attention}


def compute_loss(outputs: dict, batch: dict, config: Config):
    """Cross-entropy per target token, averaged over the real (unpadded) tokens of the batch."""
    logits = outputs["logits"]  # (B, T, V)
    labels = ops.one_hot(batch["tgt_out"], config.tgt_vocab_size, dtype=logits.dtype)  # (B, T, V)
    losses = keras.losses.categorical_crossentropy(
        labels, logits, from_logits=True, label_smoothing=config.label_smoothing
    )  # (B, T)
    mask = ops.cast(batch["tgt_mask"], losses.dtype)
    return ops.sum(losses * mask) / ops.maximum(ops.sum(mask), 1.0)


# ---- decoding: the step functions of shared/decoding.py (numpy in, numpy out) ----------------------


def _numpy(tensors: dict) -> dict:
    return {k: np.asarray(ops.convert_to_numpy(v)) for k, v in tensors.items()}


def encode(model: Seq2Seq, src: np.ndarray, src_mask: np.ndarray) -> tuple[dict, dict]:
    keys, values, hidden = model.encode(
        ops.convert_to_tensor(src), ops.convert_to_tensor(src_mask), training=False
    )
    memory = {"keys": keys, "values": values, "src_mask": ops.convert_to_tensor(src_mask)}
    state = {"hidden": ops.stack(hidden, axis=1)}  # (B, layers, H)
    return _numpy(memory), _numpy(state)


def decode_step(model: Seq2Seq, memory: dict, state: dict, tokens: np.ndarray):
    hidden = [
        ops.convert_to_tensor(state["hidden"][:, i]) for i in range(state["hidden"].shape[1])
    ]  # layers x (N, H)
    logits, hidden, weights = model.decoder(
        ops.convert_to_tensor(tokens),
        hidden,
        ops.convert_to_tensor(memory["keys"]),
        ops.convert_to_tensor(memory["values"]),
        ops.convert_to_tensor(memory["src_mask"]),
        training=False,
    )
    state = _numpy({"hidden": ops.stack(hidden, axis=1)})  # (N, layers, H)
    return np.asarray(ops.convert_to_numpy(logits)), state, np.asarray(ops.convert_to_numpy(weights))
