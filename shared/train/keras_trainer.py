"""The Keras trainer: model.fit with callbacks, running the same recipe as shared/train/torch_trainer.py.

Two optimizers are written in torch's formulation so that one step is the same step in both twins:
Adam(W) puts epsilon outside the bias correction of the second moment (Keras puts it inside), and
SGD with momentum accumulates gradients, not lr-scaled gradients (the two differ once the lr changes).

Backends (fixed per process; tools/train.py picks one before keras loads, shared/frameworks.py):
- JAX: one GPU, or data parallel over N GPUs or N XLA CPU devices with keras.distribution.DataParallel
  (shared/train/keras_backends.py); always jit-compiled.
- TensorFlow: tf.distribute, MirroredStrategy over N GPUs or N logical CPU devices,
  MultiWorkerMirroredStrategy across nodes (TF_CONFIG).
- PyTorch: one replica.
Each replica receives its slice of every global batch from the framework-free iterator, the slices torch's
ranks receive. Mixed precision is a Keras dtype policy (fp16 adds Keras' LossScaleOptimizer); --compile is
jit_compile (the JAX backend compiles either way).

The learning rate is a LearningRateSchedule read from the optimizer's step counter (the values torch's
LambdaLR gives), and each step's loss is read off the main thread; on_step gets the losses every READ_EVERY steps, at
every multiple of Session.sync_every (a snapshot sees the state after its step) and at the epoch's end, so
that the host does not wait for the device at every step.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from shared.data.iterator import BatchIterator
from shared.data.keras_data import StreamBatches, decode_columns, to_tensors, widened
from shared.errors import UserError
from shared.frameworks import KERAS_BACKENDS, native_logs_quiet
from shared.train.distributed import World, restart_count, tf_config_world
from shared.train.schedule import lr_at

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
READ_EVERY = 32  # steps between reads of the losses from the device (a host sync)


class PerStepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """lr_at(config, step, total_steps) for the optimizer's step counter: the table of every step's rate
    (torch's LambdaLR evaluates the same function), looked up inside the compiled step."""

    def __init__(self, config, total_steps: int):
        self.config, self.total_steps = config, total_steps
        self.table = np.array([lr_at(config, s, total_steps) for s in range(max(total_steps, 1))], np.float32)

    def __call__(self, step):
        index = ops.clip(ops.cast(step, "int32"), 0, len(self.table) - 1)
        return ops.take(ops.convert_to_tensor(self.table), index)

    def get_config(self):
        return {"total_steps": self.total_steps}


class TorchStyleAdamW(keras.optimizers.AdamW):
    """AdamW whose update is torch.optim.AdamW's: lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)."""

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        local_step = ops.cast(self.iterations + 1, variable.dtype)
        bias_1 = 1 - ops.power(ops.convert_to_tensor(self.beta_1, dtype=variable.dtype), local_step)
        bias_2 = 1 - ops.power(ops.convert_to_tensor(self.beta_2, dtype=variable.dtype), local_step)
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


@dataclass
class Runtime:
    """What setup() found: the device kind, this process among the workers, the Keras backend, and when
    there is more than one replica the tf.distribute strategy (TensorFlow) or the Keras distribution (JAX)."""

    device: str  # "cpu" | "gpu"
    world: World  # processes: one per node
    strategy: object | None = None
    replicas: int = 1  # replicas over all nodes
    shard: tuple[int, int] = (0, 1)  # the run loop's iterator is global: the strategy splits each batch
    backend: str = "tensorflow"
    distribution: object | None = None

    def scope(self):
        if self.strategy is not None:
            return self.strategy.scope()
        return self.distribution.scope() if self.distribution is not None else contextlib.nullcontext()


def _setup_tensorflow(gpus: int, cpu_replicas: int, threads: int | None, precision: str, deterministic: bool):
    import tensorflow as tf

    workers = tf_config_world()
    try:
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        if cpu_replicas > 1 and not gpus:  # N logical CPU devices on the one physical CPU
            with native_logs_quiet():
                cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas
            )
    except RuntimeError:  # TensorFlow already initialised in this process: its devices are fixed
        if cpu_replicas > 1 and len(tf.config.list_logical_devices("CPU")) < cpu_replicas:
            raise UserError(
                f"--cpu-replicas {cpu_replicas}: TensorFlow was initialised in this process before "
                "the CPU could be split; start a fresh process (tools/train.py)"
            ) from None
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    with native_logs_quiet():  # CUDA's probe logs natively (cuInit failures on a CPU machine)
        found = tf.config.list_physical_devices("GPU")
    if gpus > len(found):
        raise UserError(
            f"--gpus {gpus} asked for {gpus} GPU(s) but TensorFlow finds {len(found)} on this machine; "
            f"use --gpus {len(found)} or, for data parallel on the CPU, --cpu-replicas N"
        )
    try:
        for gpu in found:
            tf.config.experimental.set_memory_growth(gpu, True)  # never grab all GPU memory
        if len(found) > gpus:
            tf.config.set_visible_devices(found[:gpus], "GPU")
    except RuntimeError:  # already initialised: memory growth and visibility are fixed
        pass
    if precision == "bf16" and gpus:
        capability = tf.config.experimental.get_device_details(found[0]).get("compute_capability", (0, 0))
        if tuple(capability) < (8, 0):
            raise UserError(
                f"--precision bf16 needs a GPU of compute capability 8.0 or more; found {capability}"
            )
    if workers is not None:
        if cpu_replicas > 1:
            raise UserError(
                "--cpu-replicas with several Keras nodes: each node trains one CPU replica; "
                "pass --cpu-replicas 1 (or GPUs with --gpus N)"
            )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        world = World(rank=workers[0], world_size=workers[1], node_rank=workers[0], restart=restart_count())
        return strategy, world
    devices = [f"/gpu:{i}" for i in range(gpus)] if gpus else [f"/cpu:{i}" for i in range(cpu_replicas)]
    strategy = tf.distribute.MirroredStrategy(devices=devices) if len(devices) > 1 else None
    return strategy, World(restart=restart_count())


