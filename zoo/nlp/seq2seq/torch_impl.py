"""GRU encoder-decoder with Bahdanau (additive) attention (Bahdanau, Cho and Bengio 2015) in PyTorch.
Parameter names are the canonical weight names. keras_impl.py mirrors this file class for class.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import ATTENTION_MASK_VALUE, Config


class Encoder(nn.Module):
    """Embedding, then a (bidirectional, stacked) GRU over the real tokens of each source."""

    def __init__(self, config: Config):
        super().__init__()
        self.embedding = nn.Embedding(config.src_vocab_size, config.embedding_dim)
        self.dropout = nn.Dropout(config.embedding_dropout)
        # nn.GRU applies its dropout to the outputs of every layer but the last.
        self.rnn = nn.GRU(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.encoder_layers,
            bidirectional=config.bidirectional,
            batch_first=True,
            dropout=config.rnn_dropout if config.encoder_layers > 1 else 0.0,
        )

    def forward(self, src, src_mask):
        x = self.dropout(self.embedding(src))  # (B, S, D)
        # Packing runs each direction over the real tokens only; the backward GRU starts at the last one.
        lengths = src_mask.sum(dim=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        outputs, final = self.rnn(packed)  # final: (layers * directions, B, H)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])  # (B, S, E)
        directions = 2 if self.rnn.bidirectional else 1
        final = torch.cat(list(final[-directions:]), dim=-1)  # top layer's directions: (B, E)
        return outputs, final


class AdditiveAttention(nn.Module):
    """score(s, h_j) = v^T tanh(W_q s + W_k h_j), softmax over the real source positions.
    The keys W_k h_j are computed once per source, by Seq2Seq.encode (Seq2Seq.key_proj)."""

    def __init__(self, config: Config):
        super().__init__()
        # W_q and v of the score; W_k is Seq2Seq.key_proj.
        self.query_proj = nn.Linear(config.hidden_size, config.attention_dim, bias=False)
        self.score_proj = nn.Linear(config.attention_dim, 1, bias=False)

    def forward(self, query, keys, values, src_mask):
        # query (B, H): the decoder state; keys (B, S, A) = W_k h, computed once per source; values (B, S, E)
        scores = self.score_proj(torch.tanh(self.query_proj(query)[:, None, :] + keys))[..., 0]  # (B, S)
        scores = torch.where(src_mask, scores, torch.full_like(scores, ATTENTION_MASK_VALUE))
        weights = torch.softmax(scores, dim=-1)  # (B, S)
        context = torch.sum(weights[..., None] * values, dim=1)  # (B, E)
        return context, weights


class Decoder(nn.Module):
    """One step: attend with the previous state, feed [y_{t-1}; context] to the GRU, read out logits."""

    def __init__(self, config: Config):
        super().__init__()
        self.embedding = nn.Embedding(config.tgt_vocab_size, config.embedding_dim)
        self.dropout = nn.Dropout(config.embedding_dropout)
        self.attention = AdditiveAttention(config)
        self.rnn = nn.ModuleList(
            nn.GRUCell(
                config.embedding_dim + config.encoder_dim if i == 0 else config.hidden_size,
                config.hidden_size,
            )
            for i in range(config.decoder_layers)
        )
        self.rnn_dropout = nn.Dropout(config.rnn_dropout)
        # The readout sees the new state, the context and the previous token, as in the paper.
        self.out_proj = nn.Linear(
            config.hidden_size + config.encoder_dim + config.embedding_dim, config.tgt_vocab_size
        )

    def forward(self, tokens, hidden, keys, values, src_mask):
        # tokens (B,): y_{t-1}; hidden: decoder_layers states (B, H), the last one is s_{t-1}
        embedded = self.dropout(self.embedding(tokens))  # (B, D)
        context, weights = self.attention(hidden[-1], keys, values, src_mask)  # (B, E), (B, S)
        x = torch.cat([embedded, context], dim=-1)  # (B, D + E)
        new_hidden = []
        for i, cell in enumerate(self.rnn):
            if i > 0:
                x = self.rnn_dropout(x)
            x = cell(x, hidden[i])  # (B, H)
            new_hidden.append(x)
        readout = self.rnn_dropout(torch.cat([x, context, embedded], dim=-1))  # (B, H + E + D)
        return self.out_proj(readout), new_hidden, weights  # (B, V), [(B, H)], (B, S)


class Seq2Seq(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        # s_0 = tanh(W_s [h_fwd; h_bwd]) for every decoder layer (the paper: tanh(W_s h_bwd_1)).
        self.bridge = nn.Linear(config.encoder_dim, config.decoder_layers * config.hidden_size)
        self.key_proj = nn.Linear(config.encoder_dim, config.attention_dim, bias=False)  # W_k
        self.decoder = Decoder(config)
        self.reset_parameters(config)

    def reset_parameters(self, config: Config):
        # torch's defaults, written out so keras_impl.py can match them (see Config).
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, config.embedding_init_std)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                nn.init.uniform_(module.weight, -bound, bound)
                if module.bias is not None:
                    nn.init.uniform_(module.bias, -bound, bound)
            elif isinstance(module, nn.GRU | nn.GRUCell):
                bound = 1.0 / math.sqrt(config.hidden_size)
                for tensor in module.parameters():
                    nn.init.uniform_(tensor, -bound, bound)

    def encode(self, src, src_mask):
        """What every decoder step reads (memory) and its first state: dicts of batch-first tensors."""
        values, final = self.encoder(src, src_mask)  # (B, S, E), (B, E)
        keys = self.key_proj(values)  # (B, S, A): W_k h, once per source
        hidden = torch.tanh(self.bridge(final))  # (B, layers * H), then (B, layers, H)
        hidden = hidden.reshape(-1, self.config.decoder_layers, self.config.hidden_size)
        return {"keys": keys, "values": values, "src_mask": src_mask}, {"hidden": hidden}

    def decode_step(self, memory, state, tokens):
        """One step for every row (greedy and beam search): next-token logits, new state, attention."""
        hidden = list(state["hidden"].unbind(dim=1))  # layers x (B, H)
        logits, hidden, weights = self.decoder(
            tokens, hidden, memory["keys"], memory["values"], memory["src_mask"]
        )
        return logits, {"hidden": torch.stack(hidden, dim=1)}, weights  # (B, V), (B, layers, H), (B, S)

    def forward(self, src, src_mask, tgt_in):
        memory, state = self.encode(src, src_mask)
        keys, values, hidden = memory["keys"], memory["values"], list(state["hidden"].unbind(dim=1))
        logits, attention = [], []
        for t in range(tgt_in.shape[1]):  # teacher forcing: step t reads the reference token t - 1
            step_logits, hidden, weights = self.decoder(tgt_in[:, t], hidden, keys, values, src_mask)
            logits.append(step_logits)
            attention.append(weights)
        return torch.stack(logits, dim=1), torch.stack(attention, dim=1)  # (B, T, V), (B, T, S)


def build_model(config: Config) -> Seq2Seq:
    return Seq2Seq(config)


def call(model: Seq2Seq, batch: dict, training: bool = False) -> dict:
    logits, attention = model(batch["src"], batch["src_mask"], batch["tgt_in"])
    return {"logits": logits, "attention": attention}


def compute_loss(outputs: dict, batch: dict, config: Config) -> torch.Tensor:
    """Cross-entropy per target token, averaged over the real (unpadded) tokens of the batch."""
    logits = outputs["logits"]  # (B, T, V)
    losses = F.cross_entropy(
        logits.flatten(0, 1),
        batch["tgt_out"].flatten(),
        reduction="none",
        label_smoothing=config.label_smoothing,
    )  # (B * T,)
    mask = batch["tgt_mask"].flatten().to(losses.dtype)
    return torch.sum(losses * mask) / torch.clamp(torch.sum(mask), min=1.0)

