"""Tier-2 cross-framework parity: both twins trained with the same recipe, compared step by step.

Both twins start from the same canonical initial weights (the torch twin's init, sent to Keras), consume
the same batches (shared/data/iterator.py) and follow the same schedule (shared/train/schedule.py). Each
step records both twins' loss, gradient global norm and learning rate; the end records the task's test
metrics. K seeds give a mean and a standard deviation per framework.

    report = run_parity(spec, config, steps=200, seeds=3)   # JSON-able dict; report["passed"]
    write_report(report, "runs/parity/vision-cnn")          # parity.json, parity.md, loss_overlay.png
    update_card(report)                                     # its section in zoo/<model>/README.md
    update_summary()                                        # every model's row in the top README.md

What is compared, per seed:
- the first EARLY_STEPS steps again in float64 with dropout off. In float32 a ReLU input within rounding
  of zero takes opposite sides in the two twins now and then, which drops one element of one example's
  gradient (up to 10% of a tensor's gradient on small feature maps) and lets the runs drift apart. In
  float64 that does not happen, so the two runs must agree to far below float32 rounding;
- the whole run in float32 with the recipe (dropout on): loss curves within a band;
- the final test metrics: difference of the means within the seed-to-seed spread.

Finding the first divergence: where a dropout-off run parts beyond its per-step tolerance, that step and
the steps 1, 3, 7, 15, ... after it are probed: both twins' loss and gradients are recomputed in float64 at the torch twin's weights on that
step's batch (tier 1's gradient check, on trained weights and real data). The first probe that differs
names the step and the tensor where a bug enters; if none differs, the update (optimizer, weight decay,
clipping) or float32 drift parted the runs.

Framework-free: the frameworks are reached through the spec and the trainers' loss_and_grads /
make_optimizer, as in shared/crosscheck.py, and imported only when a run starts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.crosscheck import GRAD_RTOL as PROBE_RTOL  # float64 gradients at identical weights, as tier 1
from shared.crosscheck import Check, compare_dicts, no_dropout
from shared.errors import UserError

# Tolerances: set here only, and stated in every report.
EARLY_STEPS = 20  # the first steps, run again in float64 with dropout off:
EARLY_LOSS_RTOL = 1e-7  # loss per step, relative (the Keras learning rate is a float32 variable: ~1e-8)
EARLY_GRAD_NORM_RTOL = 1e-6  # gradient global norm per step, relative
STEP_RTOL = {"float32": 1e-4, "float64": 1e-6}  # a run "parts" where the loss or a tensor's gradient
# (relative to its own scale, floored at 1% of the largest, as tier 1) differs beyond this: then it is probed
LR_RTOL = 1e-6  # the learning rate at every step (Keras holds it in a float32 variable: ~6e-8)
CURVE_WINDOW = 0.10  # whole run: each loss curve is a trailing mean over 10% of the steps (at least 10),
CURVE_BAND = 0.05  # and the two stay within 5% of max(smoothed loss, CURVE_FLOOR x the starting loss).
CURVE_FLOOR = 0.25  # Late in a run the loss is small and float32 drift alone moves it by more than 5% of
# itself: measured on vision/cnn (30 steps, seed 0), curves that overlap by eye were 8% apart at loss 0.27
# (start 2.5) while the float64 window agreed to 8e-9. Below a quarter of the start the band stays at
# 1.25% of the starting loss. The window was 5% (at least 5 steps) until a 60-step CNN run (2 seeds, final
# accuracy 0.974 / 0.973, float64 probes agreeing to 3e-12) failed at 6.0%: its float32 twins part at
# step 0 (ReLU kinks) and their per-step losses differ by ~10% from step 30 on, batch-to-batch noise that
# a 5-step mean leaves in; over 10 steps the same run gives 3.2%. This band is the coarse check of the
# dropout-on runs; the float64 window and the probes are the sharp ones.
METRIC_SPREAD = 2.0  # final primary metric, 2+ seeds: |mean_torch - mean_keras| <= 2 pooled seed std devs,
METRIC_FLOOR = (
    0.01  # or 1% of the metric's size, whichever is larger (a few seeds estimate the spread loosely)
)
PROBE_LIMIT = 32  # steps probed (float64, identical weights) per run before the search stops. Probed: the
# step where the runs part, then steps 1, 3, 7, 15, ... after it (doubling gaps): float32 runs of nets
# with ReLUs part at step 0 (kink flips), and probing every step cost more than the run itself.

CARD_HEADING, README_HEADING = "## Parity (trained, tier 2)", "## Parity"
CARD_START, CARD_END = "<!-- parity-card:start -->", "<!-- parity-card:end -->"  # the card's generated block
TABLE_START, TABLE_END = "<!-- parity-table:start -->", "<!-- parity-table:end -->"  # the top README's table
SUMMARY_TAG = "parity-summary"  # a hidden JSON line in the card, read back for the top README's table
ROOT = Path(__file__).resolve().parent.parent


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


def rel(reference: float, other: float) -> float:
    return abs(reference - other) / max(abs(reference), 1e-12)


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
        from shared.crosscheck import build_float64
        from shared.frameworks import load_both
        from shared.train import keras_trainer, torch_trainer

        torch, keras = load_both()
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

        from shared.crosscheck import float64_batch
        from shared.keras_weights import grads_to_canonical
        from shared.train import torch_trainer
        from shared.train.schedule import lr_at

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
        from shared.crosscheck import build_float64, float64_batch
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


def parted(record: dict, precision: str) -> bool:
    """The two runs differ beyond rounding at this step (the loss or some tensor's gradient)."""
    tolerance = STEP_RTOL[precision]
    return rel(record["loss_torch"], record["loss_keras"]) > tolerance or record["grad_error"] > tolerance


def first_divergence(records: list[dict], precision: str) -> dict | None:
    """Where the runs part, and the first step (and tensor) whose float64 probe differs at identical weights."""
    part = next((r for r in records if parted(r, precision)), None)
    if part is None:
        return None
    probes = [r["probe"] for r in records if "probe" in r]
    found = next((p for p in probes if p["forward_differs"] or p["beyond"]), None)
    out = {
        "precision": precision,
        "parted_at": part["step"],
        "loss_error": rel(part["loss_torch"], part["loss_keras"]),
        "grad_error": part["grad_error"],
        "grad_error_at": part["grad_error_at"],
        "probed_steps": [p["step"] for p in probes],
        "step": None,
        "layer": None,
        "beyond": [],
        "probe_error": max((p["gradient_error"] for p in probes), default=0.0),
    }
    if found:
        what = (
            f"the losses differ (relative {found['loss_error']:.1e}): the forward pass differs"
            if found["forward_differs"]
            else f"the gradients differ: {len(found['beyond'])} tensor(s) beyond {PROBE_RTOL:.0e}"
        )
        out |= {
            "step": found["step"],
            "layer": found["layer"],
            "beyond": found["beyond"],
            "probe_error": found["loss_error"] if found["forward_differs"] else found["gradient_error"],
            "cause": f"at step {found['step']}, in float64 at identical weights, {what}; nearest the output: "
            f"{found['layer']}",
        }
    else:
        first = probes[0]
        out["cause"] = (
            f"{len(probes)} probed step(s) from step {first['step']}: in float64 at identical weights "
            "losses and gradients agree, so the update (optimizer, weight decay, clipping) differs or "
            f"{precision} drift grew; before step {first['step']} the parameters differ by "
            f"{first['parameter_error']:.1e} (worst {first['parameter_error_at']})"
        )
    return out


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
    from shared.data.iterator import BatchIterator
    from shared.metrics import evaluate_arrays

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


def _worst(runs: list[dict], error) -> tuple[float, str]:
    """The largest error(record) over every run's records, with where it happened."""
    worst, where = 0.0, "no steps"
    for run in runs:
        for r in run["records"]:
            if error(r) > worst or where == "no steps":
                worst, where = error(r), f"seed {run['seed']} step {r['step']}"
    return worst, where


def curve_band(records: list[dict]) -> tuple[float, int]:
    window = max(10, round(CURVE_WINDOW * len(records)))
    t = smooth([r["loss_torch"] for r in records], window)
    k = smooth([r["loss_keras"] for r in records], window)
    scale = np.maximum(np.maximum(np.abs(t), np.abs(k)), CURVE_FLOOR * abs(t[0]))
    errors = np.abs(t - k) / np.maximum(scale, 1e-12)
    return float(errors.max()), int(errors.argmax())


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing mean over `window` steps (shorter at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], np.asarray(values, np.float64)]))
    ends = np.arange(1, len(values) + 1)
    return (sums[ends] - sums[np.maximum(ends - window, 0)]) / (ends - np.maximum(ends - window, 0))


