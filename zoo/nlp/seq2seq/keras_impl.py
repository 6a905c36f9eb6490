"""GRU encoder-decoder with Bahdanau (additive) attention (Bahdanau, Cho and Bengio 2015) in Keras 3.
weights.py maps the variables to torch_impl.py's names. Mirrors torch_impl.py class for class.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from torchlike import GRU, Dropout, Embedding, GRUCell, Linear

from .config import ATTENTION_MASK_VALUE, Config


class Encoder(layers.Layer):
    """Embedding, then a (bidirectional, stacked) GRU over the real tokens of each source."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.embedding = Embedding(
            config.src_vocab_size, config.embedding_dim, config.embedding_init_std, name="embedding"
        )
        self.dropout = Dropout(config.embedding_dropout, config.seed, name="encoder_dropout")
        # torchlike.GRU applies its dropout to the outputs of every layer but the last, as nn.GRU does.
        self.rnn = GRU(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.encoder_layers,
            bidirectional=config.bidirectional,
            seed=config.seed + 1,
            dropout=config.rnn_dropout if config.encoder_layers > 1 else 0.0,
            name="rnn",
        )

    def call(self, src, src_mask):
        x = self.dropout(self.embedding(src))  # (B, S, D)
        # The mask runs each direction over the real tokens only; the backward GRU starts at the last one.
        outputs, final = self.rnn(x, mask=src_mask)  # (B, S, E), final: (layers * directions, B, H)
        directions = 2 if self.rnn.bidirectional else 1
        final = ops.concatenate(ops.unstack(final[-directions:]), axis=-1)  # top layer's directions: (B, E)
        return outputs, final


class AdditiveAttention(layers.Layer):
    """score(s, h_j) = v^T tanh(W_q s + W_k h_j), softmax over the real source positions.
    The keys W_k h_j are computed once per source, by Seq2Seq.encode (Seq2Seq.key_proj)."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        # W_q and v of the score; W_k is Seq2Seq.key_proj.
        self.query_proj = Linear(config.hidden_size, config.attention_dim, bias=False, name="query_proj")
        self.score_proj = Linear(config.attention_dim, 1, bias=False, name="score_proj")

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
        self.embedding = Embedding(
            config.tgt_vocab_size, config.embedding_dim, config.embedding_init_std, name="embedding"
        )
        self.dropout = Dropout(config.embedding_dropout, config.seed + 2, name="decoder_dropout")
        self.attention = AdditiveAttention(config, name="attention")
        self.rnn = list(
            GRUCell(
                config.embedding_dim + config.encoder_dim if i == 0 else config.hidden_size,
                config.hidden_size,
                name=f"rnn_{i}",
            )
            for i in range(config.decoder_layers)
        )
        self.rnn_dropout = Dropout(config.rnn_dropout, config.seed + 3, name="decoder_rnn_dropout")
        # The readout sees the new state, the context and the previous token, as in the paper.
        self.out_proj = Linear(
            config.hidden_size + config.encoder_dim + config.embedding_dim, config.tgt_vocab_size,
            name="out_proj",
        )

    def call(self, tokens, hidden, keys, values, src_mask):
        # tokens (B,): y_{t-1}; hidden: decoder_layers states (B, H), the last one is s_{t-1}
        embedded = self.dropout(self.embedding(tokens))  # (B, D)
        context, weights = self.attention(hidden[-1], keys, values, src_mask)  # (B, E), (B, S)
        x = ops.concatenate([embedded, context], axis=-1)  # (B, D + E)
        new_hidden = []
        for i, cell in enumerate(self.rnn):
            if i > 0:
                x = self.rnn_dropout(x)
            x = cell(x, hidden[i])  # (B, H)
            new_hidden.append(x)
        readout = self.rnn_dropout(ops.concatenate([x, context, embedded], axis=-1))  # (B, H + E + D)
        return self.out_proj(readout), new_hidden, weights  # (B, V), [(B, H)], (B, S)


class Seq2Seq(keras.Model):
    def __init__(self, config: Config):
        super().__init__(name="seq2seq")
        self.config = config
        self.encoder = Encoder(config, name="encoder")
        # s_0 = tanh(W_s [h_fwd; h_bwd]) for every decoder layer (the paper: tanh(W_s h_bwd_1)).
        self.bridge = Linear(config.encoder_dim, config.decoder_layers * config.hidden_size, name="bridge")
        self.key_proj = Linear(config.encoder_dim, config.attention_dim, bias=False, name="key_proj")  # W_k
        self.decoder = Decoder(config, name="decoder")

    def encode(self, src, src_mask):
        """What every decoder step reads (memory) and its first state: dicts of batch-first tensors."""
        values, final = self.encoder(src, src_mask)  # (B, S, E), (B, E)
        keys = self.key_proj(values)  # (B, S, A): W_k h, once per source
        hidden = ops.tanh(self.bridge(final))  # (B, layers * H), then (B, layers, H)
        hidden = ops.reshape(hidden, (-1, self.config.decoder_layers, self.config.hidden_size))
        return {"keys": keys, "values": values, "src_mask": src_mask}, {"hidden": hidden}

    def decode_step(self, memory, state, tokens):
        """One step for every row (greedy and beam search): next-token logits, new state, attention."""
        hidden = ops.unstack(state["hidden"], axis=1)  # layers x (B, H)
        logits, hidden, weights = self.decoder(
            tokens, hidden, memory["keys"], memory["values"], memory["src_mask"]
        )
        return logits, {"hidden": ops.stack(hidden, axis=1)}, weights  # (B, V), (B, layers, H), (B, S)

    def call(self, src, src_mask, tgt_in, training=False):  # sub-layers read `training` from Keras' context
        memory, state = self.encode(src, src_mask)
        keys, values, hidden = memory["keys"], memory["values"], ops.unstack(state["hidden"], axis=1)
        logits, attention = [], []
        if tgt_in.shape[1] is None:
            raise ValueError("the decoder is unrolled over the target length, which must be static")
        for t in range(tgt_in.shape[1]):  # teacher forcing: step t reads the reference token t - 1
            step_logits, hidden, weights = self.decoder(tgt_in[:, t], hidden, keys, values, src_mask)
            logits.append(step_logits)
            attention.append(weights)
        return ops.stack(logits, axis=1), ops.stack(attention, axis=1)  # (B, T, V), (B, T, S)


def build_model(config: Config) -> Seq2Seq:
    model = Seq2Seq(config)
    model(ops.full((1, 2), 4, "int64"), ops.ones((1, 2), "bool"), ops.full((1, 1), 2, "int64"))  # variables
    return model


def call(model: Seq2Seq, batch: dict, training: bool = False) -> dict:
    logits, attention = model(batch["src"], batch["src_mask"], batch["tgt_in"], training=training)
    return {"logits": logits, "attention": attention}


def compute_loss(outputs: dict, batch: dict, config: Config):
    """Cross-entropy per target token, averaged over the real (unpadded) tokens of the batch."""
    logits = outputs["logits"]  # (B, T, V)
    labels = ops.one_hot(batch["tgt_out"], config.tgt_vocab_size, dtype=logits.dtype)  # (B, T, V)
    losses = keras.losses.categorical_crossentropy(
        labels,
        logits,
        from_logits=True,
        label_smoothing=config.label_smoothing,
    )  # (B, T)
    mask = ops.cast(batch["tgt_mask"], losses.dtype)
    return ops.sum(losses * mask) / ops.maximum(ops.sum(mask), 1.0)
