"""Every hyperparameter of NeuMF, read by both twins and both trainers."""

from __future__ import annotations

from dataclasses import dataclass

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
    embedding_init_std: float = 0.01  # embeddings ~ N(0, 0.01^2), as in the authors' code; MLP kernels
    # Glorot-uniform and the prediction layer LeCun-uniform, biases 0 (both twins, written out)
    num_negatives: int = 4  # sampled non-interactions per training interaction (the paper's 4)
    sparse_embeddings: bool = False  # as in recsys/mf: sparse tables need plain SGD
    # Recipe for planted-implicit on a laptop CPU (the model card's results come from these values).
    epochs: int = 10
    batch_size: int = 256
    eval_batch_size: int = 10_000
    optimizer: str = "adam"  # the paper trains NeuMF from scratch with Adam
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"

    def validate(self) -> None:
        super().validate()
        if min(self.num_users, self.num_items, self.mf_dim, self.num_negatives) < 1:
            raise UserError(f"num_users, num_items, mf_dim and num_negatives must be >= 1; found {self.num_users}, "
                            f"{self.num_items}, {self.mf_dim}, {self.num_negatives}")
        if len(self.mlp_layers) < 2 or self.mlp_layers[0] % 2 or min(self.mlp_layers) < 1:
            raise UserError(f"mlp_layers needs >= 2 positive sizes, the first even (user and item halves); "
                            f"found {self.mlp_layers}")
        if self.embedding_init_std < 0:
            raise UserError(f"embedding_init_std must be >= 0; found {self.embedding_init_std}")
        check_sparse(self)