def metric_summary(runs: list[dict]) -> dict:
    """Per numeric test metric: mean, std (over seeds) and values per framework, and keras - torch."""
    out = {}
    first = runs[0]["test"]["torch"]
    for name in [
        k for k, v in first.items() if isinstance(v, int | float | np.number) and not isinstance(v, bool)
    ]:
        entry = {}
        for fw in ("torch", "keras"):
            values = [float(r["test"][fw][name]) for r in runs]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            entry[fw] = {"mean": float(np.mean(values)), "std": std, "values": values}
        pooled = float(np.sqrt((entry["torch"]["std"] ** 2 + entry["keras"]["std"] ** 2) / 2))
        size = max(abs(entry["torch"]["mean"]), abs(entry["keras"]["mean"]))
        entry["difference"] = entry["keras"]["mean"] - entry["torch"]["mean"]
        # One seed has no spread to judge a difference against: its metrics are reported, not judged.
        entry["tolerance"] = max(METRIC_SPREAD * pooled, METRIC_FLOOR * size, 1e-9) if len(runs) > 1 else None
        out[name] = entry
    return out


def compare(runs: list[dict], early: list[dict], task) -> tuple[list[Check], dict]:
    """The parity checks over all seeds (main float32 runs and float64 early runs), and the metrics."""
    loss_err, loss_at = _worst(early, lambda r: rel(r["loss_torch"], r["loss_keras"]))
    norm_err, norm_at = _worst(early, lambda r: rel(r["grad_norm_torch"], r["grad_norm_keras"]))
    lr_err, lr_at_ = _worst(runs + early, lambda r: rel(r["lr_torch"], r["lr_keras"]))
    (band_err, band_step), band_seed = max((curve_band(r["records"]), r["seed"]) for r in runs)
    metrics = metric_summary(runs)
    if task.PRIMARY_METRIC not in metrics:
        raise ValueError(
            f"the task's metrics {', '.join(metrics)} lack its PRIMARY_METRIC {task.PRIMARY_METRIC!r}"
        )
    m = metrics[task.PRIMARY_METRIC]
    n = len(early[0]["records"])
    checks = [
        Check(
            f"early_loss_first_{n}_steps_float64",
            loss_err,
            EARLY_LOSS_RTOL,
            loss_err <= EARLY_LOSS_RTOL,
            f"dropout off, relative, worst at {loss_at}",
        ),
        Check(
            f"early_grad_norm_first_{n}_steps_float64",
            norm_err,
            EARLY_GRAD_NORM_RTOL,
            norm_err <= EARLY_GRAD_NORM_RTOL,
            f"dropout off, relative, worst at {norm_at}",
        ),
        Check("learning_rate_every_step", lr_err, LR_RTOL, lr_err <= LR_RTOL, f"relative, worst at {lr_at_}"),
        Check(
            "loss_curve_band",
            band_err,
            CURVE_BAND,
            band_err <= CURVE_BAND,
            f"float32, trailing mean over {CURVE_WINDOW:.0%} of the steps (at least 10), relative to max(loss, "
            f"{CURVE_FLOOR:g} x the first), worst at seed {band_seed} step {band_step}",
        ),
        probe_check([r["first_divergence"] for r in early + runs]),
    ]
    if m["tolerance"] is not None:
        checks.append(
            Check(
                f"final_{task.PRIMARY_METRIC}",
                abs(m["difference"]),
                m["tolerance"],
                abs(m["difference"]) <= m["tolerance"],
                f"torch {m['torch']['mean']:.4f} ± {m['torch']['std']:.4f}, keras "
                f"{m['keras']['mean']:.4f} ± {m['keras']['std']:.4f} over {len(runs)} seeds",
            )
        )
    return checks, metrics


