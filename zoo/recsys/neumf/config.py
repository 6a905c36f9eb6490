"""Every hyperparameter of NeuMF, read by both twins and both trainers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shared.errors import UserError
from shared.recipe import Recipe
from zoo.recsys.mf.config import check_sparse


@dataclass
class Config(Recipe):
    num_users: int = 1000  # rows of the user tables; planted-implicit's default (ml-1m: 6040)
    num_items: int = 800  # rows of the item tables (ml-1m: 3706)
    mf_dim: int = 8  # GMF tower: user and item embeddings of this size, multiplied elementwise
    # MLP tower: the first entry is the concatenated user + item embedding (half each), then one ReLU
    # layer per entry; the paper's "predictive factors" is the last entry (He et al. 2017, Sec. 4.1).
    mlp_layers: tuple[int, ...] = (64, 32, 16, 8)
    embedding_init_std: float = 0.01  # embeddings ~ N(0, 0.01^2), as in the authors' code (initial_weights)
    num_negatives: int = 4  # sampled non-interactions per training interaction (the paper's 4)
    sparse_embeddings: bool = False  # as in recsys/mf: sparse tables need plain SGD
    # Recipe for planted-implicit on a laptop CPU (the model card's results come from these values).
    # The paper: Adam, lr 1e-3, batch 256. Here a larger batch and lr for speed, and few epochs: the
    # negatives are sampled once (shared/tasks/implicit.py), so longer training memorises them.
    epochs: int = 4
    batch_size: int = 1024
    eval_batch_size: int = 10_000
    optimizer: str = "adam"  # the paper trains NeuMF from scratch with Adam
    lr: float = 5e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"

    def validate(self) -> None:
        super().validate()
        if min(self.num_users, self.num_items, self.mf_dim, self.num_negatives) < 1:
            raise UserError(
                f"num_users, num_items, mf_dim and num_negatives must be >= 1; found {self.num_users}, "
                f"{self.num_items}, {self.mf_dim}, {self.num_negatives}"
            )
        if len(self.mlp_layers) < 2 or self.mlp_layers[0] % 2 or min(self.mlp_layers) < 1:
            raise UserError(
                f"mlp_layers needs >= 2 positive sizes, the first even (user and item halves); "
                f"found {self.mlp_layers}"
            )
        if self.embedding_init_std < 0:
            raise UserError(f"embedding_init_std must be >= 0; found {self.embedding_init_std}")
        check_sparse(self)


def initial_weights(config: Config) -> dict[str, np.ndarray]:
    """The weights both twins start from (canonical names), drawn with numpy from config.seed, so a run in
    either framework starts from the same point. The authors' initialisers: embeddings N(0, 0.01^2),
    MLP kernels Glorot-uniform, the prediction layer LeCun-uniform, biases 0."""
    rng = np.random.default_rng([config.seed, 101])
    half, std = config.mlp_layers[0] // 2, config.embedding_init_std
    weights = {
        "gmf_user.weight": rng.normal(0.0, std, (config.num_users, config.mf_dim)),
        "gmf_item.weight": rng.normal(0.0, std, (config.num_items, config.mf_dim)),
        "mlp_user.weight": rng.normal(0.0, std, (config.num_users, half)),
        "mlp_item.weight": rng.normal(0.0, std, (config.num_items, half)),
    }
    for i, (fan_in, fan_out) in enumerate(zip(config.mlp_layers[:-1], config.mlp_layers[1:])):
        limit = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
        weights[f"mlp.{i}.weight"] = rng.uniform(-limit, limit, (fan_out, fan_in))  # (out, in)
        weights[f"mlp.{i}.bias"] = np.zeros(fan_out)
    fan_in = config.mf_dim + config.mlp_layers[-1]
    limit = math.sqrt(3.0 / fan_in)  # LeCun uniform
    weights["prediction.weight"] = rng.uniform(-limit, limit, (1, fan_in))
    weights["prediction.bias"] = np.zeros(1)
    return {name: value.astype(np.float32) for name, value in weights.items()}
