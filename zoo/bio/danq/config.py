"""Every hyperparameter of DanQ, read by both twins, both trainers and the multilabel task.

Standard library only, so the folder lifts out of the zoo. validate() raises ValueError with a one-line
message (the zoo's CLI prints it and exits 2).
"""

from __future__ import annotations

from dataclasses import dataclass

# Input policies: how the data layer one-hot encodes what is not A, C, G or T (the zoo's shared/data/dna.py
# implements them; a test holds its lists equal to these).
N_ENCODINGS = ("zeros", "uniform")  # N as all zeros, or 0.25 in each channel
AMBIGUOUS_POLICIES = ("error", "as_n", "fractional")  # R, Y, ...: refuse, read as N, or 1/k per allowed base
LENGTH_POLICIES = ("error", "center", "start")  # other lengths: refuse, or crop/pad with N (centre / start)

# The paper's sizes (Quang and Xie 2016, DeepSEA data: 1000 bp, 919 chromatin labels):
# spec.config(**PAPER). The defaults below are a CPU-sized DanQ for the embedded `motifs` data.
PAPER = {
    "sequence_length": 1000,
    "num_labels": 919,
    "conv_filters": 320,
    "conv_kernel": 26,
    "pool_size": 13,
    "lstm_units": 320,
    "dense_units": 925,
    "conv_dropout": 0.2,
    "lstm_dropout": 0.5,
}


@dataclass
class Config:
    # Input: one-hot DNA (B, L, 4), channels A, C, G, T.
    sequence_length: int = 200
    num_labels: int = 5
    n_encoding: str = "zeros"  # N (and padding) as all zeros, or "uniform": 0.25 in each channel
    ambiguous_bases: str = "error"  # IUPAC codes R, Y, ...: "error", "as_n", or "fractional" (1/k per base)
    length_policy: str = (
        "error"  # other lengths: "error", or crop/pad with N around the "center" / from the "start"
    )
    # Network: Conv1D motif scanners -> max pool -> dropout -> BiLSTM -> dropout -> flatten -> dense -> logits.
    conv_filters: int = 128  # with 64, one of the five planted motifs was often never found (init-dependent)
    conv_kernel: int = 13  # about a motif's width (10-14 bp in `motifs`); 19 learned more slowly
    pool_size: int = 13  # pool window = stride, 'valid' (floor) in both twins
    lstm_units: int = 32  # per direction
    dense_units: int = 64
    conv_dropout: float = 0.2
    lstm_dropout: float = 0.5
    # Keras' LSTM initialisation, written out and used by the torch twin too: Glorot-uniform input kernel,
    # orthogonal recurrent kernel, zero bias with the forget gate's bias at 1 (Jozefowicz et al. 2015).
    lstm_unit_forget_bias: bool = True
    # Inference (eval mode only): average the logits of the sequence and of its reverse complement.
    rc_average: bool = True
    # Training recipe for `motifs` on a laptop CPU (the model card's results come from these values).
    epochs: int = 4
    batch_size: int = 128
    eval_batch_size: int = 256
    optimizer: str = "adamw"  # "adamw" | "adam" | "sgd"
    lr: float = 5e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8  # torch's default (Keras' is 1e-7)
    sgd_momentum: float = 0.9
    weight_decay: float = 1e-4  # decoupled (AdamW)
    schedule: str = "cosine"  # "constant" | "cosine" | "inverse_sqrt", stepped every optimizer step
    warmup_steps: int = 50
    grad_clip_norm: float = 0.0  # global L2 norm; 0 disables
    label_smoothing: float = 0.0  # toward 0.5 for every label
    seed: int = 0  # also the seed of the Keras twin's dropout

    def validate(self) -> None:
        for name, allowed in (
            ("n_encoding", N_ENCODINGS),
            ("ambiguous_bases", AMBIGUOUS_POLICIES),
            ("length_policy", LENGTH_POLICIES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; found {getattr(self, name)!r}")
        for name in ("num_labels", "conv_filters", "conv_kernel", "pool_size", "lstm_units", "dense_units"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; found {getattr(self, name)}")
        for name in ("conv_dropout", "lstm_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); found {getattr(self, name)}")
        if self.pooled_length < 1:
            raise ValueError(
                f"sequence_length {self.sequence_length} is too short for conv_kernel {self.conv_kernel} "
                f"and pool_size {self.pool_size}: it needs at least {self.conv_kernel + self.pool_size - 1}"
            )

    @property
    def pooled_length(self) -> int:
        """Time steps the BiLSTM reads: (L - kernel + 1) // pool."""
        return (self.sequence_length - self.conv_kernel + 1) // self.pool_size