def probe_check(divergences: list[dict | None]) -> Check:
    """FAIL when some probed step's float64 loss or gradients differ at identical weights."""
    parted_runs = [d for d in divergences if d]
    found = next((d for d in parted_runs if d["step"] is not None), None)
    if found:
        return Check(
            "float64_gradients_where_runs_part", found["probe_error"], PROBE_RTOL, False, found["cause"]
        )
    probed = sum(len(d["probed_steps"]) for d in parted_runs)
    worst = max((d["probe_error"] for d in parted_runs), default=0.0)
    return Check(
        "float64_gradients_where_runs_part",
        worst,
        PROBE_RTOL,
        True,
        f"{probed} step(s) probed where dropout-off runs part" if probed else "the runs never part",
    )


def tier1_summary(checks: list[Check]) -> dict:
    # Agreement checks (error <= tolerance to pass). A check that must show a difference (DanQ's
    # single-strand logits under reverse complement pass when they differ by more than 1e-4) is left out,
    # unless it failed.
    measured = [c for c in checks if c.tolerance > 0 and (c.max_error <= c.tolerance or not c.passed)]
    worst = max(measured, key=lambda c: c.max_error, default=None)
    return {
        "passed": all(c.passed for c in checks),
        "count": len(checks),
        "failed": [c.name for c in checks if not c.passed],
        "max_error": worst.max_error if worst else 0.0,
        "max_error_check": worst.name if worst else "",
    }


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
    from shared.checkpoint import git_commit, versions
    from shared.data import load as load_data
    from shared.data.iterator import BatchIterator
    from shared.frameworks import load_both
    from shared.recipe import config_to_dict

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
        "tolerances": {
            "early_steps": early_steps,
            "early_loss_rtol": EARLY_LOSS_RTOL,
            "early_grad_norm_rtol": EARLY_GRAD_NORM_RTOL,
            "step_rtol": STEP_RTOL,
            "probe_rtol": PROBE_RTOL,
            "lr_rtol": LR_RTOL,
            "curve_window": CURVE_WINDOW,
            "curve_band": CURVE_BAND,
            "curve_floor": CURVE_FLOOR,
            "metric_spread": METRIC_SPREAD,
            "metric_floor": METRIC_FLOOR,
            "probe_limit": PROBE_LIMIT,
        },
        "runs": runs,
        "early_runs": early,
        "command": command,
        "threads": threads,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "git_commit": git_commit(),
    }


