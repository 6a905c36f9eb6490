"""Summarise training runs side by side, and record them in the model cards and the README.

    python tools/summary.py runs/cnn-torch runs/cnn-keras            # print
    python tools/summary.py runs/cnn-torch runs/cnn-keras --record   # + the card's Results block, README table
    python tools/summary.py --recipes                                # every card's Recipes block, from spec.py

--record writes, between the card's `results` markers, a table made from each run's result.json (test
metrics, data, epochs, steps, training seconds, and the figures of any evaluated-in-*.json beside it),
the command that recorded it, and a machine-readable summary; the README's results table is then rebuilt
from the summaries of every card (`--table-only` rebuilds just that table).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import _path  # noqa: F401

from shared import tasks
from shared.cli import Parser, main_wrapper
from shared.errors import UserError
from shared.markdown import RESULTS_SUMMARY, read_json_comment, replace_block
from shared.train import recipes
from zoo import registry

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- results:start -->", "<!-- results:end -->"
TABLE_START, TABLE_END = "<!-- results-table:start -->", "<!-- results-table:end -->"
TAG = f"<!-- {RESULTS_SUMMARY} "


def _metrics(values: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "loss")


def card_block(model: str, runs: list[tuple[dict, list[dict], dict]], command: str) -> str:
    """The card's Results block: one row per run, the command, and the summary the README table reads."""
    lines = [
        f"Written by `{command}` from each run's result.json (test split; seed and recipe in config.json).",
        "",
        "| trained in | data | epochs | steps | train s | test | evaluated in the other framework |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    summary = {"model": model, "command": command, "runs": {}}
    for result, cross, config in runs:
        other = "; ".join(f"{c['framework']}: {_metrics(c['metrics'])}" for c in cross) or "not run"
        lines.append(
            f"| {result['framework']} | {result['data']} | {config.get('epochs', '?')} | {result['steps']} | "
            f"{result['train_seconds']:.0f} | {_metrics(result['test'])} | {other} |"
        )
        summary["runs"][result["framework"]] = {"data": result["data"], "test": result["test"]}
    return "\n".join(lines) + f"\n{TAG}{json.dumps(summary, sort_keys=True)} -->"


def read_summary(card: Path) -> dict | None:
    return read_json_comment(card.read_text(), RESULTS_SUMMARY) if card.exists() else None


def readme_table(root: Path = ROOT) -> str:
    """The README's results table, from the Results summary of every model card."""
    lines = [
        "Each row comes from the model card's Results block, which `tools/summary.py RUN... --record` writes "
        "from the runs' result.json files; rebuilt by `python tools/summary.py --table-only`.",
        "",
        "| model | data | test metric | torch | keras |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in registry.list_models():
        summary = read_summary(root / "zoo" / name / "README.md")
        spec = registry.get(name)
        metric = tasks.get(spec.task).PRIMARY_METRIC
        if summary is None:
            lines.append(
                f"| [{name}](zoo/{name}) | {spec.dataset} | {metric} | not recorded | not recorded |"
            )
            continue
        runs = summary["runs"]
        data = "; ".join(sorted({r["data"] for r in runs.values()}))
        cells = [
            f"{runs[fw]['test'][metric]:.4f}" if fw in runs else "not recorded" for fw in ("torch", "keras")
        ]
        lines.append(f"| [{name}](zoo/{name}) | {data} | {metric} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def update_readme(root: Path = ROOT) -> Path:
    readme = root / "README.md"
    table = readme_table(root)
    readme.write_text(replace_block(readme.read_text(), TABLE_START, TABLE_END, table, "## Results"))
    return readme


def main(argv=None) -> int:
    parser = Parser(prog="tools/summary.py", description=__doc__)
    parser.add_argument("runs", nargs="*", help="run folders written by tools/train.py")
    parser.add_argument(
        "--record", action="store_true", help="write the runs into their model's card and README"
    )
    parser.add_argument("--table-only", action="store_true", help="only rebuild the README's results table")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the checkout whose cards and README to write"
    )
    parser.add_argument(
        "--recipes",
        action="store_true",
        help="rewrite every model card's Recipes block from the named recipes in its spec.py",
    )
    args = parser.parse_args(argv)
    if args.recipes:
        for name in registry.list_models():
            card = args.root / "zoo" / name / "README.md"
            card.write_text(recipes.update_card(registry.get(name), card.read_text()))
            print(f"recipes of {name} written into {card}")
        return 0
    if args.table_only:
        print(f"rebuilt {update_readme(args.root)}")
        return 0
    if not args.runs:
        raise UserError("pass one or more run folders written by tools/train.py (or --table-only)")
    rows = []
    for run in map(Path, args.runs):
        if not (run / "result.json").is_file():
            raise UserError(f"{run} has no result.json: pass a run folder written by tools/train.py")
        result = json.loads((run / "result.json").read_text())
        cross = sorted(run.glob("evaluated-in-*.json"))
        rows.append((result, [json.loads(p.read_text()) for p in cross]))
    print()
    print(
        f"{'model':<12} {'trained in':<10} {'test metrics':<44} {'s/epoch':>8}  evaluated in the other framework"
    )
    for result, cross in rows:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in result["test"].items() if k != "loss")
        seconds = sum(result["epoch_seconds"]) / max(len(result["epoch_seconds"]), 1)
        other = "; ".join(
            f"{c['framework']}: " + ", ".join(f"{k} {v:.4f}" for k, v in c["metrics"].items() if k != "loss")
            for c in cross
        )
        print(f"{result['model']:<12} {result['framework']:<10} {metrics:<44} {seconds:>8.1f}  {other}")
    print()
    for result, _ in rows:
        print(f"{result['framework']:>6}: checkpoint {result['checkpoint']}")
        print(f"{'':>6}  curves {result['curves']}   tensorboard --logdir {result['tensorboard']}")
    if args.record:
        models = {result["model"] for result, _ in rows}
        if len(models) != 1:
            raise UserError(f"--record takes the runs of one model; found {', '.join(sorted(models))}")
        model = models.pop()
        runs = []
        for run, (result, cross) in zip(map(Path, args.runs), rows):
            config_file = run / "checkpoint" / "config.json"
            config = json.loads(config_file.read_text())["config"] if config_file.is_file() else {}
            runs.append((result, cross, config))
        command = "python tools/summary.py " + " ".join(shlex.quote(r) for r in args.runs) + " --record"
        card = args.root / "zoo" / model / "README.md"
        text = card.read_text() if card.exists() else f"# {model}\n"
        card.write_text(
            replace_block(text, START, END, card_block(model, runs, command), "## Results (recorded)")
        )
        print(f"recorded in {card} and {update_readme(args.root)}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
