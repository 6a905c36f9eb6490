"""Every hyperparameter of NeuMF, read by both twins and both trainers.

Standard library only, so the folder lifts out of the zoo. validate() raises ValueError with a one-line
message (the zoo's CLI prints it and exits 2).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:
    num_users: int = 1000  # rows of the user tables; planted-implicit's default (ml-1m: 6040)
    num_items: int = 800  # rows of the item tables (ml-1m: 3706)
    mf_dim: int = 8  # GMF tower: user and item embeddings of this size, multiplied elementwise
    # MLP tower: the first entry is the concatenated user + item embedding (half each), then one ReLU
    # layer per entry; the paper's "predictive factors" is the last entry (He et al. 2017, Sec. 4.1).
    mlp_layers: tuple[int, ...] = (64, 32, 16, 8)
    embedding_init_std: float = 0.01  # embeddings ~ N(0, 0.01^2), as in the authors' code (reset_parameters)
    num_negatives: int = 4  # sampled non-interactions per training interaction (the paper's 4)
    sparse_embeddings: bool = False  # as in recsys/mf: sparse tables need plain SGD
    # Training recipe for planted-implicit on a laptop CPU (the model card's results come from these values).
    # The paper: Adam, lr 1e-3, batch 256. Here a larger batch and lr for speed, and few epochs: the
    # negatives are sampled once (by the zoo's implicit task), so longer training memorises them.
    epochs: int = 4
    batch_size: int = 1024
    eval_batch_size: int = 10_000
    optimizer: str = "adam"  # "adamw" | "adam" | "sgd"; the paper trains NeuMF from scratch with Adam
    lr: float = 5e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8  # torch's default (Keras' is 1e-7)
    sgd_momentum: float = 0.9
    weight_decay: float = 0.0  # decoupled
    schedule: str = "cosine"  # "constant" | "cosine" | "inverse_sqrt", stepped every optimizer step
    warmup_steps: int = 0
    grad_clip_norm: float = 0.0  # global L2 norm; 0 disables
    label_smoothing: float = 0.0
    seed: int = 0  # also the seed of the initial weights (the same in both twins)

    def validate(self) -> None:
        if min(self.num_users, self.num_items, self.mf_dim, self.num_negatives) < 1:
            raise ValueError(
                f"num_users, num_items, mf_dim and num_negatives must be >= 1; found {self.num_users}, "
                f"{self.num_items}, {self.mf_dim}, {self.num_negatives}"
            )
        if len(self.mlp_layers) < 2 or self.mlp_layers[0] % 2 or min(self.mlp_layers) < 1:
            raise ValueError(
                f"mlp_layers needs >= 2 positive sizes, the first even (user and item halves); "
                f"found {self.mlp_layers}"
            )
        if self.embedding_init_std < 0:
            raise ValueError(f"embedding_init_std must be >= 0; found {self.embedding_init_std}")
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
