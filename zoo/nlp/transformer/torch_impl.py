"""Encoder-decoder Transformer (Vaswani et al. 2017) in PyTorch, on torch.nn.MultiheadAttention.

Parameter names are torch.nn.Transformer's (encoder.layers.0.self_attn.in_proj_weight, decoder.layers.0.
multihead_attn.out_proj.weight, linear1, norm3 ...), so the encoder and decoder of a batch_first
nn.Transformer state_dict load here. Dropout sits on the summed embeddings, on the attention probabilities
and on each sublayer's output, none inside the feed-forward (nn.TransformerEncoderLayer adds one there, so
the layers are written out). keras_impl.py mirrors this file class for class and attribute for attribute.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import Config

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}  # F.gelu is the exact erf form, as keras.activations.gelu


class SinePositionEncoding(nn.Module):
    """Sinusoidal positions (section 3.5): sin on even features, cos on odd ones, no weights."""

    def __init__(self, max_wavelength: float):
        super().__init__()
        self.max_wavelength = max_wavelength

    def forward(self, x):
        length, dim = x.shape[1], x.shape[2]  # x: (B, T, E); computed in x's dtype, as in Keras
        positions = torch.arange(length, device=x.device).to(x.dtype)  # (T,)
        features = torch.arange(dim, device=x.device)
        min_freq = torch.tensor(1.0 / self.max_wavelength, dtype=x.dtype, device=x.device)
        timescales = torch.pow(min_freq, (2 * (features // 2)).to(x.dtype) / dim)  # (E,)
        angles = positions[:, None] * timescales[None, :]  # (T, E)
        cos_mask = (features % 2).to(x.dtype)
        encoding = torch.sin(angles) * (1 - cos_mask) + torch.cos(angles) * cos_mask  # (T, E)
        return encoding.expand_as(x)  # (B, T, E)


class PositionEmbedding(nn.Module):
    """Learned positions: a (length, E) table, sliced to the sequence."""

    def __init__(self, length: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(length, dim))

    def forward(self, x):
        return self.weight[: x.shape[1]].expand_as(x)  # (B, T, E)


def embedding(config: Config, vocab_size: int) -> nn.Embedding:
    return nn.Embedding(vocab_size, config.d_model)


def positions(config: Config, length: int) -> nn.Module:
    if config.positions == "learned":
        return PositionEmbedding(length, config.d_model)
    return SinePositionEncoding(config.max_wavelength)


def attention(config: Config) -> nn.MultiheadAttention:
    return nn.MultiheadAttention(config.d_model, config.num_heads, dropout=config.dropout, batch_first=True)


def layer_norm(config: Config) -> nn.LayerNorm:
    return nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)


class ResidualLayer(nn.Module):
    """What EncoderLayer and DecoderLayer share: the residual sublayer and the feed-forward."""

    def __init__(self, config: Config):
        super().__init__()
        self.norm_first, self.activation = config.norm_first, ACTIVATIONS[config.activation]

    def sublayer(self, x, norm: nn.LayerNorm, dropout: nn.Dropout, f):
        """Post-LN (the paper): norm(x + dropout(f(x))); pre-LN: x + dropout(f(norm(x))).
        f returns (y, attention probabilities or None)."""
        y, scores = f(norm(x) if self.norm_first else x)
        x = x + dropout(y)
        return x if self.norm_first else norm(x), scores

    def feed_forward(self, x):
        return self.linear2(self.activation(self.linear1(x))), None  # (B, T, F) -> (B, T, E); no map


class EncoderLayer(ResidualLayer):
    """Self-attention, then feed-forward, each a residual sublayer."""

    def __init__(self, config: Config):
        super().__init__(config)
        self.self_attn = attention(config)
        self.norm1 = layer_norm(config)
        self.dropout1 = nn.Dropout(config.dropout)
        self.linear1 = nn.Linear(config.d_model, config.ffn_dim)
        self.linear2 = nn.Linear(config.ffn_dim, config.d_model)
        self.norm2 = layer_norm(config)
        self.dropout2 = nn.Dropout(config.dropout)

    def forward(self, x, padding_mask, need_weights: bool = False):
        # x: (B, S, E); padding_mask: (B, S), True on real tokens (torch masks where True, hence ~).
        x, scores = self.sublayer(x, self.norm1, self.dropout1, lambda y: self.self_attn(
            y, y, y, key_padding_mask=~padding_mask, need_weights=need_weights,
            average_attn_weights=False))  # (B, S, E); (B, H, S, S)
        x, _ = self.sublayer(x, self.norm2, self.dropout2, self.feed_forward)  # (B, S, E)
        return x, scores


class DecoderLayer(ResidualLayer):
    """Causal self-attention, cross-attention over the encoder's output, feed-forward."""

    def __init__(self, config: Config):
        super().__init__(config)
        self.self_attn = attention(config)
        self.norm1 = layer_norm(config)
        self.dropout1 = nn.Dropout(config.dropout)
        self.multihead_attn = attention(config)
        self.norm2 = layer_norm(config)
        self.dropout2 = nn.Dropout(config.dropout)
        self.linear1 = nn.Linear(config.d_model, config.ffn_dim)
        self.linear2 = nn.Linear(config.ffn_dim, config.d_model)
        self.norm3 = layer_norm(config)
        self.dropout3 = nn.Dropout(config.dropout)

    def forward(self, x, memory, tgt_padding_mask, src_padding_mask, need_weights: bool = False):
        # x: (B, T, E); memory: (B, S, E); masks (B, T) and (B, S), True on real tokens.
        length = x.shape[1]
        future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)  # (T, T) True: j > i
        x, self_scores = self.sublayer(x, self.norm1, self.dropout1, lambda y: self.self_attn(
            y, y, y, attn_mask=future, key_padding_mask=~tgt_padding_mask, need_weights=need_weights,
            average_attn_weights=False))  # (B, T, E); (B, H, T, T)
        x, cross_scores = self.sublayer(x, self.norm2, self.dropout2, lambda y: self.multihead_attn(
            y, memory, memory, key_padding_mask=~src_padding_mask, need_weights=need_weights,
            average_attn_weights=False))  # (B, T, E); (B, H, T, S)
        x, _ = self.sublayer(x, self.norm3, self.dropout3, self.feed_forward)  # (B, T, E)
        return x, self_scores, cross_scores