def setup(
    gpus: int | None,
    threads: int | None,
    seed: int,
    *,
    cpu_replicas: int = 1,
    precision: str = "fp32",
    deterministic: bool = False,
) -> Runtime:
    """Threads, devices, memory growth and the distribution strategy; seeds every generator."""
    gpus = gpus or 0
    if precision not in POLICIES:
        raise UserError(f"--precision must be fp32, bf16 or fp16; found {precision!r}")
    if precision == "fp16" and not gpus:
        raise UserError(
            "--precision fp16 is for GPUs (CPUs have no fast float16 arithmetic, and fp16 needs "
            "loss scaling); on the CPU use --precision bf16 or fp32"
        )
    backend, strategy, distribution = keras.backend.backend(), None, None
    if backend == "tensorflow":
        strategy, world = _setup_tensorflow(gpus, cpu_replicas, threads, precision, deterministic)
    elif backend == "jax":
        from shared.train import keras_backends

        distribution, world = keras_backends.setup(gpus, cpu_replicas, precision, deterministic)
    elif backend == "torch":
        import torch

        found = torch.cuda.device_count()
        if gpus > found:
            raise UserError(
                f"--gpus {gpus} asked for {gpus} GPU(s) but torch finds {found} on this machine; "
                f"use --gpus {found} or, for data parallel on the CPU, --cpu-replicas N"
            )
        if gpus > 1 or cpu_replicas > 1:
            raise UserError(
                "Keras on the PyTorch backend trains one replica; for data parallel use --keras-backend "
                "jax (or tensorflow), or --fw torch"
            )
        if threads:
            torch.set_num_threads(threads)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        world = World(restart=restart_count())
    else:
        raise UserError(
            f"the Keras backend {backend!r} is not supported; use one of {', '.join(KERAS_BACKENDS)}"
        )
    keras.utils.set_random_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if strategy is not None:
        replicas = strategy.num_replicas_in_sync
    else:
        replicas = len(distribution.device_mesh.devices.flatten()) if distribution is not None else 1
    return Runtime(
        "gpu" if gpus else "cpu", world, strategy, replicas, backend=backend, distribution=distribution
    )


