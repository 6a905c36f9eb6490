"""Biased matrix factorization (Koren, Bell and Volinsky 2009) in PyTorch; keras_impl.py mirrors it class
for class, attribute for attribute.

    rating(u, i) = global_bias + b_u + b_i + p_u . q_i

Parameter names are the canonical names; global_bias is Koren's mu, learned from the scale's midpoint.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import Config


class MatrixFactorization(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        sparse = config.sparse_embeddings  # gradients that hold only the rows a batch touched
        self.global_bias = nn.Parameter(torch.zeros(()))
        self.user_factors = nn.Embedding(config.num_users, config.num_factors, sparse=sparse)
        self.item_factors = nn.Embedding(config.num_items, config.num_factors, sparse=sparse)
        self.user_bias = nn.Embedding(config.num_users, 1, sparse=sparse)
        self.item_bias = nn.Embedding(config.num_items, 1, sparse=sparse)
        self.l2_factors, self.l2_biases = config.l2_factors, config.l2_biases
        self.reset_parameters(config)

    @torch.no_grad()
    def reset_parameters(self, config: Config):
        # Drawn with numpy from config.seed, as in the Keras twin, so both frameworks start from one point:
        # global bias at the scale's midpoint, factors N(0, init_std^2), biases 0.
        rng = np.random.default_rng([config.seed, 101])
        self.global_bias.fill_((config.rating_min + config.rating_max) / 2)
        for table in (self.user_factors, self.item_factors):
            values = rng.normal(0.0, config.init_std, tuple(table.weight.shape))  # (rows, F)
            table.weight.copy_(torch.from_numpy(values.astype(np.float32)))
        for table in (self.user_bias, self.item_bias):
            nn.init.zeros_(table.weight)  # (rows, 1)

    def forward(self, user, item):
        p_u = self.user_factors(user)  # (B, F)
        q_i = self.item_factors(item)  # (B, F)
        b_u = self.user_bias(user)[:, 0]  # (B, 1) -> (B,)
        b_i = self.item_bias(item)[:, 0]  # (B, 1) -> (B,)
        rating = self.global_bias + b_u + b_i + torch.sum(p_u * q_i, dim=-1)  # (B,)
        # Koren et al.'s L2 term for these rows; compute_loss averages it over the batch.
        penalty = self.l2_factors * (
            torch.sum(p_u * p_u, dim=-1) + torch.sum(q_i * q_i, dim=-1)
        ) + self.l2_biases * (b_u * b_u + b_i * b_i)  # (B,)
        return rating, penalty


def build_model(config: Config) -> MatrixFactorization:
    return MatrixFactorization(config)


def call(model: MatrixFactorization, batch: dict, training: bool = False) -> dict:
    rating, penalty = model(batch["user"], batch["item"])
    return {"rating": rating, "penalty": penalty}


def compute_loss(outputs: dict, batch: dict, config: Config) -> torch.Tensor:
    error = outputs["rating"] - batch["rating"]  # (B,)
    return torch.mean(error * error) + torch.mean(outputs["penalty"])
