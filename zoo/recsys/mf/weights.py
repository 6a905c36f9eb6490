"""recsys/mf's weight map: Keras variable path -> torch state_dict name, one row per tensor (numpy and
weightmap.py only; no transforms needed)."""

from __future__ import annotations

from weightmap import Row, embedding, row

from .config import Config


def weight_map(config: Config) -> list[Row]:
    prefix = "matrix_factorization"
    return [
        row(f"{prefix}/global_bias", "global_bias"),
        *embedding(f"{prefix}/user_factors", "user_factors"),
        *embedding(f"{prefix}/item_factors", "item_factors"),
        *embedding(f"{prefix}/user_bias", "user_bias"),
        *embedding(f"{prefix}/item_bias", "item_bias"),
    ]
