"""Tier-2 parity, the lockstep engine: both twins of a model trained side by side, step by step.

Both twins start from the same canonical initial weights (the torch twin's init, sent to Keras), consume
the same batches (shared/data/iterator.py) and follow the same schedule (shared/train/schedule.py). Each
step records both twins' loss, gradient global norm and learning rate; the end records the task's test
metrics. K seeds give a mean and a standard deviation per framework.

    result = engine.run_parity(spec, config, steps=200, seeds=3)   # JSON-able dict; result["passed"]

Each seed runs twice: its first EARLY_STEPS steps in float64 with dropout off, then the whole run in
float32 with the recipe (shared/parity/verdict.py says what is compared and within which tolerances;
shared/parity/report.py writes the result).

Finding the first divergence: where a dropout-off run parts beyond its per-step tolerance, that step and
the steps 1, 3, 7, 15, ... after it are probed: both twins' loss and gradients are recomputed in float64
at the torch twin's weights on that step's batch (tier 1's gradient check, on trained weights and real
data). The first probe that differs names the step and the tensor where a bug enters; if none differs,
the update (optimizer, weight decay, clipping) or float32 drift parted the runs.

Why a loop of its own next to shared/parity/trainers.py (which runs the trainers users run): stepping both
twins here, one optimizer step at a time, is what lets a float64 probe recompute both gradients at identical
weights on the very batch where the runs part, and so name the step and tensor of a bug. trainers.py says
whether the trainers differ; this engine, where.

Framework-free: the frameworks are reached through the spec and the trainers' loss_and_grads /
make_optimizer, as in shared/crosscheck.py, and imported only when a run starts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.checkpoint import git_commit, versions
from shared.crosscheck import Check, build_float64, compare_dicts, float64_batch, no_dropout
from shared.data import load as load_data
from shared.data.iterator import BatchIterator
from shared.errors import UserError
from shared.frameworks import load_both
from shared.metrics import evaluate_arrays
from shared.parity.verdict import (
    EARLY_STEPS,
    PROBE_LIMIT,
    PROBE_RTOL,
    STEP_RTOL,
    compare,
    first_divergence,
    parted,
    rel,
    tier1_summary,
    tolerances,
)
from shared.recipe import config_to_dict
from shared.train.schedule import lr_at


@dataclass(frozen=True)
class Injection:
    """A deliberate bug, to test the search: the Keras gradient of `tensor` times `scale` from `step` on."""

    step: int
    tensor: str
    scale: float = 1.5


def data_source(spec, smoke: bool = False) -> tuple[str, dict]:
    """(dataset name, loader kwargs): the model's default data, or its small smoke data."""
    kwargs = dict(spec.smoke_data) if smoke else {}
    return kwargs.pop("dataset", spec.dataset), kwargs


def has_dropout(config) -> bool:
    return any("dropout" in f.name and getattr(config, f.name) for f in dataclasses.fields(config))


def global_norm(grads: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values())))


def gradient_floor(grads: dict[str, np.ndarray]) -> float:
    # The tier-1 rule: each tensor relative to its own scale, floored at 1% of the largest gradient.
    return max(0.01 * max((float(np.max(np.abs(g))) for g in grads.values() if g.size), default=0.0), 1e-12)