class Encoder(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for i in range(config.num_encoder_layers))
        # Pre-LN leaves the residual stream un-normalised: one LayerNorm closes the stack.
        self.norm = layer_norm(config) if config.norm_first else None

    def forward(self, x, padding_mask, need_weights: bool = False):
        maps = []
        for layer in self.layers:
            x, scores = layer(x, padding_mask, need_weights=need_weights)  # (B, S, E); (B, H, S, S)
            maps.append(scores)
        if self.norm is not None:
            x = self.norm(x)
        return x, maps


class Decoder(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config) for i in range(config.num_decoder_layers))
        self.norm = layer_norm(config) if config.norm_first else None

    def forward(self, x, memory, tgt_padding_mask, src_padding_mask, need_weights: bool = False):
        maps = []
        for layer in self.layers:
            x, self_scores, cross_scores = layer(x, memory, tgt_padding_mask, src_padding_mask,
                                                 need_weights=need_weights)  # (B, T, E)
            maps.append((self_scores, cross_scores))  # (B, H, T, T), (B, H, T, S)
        if self.norm is not None:
            x = self.norm(x)
        return x, maps


class Transformer(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.src_embed = embedding(config, config.src_vocab_size)
        self.tgt_embed = embedding(config, config.tgt_vocab_size)
        self.src_positions = positions(config, config.max_src_len)
        self.tgt_positions = positions(config, config.max_tgt_len)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # Tied: the target embedding is the output projection; else a separate bias-free projection.
        self.generator = None if config.tie_output_projection else nn.Linear(
            config.d_model, config.tgt_vocab_size, bias=False)
        self.reset_parameters(config)

    def reset_parameters(self, config: Config):
        """Config's initialisation (Keras' defaults for its layers): torch's module defaults are replaced."""
        for module in self.modules():
            if isinstance(module, nn.MultiheadAttention):
                for block in module.in_proj_weight.chunk(3):  # Xavier per (E, E) projection, not over (3E, E)
                    nn.init.xavier_uniform_(block)
                nn.init.xavier_uniform_(module.out_proj.weight)
                nn.init.zeros_(module.in_proj_bias)
                nn.init.zeros_(module.out_proj.bias)
            elif isinstance(module, nn.Linear) and module is not self.generator:
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for table in (self.src_embed, self.tgt_embed, self.src_positions, self.tgt_positions, self.generator):
            if isinstance(table, nn.Embedding | PositionEmbedding | nn.Linear):
                nn.init.normal_(table.weight, std=config.embedding_std)

    def embed(self, tokens, embedding: nn.Module, table: nn.Module):
        x = embedding(tokens) * self.config.embedding_scale  # (B, T, E)
        return self.embed_dropout(x + table(x))

    def encode(self, src, src_mask, need_weights: bool = False):
        return self.encoder(self.embed(src, self.src_embed, self.src_positions), src_mask.bool(),
                            need_weights=need_weights)  # (B, S, E), maps

    def decode(self, tgt_in, memory, tgt_mask, src_mask, need_weights: bool = False):
        x, maps = self.decoder(self.embed(tgt_in, self.tgt_embed, self.tgt_positions), memory,
                               tgt_mask.bool(), src_mask.bool(),
                               need_weights=need_weights)  # (B, T, E)
        if self.generator is not None:
            return self.generator(x), maps  # (B, T, V) logits
        return F.linear(x, self.tgt_embed.weight), maps  # (B, T, V) logits: x @ (V, E)^T

    def forward(self, src, src_mask, tgt_in, tgt_mask):
        memory, _ = self.encode(src, src_mask)
        logits, _ = self.decode(tgt_in, memory, tgt_mask, src_mask)
        return logits


def build_model(config: Config) -> Transformer:
    return Transformer(config)


def call(model: Transformer, batch: dict, training: bool = False) -> dict:
    model.config.check_lengths(batch["src"].shape[1], batch["tgt_in"].shape[1])
    return {"logits": model(batch["src"], batch["src_mask"], batch["tgt_in"], batch["tgt_mask"])}


def compute_loss(outputs: dict, batch: dict, config: Config) -> torch.Tensor:
    """Label-smoothed cross-entropy, averaged over the real (unpadded) target tokens."""
    logits = outputs["logits"]  # (B, T, V)
    losses = F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten(), reduction="none",
                             label_smoothing=config.label_smoothing)  # (B * T,)
    mask = batch["tgt_mask"].flatten().to(losses.dtype)
    return (losses * mask).sum() / mask.sum().clamp(min=1.0)