def make_optimizer(config, learning_rate=None) -> keras.optimizers.Optimizer:
    """The recipe's optimizer at config.lr, or at `learning_rate` (a float or a LearningRateSchedule)."""
    clip = {"global_clipnorm": config.grad_clip_norm} if config.grad_clip_norm > 0 else {}
    lr = config.lr if learning_rate is None else learning_rate
    if config.optimizer == "sgd":
        return TorchStyleSGD(learning_rate=lr, momentum=config.sgd_momentum, **clip)
    return TorchStyleAdamW(
        learning_rate=lr,
        beta_1=config.adam_beta1,
        beta_2=config.adam_beta2,
        epsilon=config.adam_epsilon,
        weight_decay=config.weight_decay,
        **clip,
    )


class TrainModule(keras.Model):
    """Wraps a twin so that fit() feeds it whole batch dicts and scores it with the twin's compute_loss.

    Under tf.distribute each replica's loss is divided by the number of replicas (pass `replicas`): the
    strategy sums the replicas' gradients, so the update is the gradient of the global batch's mean loss
    (torch's DDP averages instead; the step is the same). JAX's DataParallel computes the global batch's
    loss itself (replicas=1). Half-precision outputs are cast to float32 before the loss
    (mixed precision); float32 and float64 outputs are left as they are.
    """

    def __init__(self, net: keras.Model, impl, config, replicas: int = 1, multi_worker: bool = False):
        super().__init__(name="train_module")
        self.net, self.impl, self.config, self.replicas = net, impl, config, replicas
        self.multi_worker = multi_worker
        self.device_decode: dict = {}  # columns fit hands over as stored (keras_data.widened), decoded here

    def call(self, batch, training=False):
        return self.impl.call(self.net, decode_columns(batch, self.device_decode), training=training)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras 3.15 builds on the first distributed batch reduced as one nested structure, which
        MultiWorkerMirroredStrategy.reduce refuses (a dict is not a tensor). Building needs only shapes:
        take this worker's first replica's slice instead (no collective)."""
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            first = next(batches)
            break
        local = keras.tree.map_structure(lambda v: strategy.experimental_local_results(v)[0], first)
        with strategy.scope():
            self._symbolic_build(data_batch=local)

    def train_step(self, *args):  # (data) on TensorFlow and PyTorch, (state, data) on JAX
        logs = super().train_step(*args)
        if self.multi_worker:  # Keras 3.15 reduces logs across workers with axis=0: give them that axis
            logs = {k: ops.reshape(v, (1,)) for k, v in logs.items()}
        return logs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        half = ("float16", "bfloat16")
        y_pred = {
            k: ops.cast(v, "float32") if keras.backend.standardize_dtype(v.dtype) in half else v
            for k, v in y_pred.items()
        }
        loss = self.impl.compute_loss(y_pred, decode_columns(x, self.device_decode), self.config)
        loss = loss + ops.sum(self.net.losses) if self.net.losses else loss
        return loss / self.replicas if self.replicas > 1 else loss


def loss_and_grads(impl, model: keras.Model, batch: dict, config) -> tuple[float, dict[str, np.ndarray]]:
    """Train-mode loss and gradients per Keras variable path on one numpy batch."""
    tensors = to_tensors(batch)
    variables = model.trainable_variables
    if keras.backend.backend() == "jax":
        from shared.train import keras_backends

        loss, grads = keras_backends.loss_and_grads(impl, model, tensors, config)
    elif keras.backend.backend() == "tensorflow":
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
        raise UserError(
            f"gradients on the {keras.backend.backend()} backend are not supported; "
            f"use one of {', '.join(KERAS_BACKENDS)}"
        )
    return float(ops.convert_to_numpy(loss)), {
        v.path: np.asarray(ops.convert_to_numpy(g)) for v, g in zip(variables, grads) if g is not None
    }


class _StepCallback(keras.callbacks.Callback):
    """Reports each step's loss and learning rate to on_step without making the host wait for every step.

    Keras logs a running mean of the loss; the step's own loss is recovered from consecutive means. The
    means are read off the main thread (async_safe: Keras then dispatches every batch-end callback to a
    thread, where the device value is converted), and on_step runs on the main thread before a step:
    every READ_EVERY steps, before the step after each multiple of session.sync_every (the model's
    variables then hold that step's state, for a snapshot) and at the epoch's end. The learning rate is the
    optimizer's schedule; the same lr_at value is reported."""

    async_safe = True  # on_train_batch_end only records

    def __init__(self, session, on_step):
        super().__init__()
        self.session, self.on_step, self.previous_mean, self.losses = session, on_step, 0.0, []
        self.means, self.recorded = {}, threading.Condition()  # batch -> running mean, from Keras' thread
        self.reported = 0  # batches of this fit already given to on_step

    def on_train_batch_end(self, batch, logs=None):
        with self.recorded:
            self.means[batch] = float(logs["loss"])
            self.recorded.notify_all()

    def on_train_batch_begin(self, batch, logs=None):
        pending, every = batch - self.reported, self.session.sync_every
        if pending >= READ_EVERY or (pending and every and (self.session.step + pending) % every == 0):
            self.report(batch)

    def on_epoch_end(self, epoch, logs=None):
        self.report(max(self.means, default=-1) + 1)

    def report(self, upto: int) -> None:
        """on_step for batches [reported, upto), once Keras' thread has recorded them."""
        with self.recorded:
            self.recorded.wait_for(lambda: all(b in self.means for b in range(self.reported, upto)))
        if hasattr(self.model, "jax_state_sync"):  # JAX keeps the state out of the variables during fit
            self.model.jax_state_sync()
        s = self.session
        for batch in range(self.reported, upto):
            mean = self.means.pop(batch)
            loss = (batch + 1) * mean - batch * self.previous_mean
            self.previous_mean = mean
            self.losses.append(loss)
            s.lr = lr_at(s.config, s.step, s.total_steps)
            s.step += 1
            self.reported = batch + 1
            if s.grad_norm_variable is not None:  # the last step's norm: per step with sync_every=1
                s.grad_norm = float(ops.convert_to_numpy(s.grad_norm_variable))
            if self.on_step:
                self.on_step(s.step - 1, loss, s.lr)


class _BatchHooks(keras.callbacks.Callback):
    """The batch hooks of the user's Keras callbacks inside fit; fit runs once per epoch, so their train
    and epoch hooks are fired by the run loop instead (with the validation metrics)."""

    def __init__(self, callbacks: list):
        super().__init__()
        self.callbacks = callbacks

    def on_train_batch_begin(self, batch, logs=None):
        for callback in self.callbacks:
            callback.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        for callback in self.callbacks:
            callback.on_train_batch_end(batch, logs)


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Layers built inside take the precision's Keras policy; the global policy is put back after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def synchronize_batch_norm(model: keras.Model) -> None:
    """BatchNormalization over the global batch of all replicas (Keras' synchronized=True, TensorFlow)."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


class Session:
    def __init__(
        self,
        spec,
        config,
        runtime: Runtime,
        total_steps: int,
        *,
        precision: str = "fp32",
        compile: bool = False,
        sync_bn: bool = False,
        adapt=None,
        sync_every: int = 1,
        track_grad_norm: bool = False,
    ):
        """sync_every: on_step sees the session's state after step s whenever (s + 1) % sync_every == 0;
        1 (the default): after every step; 0: only at epoch ends (and every READ_EVERY steps, later).
        tools/train.py's runs set it to their snapshot cadence (shared/train/run.py)."""
        self.spec, self.config, self.total_steps, self.runtime = spec, config, total_steps, runtime
        self.world, self.impl = runtime.world, spec.impl("keras")
        self.callbacks: list = []  # the user's keras.callbacks.Callback objects (use_callbacks)
        with runtime.scope(), dtype_policy(precision):
            self.model = spec.build("keras", config)
            if adapt is not None:  # fine-tuning (shared/train/finetune.py): --init weights, --freeze
                adapt(self.model)  # trainable flags set before compile
            if sync_bn and runtime.strategy is not None:  # JAX's DataParallel: always the global batch
                synchronize_batch_norm(self.model)
            self.schedule = PerStepSchedule(config, total_steps)  # what the compiled step reads
            self.optimizer = make_optimizer(config, self.schedule)
            self.module = TrainModule(
                self.model,
                self.impl,
                config,
                replicas=runtime.replicas if runtime.strategy is not None else 1,
                multi_worker=runtime.world.distributed,
            )
            self.module.compile(  # fp16 wraps a LossScaleOptimizer
                optimizer=self.optimizer, jit_compile=compile or runtime.backend == "jax"
            )
        self.step, self.lr, self.sync_every = 0, lr_at(config, 0, total_steps), sync_every
        # Opt-in (shared/parity/trainers.py): on_step may read the global norm of the step's gradient
        # (after clipping, as the update applied it), in float64.
        self.grad_norm, self.grad_norm_variable = None, None
        if track_grad_norm:
            self._track_grad_norm()

    def _track_grad_norm(self) -> None:
        """Measure the gradient where the optimizer clips it (its one per-step hook with all gradients)."""
        with self.runtime.scope():
            norm = self.grad_norm_variable = keras.Variable(0.0, dtype="float64", trainable=False)
        clip = self.optimizer._clip_gradients

        def clip_and_measure(grads):
            grads = clip(grads)
            norm.assign(
                ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float64"))) for g in grads if g is not None))
            )
            return grads

        self.optimizer._clip_gradients = clip_and_measure

    def build_optimizer(self) -> None:
        """Create the optimizer's variables now (fit would create them at its first step)."""
        with self.runtime.scope():
            if not self.module.optimizer.built:
                self.module.optimizer.build(self.module.trainable_variables)

    def _replica_batches(self, iterator: BatchIterator, epoch: int, start: int):
        """A distributed dataset: each replica's slice of every global batch from `start` on."""
        import tensorflow as tf

        replicas = self.runtime.replicas
        shards = [
            BatchIterator(
                iterator.arrays,
                iterator.batch_size,
                shuffle=iterator.shuffle,
                seed=iterator.seed,
                drop_last=iterator.drop_last,
                rank=r,
                world_size=replicas,
            )
            for r in range(replicas)
        ]
        steps = len(iterator) - start

        def dataset_fn(context):  # one input pipeline per worker, feeding its local replicas in order
            local = replicas // context.num_input_pipelines
            mine = shards[context.input_pipeline_id * local : (context.input_pipeline_id + 1) * local]

            def slices():
                for group in zip(*(shard.batches(epoch, start) for shard in mine)):
                    yield from group

            first = next(mine[0].batches(epoch, 0))
            signature = {
                k: tf.TensorSpec((None, *v.shape[1:]), tf.as_dtype(v.dtype)) for k, v in first.items()
            }
            dataset = tf.data.Dataset.from_generator(slices, output_signature=signature)
            return dataset.apply(tf.data.experimental.assert_cardinality(steps * local))

        return self.runtime.strategy.distribute_datasets_from_function(dataset_fn)

    def train_epoch(
        self, iterator: BatchIterator, epoch: int, start: int = 0, on_step=None, progress: bool = True
    ) -> float:
        """Train on the epoch's global batches from `start`; returns their mean loss (over replicas)."""
        if start >= len(iterator):
            return float("nan")
        if self.runtime.strategy is not None:
            data = self._replica_batches(iterator, epoch, start)
        else:
            # uint8 images cross to the device as stored and are decoded in the compiled step
            self.module.device_decode = widened(iterator.stored, iterator.decode) if hasattr(
                iterator, "stored") else {}  # fmt: skip
            data = StreamBatches(iterator, epoch, start, device_decode=self.module.device_decode)
        callback = _StepCallback(self, on_step)
        with self.runtime.scope():
            self.module.fit(
                data,
                epochs=1,
                verbose=1 if progress and self.world.is_main else 0,
                shuffle=False,
                callbacks=[callback, _BatchHooks(self.callbacks)] if self.callbacks else [callback],
            )
        return float(np.mean(callback.losses))

    def use_callbacks(self, callbacks: list) -> None:
        """The user's keras.callbacks.Callback objects: self.model is the trained keras.Model; their batch
        hooks run inside every epoch's fit (run.py fires their epoch and train hooks, shared/train/callbacks.py)."""
        for callback in callbacks:
            callback.set_model(self.module)
        self.callbacks.extend(callbacks)

    def barrier(self) -> None:
        """Workers meet in the next collective step; nothing to wait for here."""

    def close(self) -> None:
        pass