class Twins:
    """Both twins of one seed, stepped in lockstep on the same batches with the same learning rates."""

    def __init__(
        self,
        spec,
        config,
        total_steps: int,
        probes: int = 0,
        inject: Injection | None = None,
        float64: bool = False,
    ):
        torch, keras = load_both()  # torch first, then TensorFlow (shared/frameworks.py)
        from shared.train import keras_trainer, torch_trainer  # they import the frameworks

        self.spec, self.config, self.total_steps, self.inject = spec, config, total_steps, inject
        self.t_impl, self.k_impl = spec.impl("torch"), spec.impl("keras")
        self.precision = "float64" if float64 else "float32"
        torch.manual_seed(config.seed)  # the torch init draws the same values in either precision
        keras.utils.set_random_seed(config.seed)
        if float64:
            self.torch_model, self.keras_model = build_float64(spec, config)
        else:
            self.torch_model, self.keras_model = spec.build("torch", config), spec.build("keras", config)
        spec.set_weights(self.keras_model, spec.get_weights(self.torch_model))  # the canonical init
        self.rows = spec.weight_map(config)
        self.t_opt = torch_trainer.make_optimizer(self.torch_model, config)
        self.k_opt = keras_trainer.make_optimizer(config)
        self.probes_left, self.found = probes, False  # found: a probe differed, the search is over
        self.first_part = None  # the step where the runs first parted
        self.float64 = None  # both twins in float64 for the probes, built when first needed
        self.seconds = {"torch": 0.0, "keras": 0.0}

    def keras_loss_and_grads(self, model, batch: dict, step: int) -> tuple[float, dict]:
        from shared.train import keras_trainer

        loss, grads = keras_trainer.loss_and_grads(self.k_impl, model, batch, self.config)
        if self.inject and step >= self.inject.step:
            path = next(
                (r.keras[0] for r in self.rows if r.canonical == (self.inject.tensor,) and len(r.keras) == 1),
                None,
            )
            if path is None:
                raise ValueError(
                    f"inject: {self.inject.tensor!r} is not a canonical tensor held in one Keras variable"
                )
            grads[path] = grads[path] * self.inject.scale
        return loss, grads

    def step(self, step: int, batch: dict) -> dict:
        """One optimizer step of each twin; returns what both recorded (and a probe if they parted)."""
        import keras  # both frameworks are loaded already, in load_both's order (__init__)
        import torch

        from shared.keras_weights import grads_to_canonical
        from shared.train import torch_trainer

        lr = lr_at(self.config, step, self.total_steps)
        batch = float64_batch(batch) if self.precision == "float64" else batch
        start = time.perf_counter()
        for group in self.t_opt.param_groups:
            group["lr"] = lr
        t_loss, t_grads = torch_trainer.loss_and_grads(self.t_impl, self.torch_model, batch, self.config)
        torch_seconds = time.perf_counter() - start
        start = time.perf_counter()
        self.k_opt.learning_rate.assign(lr)
        k_loss, k_by_path = self.keras_loss_and_grads(self.keras_model, batch, step)
        keras_seconds = time.perf_counter() - start

        k_grads = grads_to_canonical(self.keras_model, self.rows, k_by_path)
        grads = compare_dicts(
            "gradients", t_grads, k_grads, STEP_RTOL[self.precision], gradient_floor(t_grads)
        )
        record = {
            "step": step,
            "lr_torch": self.t_opt.param_groups[0]["lr"],
            "lr_keras": float(keras.ops.convert_to_numpy(self.k_opt.learning_rate)),
            "loss_torch": t_loss,
            "loss_keras": k_loss,
            "grad_norm_torch": global_norm(t_grads),
            "grad_norm_keras": global_norm(k_grads),
            "grad_error": grads.max_error,
            "grad_error_at": grads.detail.removeprefix("worst: "),
        }
        if parted(record, self.precision) and self.first_part is None:
            self.first_part = step
        since = step - self.first_part if self.first_part is not None else -1
        due = since >= 0 and (since + 1) & since == 0  # 0, 1, 3, 7, 15, ... steps after the parting step
        if due and self.probes_left > 0 and not self.found:
            record["probe"] = self.probe(step, batch)
            self.probes_left -= 1
            self.found = record["probe"]["forward_differs"] or bool(record["probe"]["beyond"])

        start = time.perf_counter()
        if self.config.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.torch_model.parameters(), self.config.grad_clip_norm)
        self.t_opt.step()
        self.seconds["torch"] += torch_seconds + time.perf_counter() - start
        start = time.perf_counter()
        variables = [v for v in self.keras_model.trainable_variables if v.path in k_by_path]
        self.k_opt.apply_gradients([(k_by_path[v.path], v) for v in variables])
        self.seconds["keras"] += keras_seconds + time.perf_counter() - start
        return record

    def probe(self, step: int, batch: dict) -> dict:
        """Both twins' loss and gradients in float64 at the torch twin's weights (before this step's update)."""
        from shared.keras_weights import grads_to_canonical
        from shared.train import torch_trainer

        if self.float64 is None:
            self.float64 = build_float64(self.spec, self.config)
        torch64, keras64 = self.float64
        torch_weights, keras_weights = (
            self.spec.get_weights(self.torch_model),
            self.spec.get_weights(self.keras_model),
        )
        self.spec.set_weights(torch64, torch_weights)
        self.spec.set_weights(keras64, torch_weights)
        batch = float64_batch(batch)
        t_loss, t_grads = torch_trainer.loss_and_grads(self.t_impl, torch64, batch, self.config)
        k_loss, k_by_path = self.keras_loss_and_grads(keras64, batch, step)
        k_grads = grads_to_canonical(keras64, self.rows, k_by_path)
        floor = gradient_floor(t_grads)
        errors = {
            n: compare_dicts(n, {n: g}, {n: k_grads[n]} if n in k_grads else {}, PROBE_RTOL, floor).max_error
            for n, g in t_grads.items()
        }  # canonical order, which follows the forward pass
        beyond = [[n, e] for n, e in errors.items() if e > PROBE_RTOL]
        params = compare_dicts(
            "parameters",
            {n: torch_weights[n] for n in t_grads},
            {n: keras_weights[n] for n in t_grads},
            STEP_RTOL[self.precision],
        )
        return {
            "step": step,
            "loss_error": rel(t_loss, k_loss),
            "forward_differs": rel(t_loss, k_loss) > PROBE_RTOL,
            "gradient_error": max(errors.values(), default=0.0),
            "beyond": beyond,
            # A gradient error enters at one layer and flows toward the input: the tensor beyond
            # tolerance nearest the output (last in definition order) is where to look first.
            "layer": beyond[-1][0] if beyond else None,
            "parameter_error": params.max_error,
            "parameter_error_at": params.detail.removeprefix("worst: "),
        }