# ---- decoding: numpy in, numpy out (the zoo's shared/decoding.py drives encode and decode_step) -------

def tensor(model: Transformer, array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(next(model.parameters()).device)


@torch.no_grad()
def encode(model: Transformer, src: np.ndarray, src_mask: np.ndarray) -> tuple[dict, dict]:
    model.config.check_lengths(src.shape[1])
    model.eval()
    memory, _ = model.encode(tensor(model, src), tensor(model, src_mask))  # (N, S, E)
    state = {"prefix": np.zeros((len(src), 0), np.int64)}  # the decoder's input so far: BOS, y1, ..., y_t-1
    return {"memory": memory.cpu().numpy(), "src_mask": np.asarray(src_mask, bool)}, state


@torch.no_grad()
def decode_step(model: Transformer, memory: dict, state: dict, tokens: np.ndarray):
    """Re-reads the whole prefix (no key/value cache): causal masking makes position t's output the same."""
    prefix = np.concatenate([state["prefix"], tokens[:, None]], axis=1)  # (N, t)
    model.config.check_lengths(tgt_length=prefix.shape[1])
    model.eval()
    logits, maps = model.decode(tensor(model, prefix), tensor(model, memory["memory"]),
                                tensor(model, np.ones(prefix.shape, bool)),
                                tensor(model, memory["src_mask"]), need_weights=True)  # (N, t, V)
    attention = maps[-1][1][:, :, -1].mean(dim=1)  # new token's last-layer cross-attention: (N, S)
    return logits[:, -1].cpu().numpy(), {"prefix": prefix}, attention.cpu().numpy()


@torch.no_grad()
def attention_maps(model: Transformer, batch: dict) -> dict[str, np.ndarray]:
    """Eval-mode attention probabilities of every layer and head: {name: (L, B, H, T_query, T_key)}."""
    model.config.check_lengths(batch["src"].shape[1], batch["tgt_in"].shape[1])
    model.eval()
    memory, encoder_maps = model.encode(tensor(model, batch["src"]), tensor(model, batch["src_mask"]),
                                        need_weights=True)
    _, decoder_maps = model.decode(tensor(model, batch["tgt_in"]), memory, tensor(model, batch["tgt_mask"]),
                                   tensor(model, batch["src_mask"]), need_weights=True)
    maps = {"encoder_self": encoder_maps, "decoder_self": [m[0] for m in decoder_maps],
            "cross": [m[1] for m in decoder_maps]}
    return {name: torch.stack(per_layer).cpu().numpy() for name, per_layer in maps.items()}
