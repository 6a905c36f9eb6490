"""recsys/mf's registration with the zoo's harness (task, data, smoke recipe, checks beyond tier 1)."""

from zoo.recsys.sparse_checks import extra_checks
from zoo.spec import ModelSpec, TrainingRecipe

from .config import Config

SPEC = ModelSpec(
    name="recsys/mf",
    task="rating",
    dataset="planted-ratings",
    package=__package__,
    config_cls=Config,
    extra_checks=extra_checks,
    smoke_config={"epochs": 1, "num_factors": 4, "batch_size": 256},
    smoke_data={"num_users": 100, "num_items": 50, "num_ratings": 2000},
    bad_configs=(
        ({"num_factors": 0}, "num_users, num_items and num_factors must be >= 1"),
        ({"rating_min": 5.0, "rating_max": 1.0}, "rating_min must be below rating_max"),
        ({"init_std": -0.1}, "l2_factors, l2_biases and init_std must be >= 0"),
        ({"sparse_embeddings": True}, "sparse_embeddings=true needs plain SGD"),
    ),
    heads=(),
    recipes=(
        TrainingRecipe(
            "planted-ratings",
            "The card's Results: the default Config (10 epochs) on the generated ratings.",
            data="planted-ratings",
            metric="rmse",
            expect=0.28,
        ),
        TrainingRecipe(
            "movielens-1m",
            "The card's MovieLens 1M command (local files, not redistributed: --data movielens:/your/ml-1m); "
            "not run here.",
            config={
                "num_users": 6040,
                "num_items": 3706,
                "num_factors": 64,
                "l2_factors": 0.02,
                "l2_biases": 0.02,
            },
            data="movielens:/data/ml-1m",
            metric="rmse",
        ),
    ),
)
