"""NeuMF (He et al. 2017, Neural Collaborative Filtering) in PyTorch; keras_impl.py mirrors it class for
class, attribute for attribute.

    GMF tower:  p_u^G * q_i^G                                  (B, mf_dim)
    MLP tower:  ReLU layers over [p_u^M, q_i^M]                (B, mlp_layers[-1])
    logits:     prediction([GMF, MLP])                         (B,)   sigmoid in the loss
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import Config


class NeuMF(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        sparse = config.sparse_embeddings  # gradients that hold only the rows a batch touched
        half = config.mlp_layers[0] // 2
        self.gmf_user = nn.Embedding(config.num_users, config.mf_dim, sparse=sparse)
        self.gmf_item = nn.Embedding(config.num_items, config.mf_dim, sparse=sparse)
        self.mlp_user = nn.Embedding(config.num_users, half, sparse=sparse)
        self.mlp_item = nn.Embedding(config.num_items, half, sparse=sparse)
        widths = config.mlp_layers
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))  # ReLU after each
        self.prediction = nn.Linear(config.mf_dim + config.mlp_layers[-1], 1)
        self.reset_parameters(config)

    @torch.no_grad()
    def reset_parameters(self, config: Config):
        # The authors' initialisers, drawn with numpy from config.seed as in the Keras twin, so both
        # frameworks start from one point: embeddings N(0, std^2), MLP Glorot-uniform, prediction
        # LeCun-uniform, biases 0.
        rng = np.random.default_rng([config.seed, 101])
        for table in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            values = rng.normal(0.0, config.embedding_init_std, tuple(table.weight.shape))  # (rows, dim)
            table.weight.copy_(torch.from_numpy(values.astype(np.float32)))
        for layer in [*self.mlp, self.prediction]:
            fan_out, fan_in = layer.weight.shape
            limit = math.sqrt(3.0 / fan_in if layer is self.prediction else 6.0 / (fan_in + fan_out))
            values = rng.uniform(-limit, limit, (fan_out, fan_in))  # (out, in)
            layer.weight.copy_(torch.from_numpy(values.astype(np.float32)))
            nn.init.zeros_(layer.bias)

    def forward(self, user, item):
        gmf = self.gmf_user(user) * self.gmf_item(item)  # (B, mf_dim)
        x = torch.cat([self.mlp_user(user), self.mlp_item(item)], dim=-1)  # (B, mlp_layers[0])
        for layer in self.mlp:
            x = F.relu(layer(x))  # (B, width)
        return self.prediction(torch.cat([gmf, x], dim=-1))[:, 0]  # (B, 1) -> (B,) logits


def build_model(config: Config) -> NeuMF:
    return NeuMF(config)


def call(model: NeuMF, batch: dict, training: bool = False) -> dict:
    return {"logits": model(batch["user"], batch["item"])}


def compute_loss(outputs: dict, batch: dict, config: Config) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(outputs["logits"], batch["label"])
