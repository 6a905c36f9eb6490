"""recsys/mf's registration with the zoo's harness (task, data, smoke recipe, checks beyond tier 1)."""

from zoo.recsys.sparse_checks import extra_checks
from zoo.spec import ModelSpec

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
)
