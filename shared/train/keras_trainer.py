"""The Keras trainer: model.fit with callbacks, running the same recipe as shared/train/torch_trainer.py.

Two optimizers are written in torch's formulation so that one step is the same step in both twins:
Adam(W) puts epsilon outside the bias correction of the second moment (Keras puts it inside), and
SGD with momentum accumulates gradients, not lr-scaled gradients (the two differ once the lr changes).
"""

from __future__ import annotations

import os

import keras
import numpy as np
from keras import ops

from shared.data.keras_data import EpochBatches, to_tensors
from shared.errors import UserError
from shared.train.schedule import lr_at


class TorchStyleAdamW(keras.optimizers.AdamW):
    """AdamW whose update is torch.optim.AdamW's: lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)."""

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        local_step = ops.cast(self.iterations + 1, variable.dtype)
        bias_1 = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), local_step)
        bias_2 = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), local_step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        denominator = ops.add(ops.sqrt(ops.divide(v, bias_2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias_1), denominator))


class TorchStyleSGD(keras.optimizers.SGD):
    """SGD with momentum as torch.optim.SGD: buf = momentum * buf + g; w -= lr * buf."""

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(gradient, lr))
            return
        buf = self.momentums[self._get_variable_index(variable)]
        self.assign(buf, ops.add(ops.multiply(buf, ops.cast(self.momentum, variable.dtype)), gradient))
        self.assign_sub(variable, ops.multiply(buf, lr))


def setup(gpus: int, threads: int | None, seed: int) -> str:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
            except RuntimeError:  # already initialised in this process: keep what it has
                pass
        found = tf.config.list_physical_devices("GPU")
        for gpu in found:
            tf.config.experimental.set_memory_growth(gpu, True)  # never grab all GPU memory
        if gpus == 0 and found:
            tf.config.set_visible_devices([], "GPU")
    else:
        import torch

        found = list(range(torch.cuda.device_count()))
    if gpus > len(found):
        raise UserError(f"--gpus {gpus} asked for {gpus} GPU(s) but Keras sees {len(found)}; use --gpus 0 for the CPU")
    if gpus > 1:
        raise UserError(f"--gpus {gpus}: multi-GPU data parallel is not available in this trainer yet; use --gpus 1")
    keras.utils.set_random_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return "gpu" if gpus else "cpu"


def make_optimizer(config) -> keras.optimizers.Optimizer:
    clip = {"global_clipnorm": config.grad_clip_norm} if config.grad_clip_norm > 0 else {}
    if config.optimizer == "sgd":
        return TorchStyleSGD(learning_rate=config.lr, momentum=config.sgd_momentum, **clip)
    return TorchStyleAdamW(learning_rate=config.lr, beta_1=config.adam_beta1, beta_2=config.adam_beta2,
                           epsilon=config.adam_epsilon, weight_decay=config.weight_decay, **clip)


class TrainModule(keras.Model):
    """Wraps a twin so that fit() feeds it whole batch dicts and scores it with the twin's compute_loss."""

    def __init__(self, net: keras.Model, impl, config):
        super().__init__(name="train_module")
        self.net, self.impl, self.config = net, impl, config

    def call(self, batch, training=False):
        return self.impl.call(self.net, batch, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = self.impl.compute_loss(y_pred, x, self.config)
        return loss + ops.sum(self.net.losses) if self.net.losses else loss


def loss_and_grads(impl, model: keras.Model, batch: dict, config) -> tuple[float, dict[str, np.ndarray]]:
    """Train-mode loss and gradients per Keras variable path on one numpy batch."""
    tensors = to_tensors(batch)
    variables = model.trainable_variables
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = impl.compute_loss(impl.call(model, tensors, training=True), tensors, config)
        grads = tape.gradient(loss, variables)
    elif keras.backend.backend() == "torch":
        for v in variables:
            v.value.grad = None
        loss = impl.compute_loss(impl.call(model, tensors, training=True), tensors, config)
        loss.backward()
        grads = [v.value.grad for v in variables]
    else:
        raise UserError(f"gradients on the {keras.backend.backend()} backend are not supported; use tensorflow or torch")
    return float(ops.convert_to_numpy(loss)), {
        v.path: np.asarray(ops.convert_to_numpy(g)) for v, g in zip(variables, grads) if g is not None
    }


class _StepCallback(keras.callbacks.Callback):
    """Sets the learning rate before every step (the same function torch's LambdaLR reads) and reports
    each step's loss (Keras logs a running mean; the step's own loss is recovered from it)."""

    def __init__(self, session, on_step):
        super().__init__()
        self.session, self.on_step, self.previous_mean = session, on_step, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        s = self.session
        s.lr = lr_at(s.config, s.step, s.total_steps)
        s.optimizer.learning_rate.assign(s.lr)

    def on_train_batch_end(self, batch, logs=None):
        mean = float(logs["loss"])
        loss = (batch + 1) * mean - batch * self.previous_mean
        self.previous_mean = mean
        if self.on_step:
            self.on_step(self.session.step, loss, self.session.lr)
        self.session.step += 1


class Session:
    def __init__(self, spec, config, model, total_steps: int, device: str, jit_compile: bool = False):
        self.spec, self.config, self.model, self.total_steps = spec, config, model, total_steps
        self.impl = spec.impl("keras")
        self.optimizer = make_optimizer(config)
        self.module = TrainModule(model, self.impl, config)
        self.module.compile(optimizer=self.optimizer, jit_compile=jit_compile)
        self.step, self.lr = 0, config.lr

    def train_epoch(self, batches: list[dict], epoch: int, on_step=None, progress: bool = True) -> float:
        history = self.module.fit(EpochBatches(batches), epochs=1, verbose=1 if progress else 0, shuffle=False,
                                  callbacks=[_StepCallback(self, on_step)])
        return float(history.history["loss"][-1])
