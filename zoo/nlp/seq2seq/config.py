"""Every hyperparameter of the GRU encoder-decoder with Bahdanau attention, read by both twins and trainers."""

from __future__ import annotations

from dataclasses import dataclass

# Attention scores at padded source positions before the softmax: exp(-1e9 - max) is exactly 0 in float32.
ATTENTION_MASK_VALUE = -1e9


@dataclass
class Config:
    # Vocabularies and lengths. The translation task trains its tokenizers to at most these sizes.
    src_vocab_size: int = 128
    tgt_vocab_size: int = 128
    max_src_len: int = 32  # source tokens, EOS included; longer pairs are left out of the data
    max_tgt_len: int = 32  # target tokens, BOS (or EOS) included; decoding stops after this many tokens
    pad_id: int = 0  # the tokenizers' [PAD]
    # Architecture (Bahdanau, Cho and Bengio 2015; the paper uses 620 / 1000 / 1000).
    embedding_dim: int = 64
    hidden_size: int = 128  # GRU units per direction, encoder and decoder
    encoder_layers: int = 1
    decoder_layers: int = 1
    bidirectional: bool = True  # the paper's encoder reads the source both ways
    attention_dim: int = 128  # width of the additive score: v^T tanh(W_q s + W_k h)
    embedding_dropout: float = 0.1
    rnn_dropout: float = 0.1  # between stacked GRU layers, and on the decoder's readout
    # The GRU formulation both twins compute. torch.nn.GRU applies the reset gate after the recurrent
    # matmul (n = tanh(W_in x + b_in + r * (W_hn h + b_hn))): Keras calls that reset_after=True (its default
    # in Keras 3; Keras 2's CuDNN-incompatible reset_after=False has no torch equivalent).
    gru_reset_after: bool = True
    # Initialisers, the same in both twins: torch's defaults, written out. GRU weights and biases and
    # Linear layers U(-1/sqrt(fan), 1/sqrt(fan)); embeddings N(0, 1). Keras would use Glorot-uniform
    # kernels, orthogonal recurrent kernels, zero biases and U(-0.05, 0.05) embeddings.
    embedding_init_std: float = 1.0
    # Decoding (evaluate() and the decoding identity check).
    decoding: str = "greedy"  # "greedy" or "beam"
    beam_size: int = 4
    length_penalty: float = 0.0  # GNMT alpha; 0 ranks beams by their summed log-probability
    # Recipe for numbers-en-fr on a laptop CPU (the model card's results come from these values). Both
    # trainers read these fields; the zoo's harness checks their ranges (shared/recipe.py RECIPE_FIELDS).
    epochs: int = 2  # one epoch already reaches ~99.9% exact match on CPU; the second is margin
    batch_size: int = 64
    eval_batch_size: int = 256
    optimizer: str = "adamw"  # "adamw" | "adam" | "sgd"
    lr: float = 3e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8  # torch's default (Keras' is 1e-7)
    sgd_momentum: float = 0.9
    weight_decay: float = 0.0  # decoupled, in both frameworks
    schedule: str = "cosine"  # "constant" | "cosine" | "inverse_sqrt", stepped every optimizer step
    warmup_steps: int = 100
    grad_clip_norm: float = 1.0  # global L2 norm, as RNN training usually needs
    label_smoothing: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        """Raises ValueError with a one-line message naming the field and the fix."""
        for name in ("src_vocab_size", "tgt_vocab_size"):
            if getattr(self, name) < 5:
                raise ValueError(
                    f"{name} must be >= 5 (pad, unknown, BOS, EOS and a word); found {getattr(self, name)}"
                )
        for name in (
            "max_src_len",
            "max_tgt_len",
            "embedding_dim",
            "hidden_size",
            "encoder_layers",
            "decoder_layers",
            "attention_dim",
            "beam_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; found {getattr(self, name)}")
        for name in ("embedding_dropout", "rnn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); found {getattr(self, name)}")
        if not self.gru_reset_after:
            raise ValueError(
                "gru_reset_after=False (Keras 2's GRU) has no torch.nn.GRU equivalent; keep it True"
            )
        if self.decoding not in ("greedy", "beam"):
            raise ValueError(f"decoding must be 'greedy' or 'beam'; found {self.decoding!r}")
        if self.embedding_init_std <= 0:
            raise ValueError(f"embedding_init_std must be > 0; found {self.embedding_init_std}")
        if self.length_penalty < 0:
            raise ValueError(f"length_penalty must be >= 0; found {self.length_penalty}")

    @property
    def encoder_dim(self) -> int:
        """Width of each encoder output (the attention's keys and values): both directions concatenated."""
        return self.hidden_size * (2 if self.bidirectional else 1)
