"""NeuMF (He et al. 2017, Neural Collaborative Filtering) in PyTorch. Line-aligned with keras_impl.py.

    GMF tower:  p_u^G * q_i^G                                  (B, mf_dim)
    MLP tower:  ReLU layers over [p_u^M, q_i^M]                (B, mlp_layers[-1])
    logits:     prediction([GMF, MLP])                         (B,)   sigmoid in the loss
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.recsys.neumf.config import Config, initial_weights


class NeuMF(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        sparse = config.sparse_embeddings  # gradients that hold only the rows a batch touched
        half = config.mlp_layers[0] // 2
        self.gmf_user = nn.Embedding(config.num_users, config.mf_dim, sparse=sparse)
        self.gmf_item = nn.Embedding(config.num_items, config.mf_dim, sparse=sparse)
        self.mlp_user = nn.Embedding(config.num_users, half, sparse=sparse)
        self.mlp_item = nn.Embedding(config.num_items, half, sparse=sparse)
        self.mlp = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(config.mlp_layers[:-1], config.mlp_layers[1:])
        )
        self.prediction = nn.Linear(config.mf_dim + config.mlp_layers[-1], 1)
        self.reset_parameters(config)

    def reset_parameters(self, config: Config):
        # The same numpy-drawn start as the Keras twin (config.initial_weights).
        with torch.no_grad():
            for name, value in initial_weights(config).items():
                self.get_parameter(name).copy_(torch.from_numpy(value))

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
