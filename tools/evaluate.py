"""Evaluate a checkpoint in either framework, whichever framework trained it.

python tools/evaluate.py runs/cnn-torch --fw keras
python tools/evaluate.py runs/cnn-keras/checkpoint --fw torch --split validation --json
"""

from __future__ import annotations

import json

import _path  # noqa: F401

from shared.cli import Parser, check_fw, main_wrapper, positive_int
from shared.evaluation import evaluate_checkpoint


def main(argv=None) -> int:
    parser = Parser(prog="tools/evaluate.py", description=__doc__)
    parser.add_argument("checkpoint", help="run folder or checkpoint folder")
    parser.add_argument("--fw", required=True, help="keras or torch")
    parser.add_argument("--data", help="dataset (default: the one the checkpoint was trained on)")
    parser.add_argument("--split", default="test", help="train, validation or test (default test)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = evaluate_checkpoint(args.checkpoint, check_fw(args.fw), args.data, args.split, args.threads)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items())
        print(
            f"{result['model']} (trained in {result['trained_in']}) evaluated in {args.fw} on "
            f"{result['data']}/{args.split}: {shown}"
        )
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
