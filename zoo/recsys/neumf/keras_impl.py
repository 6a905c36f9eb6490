"""NeuMF (He et al. 2017, Neural Collaborative Filtering) in Keras 3 (keras.ops only).
Line-aligned with torch_impl.py; weight_map() maps every variable to the torch twin's names.

    GMF tower:  p_u^G * q_i^G                                  (B, mf_dim)
    MLP tower:  ReLU layers over [p_u^M, q_i^M]                (B, mlp_layers[-1])
    logits:     prediction([GMF, MLP])                         (B,)   sigmoid in the loss
"""

from __future__ import annotations

import keras
from keras import layers, ops

from shared.keras_weights import set_weights
from weightmap import Row, dense, embedding
from zoo.recsys.neumf.config import Config, initial_weights


class NeuMF(keras.Model):
    def __init__(self, config: Config):
        super().__init__(name="neumf")
        half = config.mlp_layers[0] // 2
        # Variables start at zero; build_model loads config.initial_weights(), as the torch twin does.
        self.gmf_user = layers.Embedding(
            config.num_users, config.mf_dim, embeddings_initializer="zeros", name="gmf_user"
        )
        self.gmf_item = layers.Embedding(
            config.num_items, config.mf_dim, embeddings_initializer="zeros", name="gmf_item"
        )
        self.mlp_user = layers.Embedding(
            config.num_users, half, embeddings_initializer="zeros", name="mlp_user"
        )
        self.mlp_item = layers.Embedding(
            config.num_items, half, embeddings_initializer="zeros", name="mlp_item"
        )
        self.mlp = [
            layers.Dense(b, kernel_initializer="zeros", name=f"mlp_{i}")
            for i, b in enumerate(config.mlp_layers[1:])
        ]
        self.prediction = layers.Dense(1, kernel_initializer="zeros", name="prediction")

    def call(self, inputs, training=False):
        user, item = inputs["user"], inputs["item"]
        gmf = self.gmf_user(user) * self.gmf_item(item)  # (B, mf_dim)
        x = ops.concatenate([self.mlp_user(user), self.mlp_item(item)], axis=-1)  # (B, mlp_layers[0])
        for layer in self.mlp:
            x = ops.relu(layer(x))  # (B, width)
        return self.prediction(ops.concatenate([gmf, x], axis=-1))[:, 0]  # (B, 1) -> (B,) logits


def build_model(config: Config) -> NeuMF:
    model = NeuMF(config)
    model({"user": ops.zeros((1,), "int64"), "item": ops.zeros((1,), "int64")})  # creates the variables
    set_weights(model, weight_map(config), initial_weights(config))  # the same start as the torch twin
    return model


def weight_map(config: Config) -> list[Row]:
    """Keras variable path -> torch state_dict name -> transform, one row per tensor."""
    rows = [
        *embedding("neumf/gmf_user", "gmf_user"),
        *embedding("neumf/gmf_item", "gmf_item"),
        *embedding("neumf/mlp_user", "mlp_user"),
        *embedding("neumf/mlp_item", "mlp_item"),
    ]
    for i in range(len(config.mlp_layers) - 1):
        rows += dense(f"neumf/mlp_{i}", f"mlp.{i}")
    return rows + dense("neumf/prediction", "prediction")


def call(model: NeuMF, batch: dict, training: bool = False) -> dict:
    return {"logits": model({"user": batch["user"], "item": batch["item"]}, training=training)}


def compute_loss(outputs: dict, batch: dict, config: Config):
    # Binary cross-entropy on logits, the stable form torch's binary_cross_entropy_with_logits uses.
    x, y = outputs["logits"], batch["label"]
    return ops.mean(ops.relu(x) - x * y + ops.log1p(ops.exp(-ops.abs(x))))