def summary(report: dict) -> dict:
    """One model's row of the top README's table."""
    m = report["metrics"][report["primary_metric"]]
    tier1 = report["tier1"] or {}
    return {
        "model": report["model"],
        "data": report["data"],
        "smoke": report["smoke"],
        "steps": report["steps"],
        "seeds": len(report["seeds"]),
        "metric": report["primary_metric"],
        "torch_mean": m["torch"]["mean"],
        "torch_std": m["torch"]["std"],
        "keras_mean": m["keras"]["mean"],
        "keras_std": m["keras"]["std"],
        "difference": m["difference"],
        "tolerance": m["tolerance"],
        "passed": report["passed"],
        "tier1_max_error": tier1.get("max_error"),
        "tier1_check": tier1.get("max_error_check"),
        "tier1_passed": tier1.get("passed"),
        "created": report["created"],
        "command": report["command"],
    }


def _divergence_text(d: dict | None) -> str:
    if d is None:
        return (
            "No dropout-off run parts beyond its per-step tolerance (loss and per-tensor gradients: "
            f"{STEP_RTOL['float64']:.0e} in float64, {STEP_RTOL['float32']:.0e} in float32)."
        )
    return (
        f"The dropout-off {d['precision']} runs part at step {d['parted_at']} (loss {d['loss_error']:.1e}, "
        f"gradient {d['grad_error']:.1e} at `{d['grad_error_at']}`). {d['cause']}."
    )


