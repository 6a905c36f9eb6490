"""Keras' JAX backend in the Keras trainer: devices, data parallel and gradients (imports jax).

Data parallel is `keras.distribution.DataParallel` over N GPUs, or over N XLA CPU devices (the host split
by XLA_FLAGS=--xla_force_host_platform_device_count=N before jax loads; shared/frameworks.py
set_keras_backend does it for tools/train.py). The trainer feeds whole global batches; Keras shards each
along the batch dimension, device i taking rows [i B/N, (i+1) B/N): the rows torch's rank i takes from the
framework-free iterator. The step is one program over the global batch (XLA inserts the all-reduces), so
the loss is the global batch's mean, BatchNorm's statistics are the global batch's (--sync-bn or not) and
dropout draws the masks of the one-replica run.
"""

from __future__ import annotations

import os

import jax
import keras

from shared.errors import UserError
from shared.train.distributed import World, restart_count, tf_config_world


def _devices(platform: str) -> list:
    try:
        return jax.devices(platform)
    except RuntimeError:  # no such platform here (no GPU plugin, or no GPU)
        return []


def setup(gpus: int, cpu_replicas: int, precision: str, deterministic: bool):
    """(keras.distribution.DataParallel or None, World): JAX's devices for `gpus` GPUs or `cpu_replicas`
    CPU devices. UserError when the machine or this process cannot provide them."""
    if tf_config_world() is not None:
        raise UserError(
            "Keras across several nodes runs on the TensorFlow backend (TF_CONFIG); "
            "pass --keras-backend tensorflow, or train on one node"
        )
    if deterministic and "--xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (
            f"{os.environ.get('XLA_FLAGS', '')} --xla_gpu_deterministic_ops=true".strip()
        )
    if not gpus:
        jax.config.update("jax_platforms", "cpu")  # a GPU machine trains on the CPU when asked to
        found = _devices("cpu")
        if cpu_replicas > len(found):
            raise UserError(
                f"--cpu-replicas {cpu_replicas} on JAX needs {cpu_replicas} XLA CPU devices, found "
                f"{len(found)}: jax was loaded before XLA_FLAGS=--xla_force_host_platform_device_count="
                f"{cpu_replicas} was set; start a new process (tools/train.py sets it)"
            )
        devices = [f"cpu:{d.id}" for d in found[:cpu_replicas]]
    else:
        found = _devices("gpu")
        if gpus > len(found):
            raise UserError(
                f"--gpus {gpus} asked for {gpus} GPU(s) but JAX finds {len(found)} on this machine "
                '(its CUDA plugin: pip install -e ".[gpu]"); use --gpus '
                f"{len(found)} or, for data parallel on the CPU, --cpu-replicas N"
            )
        capability = getattr(found[0], "compute_capability", "0.0")
        if precision == "bf16" and tuple(int(p) for p in str(capability).split(".")[:2]) < (8, 0):
            raise UserError(
                f"--precision bf16 needs a GPU of compute capability 8.0 or more; found {capability}"
            )
        devices = [f"gpu:{d.id}" for d in found[:gpus]]
    distribution = keras.distribution.DataParallel(devices=devices) if len(devices) > 1 else None
    return distribution, World(restart=restart_count())


def loss_and_grads(impl, model: keras.Model, tensors: dict, config):
    """(loss, gradients in model.trainable_variables' order): jax.value_and_grad of the train-mode loss as
    a function of the trainable values, run in a keras.StatelessScope. What the forward pass assigned
    (BatchNorm statistics, dropout's seed states) is written back, as the other backends' eager passes do."""
    trainable = model.trainable_variables
    others = [v for v in model.variables if not v.trainable]

    def loss_fn(values):
        with keras.StatelessScope(state_mapping=list(zip(trainable, values))) as scope:
            loss = impl.compute_loss(impl.call(model, tensors, training=True), tensors, config)
        return loss, [scope.get_current_value(v) for v in others]

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)([v.value for v in trainable])
    for variable, value in zip(others, updates):
        if value is not None:
            variable.assign(value)
    return loss, grads
