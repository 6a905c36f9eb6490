"""Biased matrix factorization (Koren, Bell and Volinsky 2009) in Keras 3 (keras.ops only).
Line-aligned with torch_impl.py; weight_map() maps every variable to the torch twin's names.

    rating(u, i) = global_bias + b_u + b_i + p_u . q_i

On the TensorFlow backend an Embedding's gradient is a tf.IndexedSlices (the touched rows only) whatever
sparse_embeddings says; plain SGD applies it with a scatter update, Adam densifies it.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from shared.keras_weights import set_weights
from weightmap import Row, embedding, row
from zoo.recsys.mf.config import Config, initial_weights


class MatrixFactorization(keras.Model):
    def __init__(self, config: Config):
        super().__init__(name="matrix_factorization")
        # Variables start at zero; build_model loads config.initial_weights(), as the torch twin does.
        self.global_bias = self.add_weight(shape=(), initializer="zeros", name="global_bias")
        self.user_factors = layers.Embedding(
            config.num_users, config.num_factors, embeddings_initializer="zeros", name="user_factors"
        )
        self.item_factors = layers.Embedding(
            config.num_items, config.num_factors, embeddings_initializer="zeros", name="item_factors"
        )
        self.user_bias = layers.Embedding(
            config.num_users, 1, embeddings_initializer="zeros", name="user_bias"
        )
        self.item_bias = layers.Embedding(
            config.num_items, 1, embeddings_initializer="zeros", name="item_bias"
        )
        self.l2_factors, self.l2_biases = config.l2_factors, config.l2_biases

    def call(self, inputs, training=False):
        user, item = inputs["user"], inputs["item"]
        p_u = self.user_factors(user)  # (B, F)
        q_i = self.item_factors(item)  # (B, F)
        b_u = self.user_bias(user)[:, 0]  # (B, 1) -> (B,)
        b_i = self.item_bias(item)[:, 0]  # (B, 1) -> (B,)
        rating = self.global_bias + b_u + b_i + ops.sum(p_u * q_i, axis=-1)  # (B,)
        # Koren et al.'s L2 term for these rows; compute_loss averages it over the batch.
        penalty = self.l2_factors * (
            ops.sum(p_u * p_u, axis=-1) + ops.sum(q_i * q_i, axis=-1)
        ) + self.l2_biases * (b_u * b_u + b_i * b_i)  # (B,)
        return rating, penalty


def build_model(config: Config) -> MatrixFactorization:
    model = MatrixFactorization(config)
    model({"user": ops.zeros((1,), "int64"), "item": ops.zeros((1,), "int64")})  # creates the variables
    set_weights(model, weight_map(config), initial_weights(config))  # the same start as the torch twin
    return model


def weight_map(config: Config) -> list[Row]:
    """Keras variable path -> torch state_dict name, one row per tensor (no transforms needed)."""
    prefix = "matrix_factorization"
    return [
        row(f"{prefix}/global_bias", "global_bias"),
        *embedding(f"{prefix}/user_factors", "user_factors"),
        *embedding(f"{prefix}/item_factors", "item_factors"),
        *embedding(f"{prefix}/user_bias", "user_bias"),
        *embedding(f"{prefix}/item_bias", "item_bias"),
    ]


def call(model: MatrixFactorization, batch: dict, training: bool = False) -> dict:
    rating, penalty = model({"user": batch["user"], "item": batch["item"]}, training=training)
    return {"rating": rating, "penalty": penalty}


def compute_loss(outputs: dict, batch: dict, config: Config):
    error = outputs["rating"] - batch["rating"]  # (B,)
    return ops.mean(error * error) + ops.mean(outputs["penalty"])
