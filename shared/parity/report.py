"""Tier-2 parity, the report: a run's result (shared/parity/engine.py) written as files, card and table.

    paths = report.write_report(result, "runs/parity/vision-cnn")  # parity.json, parity.md, loss plots
    report.update_card(result)                                     # its section in zoo/<model>/README.md
    report.update_summary(models=registry.list_models())           # every model's row in the top README.md

The card's section and the README's table sit between HTML comment markers; everything outside them is
left as it was. Each card also keeps a hidden JSON summary line, which the README's table is built from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from shared import plots
from shared.markdown import replace_block
from shared.parity.verdict import STEP_RTOL, rel

CARD_HEADING, README_HEADING = "## Parity (trained, tier 2)", "## Parity"
CARD_START, CARD_END = "<!-- parity-card:start -->", "<!-- parity-card:end -->"  # the card's generated block
TABLE_START, TABLE_END = "<!-- parity-table:start -->", "<!-- parity-table:end -->"  # the top README's table
SUMMARY_TAG = "parity-summary"  # a hidden JSON line in the card, read back for the top README's table
ROOT = Path(__file__).resolve().parents[2]  # the repository: zoo/<model>/README.md and README.md


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


def update_summary(readme: Path | None = None, root: Path = ROOT, *, models: list[str]) -> Path:
    """Replace the block between the parity-table markers of README.md (added under "## Parity" if missing)
    with one row per model of `models` (the callers pass zoo.registry.list_models())."""
    readme = Path(readme) if readme else Path(root) / "README.md"
    table = summary_table(models, root)
    text = readme.read_text() if readme.exists() else ""
    readme.write_text(replace_block(text, TABLE_START, TABLE_END, table, README_HEADING))
    return readme
