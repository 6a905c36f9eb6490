"""Every hyperparameter of the encoder-decoder Transformer, read by both twins and both trainers.

Standard library only: the folder lifts out of the zoo (see README.md, "Copying this model"). validate()
raises ValueError with a one-line message; the zoo's CLI prints it and exits with status 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

POSITIONS = ("sinusoidal", "learned")
ACTIVATIONS = ("relu", "gelu")  # gelu is the exact (erf) form in both frameworks


@dataclass
class Config:
    # Vocabularies and lengths (shared/tasks/translation.py trains its tokenizers to at most these sizes).
    src_vocab_size: int = 128
    tgt_vocab_size: int = 128
    max_src_len: int = 32  # source tokens, EOS included: the source's positions; longer input is refused
    max_tgt_len: int = 32  # target tokens, BOS (or EOS) included; decoding stops after this many tokens
    pad_id: int = 0  # the tokenizers' [PAD]: masked as a key everywhere, never a target (tgt_mask)
    # Architecture (Vaswani et al. 2017; the paper's base model is 512 / 8 / 6 / 2048).
    d_model: int = 64
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    ffn_dim: int = 256
    activation: str = "relu"
    dropout: float = 0.1  # embeddings, attention probabilities, and each sublayer's output
    norm_first: bool = False  # False: post-LN as in the paper; True: pre-LN plus a final LayerNorm per stack
    layer_norm_epsilon: float = 1e-5  # torch's default; keras.layers.LayerNormalization's is 1e-3
    positions: str = "sinusoidal"  # or "learned": a (max_src_len, d_model) and a (max_tgt_len, d_model) table
    max_wavelength: float = 10000.0  # sinusoidal positions: wavelengths from 2*pi to 2*pi*max_wavelength
    tie_output_projection: bool = True  # logits = decoder output @ target embedding^T (Press & Wolf 2017)
    # Initialisers, the same in both twins: Xavier-uniform matrices (per q/k/v/out projection, not over
    # torch's fused (3E, E) block), zero biases, N(0, d_model^-1/2) embeddings, LayerNorm 1 / 0.
    embedding_init_std: float = 0.0  # 0 means d_model ** -0.5
    # Decoding (evaluate() and the decoding identity check). No key/value cache: each step re-reads the
    # whole prefix, which gives the same logits as a cache would (and stays short here).
    decoding: str = "greedy"  # "greedy" or "beam"
    beam_size: int = 4
    length_penalty: float = 0.0  # GNMT alpha; 0 ranks beams by their summed log-probability
    # Recipe for numbers-en-fr on a laptop CPU (the model card's results come from these values); every
    # training field the zoo's trainers read (shared/recipe.py RECIPE_FIELDS) is declared here.
    epochs: int = 3
    batch_size: int = 64
    eval_batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 1e-3  # the peak, reached at warmup_steps (the paper's d_model^-0.5 * warmup^-0.5 folded in)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98  # the paper's value (torch and Keras default to 0.999)
    adam_epsilon: float = 1e-9  # the paper's value
    sgd_momentum: float = 0.9  # read only with optimizer="sgd"
    weight_decay: float = 0.0
    schedule: str = "inverse_sqrt"  # linear warm-up, then lr * sqrt(warmup_steps / step)
    warmup_steps: int = 200
    label_smoothing: float = 0.1  # the paper's epsilon_ls; the target is (1 - e) one-hot + e / tgt_vocab_size
    grad_clip_norm: float = 1.0  # global L2 norm (not in the paper): a guard for the first steps
    seed: int = 0

    def validate(self) -> None:
        if self.d_model < 1 or self.num_heads < 1 or self.d_model % self.num_heads:
            raise ValueError(
                f"d_model must be a positive multiple of num_heads (each head gets d_model / num_heads "
                f"dimensions); found d_model={self.d_model}, num_heads={self.num_heads}: change one of them"
            )
        for name in ("src_vocab_size", "tgt_vocab_size"):
            if getattr(self, name) < 4:
                raise ValueError(f"{name} must be >= 4 (pad, unknown, BOS, EOS); found {getattr(self, name)}")
        if self.pad_id != 0:
            raise ValueError(f"pad_id must be 0, the translation tokenizers' [PAD]; found {self.pad_id}")
        for name in (
            "num_encoder_layers",
            "num_decoder_layers",
            "ffn_dim",
            "max_src_len",
            "max_tgt_len",
            "beam_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; found {getattr(self, name)}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}; found {self.positions!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; found {self.activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); found {self.dropout}")
        if self.decoding not in ("greedy", "beam"):
            raise ValueError(f"decoding must be 'greedy' or 'beam'; found {self.decoding!r}")
        if self.length_penalty < 0:
            raise ValueError(f"length_penalty must be >= 0; found {self.length_penalty}")
        if self.layer_norm_epsilon <= 0 or self.max_wavelength <= 1 or self.embedding_init_std < 0:
            raise ValueError(
                "layer_norm_epsilon > 0, max_wavelength > 1 and embedding_init_std >= 0 are required"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def embedding_scale(self) -> float:
        """Token embeddings are multiplied by sqrt(d_model) before positions are added (section 3.4)."""
        return math.sqrt(self.d_model)

    @property
    def embedding_std(self) -> float:
        return self.embedding_init_std or self.d_model**-0.5

    def check_lengths(self, src_length: int | None = None, tgt_length: int | None = None) -> None:
        """Refuse sequences longer than the model's positions: the twins never truncate silently (the
        translation task leaves such pairs out of the data and refuses them in predict)."""
        for side, length, name in (
            ("source", src_length, "max_src_len"),
            ("target", tgt_length, "max_tgt_len"),
        ):
            limit = getattr(self, name)
            if length is not None and length > limit:
                raise ValueError(
                    f"the {side} has {length} tokens (EOS or BOS included) but the model reads at most {name}="
                    f"{limit}: shorten the input, or train a model with a larger --set {name}=..."
                )
