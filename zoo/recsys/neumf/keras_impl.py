"""NeuMF (He et al. 2017, Neural Collaborative Filtering) in Keras 3 (keras.ops only); it mirrors
torch_impl.py class for class, attribute for attribute. weights.py maps its variables to torch's names.

    GMF tower:  p_u^G * q_i^G                                  (B, mf_dim)
    MLP tower:  ReLU layers over [p_u^M, q_i^M]                (B, mlp_layers[-1])
    logits:     prediction([GMF, MLP])                         (B,)   sigmoid in the loss
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from torchlike import Linear

from .config import Config


class NeuMF(keras.Model):
    def __init__(self, config: Config):
        super().__init__(name="neumf")
        # sparse_embeddings: on TensorFlow an Embedding's gradient holds only the touched rows (IndexedSlices)
        half = config.mlp_layers[0] // 2
        self.gmf_user = layers.Embedding(config.num_users, config.mf_dim, name="gmf_user")
        self.gmf_item = layers.Embedding(config.num_items, config.mf_dim, name="gmf_item")
        self.mlp_user = layers.Embedding(config.num_users, half, name="mlp_user")
        self.mlp_item = layers.Embedding(config.num_items, half, name="mlp_item")
        widths = config.mlp_layers
        self.mlp = [Linear(a, b, name=f"mlp_{i}") for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))]
        self.prediction = Linear(config.mf_dim + config.mlp_layers[-1], 1, name="prediction")
        self(ops.zeros((1,), "int64"), ops.zeros((1,), "int64"))  # creates the variables now
        self.reset_parameters(config)

    def reset_parameters(self, config: Config):
        # The authors' initialisers, drawn with numpy from config.seed as in the torch twin, so both
        # frameworks start from one point: embeddings N(0, std^2), MLP Glorot-uniform, prediction
        # LeCun-uniform, biases 0.
        rng = np.random.default_rng([config.seed, 101])
        for table in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            values = rng.normal(0.0, config.embedding_init_std, tuple(table.embeddings.shape))  # (rows, dim)
            table.embeddings.assign(values.astype(np.float32))
        for layer in [*self.mlp, self.prediction]:
            fan_in, fan_out = layer.kernel.shape
            limit = math.sqrt(3.0 / fan_in if layer is self.prediction else 6.0 / (fan_in + fan_out))
            values = rng.uniform(-limit, limit, (fan_out, fan_in))  # (out, in), torch's layout
            layer.kernel.assign(values.T.astype(np.float32))
            layer.bias.assign(ops.zeros(layer.bias.shape))

    def call(self, user, item, training=False):
        gmf = self.gmf_user(user) * self.gmf_item(item)  # (B, mf_dim)
        x = ops.concatenate([self.mlp_user(user), self.mlp_item(item)], axis=-1)  # (B, mlp_layers[0])
        for layer in self.mlp:
            x = ops.relu(layer(x))  # (B, width)
        return self.prediction(ops.concatenate([gmf, x], axis=-1))[:, 0]  # (B, 1) -> (B,) logits


def build_model(config: Config) -> NeuMF:
    return NeuMF(config)


def call(model: NeuMF, batch: dict, training: bool = False) -> dict:
    return {"logits": model(batch["user"], batch["item"], training=training)}


def compute_loss(outputs: dict, batch: dict, config: Config):
    # Binary cross-entropy on logits, the stable form torch's binary_cross_entropy_with_logits uses.
    x, y = outputs["logits"], batch["label"]
    return ops.mean(ops.relu(x) - x * y + ops.log1p(ops.exp(-ops.abs(x))))
