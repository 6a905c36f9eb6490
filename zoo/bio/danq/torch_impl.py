"""DanQ (Quang and Xie 2016) in PyTorch: Conv1D motif scanners -> max pool -> BiLSTM -> dense -> one logit
per label. keras_impl.py mirrors it class for class, attribute for attribute; the state_dict names are the
canonical weight names.

LSTM biases: torch's nn.LSTM adds two bias vectors (bias_ih + bias_hh), Keras' LSTM has one. Here
bias_hh_l0 (and bias_hh_l0_reverse) stays at zero and out of training (requires_grad=False), so both
twins train the same single bias and one optimizer step is the same step. The tensors keep their
standard names, so a torch LSTM checkpoint from elsewhere loads (its bias_hh is then kept as it is).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import Config


def reverse_complement(sequence: torch.Tensor) -> torch.Tensor:
    # (B, L, 4) -> (B, L, 4): positions reversed; channels A, C, G, T reversed is the complement T, G, C, A.
    return torch.flip(sequence, dims=(1, 2))


class DanQ(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.conv = nn.Conv1d(4, config.conv_filters, config.conv_kernel)  # motif scanners, 'valid'
        self.pool = nn.MaxPool1d(config.pool_size, stride=config.pool_size)  # window = stride, floor
        self.conv_dropout = nn.Dropout(config.conv_dropout)
        self.bilstm = nn.LSTM(
            config.conv_filters, config.lstm_units, batch_first=True, bidirectional=True
        )
        self.lstm_dropout = nn.Dropout(config.lstm_dropout)
        self.dense = nn.Linear(config.pooled_length * 2 * config.lstm_units, config.dense_units)
        self.classifier = nn.Linear(config.dense_units, config.num_labels)
        self.reset_parameters(config)

    @torch.no_grad()
    def reset_parameters(self, config: Config):
        # Convolution and dense layers: torch's default, U(+-1/sqrt(fan_in)) for weights and biases.
        for layer in (self.conv, self.dense, self.classifier):
            bound = 1 / math.sqrt(layer.weight[0].numel())  # fan_in: (out, in[, k])
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.uniform_(layer.bias, -bound, bound)
        # LSTM: Keras' default, per direction (gate order i, f, g, o in both frameworks).
        units = config.lstm_units
        for suffix in ("", "_reverse"):
            nn.init.xavier_uniform_(getattr(self.bilstm, f"weight_ih_l0{suffix}"))  # (4H, F)
            nn.init.orthogonal_(getattr(self.bilstm, f"weight_hh_l0{suffix}"))  # (4H, H)
            bias = torch.zeros(4 * units)  # (4H,)
            if config.lstm_unit_forget_bias:
                bias[units : 2 * units] = 1.0
            getattr(self.bilstm, f"bias_ih_l0{suffix}").copy_(bias)
            # Keras has one bias: this second one stays 0 and out of training (see the module docstring).
            nn.init.zeros_(getattr(self.bilstm, f"bias_hh_l0{suffix}")).requires_grad_(False)

    def strand_logits(self, sequence: torch.Tensor) -> torch.Tensor:
        x = sequence.permute(0, 2, 1)  # (B, L, 4) -> (B, 4, L): Conv1d reads channels first
        x = F.relu(self.conv(x))  # (B, F, L - kernel + 1)
        x = self.pool(x).permute(0, 2, 1)  # (B, T, F), T = pooled_length
        x = self.conv_dropout(x)
        x, _ = self.bilstm(x)  # (B, T, 2H): forward and backward states, concatenated
        x = self.lstm_dropout(x)
        x = torch.flatten(x, 1)  # (B, T * 2H)
        x = F.relu(self.dense(x))  # (B, dense_units)
        return self.classifier(x)  # (B, num_labels) logits

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        logits = self.strand_logits(sequence)  # (B, K)
        if self.config.rc_average and not self.training:
            logits = (logits + self.strand_logits(reverse_complement(sequence))) / 2  # (B, K)
        return logits


def build_model(config: Config) -> DanQ:
    return DanQ(config)


def call(model: DanQ, batch: dict, training: bool = False) -> dict:
    return {"logits": model(batch["sequence"])}


def compute_loss(outputs: dict, batch: dict, config: Config) -> torch.Tensor:
    labels = batch["labels"].to(outputs["logits"].dtype)  # (B, K) 0/1
    labels = labels * (1 - config.label_smoothing) + 0.5 * config.label_smoothing
    return F.binary_cross_entropy_with_logits(outputs["logits"], labels)