def train_lockstep(
    spec,
    config,
    splits: dict,
    steps: int,
    total_steps: int,
    *,
    diagnose: bool,
    inject: Injection | None = None,
    float64: bool = False,
    evaluate: bool = True,
) -> dict:
    """`steps` lockstep steps of both twins (schedule over `total_steps`), then their test metrics.

    diagnose: probe where the runs part (only meaningful with dropout off, where both are deterministic).
    """
    twins = Twins(spec, config, total_steps, PROBE_LIMIT if diagnose else 0, inject, float64)
    iterator = BatchIterator(splits["train"], config.batch_size, seed=config.seed, drop_last=True)
    batches = itertools.chain.from_iterable(iterator.batches(epoch) for epoch in itertools.count())
    start = time.perf_counter()
    records = [twins.step(step, batch) for step, batch in zip(range(steps), batches)]
    out = {
        "seed": config.seed,
        "precision": twins.precision,
        "records": records,
        "train_seconds": dict(twins.seconds),
        "wall_seconds": time.perf_counter() - start,
        "first_divergence": first_divergence(records, twins.precision) if diagnose else None,
    }
    if evaluate:
        models = {"torch": twins.torch_model, "keras": twins.keras_model}
        out["test"] = {
            fw: evaluate_arrays(spec, m, splits["test"], config, config.eval_batch_size)
            for fw, m in models.items()
        }
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def run_parity(
    spec,
    config=None,
    *,
    steps: int | None = None,
    seeds: int = 1,
    smoke: bool = False,
    early_steps: int = EARLY_STEPS,
    threads: int | None = None,
    inject: Injection | None = None,
    tier1: list[Check] | None = None,
    command: str = "",
) -> dict:
    """Train both twins in lockstep for `steps` steps (default: the recipe's epochs) and `seeds` seeds,
    after `early_steps` steps in float64 with dropout off."""
    load_both()  # torch first, then TensorFlow: the order that does not crash
    from shared.train import keras_trainer, torch_trainer

    config = spec.config() if config is None else config
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1; found {seeds}")
    data, data_kwargs = data_source(spec, smoke)
    splits, _ = spec.task_module.prepare(load_data(data, **data_kwargs), config)
    per_epoch = len(BatchIterator(splits["train"], config.batch_size, drop_last=True))
    if per_epoch == 0:
        raise UserError(
            f"the training split of {data} is smaller than one batch of {config.batch_size}: "
            "pass --set batch_size=<smaller>"
        )
    steps = config.epochs * per_epoch if steps is None else steps
    if steps < 1:
        raise UserError(f"--steps must be >= 1; found {steps}")
    torch_trainer.setup(0, threads, config.seed)
    keras_trainer.setup(0, threads, config.seed)

    runs, early = [], []
    for k in range(seeds):
        seeded = spec.config(**{**config_to_dict(config), "seed": config.seed + k})
        early.append(
            train_lockstep(
                spec,
                no_dropout(spec, seeded),
                splits,
                min(early_steps, steps),
                steps,
                diagnose=True,
                inject=inject,
                float64=True,
                evaluate=False,
            )
        )
        runs.append(
            train_lockstep(
                spec, seeded, splits, steps, steps, diagnose=not has_dropout(seeded), inject=inject
            )
        )

    checks, metrics = compare(runs, early, spec.task_module)
    divergence = next((r["first_divergence"] for r in early + runs if r["first_divergence"]), None)
    return {
        "model": spec.name,
        "task": spec.task,
        "data": data,
        "data_kwargs": data_kwargs,
        "smoke": smoke,
        "steps": steps,
        "steps_per_epoch": per_epoch,
        "seeds": [r["seed"] for r in runs],
        "config": config_to_dict(config),
        "primary_metric": spec.task_module.PRIMARY_METRIC,
        "passed": all(c.passed for c in checks),
        "checks": [c.as_dict() for c in checks],
        "metrics": metrics,
        "first_divergence": divergence,
        "tier1": tier1_summary(tier1) if tier1 is not None else None,
        "tolerances": tolerances(early_steps),
        "runs": runs,
        "early_runs": early,
        "command": command,
        "threads": threads,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "git_commit": git_commit(),
    }
