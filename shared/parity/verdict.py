"""Tier-2 parity, the verdict: what two lockstep runs (shared/parity/engine.py) must agree on, how closely.

What is compared, per seed:
- the first EARLY_STEPS steps again in float64 with dropout off. In float32 a ReLU input within rounding
  of zero takes opposite sides in the two twins now and then, which drops one element of one example's
  gradient (up to 10% of a tensor's gradient on small feature maps) and lets the runs drift apart. In
  float64 that does not happen, so the two runs must agree to far below float32 rounding;
- the whole run in float32 with the recipe (dropout on): loss curves within a band;
- the final test metrics: difference of the means within the seed-to-seed spread;
- where a dropout-off run parts, the engine's float64 probes at identical weights: none may differ.

Numpy only: this module reads the runs' records, it runs nothing.
"""

from __future__ import annotations

import numpy as np

from shared.crosscheck import GRAD_RTOL as PROBE_RTOL  # float64 gradients at identical weights, as tier 1
from shared.crosscheck import Check

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


def tolerances(early_steps: int = EARLY_STEPS) -> dict:
    """Every tolerance above, as stated in each report."""
    return {
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
    }


def rel(reference: float, other: float) -> float:
    return abs(reference - other) / max(abs(reference), 1e-12)


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


def summary_check(name: str, m: dict, seeds: int, note: str = "") -> Check:
    """The Check of one metric_summary entry: |keras mean - torch mean| within its tolerance."""
    return Check(
        name,
        abs(m["difference"]),
        m["tolerance"],
        abs(m["difference"]) <= m["tolerance"],
        f"torch {m['torch']['mean']:.4f} ± {m['torch']['std']:.4f}, keras {m['keras']['mean']:.4f} ± "
        f"{m['keras']['std']:.4f} over {seeds} seeds{note}",
    )


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
        checks.append(summary_check(f"final_{task.PRIMARY_METRIC}", m, len(runs)))
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
