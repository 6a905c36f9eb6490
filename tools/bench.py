"""Training throughput of the twins: the plain-loop ceiling, the zoo trainer and a same-architecture peer.

    python tools/bench.py all                                   # every model, both frameworks, fp32
    python tools/bench.py zoo/vision/cnn --preset resnet18-224 --precision fp32,bf16 --json runs/bench.json
    python tools/bench.py zoo/vision/cnn --preset resnet18-224 --precision bf16 --channels-last --compile
    python tools/bench.py all --fw keras --keras-backend tensorflow,jax,torch --smoke
    python tools/bench.py zoo/vision/cnn --smoke --concurrent 2  # solo vs two concurrent trainings
    python tools/bench.py --write-docs runs/bench.json [...]    # docs/PERFORMANCE.md's training block

For each model, framework (and Keras backend), precision: examples/s of
- plain:   the plain loop of the twin, the ceiling a trainer can reach. torch: the trainer's own step
           (torch_trainer.train_step: autocast, loss, backward, clipping, optimizer) on one batch already
           on the device; Keras: plain `model.fit` of the twin (keras_trainer.TrainModule) over one
           in-memory batch repeated;
- trainer: the zoo trainer on the real iterator: `Session.train_epoch` over a BatchIterator of
           synthetic examples (torch_trainer, or keras_trainer.setup + Session); beside it, the host's
           side of that input alone (reads and one copy per batch: host_input_rate), the rate above
           which the trainer cannot go whatever the device does;
- peer:    the same architecture from the frameworks' own libraries, in the same plain loop: torchvision's
           ResNet (torch CNN), keras-hub's ResNetBackbone (Keras CNN), torch.nn.Transformer and keras-hub's
           TransformerEncoder/Decoder (transformer). Where no peer has this config's architecture, the
           row says why.
and the ratios trainer/plain and plain/peer. Every figure is the median over --repeats timed blocks of
--steps steps (the trainer: one epoch of --steps batches per block), after --warmup untimed steps, with
the device synchronised at the end of each block. A Keras block is one `fit` call, which costs about 0.1 s
of its own (callbacks, the epoch iterator, its worker threads), once per epoch in a real run: blocks of
small models need a few hundred steps for that to fade (measured on 2 cores, recsys/mf on JAX: 44k
examples/s at 20 steps a block, 246k at 200). Everything is measured in one process per framework:
Keras backends are fixed per process, so each Keras backend runs in a child process of this one.

Threads default to the cores this process may use (shared/train/threads.py), and OpenMP threads wait
passively (OMP_WAIT_POLICY=PASSIVE, set before torch loads): --concurrent N starts the trainer
measurement alone, then N copies at once, and prints each copy's speed against the solo one.
--json prints the results as one JSON line (tools/site.py --bench reads it); --json FILE writes them.
Exit 0; 2 on a usage error. A measurement that fails is reported in its row, the others go on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _path  # noqa: F401
import numpy as np

from shared.cli import Parser, check_fw, main_wrapper, positive_int
from shared.data.columns import Split
from shared.data.iterator import BatchIterator
from shared.data.prefetch import stream
from shared.errors import UserError
from shared.markdown import replace_block
from shared.models import get_spec
from shared.recipe import parse_set_flags
from shared.train.request import SNAPSHOT_EVERY
from shared.train.run import follow_snapshots
from shared.train.threads import default_threads, passive_openmp
from zoo import registry

ROOT = Path(__file__).resolve().parent.parent
PRESETS = {  # --preset NAME: a model's config for a standard comparison (--set still overrides)
    "resnet18-224": {
        "model": "vision/cnn",
        "set": {
            "variant": "resnet18",
            "stem": "imagenet",
            "base_width": 64,
            "in_channels": 3,
            "image_size": 224,
            "num_classes": 1000,
            "batch_size": 128,
            "optimizer": "sgd",
            "lr": 0.1,
            "warmup_steps": 0,
        },  # fmt: skip
    },
}
MEASURES = ("plain", "trainer", "peer")
BACKENDS = ("tensorflow", "jax", "torch")
START, END = "<!-- training-throughput:start -->", "<!-- training-throughput:end -->"
DOCS = ROOT / "docs" / "PERFORMANCE.md"
POOL_BYTES = 2**31  # the trainer's synthetic examples: at most this much host memory (fewer steps if more)


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def barrier(a) -> None:
    """--concurrent: every copy waits here, after its warm-up, until all have arrived (files in a folder),
    so that their timed blocks overlap."""
    if not getattr(a, "barrier", None):
        return
    folder, count = a.barrier.rsplit(":", 1)
    a.meetings = getattr(a, "meetings", 0) + 1  # one meeting per measurement, in the same order in every copy
    Path(folder, f"{os.getpid()}.{a.meetings}").touch()
    while len(list(Path(folder).glob(f"*.{a.meetings}"))) < int(count):
        time.sleep(0.05)


def median_rate(block, examples_per_block: int, repeats: int) -> dict:
    """block() runs one timed block and returns when the device has finished it."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        block()
        rates.append(examples_per_block / (time.perf_counter() - start))
    return {"examples_per_s": round(statistics.median(rates), 2), "spread": [round(min(rates), 2),
            round(max(rates), 2)]}  # fmt: skip