def markdown(report: dict) -> str:
    """The report as Markdown: what ran, each check against its tolerance, metrics per framework, provenance."""
    cfg, runs = report["config"], report["runs"]
    epochs = report["steps"] / report["steps_per_epoch"]
    n = report["tolerances"]["early_steps"]
    float32_early = max(rel(r["loss_torch"], r["loss_keras"]) for run in runs for r in run["records"][:n])
    dropout = any("dropout" in k and v for k, v in cfg.items())
    lines = [
        f"Both twins start from the same canonical initial weights and train on the same batches with the same "
        f"recipe: {report['steps']} steps ({epochs:.3g} epochs of {cfg['batch_size']}) on `{report['data']}`"
        f"{' (smoke data)' if report['smoke'] else ''}, {cfg['optimizer']} at lr {cfg['lr']:g} ({cfg['schedule']}), "
        f"seed(s) {', '.join(str(s) for s in report['seeds'])}.",
        "",
        "| check | measured | tolerance | result | detail |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {c['name']} | {c['max_error']:.2e} | {c['tolerance']:.2g} | {'PASS' if c['passed'] else '**FAIL**'} "
            f"| {c['detail']} |"
            for c in report["checks"]
        ),
        "",
        "| test metric | torch (mean ± std) | keras (mean ± std) | keras − torch |",
        "| --- | --- | --- | --- |",
        *(
            f"| {name}{' (primary)' if name == report['primary_metric'] else ''} | {m['torch']['mean']:.4f} ± "
            f"{m['torch']['std']:.4f} | {m['keras']['mean']:.4f} ± {m['keras']['std']:.4f} | {m['difference']:+.4f} |"
            for name, m in report["metrics"].items()
        ),
        *(
            [
                "",
                "One seed: the test metrics are reported, not judged (there is no seed-to-seed spread to judge "
                "their difference against); `--seeds 3` judges them.",
            ]
            if len(report["seeds"]) == 1
            else []
        ),
        "",
        _divergence_text(report["first_divergence"]),
        "",
        f"For reference, the float32 runs' largest loss difference over their first {n} steps is "
        f"{float32_early:.1e}" + (" (dropout on: the twins draw different masks)." if dropout else "."),
        "",
    ]
    if report["tier1"]:
        t = report["tier1"]
        lines.append(
            f"Tier 1: {t['count'] - len(t['failed'])}/{t['count']} checks pass; largest error "
            f"{t['max_error']:.1e} ({t['max_error_check']})."
        )
    seconds = {fw: float(np.mean([r["train_seconds"][fw] for r in runs])) for fw in ("torch", "keras")}
    versions = ", ".join(
        f"{k} {v}" for k, v in report["versions"].items() if k in ("torch", "keras", "tensorflow", "numpy")
    )
    lines += [
        f"Training time per seed (optimizer steps only, both twins in one process, {report['threads'] or 'all'} "
        f"thread(s)): torch {seconds['torch']:.1f} s, keras {seconds['keras']:.1f} s.",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['created']}; machine: {report['machine']}  ",
        f"Versions: {versions}; git commit {(report['git_commit'] or 'unknown')[:10]}",
    ]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: str | Path) -> dict[str, Path]:
    """parity.json, parity.md and the overlay plots, written to the run folder `out`."""
    from shared import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "parity.json",
        "markdown": out / "parity.md",
        "loss": out / "loss_overlay.png",
        "difference": out / "loss_difference.png",
    }
    paths["json"].write_text(json.dumps(report, indent=1, default=float) + "\n")
    paths["markdown"].write_text(f"# Parity: {report['model']}\n\n{markdown(report)}")
    curves, differences = {}, {}
    for run in report["runs"]:
        curves[f"torch, seed {run['seed']}"] = [r["loss_torch"] for r in run["records"]]
        curves[f"keras, seed {run['seed']}"] = [r["loss_keras"] for r in run["records"]]
        differences[f"seed {run['seed']}"] = [
            float(np.log10(max(rel(r["loss_torch"], r["loss_keras"]), 1e-12))) for r in run["records"]
        ]
    plots.overlay_curves(curves, paths["loss"], f"{report['model']}: training loss, torch and keras twins")
    plots.overlay_curves(
        differences,
        paths["difference"],
        f"{report['model']}: loss difference per step",
        ylabel="log10 |keras - torch| / |torch|",
    )
    return paths


