"""Every hyperparameter of biased matrix factorization, read by both twins and both trainers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.errors import UserError
from shared.recipe import Recipe


@dataclass
class Config(Recipe):
    num_users: int = 800  # rows of the user tables; planted-ratings' default (ml-1m: 6040, ml-20m: 138493)
    num_items: int = 400  # rows of the item tables (ml-1m: 3706, ml-20m: 26744)
    num_factors: int = 4  # latent dimension of p_u and q_i (planted-ratings has rank 3)
    rating_min: float = 1.0  # the declared rating scale: data outside it is refused, the global bias
    rating_max: float = 5.0  # starts at its midpoint
    init_std: float = 0.1  # p_u, q_i ~ N(0, init_std^2); b_u, b_i start at 0 (see initial_weights)
    # Koren et al.'s regularised objective, written as a loss term both twins compute the same way:
    #   loss = mean_batch[(r - r_hat)^2] + mean_batch[l2_factors (|p_u|^2 + |q_i|^2) + l2_biases (b_u^2 + b_i^2)]
    # Only the rows a batch touches are regularised, so the term keeps embedding gradients sparse.
    l2_factors: float = 0.01
    l2_biases: float = 0.01
    # torch: nn.Embedding(sparse=True), gradients hold only the touched rows. Keras on TensorFlow always
    # returns such gradients (tf.IndexedSlices) from an Embedding; its optimizer decides whether they stay
    # sparse. Only plain SGD leaves untouched rows alone, so sparse tables need optimizer=sgd, momentum 0.
    sparse_embeddings: bool = False
    # Recipe for planted-ratings on a laptop CPU (the model card's results come from these values).
    epochs: int = 10
    batch_size: int = 256
    eval_batch_size: int = 4096
    optimizer: str = "adam"  # torch-style Adam in both twins; the L2 term above replaces weight decay
    lr: float = 0.01
    weight_decay: float = 0.0
    schedule: str = "cosine"

    def validate(self) -> None:
        super().validate()
        if min(self.num_users, self.num_items, self.num_factors) < 1:
            raise UserError(
                f"num_users, num_items and num_factors must be >= 1; found {self.num_users}, "
                f"{self.num_items}, {self.num_factors}"
            )
        if not self.rating_min < self.rating_max:
            raise UserError(
                f"rating_min must be below rating_max; found {self.rating_min}..{self.rating_max}"
            )
        if min(self.l2_factors, self.l2_biases, self.init_std) < 0:
            raise UserError("l2_factors, l2_biases and init_std must be >= 0")
        check_sparse(self)


def initial_weights(config: Config) -> dict[str, np.ndarray]:
    """The weights both twins start from (canonical names), drawn with numpy from config.seed, so a run in
    either framework starts from the same point: global bias at the scale's midpoint, factors
    N(0, init_std^2), biases 0."""
    rng = np.random.default_rng([config.seed, 101])
    weights = {
        "global_bias": np.array((config.rating_min + config.rating_max) / 2),
        "user_factors.weight": rng.normal(0.0, config.init_std, (config.num_users, config.num_factors)),
        "item_factors.weight": rng.normal(0.0, config.init_std, (config.num_items, config.num_factors)),
        "user_bias.weight": np.zeros((config.num_users, 1)),
        "item_bias.weight": np.zeros((config.num_items, 1)),
    }
    return {name: value.astype(np.float32) for name, value in weights.items()}


def check_sparse(config) -> None:
    """Sparse tables need an optimizer that leaves the rows a batch did not touch alone: plain SGD."""
    if config.sparse_embeddings and (
        config.optimizer != "sgd"
        or config.sgd_momentum != 0
        or config.weight_decay != 0
        or config.grad_clip_norm != 0
    ):
        raise UserError(
            "sparse_embeddings=true needs plain SGD (Adam moments, momentum, weight decay and clipping touch "
            f"every row each step); found optimizer={config.optimizer}, sgd_momentum={config.sgd_momentum}, "
            f"weight_decay={config.weight_decay}, grad_clip_norm={config.grad_clip_norm}: pass --set optimizer=sgd "
            "--set sgd_momentum=0 --set weight_decay=0 --set grad_clip_norm=0"
        )
