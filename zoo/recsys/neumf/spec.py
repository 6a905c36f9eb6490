"""recsys/neumf's registration with the zoo's harness (task, data, smoke recipe, checks beyond tier 1)."""

from zoo.recsys.sparse_checks import extra_checks
from zoo.spec import ModelSpec, TrainingRecipe

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
    heads=("prediction",),
    recipes=(
        TrainingRecipe(
            "planted-implicit",
            "The card's Results: the default Config (4 epochs) on the generated interactions.",
            data="planted-implicit",
            metric="hr@10",
            expect=0.65,
        ),
        TrainingRecipe(
            "movielens-1m",
            "The card's MovieLens 1M command (local files, not redistributed: --data movielens:/your/ml-1m); "
            "not run here.",
            config={"num_users": 6040, "num_items": 3706, "epochs": 20, "batch_size": 256, "lr": 0.001},
            data="movielens:/data/ml-1m",
            metric="hr@10",
        ),
    ),
)
