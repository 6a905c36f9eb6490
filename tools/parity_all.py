"""Refresh the trained-parity row of every model: its card's "Parity" section and the top README's table.

    python tools/parity_all.py --threads 1                    # each recipe's full run, 3 seeds (long)
    python tools/parity_all.py --smoke --steps 24 --seeds 1   # quick figures from the small smoke recipes
    python tools/parity_all.py --models vision/cnn,nlp/seq2seq
    python tools/parity_all.py --table-only                   # rebuild the README table from the cards

Each model runs `tools/crosscheck.py MODEL --train --update-card` in its own process (one framework state
per model). Exit 0 when every model passes, 1 when any fails, 2 on a usage error.
"""

from __future__ import annotations

import subprocess
import sys
import time

import _path

from shared.cli import Parser, main_wrapper, positive_int
from shared.errors import UserError
from shared.models import get_spec
from shared.parity import report
from zoo import registry

OUTCOME = {0: "PASS", 1: "FAIL"}  # any other exit status: the run itself stopped with an error


def main(argv=None) -> int:
    parser = Parser(prog="tools/parity_all.py", description=__doc__)
    parser.add_argument("--models", help="comma-separated model names (default: every model in the zoo)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: each recipe's epochs)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model (default 3)")
    parser.add_argument("--smoke", action="store_true", help="each model's small smoke recipe and data")
    parser.add_argument("--threads", type=positive_int, help="CPU threads per framework")
    parser.add_argument(
        "--out", default="runs/parity", help="folder for the run folders (default runs/parity)"
    )
    parser.add_argument(
        "--table-only", action="store_true", help="only rebuild the README table from the cards"
    )
    args = parser.parse_args(argv)

    models = registry.list_models() if not args.models else [get_spec(m).name for m in args.models.split(",")]
    if args.seeds < 1 or (args.steps is not None and args.steps < 1):
        raise UserError(f"--seeds and --steps must be >= 1; found --seeds {args.seeds}, --steps {args.steps}")
    outcomes = {}
    for name in [] if args.table_only else models:
        command = [
            sys.executable,
            str(_path.ROOT / "tools" / "crosscheck.py"),
            f"zoo/{name}",
            "--train",
            "--update-card",
            "--seeds",
            str(args.seeds),
            "--out",
            f"{args.out}/{name.replace('/', '-')}",
        ]
        command += ["--steps", str(args.steps)] if args.steps else []
        command += ["--threads", str(args.threads)] if args.threads else []
        command += ["--smoke"] if args.smoke else []
        print(f"[{name}] {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(command, cwd=_path.ROOT).returncode
        outcomes[name] = (
            OUTCOME.get(code, f"ERROR (exit {code}); its card keeps the previous row"),
            time.perf_counter() - start,
        )
    readme = report.update_summary(models=registry.list_models())
    for name, (outcome, seconds) in outcomes.items():
        print(f"{outcome:<5} {name}  ({seconds:.0f} s)")
    print(f"table: {readme}")
    return 0 if all(o == "PASS" for o, _ in outcomes.values()) else 1


if __name__ == "__main__":
    main_wrapper(main)()