def host_input_rate(iterator, steps: int, repeats: int) -> dict:
    """The host's side of a trainer's input alone, over the same pool: the iterator's reads ahead (the
    prefetch thread's gathers of stored rows) and one copy of every batch into fresh memory (the torch
    trainer's page-locked staging does that copy; the Keras trainer hands the gathered arrays on). A
    trainer slower than its plain loop and near this rate is waiting for its input, not for the device."""
    epoch = [0]

    def block():
        rows, _ = stream(iterator, epoch[0])
        for batch in rows:
            for value in batch.values():
                np.copyto(np.empty(value.shape, value.dtype), value)
        epoch[0] += 1

    return median_rate(block, iterator.batch_size * steps, repeats)


_POOLS: dict = {}


def as_stored(arrays: dict[str, np.ndarray], seed: int = 1) -> Split:
    """Synthetic examples as the zoo's datasets store them, so that the trainer reads, moves and converts
    what it would on real data: images uint8 with the image tasks' decode (cast, /255, standardise per
    channel), segmentation masks uint8 cast back to their dtype; other columns as generated."""
    rng = np.random.default_rng(seed)
    raw, decode = {}, {}
    for key, value in arrays.items():
        if key == "image" and value.dtype.kind == "f" and value.ndim == 4:
            channels = value.shape[-1]
            raw[key] = rng.integers(0, 256, size=value.shape, dtype=np.uint8)
            decode[key] = [("cast", "float32"), ("div", 255.0), ("sub", [0.5] * channels),
                           ("div", [0.25] * channels)]  # fmt: skip
        elif key == "mask" and value.dtype.kind in "iu" and 0 <= value.min() <= value.max() < 256:
            raw[key], decode[key] = value.astype(np.uint8), [("cast", value.dtype.name)]
        else:
            raw[key] = value
    return Split(raw, decode)


