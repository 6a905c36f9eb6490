"""recsys/neumf: Neural Collaborative Filtering, GMF + MLP towers fused (He et al. 2017)."""

from zoo.recsys.neumf.config import Config
from zoo.recsys.sparse_checks import extra_checks
from zoo.spec import ModelSpec

SPEC = ModelSpec(
    name="recsys/neumf",
    task="implicit",
    dataset="planted-implicit",
    package=__name__,
    config_cls=Config,
    extra_checks=extra_checks,
    smoke_config={"epochs": 1, "batch_size": 256, "mlp_layers": (16, 8), "mf_dim": 4},
    smoke_data={"num_users": 60, "num_items": 200, "mean_interactions": 10},
)
