"""Summarise training runs side by side: python tools/summary.py runs/cnn-torch runs/cnn-keras"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import _path  # noqa: F401

from shared.cli import Parser, main_wrapper
from shared.errors import UserError


def main(argv=None) -> int:
    parser = Parser(prog="tools/summary.py", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run folders written by tools/train.py")
    args = parser.parse_args(argv)
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
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