def pool_iterator(spec, config, batch_size: int, steps: int):
    """A BatchIterator of synthetic examples, stored as datasets store them (as_stored), holding `steps`
    batches (fewer where that would pass POOL_BYTES); returns (iterator, its batches per epoch)."""
    key = (spec.name, repr(config), batch_size, steps)
    if key not in _POOLS:  # one pool per config: the precisions measured after each other share it
        _POOLS.clear()
        one = as_stored(spec.example_batch(config, batch_size=batch_size, seed=1)).raw
        per_batch = sum(v.nbytes for v in one.values())
        batches = max(1, min(steps, POOL_BYTES // max(per_batch, 1)))
        examples = spec.example_batch(config, batch_size=batch_size * batches, seed=1)
        _POOLS[key] = (as_stored(examples), batches)
    arrays, batches = _POOLS[key]
    return BatchIterator(arrays, batch_size, seed=config.seed), batches


# ---------------------------------------------------------------- torch


def torch_device(choice: str):
    import torch

    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("--device cuda: torch sees no GPU; use --device cpu")
        return torch.device("cuda")
    return torch.device("cpu")


def torch_sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def torch_plain_block(step, device, steps: int):
    def block():
        for _ in range(steps):
            step()
        torch_sync(device)

    return block


def torch_plain(spec, config, batch, device, precision, compile, channels_last, a) -> dict:
    import torch

    from shared.data.torch_data import to_tensors
    from shared.train import torch_trainer

    torch.manual_seed(0)
    impl = spec.impl("torch")
    model = spec.build("torch", config).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    trained = torch.compile(model) if compile else model
    optimizer = torch_trainer.make_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    tensors = to_tensors(batch, device)

    def step():
        torch_trainer.train_step(
            impl, trained, optimizer, tensors, config, precision=precision, scaler=scaler
        )

    torch_plain_block(step, device, a.warmup)()
    return median_rate(torch_plain_block(step, device, a.steps), a.batch * a.steps, a.repeats)


def torch_trainer_rate(spec, config, device, precision, compile, a) -> dict:
    from shared.train import torch_input, torch_trainer

    runtime = torch_trainer.setup(
        1 if device.type == "cuda" else 0, a.threads, config.seed, precision=precision
    )
    iterator, steps = pool_iterator(spec, config, a.batch, a.steps)
    session = torch_trainer.Session(spec, config, runtime, total_steps=10**6, precision=precision,
                                    compile=compile)  # fmt: skip
    follow_snapshots(session, SNAPSHOT_EVERY)  # the loss reads of a tools/train.py run
    epoch = [0]

    def block(start=0):
        session.train_epoch(iterator, epoch[0], start, None, progress=False)  # ends with a read: synchronised
        epoch[0] += 1

    if a.warmup:
        block(max(0, len(iterator) - a.warmup))
    barrier(a)
    result = median_rate(block, a.batch * steps, a.repeats)
    channels_last = device.type == "cuda" and torch_input.is_convolutional(session.model)
    host = host_input_rate(iterator, steps, a.repeats)["examples_per_s"]
    return {
        **result,
        "steps_per_block": steps,
        "channels_last": channels_last,
        "host_input_examples_per_s": host,
    }


def torchvision_resnet(config):
    """torchvision's ResNet with this config's stem, input channels and classes; (None, why) if none fits."""
    import torch
    import torchvision

    if config.base_width != 64:
        return None, f"torchvision's ResNet has base width 64; this config has {config.base_width}"
    net = getattr(torchvision.models, config.variant)(num_classes=config.num_classes)
    if config.stem == "small":
        net.conv1 = torch.nn.Conv2d(config.in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = torch.nn.Identity()
    elif config.in_channels != 3:
        net.conv1 = torch.nn.Conv2d(config.in_channels, 64, 7, 2, 3, bias=False)
    return net, f"torchvision.models.{config.variant}"


class TorchTransformerPeer:
    """torch.nn.Transformer with this config's sizes, embeddings, sinusoidal positions and a tied output."""

    def __new__(cls, config):
        import math

        import torch

        class Peer(torch.nn.Module):
            def __init__(self):
                super().__init__()
                c = config
                self.src = torch.nn.Embedding(c.src_vocab_size, c.d_model)
                self.tgt = torch.nn.Embedding(c.tgt_vocab_size, c.d_model)
                self.core = torch.nn.Transformer(
                    c.d_model, c.num_heads, c.num_encoder_layers, c.num_decoder_layers, c.ffn_dim,
                    c.dropout, c.activation, batch_first=True, norm_first=c.norm_first,
                    layer_norm_eps=c.layer_norm_epsilon,
                )  # fmt: skip
                length = max(c.max_src_len, c.max_tgt_len)
                pos = torch.arange(length)[:, None] * torch.exp(
                    torch.arange(0, c.d_model, 2) * (-math.log(c.max_wavelength) / c.d_model)
                )
                table = torch.zeros(length, c.d_model)
                table[:, 0::2], table[:, 1::2] = torch.sin(pos), torch.cos(pos)
                self.register_buffer("positions", table)

            def forward(self, src, src_mask, tgt_in, tgt_mask):
                scale = config.d_model**0.5
                s = self.src(src) * scale + self.positions[: src.shape[1]]
                t = self.tgt(tgt_in) * scale + self.positions[: tgt_in.shape[1]]
                causal = torch.ones(t.shape[1], t.shape[1], dtype=torch.bool, device=t.device).triu(1)
                out = self.core(s, t, tgt_mask=causal, src_key_padding_mask=~src_mask,
                                tgt_key_padding_mask=~tgt_mask, memory_key_padding_mask=~src_mask,
                                tgt_is_causal=True)  # fmt: skip
                return out @ self.tgt.weight.T

        return Peer()


def torch_peer(spec, config, batch, device, precision, compile, channels_last, a) -> dict:
    import torch

    from shared.data.torch_data import to_tensors
    from shared.train import torch_trainer

    torch.manual_seed(0)
    tensors = to_tensors(batch, device)
    smoothing = float(getattr(config, "label_smoothing", 0.0))
    if spec.name == "vision/cnn":
        net, name = torchvision_resnet(config)
        if net is None:
            return {"name": None, "why": name}

        def loss_of(model):
            images = tensors["image"].permute(0, 3, 1, 2)  # NHWC as stored; the twin permutes inside too
            logits = model(images)
            return torch.nn.functional.cross_entropy(
                logits.float(), tensors["label"], label_smoothing=smoothing
            )

    elif spec.name == "nlp/transformer":
        net, name = TorchTransformerPeer(config), "torch.nn.Transformer"

        def loss_of(model):
            logits = model(tensors["src"], tensors["src_mask"], tensors["tgt_in"], tensors["tgt_mask"])
            return torch.nn.functional.cross_entropy(
                logits.float().flatten(0, 1), tensors["tgt_out"].flatten(), ignore_index=config.pad_id,
                label_smoothing=smoothing,
            )  # fmt: skip

    else:
        return {"name": None, "why": "no same-architecture model in torch's own libraries"}
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    trained = torch.compile(net) if compile else net
    optimizer = torch_trainer.make_optimizer(net, config)
    dtype = torch_trainer.AUTOCAST_DTYPES[precision]

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_of(trained)
        loss.backward()
        if config.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip_norm)
        optimizer.step()

    torch_plain_block(step, device, a.warmup)()
    return {
        "name": name,
        **median_rate(torch_plain_block(step, device, a.steps), a.batch * a.steps, a.repeats),
    }


def measure_torch(spec, config, precision, compile, a) -> dict:
    import torch

    from shared.train import torch_trainer

    device = torch_device(a.device)
    torch.set_num_threads(a.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as torch_trainer.setup sets it: every measurement alike
    torch_trainer.check_request(1 if device.type == "cuda" else 0, precision)
    batch = spec.example_batch(config, batch_size=a.batch, seed=0)
    row = {"backend": "torch", "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
           "channels_last": bool(a.channels_last)}  # fmt: skip
    jobs = {"plain": torch_plain, "trainer": None, "peer": torch_peer}
    for what in a.measure:
        try:
            if what == "trainer":
                row["trainer"] = torch_trainer_rate(spec, config, device, precision, compile, a)
            else:
                result = jobs[what](spec, config, batch, device, precision, compile, a.channels_last, a)
                row.update(result if what == "plain" else {"peer": result})
        except Exception as err:  # noqa: BLE001  (a failed measurement is reported in its row)
            row[f"{what}_error"] = first_line(err)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


# ---------------------------------------------------------------- Keras (in this process: one backend)


def keras_fit_block(module, batches: list, steps_per_block: int):
    from shared.data.keras_data import EpochBatches

    data = EpochBatches(batches[:1] * steps_per_block)

    def block():
        module.fit(data, epochs=1, verbose=0, shuffle=False)  # fit reads its logs back: synchronised

    return block


def keras_jit(compile: bool):
    import keras

    # Keras on JAX without jit runs op by op: no one trains so; jit_compile="auto" is fit's default there.
    return True if compile else ("auto" if keras.backend.backend() == "jax" else False)


def fit_module(body, loss_fn, parts: list):
    """A keras.Model for plain `fit` on batch dicts: body(batch, training) -> outputs, loss_fn(outputs in
    float32, batch) -> loss; `parts` are the layers it owns (so that fit trains their variables)."""
    import keras
    from keras import ops

    def to_float32(value):
        half = keras.backend.standardize_dtype(value.dtype) in ("float16", "bfloat16")
        return ops.cast(value, "float32") if half else value

    class FitModule(keras.Model):
        def __init__(self):
            super().__init__()
            self.parts = parts

        def call(self, batch, training=False):
            return body(batch, training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            return loss_fn(keras.tree.map_structure(to_float32, y_pred), x)

    return FitModule()


def keras_plain(spec, config, batch, precision, compile, a) -> dict:
    import keras

    from shared.train import keras_trainer

    keras.utils.set_random_seed(0)
    impl = spec.impl("keras")
    with keras_trainer.dtype_policy(precision):
        net = spec.build("keras", config)
        module = fit_module(
            lambda b, training: impl.call(net, b, training=training),
            lambda outputs, b: impl.compute_loss(outputs, b, config),
            [net],
        )
        module.compile(optimizer=keras_trainer.make_optimizer(config), jit_compile=keras_jit(compile))
    if a.warmup:
        keras_fit_block(module, [batch], a.warmup)()
    return median_rate(keras_fit_block(module, [batch], a.steps), a.batch * a.steps, a.repeats)


def keras_trainer_rate(spec, config, gpus, precision, compile, a) -> dict:
    from shared.train import keras_trainer

    runtime = keras_trainer.setup(gpus, a.threads, config.seed, precision=precision)
    iterator, steps = pool_iterator(spec, config, a.batch, a.steps)
    session = keras_trainer.Session(spec, config, runtime, total_steps=10**6, precision=precision,
                                    compile=compile)  # fmt: skip
    follow_snapshots(session, SNAPSHOT_EVERY)  # the loss reads of a tools/train.py run
    epoch = [0]

    def block(start=0):
        session.train_epoch(iterator, epoch[0], start, None, progress=False)
        epoch[0] += 1

    if a.warmup:
        block(max(0, len(iterator) - a.warmup))
    barrier(a)
    result = median_rate(block, a.batch * steps, a.repeats)
    host = host_input_rate(iterator, steps, a.repeats)["examples_per_s"]
    return {**result, "steps_per_block": steps, "host_input_examples_per_s": host}


def keras_peer_model(spec, config):
    """(model, name) of keras-hub's same-architecture model with a loss, or (None, why)."""
    import keras

    try:
        import keras_hub
    except Exception as err:  # noqa: BLE001  (not installed, or its TensorFlow import refused)
        return None, f"keras-hub unavailable ({first_line(err)})"
    from keras import ops

    smoothing = float(getattr(config, "label_smoothing", 0.0))

    if spec.name == "vision/cnn":
        if config.stem != "imagenet":
            return None, "keras-hub's ResNetBackbone has the ImageNet stem only (7x7/2 conv, 3x3/2 pool)"
        w = config.base_width
        backbone = keras_hub.models.ResNetBackbone(
            input_conv_filters=[w], input_conv_kernel_sizes=[7], stackwise_num_filters=[w, 2 * w, 4 * w, 8 * w],
            stackwise_num_blocks=list(config.layers), stackwise_num_strides=[1, 2, 2, 2],
            block_type="basic_block" if config.block == "basic" else "bottleneck_block",
            image_shape=(None, None, config.in_channels),
        )  # fmt: skip
        pool, head = keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(config.num_classes)
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)

        def body(batch, training):
            return head(pool(backbone(batch["image"], training=training)))

        def loss_fn(logits, batch):
            return loss(ops.one_hot(batch["label"], config.num_classes), logits)

        return fit_module(body, loss_fn, [backbone, pool, head]), "keras_hub.models.ResNetBackbone"
    if spec.name == "nlp/transformer":
        c = config
        src_embed = keras.layers.Embedding(c.src_vocab_size, c.d_model)
        tgt_embed = keras.layers.Embedding(c.tgt_vocab_size, c.d_model)
        positions = keras_hub.layers.SinePositionEncoding(max_wavelength=c.max_wavelength)
        kwargs = {"intermediate_dim": c.ffn_dim, "num_heads": c.num_heads, "dropout": c.dropout,
                  "activation": c.activation, "layer_norm_epsilon": c.layer_norm_epsilon,
                  "normalize_first": c.norm_first}  # fmt: skip
        encoders = [keras_hub.layers.TransformerEncoder(**kwargs) for _ in range(c.num_encoder_layers)]
        decoders = [keras_hub.layers.TransformerDecoder(**kwargs) for _ in range(c.num_decoder_layers)]
        output = keras.layers.Dense(c.tgt_vocab_size)

        def body(batch, training):
            s = src_embed(batch["src"]) * c.d_model**0.5
            s = s + positions(s)
            for layer in encoders:
                s = layer(s, padding_mask=batch["src_mask"], training=training)
            t = tgt_embed(batch["tgt_in"]) * c.d_model**0.5
            t = t + positions(t)
            for layer in decoders:
                t = layer(t, s, decoder_padding_mask=batch["tgt_mask"], encoder_padding_mask=batch["src_mask"],
                          training=training)  # fmt: skip
            return output(t)

        loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=smoothing, reduction=None
        )

        def loss_fn(logits, batch):
            per_token = loss(ops.one_hot(batch["tgt_out"], c.tgt_vocab_size), logits)
            mask = ops.cast(batch["tgt_out"] != c.pad_id, "float32")
            return ops.sum(per_token * mask) / ops.maximum(ops.sum(mask), 1.0)

        parts = [src_embed, tgt_embed, positions, *encoders, *decoders, output]
        return fit_module(body, loss_fn, parts), "keras_hub.layers.TransformerEncoder/Decoder"
    return None, "no same-architecture model in keras-hub"


def keras_peer(spec, config, batch, precision, compile, a) -> dict:
    import keras

    from shared.train import keras_trainer

    keras.utils.set_random_seed(0)
    with keras_trainer.dtype_policy(precision):
        model, name = keras_peer_model(spec, config)
        if model is None:
            return {"name": None, "why": name}
        model.compile(optimizer=keras_trainer.make_optimizer(config), jit_compile=keras_jit(compile))
    if a.warmup:
        keras_fit_block(model, [batch], a.warmup)()
    return {
        "name": name,
        **median_rate(keras_fit_block(model, [batch], a.steps), a.batch * a.steps, a.repeats),
    }


def keras_gpus() -> int:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "torch":
            import torch

            return min(1, torch.cuda.device_count())
        if backend == "jax":
            import jax

            return min(1, len([d for d in jax.devices() if d.platform == "gpu"]))
        import tensorflow as tf

        return min(1, len(tf.config.list_physical_devices("GPU")))
    except Exception:  # noqa: BLE001  (no GPU runtime: the CPU)
        return 0


def measure_keras(spec, config, precision, compile, a) -> dict:
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        torch.set_num_threads(a.threads)
    gpus = 0 if a.device == "cpu" else keras_gpus()
    if a.device == "cuda" and not gpus:
        raise UserError(f"--device cuda: Keras' {backend} backend sees no GPU")
    batch = spec.example_batch(config, batch_size=a.batch, seed=0)
    row = {"backend": backend, "device": "gpu" if gpus else "cpu", "jit_compile": str(keras_jit(compile))}
    for what in a.measure:
        try:
            if what == "plain":
                row.update(keras_plain(spec, config, batch, precision, compile, a))
            elif what == "trainer":
                row["trainer"] = keras_trainer_rate(spec, config, gpus, precision, compile, a)
            else:
                row["peer"] = keras_peer(spec, config, batch, precision, compile, a)
        except Exception as err:  # noqa: BLE001
            row[f"{what}_error"] = first_line(err)
    return row


# ---------------------------------------------------------------- rows, children, output


def configs(a):
    """(spec, config) per model, from --smoke, --preset and --set."""
    for name in a.names:
        spec = registry.get(name)
        values = dict(spec.smoke_config) if a.smoke else {}
        if a.preset:
            values.update(PRESETS[a.preset]["set"])
        values.update(a.overrides)
        if a.batch_size:
            values["batch_size"] = a.batch_size
        yield spec, spec.config(**values)


class Stopped(BaseException):
    """SIGTERM (a `timeout` around the benchmark): the rows measured so far are written, then it exits."""


def stop_on_sigterm() -> None:
    def handler(signum, frame):
        raise Stopped

    signal.signal(signal.SIGTERM, handler)


def config_label(a) -> str:
    """Which config a row measured: the preset, smoke or default, and the --set overrides."""
    base = a.preset or ("smoke" if a.smoke else "default")
    return " ".join([base, *(f"{k}={v}" for k, v in sorted(a.overrides.items()))])


def measure_here(a, fw: str, rows: list[dict], save) -> None:
    """Every row of framework `fw` (Keras: this process's backend) measured in this process, appended to
    `rows` one by one (save() after each)."""
    for spec, config in configs(a):
        a.batch = config.batch_size
        for precision in a.precisions:
            row = {"model": spec.name, "framework": fw, "config": config_label(a), "precision": precision,
                   "compile": a.compile, "batch_size": a.batch, "threads": a.threads}  # fmt: skip
            try:
                row.update(
                    (measure_torch if fw == "torch" else measure_keras)(spec, config, precision, a.compile, a)
                )
            except UserError:
                raise
            except Exception as err:  # noqa: BLE001
                row["error"] = first_line(err)
            finish_row(row)
            rows.append(row)
            print(describe(row), flush=True)
            save()


def finish_row(row: dict) -> None:
    plain, trainer = row.get("examples_per_s"), (row.get("trainer") or {}).get("examples_per_s")
    peer = (row.get("peer") or {}).get("examples_per_s")
    if plain and trainer:
        row["trainer_over_plain"] = round(trainer / plain, 3)
    if plain and peer:
        row["twin_over_peer"] = round(plain / peer, 3)


def describe(row: dict) -> str:
    head = (f"{row['model']:18s} {row['framework']:5s} {row.get('backend', '?'):10s} {row['precision']:4s}"
            f"{' compiled' if row['compile'] else ''}{' channels_last' if row.get('channels_last') else ''}"
            f" batch {row['batch_size']}:")  # fmt: skip
    parts = []
    if "error" in row:
        return f"{head} {row['error']}"
    for what, value in (("plain", row), ("trainer", row.get("trainer")), ("peer", row.get("peer"))):
        if f"{what}_error" in row:
            parts.append(f"{what} failed ({row[f'{what}_error']})")
        elif value and value.get("examples_per_s"):
            parts.append(f"{what} {value['examples_per_s']:.1f}/s")
        elif what == "peer" and value and value.get("why"):
            parts.append(f"no peer ({value['why']})")
    for ratio in ("trainer_over_plain", "twin_over_peer"):
        if ratio in row:
            parts.append(f"{ratio.replace('_over_', '/')} {row[ratio]:.2f}")
    return f"{head} " + ", ".join(parts)


def child_command(a, backend_or_fw: str, out: str, extra=()) -> list[str]:
    fw = "torch" if backend_or_fw == "torch-fw" else "keras"
    args = [sys.executable, str(Path(__file__).resolve()), ",".join(a.names), "--fw", fw,
            "--precision", ",".join(a.precisions), "--measure", ",".join(a.measure), "--steps", str(a.steps),
            "--repeats", str(a.repeats), "--warmup", str(a.warmup), "--threads", str(a.threads),
            "--device", a.device, "--json", out, "--child"]  # fmt: skip
    for flag in ("smoke", "compile", "channels_last"):
        if getattr(a, flag):
            args.append("--" + flag.replace("_", "-"))
    if a.preset:
        args += ["--preset", a.preset]
    if a.batch_size:
        args += ["--batch-size", str(a.batch_size)]
    for item in a.set:
        args += ["--set", item]
    return [*args, *extra]


def run_child(command: list[str], env: dict, what: str, out: str) -> list[dict]:
    """Rows a child bench process wrote to `out` (as far as it got when stopped); one error row when it
    failed as a whole."""
    proc = subprocess.Popen([out if c == "@OUT" else c for c in command], env=env, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    stopped = None
    try:
        _, err = proc.communicate()
    except Stopped as stop:  # the child was sent SIGTERM too (timeout signals the process group)
        stopped, err = stop, ""
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    sys.stderr.write(err[-4000:] if proc.returncode else "")
    try:
        data = json.loads(Path(out).read_text())
        rows = data["results"] + data.get("other", [])
    except (OSError, ValueError, KeyError):
        lines = [line for line in err.strip().splitlines() if line.strip()]
        reason = lines[-1][:300] if lines else f"exit status {proc.returncode}"
        rows = [{"error": f"{what} failed: {reason}"}]
    if stopped is not None:
        raise Stopped(rows)
    return rows


def keras_backends(a) -> list[str]:
    if a.keras_backend:
        return a.keras_backend
    return [os.environ.get("KERAS_BACKEND") or "tensorflow"]  # what the Keras trainer's process would use


def versions() -> dict:
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "keras", "keras-hub", "jax", "jaxlib", "tensorflow", "numpy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    if "tensorflow" in found and "tensorflow" in sys.modules and sys.modules["tensorflow"] is None:
        found["tensorflow"] += " (hidden from Python)"  # as on the GPU machine, which has none
    return found


def machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def gpu_name() -> str | None:
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    names = [n.strip() for n in proc.stdout.splitlines() if n.strip()]
    return names[0] if proc.returncode == 0 and names else None


def report(a, argv, rows: list[dict], concurrent: list | None = None) -> dict:
    failed = [r for r in rows if not r.get("examples_per_s")]
    return {
        "tool": "tools/bench.py",
        "command": shlex.join(["python", "tools/bench.py", *argv]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "gpu": gpu_name(),
        "threads": a.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "versions": versions(),
        "pid": os.getpid(),
        "results": [
            r for r in rows if r.get("examples_per_s")
        ],  # the plain loop measured (the site's figure)
        "other": failed,
        **({"concurrent": concurrent} if concurrent is not None else {}),
    }


def keras_over_torch(rows: list[dict]) -> list[str]:
    """Keras trainer / torch trainer at the same model, precision and compile."""
    lines = []

    def key(r):
        return tuple(r.get(k) for k in ("model", "config", "batch_size", "precision", "compile"))

    torch_rows = {key(r): r for r in rows if r.get("framework") == "torch"}
    for r in rows:
        theirs = torch_rows.get(key(r))
        ours = (r.get("trainer") or {}).get("examples_per_s")
        base = ((theirs or {}).get("trainer") or {}).get("examples_per_s")
        if r.get("framework") == "keras" and ours and base:
            r["keras_over_torch_trainer"] = round(ours / base, 3)
            lines.append(f"{r['model']:18s} keras ({r['backend']}) / torch trainer, {r['precision']}: "
                         f"{ours / base:.2f}")  # fmt: skip
    return lines


def concurrent_runs(a, argv) -> list[dict]:
    """The trainer measurement of each model alone, then `a.concurrent` copies at once (child processes)."""
    if len(a.frameworks) != 1 or len(a.precisions) != 1:
        raise UserError("--concurrent measures one framework at one precision: pass one --fw and --precision")
    fw = a.frameworks[0]
    a.measure = ["trainer"]
    env = dict(os.environ)
    if fw == "keras":
        env["KERAS_BACKEND"] = keras_backends(a)[0]
    folder = tempfile.mkdtemp(prefix="bench-concurrent-")
    command = child_command(a, "torch-fw" if fw == "torch" else "keras", "@OUT")

    def start(i: int, copies: int) -> tuple:
        out, meeting = os.path.join(folder, f"run{i}.json"), os.path.join(folder, f"barrier{min(i, 1)}")
        os.makedirs(meeting, exist_ok=True)
        return subprocess.Popen([*(out if c == "@OUT" else c for c in command), "--barrier", f"{meeting}:{copies}"],
                                env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True), out  # fmt: skip

    def rows_of(proc, out) -> list[dict]:
        _, err = proc.communicate()
        try:
            data = json.loads(Path(out).read_text())
            return data["results"] + data.get("other", [])
        except (OSError, ValueError, KeyError):
            raise UserError(f"a benchmark run failed: {(err.strip().splitlines() or ['?'])[-1]}") from None

    solo = rows_of(*start(0, 1))
    together = [start(i + 1, a.concurrent) for i in range(a.concurrent)]
    runs = [rows_of(*pair) for pair in together]
    results = []
    for index, row in enumerate(solo):
        alone = (row.get("trainer") or {}).get("examples_per_s")
        shared = [(r[index].get("trainer") or {}).get("examples_per_s") for r in runs]
        entry = {"model": row["model"], "framework": fw, "backend": row.get("backend"),
                 "precision": row["precision"], "threads": a.threads, "solo_examples_per_s": alone,
                 "concurrent_examples_per_s": shared,
                 "ratios": [round(s / alone, 3) if alone and s else None for s in shared]}  # fmt: skip
        results.append(entry)
        shown = ", ".join(f"run {i + 1}: {s or 0:.1f}/s ({q if q is not None else 'failed'}x)"
                          for i, (s, q) in enumerate(zip(shared, entry["ratios"])))  # fmt: skip
        print(f"{row['model']:18s} {fw} trainer alone {alone or 0:.1f}/s; {a.concurrent} at once: {shown}")
    return results


# ---------------------------------------------------------------- docs/PERFORMANCE.md


def rate(value) -> str:
    return f"{value:,.0f}" if value and value >= 100 else (f"{value:.1f}" if value else "")


def render(results: list[tuple[str, dict]]) -> str:
    files = " ".join(name for name, _ in results)
    lines = [f"Generated by `python tools/bench.py --write-docs {files}` from the JSON files the commands "
             "below wrote; do not edit by hand. examples/s, median of timed blocks; plain: the twin's "
             "plain loop (the ceiling), trainer: the zoo trainer on its iterator, peer: the same "
             "architecture from the framework's own library."]  # fmt: skip
    for name, data in results:
        lines += ["", f"### `{data['command']}`", ""]
        v = data.get("versions", {})
        shown = ", ".join(f"{k} {v[k]}" for k in v)
        device = data.get("gpu") or "no GPU"
        lines.append(f"Measured {data.get('date')} on {data.get('machine')} ({device}), {data.get('threads')} "
                     f"thread(s), OMP_WAIT_POLICY={data.get('omp_wait_policy')}; {shown}. File: `{name}`.")  # fmt: skip
        rows = data.get("results", []) + data.get("other", [])
        if rows:
            lines += ["", "| model | config | fw | backend | precision | compile | batch | plain | trainer | trainer / "
                      "plain | peer | peer ex/s | plain / peer | Keras / torch trainer | notes |",
                      "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |"]  # fmt: skip
            for r in rows:
                if "model" not in r:
                    lines.append(f"| | | | | | | | | | | | | | | {r.get('error', '')} |")
                    continue
                peer = r.get("peer") or {}
                notes = [r[k] for k in ("error", "plain_error", "trainer_error", "peer_error") if r.get(k)]
                notes += [f"no peer: {peer['why']}"] if peer.get("why") else []
                notes += ["channels_last"] if r.get("channels_last") else []
                host = (r.get("trainer") or {}).get("host_input_examples_per_s")
                notes += [f"host input alone {rate(host)} ex/s"] if host else []
                cells = [r["model"], r.get("config", ""), r["framework"], r.get("backend", ""), r["precision"],
                         "yes" if r["compile"] else "no", str(r["batch_size"]), rate(r.get("examples_per_s")),
                         rate((r.get("trainer") or {}).get("examples_per_s")),
                         f"{r['trainer_over_plain']:.2f}" if "trainer_over_plain" in r else "",
                         peer.get("name") or "", rate(peer.get("examples_per_s")),
                         f"{r['twin_over_peer']:.2f}" if "twin_over_peer" in r else "",
                         f"{r['keras_over_torch_trainer']:.2f}" if "keras_over_torch_trainer" in r else "",
                         "; ".join(n.replace("|", "/") for n in notes)]  # fmt: skip
                lines.append("| " + " | ".join(cells) + " |")
        for c in data.get("concurrent", []):
            lines.append("")
            lines.append(f"Concurrent: {c['model']} ({c['framework']}, {c['precision']}) trainer alone "
                         f"{rate(c['solo_examples_per_s'])} examples/s; at once: "
                         + ", ".join(f"{rate(s)} ({q}x)" for s, q in zip(c["concurrent_examples_per_s"],
                                                                        c["ratios"])))  # fmt: skip
    return "\n".join(lines)


def write_docs(files: list[str], docs: Path = DOCS) -> int:
    results = []
    for name in files:
        try:
            data = json.loads(Path(name).read_text())
            if data.get("tool") != "tools/bench.py" or "results" not in data:
                raise ValueError("not a tools/bench.py --json FILE result")
        except (OSError, ValueError) as err:
            raise UserError(f"--write-docs {name}: {str(err).splitlines()[0]}") from None
        results.append((name, data))
    keras_over_torch([r for _, d in results for r in d.get("results", []) + d.get("other", [])])
    text = docs.read_text() if docs.exists() else ""
    docs.write_text(replace_block(text, START, END, render(results), "## Training throughput"))
    print(f"wrote the training throughput block of {docs} from {len(results)} file(s)")
    return 0


# ---------------------------------------------------------------- main


def parse(argv):
    parser = Parser(prog="tools/bench.py", description=__doc__)
    parser.add_argument(
        "model", nargs="?", help="a model (zoo/vision/cnn), several comma-separated, or 'all'"
    )
    parser.add_argument("--fw", default="torch,keras", help="frameworks, comma-separated (default both)")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16, fp16 (GPU), comma-separated")
    parser.add_argument("--compile", action="store_true", help="torch.compile / Keras jit_compile")
    parser.add_argument("--channels-last", action="store_true", help="plain loop and peer in channels_last")
    parser.add_argument("--batch-size", type=positive_int, help="examples per step (default: the config's)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a standard config (resnet18-224: 224 px)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--smoke", action="store_true", help="each model's small smoke config")
    parser.add_argument("--measure", default=",".join(MEASURES), help="plain,trainer,peer (default all)")
    parser.add_argument("--keras-backend", help="tensorflow,jax,torch: one child process each "
                        "(default: KERAS_BACKEND, else tensorflow)")  # fmt: skip
    parser.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: a GPU if any"
    )
    parser.add_argument("--steps", type=positive_int, default=10, help="steps per timed block (default 10)")
    parser.add_argument(
        "--repeats", type=positive_int, default=5, help="timed blocks, median kept (default 5)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument(
        "--threads", type=positive_int, help="CPU threads (default: the cores this process may use)"
    )
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON results: a line, or FILE")
    parser.add_argument(
        "--concurrent", type=positive_int, metavar="N", help="alone, then N trainings at once"
    )
    parser.add_argument("--write-docs", nargs="+", metavar="RESULT.json", help="render docs/PERFORMANCE.md")
    parser.add_argument(
        "--docs", default=str(DOCS), help="the file --write-docs writes (default docs/PERFORMANCE.md)"
    )
    parser.add_argument("--barrier", help=argparse_hidden())
    parser.add_argument("--child", action="store_true", help=argparse_hidden())
    a = parser.parse_args(argv)
    if a.write_docs:
        if a.model:
            raise UserError("--write-docs reads result files and measures nothing: leave the model out")
        return a
    if not a.model:
        raise UserError("name a model (zoo/vision/cnn), several comma-separated, or 'all'")
    if a.warmup < 0:
        raise UserError(f"--warmup must be >= 0; found {a.warmup}")
    a.frameworks = [check_fw(fw.strip()) for fw in a.fw.split(",") if fw.strip()]
    a.precisions = [p.strip() for p in a.precision.split(",") if p.strip()]
    for p in a.precisions:
        if p not in ("fp32", "bf16", "fp16"):
            raise UserError(f"--precision must list fp32, bf16 or fp16; found {p!r}")
    a.measure = [m.strip() for m in a.measure.split(",") if m.strip()]
    for m in a.measure:
        if m not in MEASURES:
            raise UserError(f"--measure must list {', '.join(MEASURES)}; found {m!r}")
    if a.keras_backend is not None:
        a.keras_backend = [b.strip() for b in a.keras_backend.split(",") if b.strip()]
        for b in a.keras_backend:
            if b not in BACKENDS:
                raise UserError(f"--keras-backend must list {', '.join(BACKENDS)}; found {b!r}")
    if a.model == "all":
        a.names = registry.list_models()
    else:
        a.names = [get_spec(n.strip()).name for n in a.model.split(",") if n.strip()]
    if a.preset and PRESETS[a.preset]["model"] not in a.names or a.preset and len(a.names) > 1:
        raise UserError(
            f"--preset {a.preset} is a config of zoo/{PRESETS[a.preset]['model']}: name that model"
        )
    a.overrides = parse_set_flags(a.set)
    list(configs(a))  # a bad --set or --preset fails here, before anything is measured
    a.threads = a.threads or default_threads()
    return a


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    passive_openmp()  # before torch or TensorFlow loads (shared/train/threads.py)
    a = parse(argv)
    if a.write_docs:
        return write_docs(a.write_docs, Path(a.docs))
    stop_on_sigterm()
    rows: list[dict] = []

    def save(stopped: bool = False) -> None:
        if a.json and a.json != "-":
            data = report(a, argv, rows)
            if stopped:
                data["stopped"] = "SIGTERM (a time limit) before every row was measured"
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(data, indent=1) + "\n")

    if a.concurrent:
        data = report(a, argv, [], concurrent_runs(a, argv))
        save = lambda stopped=False: None  # noqa: E731  (written once below)
    else:
        try:
            measure_all(a, rows, save)
        except Stopped as stop:
            rows += stop.args[0] if stop.args else []
            save(stopped=True)
            print("stopped by SIGTERM: the rows measured so far are written", file=sys.stderr)
            return 1
        for line in [] if a.child else keras_over_torch(rows):
            print(line)
        data = report(a, argv, rows)
    if a.json == "-":
        print(json.dumps(data))
    elif a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(data, indent=1) + "\n")
    return 0


def measure_all(a, rows: list[dict], save) -> None:
    for fw in a.frameworks:
        if fw == "torch":
            measure_here(a, "torch", rows, save)
        elif a.child:  # a child process: this process's Keras backend
            measure_here(a, "keras", rows, save)
        else:
            for backend in keras_backends(a):
                env = {**os.environ, "KERAS_BACKEND": backend}
                with tempfile.TemporaryDirectory() as folder:
                    out = (
                        f"{a.json}.keras-{backend}.part"
                        if a.json and a.json != "-"
                        else f"{folder}/rows.json"
                    )
                    try:
                        got = run_child(child_command(a, "keras", "@OUT"), env, f"Keras on {backend}", out)
                    finally:
                        if out.endswith(".part"):
                            Path(out).unlink(missing_ok=True)
                for r in got:
                    if "model" not in r:  # the child failed as a whole
                        r.update({"model": ",".join(a.names), "framework": "keras", "backend": backend,
                                  "precision": ",".join(a.precisions), "compile": a.compile,
                                  "batch_size": a.batch_size or 0})  # fmt: skip
                        print(describe(r), flush=True)
                rows += got
                save()


if __name__ == "__main__":
    main_wrapper(main)()
