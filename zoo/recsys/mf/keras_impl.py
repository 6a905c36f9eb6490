"""Biased matrix factorization (Koren, Bell and Volinsky 2009) in Keras 3 (keras.ops only); it mirrors
torch_impl.py class for class, attribute for attribute. weights.py maps its variables to torch's names.

    rating(u, i) = global_bias + b_u + b_i + p_u . q_i

On the TensorFlow backend an Embedding's gradient is a tf.IndexedSlices (the touched rows only) whatever
sparse_embeddings says; plain SGD applies it with a scatter update, Adam densifies it.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from .config import Config


class MatrixFactorization(keras.Model):
    def __init__(self, config: Config):
        super().__init__(name="matrix_factorization")
        # sparse_embeddings: nothing to set, see the module docstring
        self.global_bias = self.add_weight(shape=(), initializer="zeros", name="global_bias")
        self.user_factors = layers.Embedding(config.num_users, config.num_factors, name="user_factors")
        self.item_factors = layers.Embedding(config.num_items, config.num_factors, name="item_factors")
        self.user_bias = layers.Embedding(config.num_users, 1, name="user_bias")
        self.item_bias = layers.Embedding(config.num_items, 1, name="item_bias")
        self.l2_factors, self.l2_biases = config.l2_factors, config.l2_biases
        self(ops.zeros((1,), "int64"), ops.zeros((1,), "int64"))  # creates the variables now
        self.reset_parameters(config)

    def reset_parameters(self, config: Config):
        # Drawn with numpy from config.seed, as in the torch twin, so both frameworks start from one point:
        # global bias at the scale's midpoint, factors N(0, init_std^2), biases 0.
        rng = np.random.default_rng([config.seed, 101])
        self.global_bias.assign((config.rating_min + config.rating_max) / 2)
        for table in (self.user_factors, self.item_factors):
            values = rng.normal(0.0, config.init_std, tuple(table.embeddings.shape))  # (rows, F)
            table.embeddings.assign(values.astype(np.float32))
        for table in (self.user_bias, self.item_bias):
            table.embeddings.assign(ops.zeros(table.embeddings.shape))  # (rows, 1)

    def call(self, user, item, training=False):
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
    return MatrixFactorization(config)


def call(model: MatrixFactorization, batch: dict, training: bool = False) -> dict:
    rating, penalty = model(batch["user"], batch["item"], training=training)
    return {"rating": rating, "penalty": penalty}


def compute_loss(outputs: dict, batch: dict, config: Config):
    error = outputs["rating"] - batch["rating"]  # (B,)
    return ops.mean(error * error) + ops.mean(outputs["penalty"])
