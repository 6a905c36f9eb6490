"""recsys/neumf's registration with the zoo's harness (task, data, smoke recipe, checks beyond tier 1)."""

from zoo.recsys.sparse_checks import extra_checks
from zoo.spec import ModelSpec

from .config import Config

SPEC = ModelSpec(
    name="recsys/neumf",
    task="implicit",
    dataset="planted-implicit",
    package=__package__,
    config_cls=Config,
    extra_checks=extra_checks,
    smoke_config={"epochs": 1, "batch_size": 256, "mlp_layers": (16, 8), "mf_dim": 4},
    smoke_data={"num_users": 60, "num_items": 200, "mean_interactions": 10},
    bad_configs=(
        ({"mlp_layers": (63, 32)}, "the first even"),
        ({"sparse_embeddings": True}, "sparse_embeddings=true needs plain SGD"),
    ),
)
