"""Every hyperparameter of biased matrix factorization, read by both twins and both trainers.

Standard library only, so the folder lifts out of the zoo. validate() raises ValueError with a one-line
message (the zoo's CLI prints it and exits 2).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:
    num_users: int = 800  # rows of the user tables; planted-ratings' default (ml-1m: 6040, ml-20m: 138493)
    num_items: int = 400  # rows of the item tables (ml-1m: 3706, ml-20m: 26744)
    num_factors: int = 4  # latent dimension of p_u and q_i (planted-ratings has rank 3)
    rating_min: float = 1.0  # the declared rating scale: data outside it is refused, the global bias
    rating_max: float = 5.0  # starts at its midpoint
    init_std: float = 0.1  # p_u, q_i ~ N(0, init_std^2); b_u, b_i start at 0 (the twins' reset_parameters)
    # Koren et al.'s regularised objective, written as a loss term both twins compute the same way:
    #   loss = mean_batch[(r - r_hat)^2] + mean_batch[l2_factors (|p_u|^2 + |q_i|^2) + l2_biases (b_u^2 + b_i^2)]
    # Only the rows a batch touches are regularised, so the term keeps embedding gradients sparse.
    l2_factors: float = 0.01
    l2_biases: float = 0.01
    # torch: nn.Embedding(sparse=True), gradients hold only the touched rows. Keras on TensorFlow always
    # returns such gradients (tf.IndexedSlices) from an Embedding; its optimizer decides whether they stay
    # sparse. Only plain SGD leaves untouched rows alone, so sparse tables need optimizer=sgd, momentum 0.
    sparse_embeddings: bool = False
    # Training recipe for planted-ratings on a laptop CPU (the model card's results come from these values).
    epochs: int = 10
    batch_size: int = 256
    eval_batch_size: int = 4096
    optimizer: str = "adam"  # "adamw" | "adam" | "sgd"; torch-style Adam in both twins
    lr: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8  # torch's default (Keras' is 1e-7)
    sgd_momentum: float = 0.9
    weight_decay: float = 0.0  # decoupled; the L2 term above replaces it
    schedule: str = "cosine"  # "constant" | "cosine" | "inverse_sqrt", stepped every optimizer step
    warmup_steps: int = 0
    grad_clip_norm: float = 0.0  # global L2 norm; 0 disables
    label_smoothing: float = 0.0
    seed: int = 0  # also the seed of the initial weights (the same in both twins)

    def validate(self) -> None:
        if min(self.num_users, self.num_items, self.num_factors) < 1:
            raise ValueError(
                f"num_users, num_items and num_factors must be >= 1; found {self.num_users}, "
                f"{self.num_items}, {self.num_factors}"
            )
        if not self.rating_min < self.rating_max:
            raise ValueError(
                f"rating_min must be below rating_max; found {self.rating_min}..{self.rating_max}"
            )
        if min(self.l2_factors, self.l2_biases, self.init_std) < 0:
            raise ValueError("l2_factors, l2_biases and init_std must be >= 0")
        self.check_sparse()

    def check_sparse(self) -> None:
        """Sparse tables need an optimizer that leaves the rows a batch did not touch alone: plain SGD."""
        if self.sparse_embeddings and (
            self.optimizer != "sgd"
            or self.sgd_momentum != 0
            or self.weight_decay != 0
            or self.grad_clip_norm != 0
        ):
            raise ValueError(
                "sparse_embeddings=true needs plain SGD (Adam moments, momentum, weight decay and clipping "
                f"touch every row each step); found optimizer={self.optimizer}, "
                f"sgd_momentum={self.sgd_momentum}, weight_decay={self.weight_decay}, "
                f"grad_clip_norm={self.grad_clip_norm}: pass --set optimizer=sgd --set sgd_momentum=0 "
                "--set weight_decay=0 --set grad_clip_norm=0"
            )
