"""recsys/mf: biased matrix factorization for explicit ratings (Koren, Bell and Volinsky 2009)."""

from zoo.recsys.mf.config import Config
from zoo.recsys.sparse_checks import extra_checks
from zoo.spec import ModelSpec

SPEC = ModelSpec(
    name="recsys/mf",
    task="rating",
    dataset="planted-ratings",
    package=__name__,
    config_cls=Config,
    extra_checks=extra_checks,
    smoke_config={"epochs": 1, "num_factors": 4, "batch_size": 256},
    smoke_data={"num_users": 100, "num_items": 50, "num_ratings": 2000},
)
