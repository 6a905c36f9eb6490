"""Parity through the real trainers: torch_trainer.Session and keras_trainer.Session, the sessions
tools/train.py runs (torch: its optimizer, LambdaLR schedule and train_step; Keras: TrainModule, fit,
the step callback that sets the learning rate, the torch-style optimizers), driven from the same canonical
initial weights (the torch twin's init, sent to Keras through the weight map) over the same batches.

    result = trainers.run(spec, config, steps=12, float64=True)
    checks = trainers.step_checks(result["records"])       # loss, learning rate, gradient norm per step

Each step records both trainers' loss (what on_step reports), learning rate (torch: the LambdaLR value the
step used; Keras: the optimizer's learning-rate variable the step read) and gradient global norm (the
sessions' opt-in track_grad_norm).

float64: both sessions are built as the trainers build them and then run in float64: torch's model is
widened with .double() (its optimizer holds the same Parameter objects), Keras' session is built under floatx
float64 with the fp32 precision's dtype policy mapped to float64 (keras_trainer.POLICIES), and the batches are
cast to float64. Then the two trainers agree far below float32 rounding (verdict.py's early tolerances).

Next to the lockstep engine (engine.py): this module checks what users run; the engine steps both twins in
its own loop, which is what makes bisecting possible (float64 probes at identical weights name the first
step and tensor where a bug enters). Use this to find that the trainers differ, the engine to find where.
"""

from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np

from shared.crosscheck import Check, float64_batch
from shared.data import load as load_data
from shared.data.iterator import BatchIterator
from shared.frameworks import load_both
from shared.metrics import evaluate_arrays
from shared.parity.engine import data_source
from shared.parity.verdict import (
    EARLY_GRAD_NORM_RTOL,
    EARLY_LOSS_RTOL,
    LR_RTOL,
    METRIC_SPREAD,
    metric_summary,
    rel,
    summary_check,
)


def prepare(spec, config, smoke: bool = True) -> dict:
    """The model's (smoke) data, prepared by its task: {"train": arrays, "validation": ..., "test": ...}."""
    data, kwargs = data_source(spec, smoke)
    splits, _ = spec.task_module.prepare(load_data(data, **kwargs), config)
    return splits


@contextlib.contextmanager
def keras_float64():
    """Keras sessions built inside compute in float64: floatx, the global policy and the trainer's fp32
    policy all float64; put back after."""
    import keras

    from shared.train import keras_trainer

    previous = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        with mock.patch.dict(keras_trainer.POLICIES, {"fp32": "float64"}):
            yield
    finally:
        keras.config.set_floatx(previous[0])
        keras.config.set_dtype_policy(previous[1])


def run(
    spec,
    config,
    *,
    splits: dict | None = None,
    steps: int | None = None,
    float64: bool = False,
    evaluate: bool = False,
    threads: int | None = None,
) -> dict:
    """Train both trainers' sessions side by side on the same batches. steps=None: config.epochs epochs of
    the training split; steps=N: one epoch of N batches (the first N x batch_size examples), the schedule
    spanning them. Returns {"records": [per step], "test": {"torch": metrics, "keras": metrics} or None}."""
    load_both()
    from keras import ops

    from shared.train import keras_trainer, torch_trainer

    splits = prepare(spec, config) if splits is None else splits
    train = splits["train"]
    if steps is not None:
        train = {k: v[: steps * config.batch_size] for k, v in train.items()}
    if float64:
        train = float64_batch(train)
    iterator = BatchIterator(train, config.batch_size, seed=config.seed, drop_last=True)
    epochs = 1 if steps is not None else config.epochs
    total = epochs * len(iterator)

    t = torch_trainer.Session(
        spec, config, torch_trainer.setup(0, threads, config.seed), total, track_grad_norm=True
    )
    runtime = keras_trainer.setup(0, threads, config.seed)
    with keras_float64() if float64 else contextlib.nullcontext():
        k = keras_trainer.Session(spec, config, runtime, total, track_grad_norm=True)
    if float64:
        t.model.double()
        narrow = [v.path for v in k.model.variables if "float" in str(v.dtype) and v.dtype != "float64"]
        if narrow:
            raise ValueError(f"the Keras session kept float32 variables under float64: {narrow[:5]}")
    spec.set_weights(k.model, spec.get_weights(t.model))  # the canonical init

    records: list[dict] = []

    def on_torch(step, loss, lr):
        records.append({"step": step, "loss_torch": loss, "lr_torch": lr, "grad_norm_torch": t.grad_norm})

    def on_keras(step, loss, lr):
        records[step].update(
            loss_keras=loss,
            lr_keras=float(ops.convert_to_numpy(k.schedule(step))),  # the rate the optimizer applied
            lr_keras_schedule=lr,
            grad_norm_keras=k.grad_norm,
        )

    for epoch in range(epochs):
        t.train_epoch(iterator, epoch, 0, on_torch, progress=False)
    for epoch in range(epochs):
        k.train_epoch(iterator, epoch, 0, on_keras, progress=False)
    test = None
    if evaluate:
        test = {
            fw: evaluate_arrays(spec, s.model, splits["test"], config, config.eval_batch_size)
            for fw, s in (("torch", t), ("keras", k))
        }
    return {"seed": config.seed, "records": records, "test": test, "total_steps": total}


def step_checks(records: list[dict]) -> list[Check]:
    """Per-step agreement of two float64 runs (verdict.py's early-window tolerances): loss, gradient norm,
    and the learning rate (torch's LambdaLR against the Keras optimizer's variable, a float32: ~6e-8)."""

    def worst(a: str, b: str) -> tuple[float, int]:
        errors = [rel(r[a], r[b]) for r in records]
        return max(errors), int(np.argmax(errors))

    out = []
    for name, (a, b), tolerance in (
        ("trainer_loss_float64", ("loss_torch", "loss_keras"), EARLY_LOSS_RTOL),
        ("trainer_grad_norm_float64", ("grad_norm_torch", "grad_norm_keras"), EARLY_GRAD_NORM_RTOL),
        ("trainer_learning_rate", ("lr_torch", "lr_keras"), LR_RTOL),
    ):
        error, at = worst(a, b)
        out.append(Check(name, error, tolerance, error <= tolerance, f"relative, worst at step {at}"))
    return out


def metric_check(runs: list[dict], metric: str) -> Check:
    """Final `metric` over seeds: |mean_torch - mean_keras| <= METRIC_SPREAD pooled seed std devs, or 1% of
    the metric (verdict.metric_summary's rule); at least 2 seeds."""
    note = f" (tolerance {METRIC_SPREAD:g} pooled std or 1%)"
    return summary_check(f"trainer_final_{metric}", metric_summary(runs)[metric], len(runs), note)