def card_path(model: str, root: Path = ROOT) -> Path:
    return Path(root) / "zoo" / model / "README.md"


def replace_block(text: str, start: str, end: str, block: str, heading: str) -> str:
    """Replace what lies between the start and end markers; without them, append heading + markers."""
    i, j = text.find(start), text.find(end)
    if 0 <= i < j:
        return text[:i] + f"{start}\n{block}\n{end}" + text[j + len(end) :]
    return (text.rstrip("\n") + "\n\n" if text.strip() else "") + f"{heading}\n\n{start}\n{block}\n{end}\n"


def update_card(report: dict, root: Path = ROOT) -> Path:
    """Write (or replace) the trained-parity section of the model's README.md; the rest is left alone."""
    path = card_path(report["model"], root)
    block = f"{markdown(report)}\n<!-- {SUMMARY_TAG} {json.dumps(summary(report), sort_keys=True)} -->"
    text = path.read_text() if path.exists() else f"# {report['model']}\n"
    path.write_text(replace_block(text, CARD_START, CARD_END, block, CARD_HEADING))
    return path


def read_summary(card: Path) -> dict | None:
    if not card.exists():
        return None
    found = re.search(rf"<!-- {SUMMARY_TAG} (\{{.*\}}) -->", card.read_text())
    return json.loads(found.group(1)) if found else None


def summary_table(models: list[str], root: Path = ROOT) -> str:
    lines = [
        "Trained parity of every model, generated by `python tools/parity_all.py` (or `--table-only`) from the "
        "Parity section of each model card, which `tools/crosscheck.py MODEL --train --update-card` writes with "
        "the command that produced it (both twins from the same initial weights, same batches, same recipe; "
        "test metric as mean ± std over seeds).",
        "",
        "| model | data | steps × seeds | test metric | torch | keras | keras − torch | tier-1 max error | parity "
        "| date |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in models:
        s = read_summary(card_path(name, root))
        if s is None:
            lines.append(
                f"| {name} | | | | | | | | not run: `python tools/crosscheck.py zoo/{name} --train "
                "--update-card` | |"
            )
            continue
        tier1 = (
            ""
            if s["tier1_max_error"] is None
            else f"{s['tier1_max_error']:.1e}" + ("" if s["tier1_passed"] else " (FAIL)")
        )
        lines.append(
            f"| {name} | {s['data']}{' (smoke)' if s['smoke'] else ''} | {s['steps']} × {s['seeds']} | {s['metric']} "
            f"| {s['torch_mean']:.4f} ± {s['torch_std']:.4f} | {s['keras_mean']:.4f} ± {s['keras_std']:.4f} "
            f"| {s['difference']:+.4f} | {tier1} | {'PASS' if s['passed'] else 'FAIL'} | {s['created'][:10]} |"
        )
    return "\n".join(lines)


def update_summary(readme: Path | None = None, root: Path = ROOT, models: list[str] | None = None) -> Path:
    """Replace the block between the parity-table markers of README.md (added under "## Parity" if missing)."""
    from zoo import registry

    readme = Path(readme) if readme else Path(root) / "README.md"
    table = summary_table(registry.list_models() if models is None else models, root)
    text = readme.read_text() if readme.exists() else ""
    readme.write_text(replace_block(text, TABLE_START, TABLE_END, table, README_HEADING))
    return readme
