"""recsys/neumf's weight map: Keras variable path -> torch state_dict name -> transform, one row per tensor
(numpy and weightmap.py only)."""

from __future__ import annotations

from weightmap import Row, dense, embedding

from .config import Config


def weight_map(config: Config) -> list[Row]:
    rows = [
        *embedding("neumf/gmf_user", "gmf_user"),
        *embedding("neumf/gmf_item", "gmf_item"),
        *embedding("neumf/mlp_user", "mlp_user"),
        *embedding("neumf/mlp_item", "mlp_item"),
    ]
    for i in range(len(config.mlp_layers) - 1):
        rows += dense(f"neumf/mlp_{i}", f"mlp.{i}")
    return rows + dense("neumf/prediction", "prediction")
