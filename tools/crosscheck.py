"""Cross-framework checks for a model.

    python tools/crosscheck.py zoo/vision/cnn [--json]              tier 1: the twins compute the same function
    python tools/crosscheck.py zoo/vision/cnn --train --seeds 3     + tier 2: trained the same way, they agree
    python tools/crosscheck.py zoo/vision/cnn --train --steps 200 --update-card

--train writes parity.json, parity.md and loss plots to --out (default runs/parity/<model>); --update-card
also writes them into the model card's "Parity" section and refreshes the top README's table.
Exit 0 when every check passes, 1 on any failure, 2 on a usage error.
"""

from __future__ import annotations

import json
import shlex
import sys

import _path  # noqa: F401

from shared.cli import Parser, main_wrapper, positive_int
from shared.crosscheck import Check, run_tier1
from shared.errors import UserError
from shared.frameworks import load_both
from shared.models import get_spec
from shared.parity import engine, report
from shared.recipe import parse_set_flags
from zoo import registry


def main(argv=None) -> int:
    parser = Parser(prog="tools/crosscheck.py", description=__doc__)
    parser.add_argument("model", help="model folder or name, e.g. zoo/vision/cnn")
    parser.add_argument("--json", action="store_true", help="print one JSON object per check")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--batch-sizes", default="1,2,5", help="forward-check batch sizes (default 1,2,5)")
    parser.add_argument(
        "--train", action="store_true", help="also train both twins in lockstep and compare (tier 2)"
    )
    parser.add_argument("--steps", type=int, help="--train: optimizer steps (default: the recipe's epochs)")
    parser.add_argument("--seeds", type=int, default=3, help="--train: seeds, for mean and std (default 3)")
    parser.add_argument(
        "--smoke", action="store_true", help="--train: the model's small smoke recipe and data"
    )
    parser.add_argument(
        "--update-card", action="store_true", help="--train: write the result into the model card"
    )
    parser.add_argument("--out", help="--train: run folder (default runs/parity/<model>)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads per framework (default: all cores)")
    args = parser.parse_args(argv)
    if not args.train and (args.steps or args.smoke or args.update_card or args.out or args.seeds != 3):
        raise UserError("--steps, --seeds, --smoke, --update-card and --out go with --train")

    spec = get_spec(args.model)
    overrides = parse_set_flags(args.set)
    config = spec.config(**({**spec.smoke_config, **overrides} if args.smoke else overrides))
    if args.threads:
        load_both()  # torch first, then TensorFlow (shared/frameworks.py)
        from shared.train import keras_trainer, torch_trainer

        keras_trainer.setup(0, args.threads, config.seed)  # before tier 1: TensorFlow takes it only once
        torch_trainer.setup(0, args.threads, config.seed)
    checks = run_tier1(spec, config, tuple(int(b) for b in args.batch_sizes.split(",")))
    show(spec, checks, args.json)
    if args.train:
        checks = checks + train_parity(spec, config, args, tier1=checks)
    failed = [c.name for c in checks if not c.passed]
    if not args.json:
        print(
            f"{spec.name}: {len(checks) - len(failed)}/{len(checks)} checks passed"
            + (f"; failed: {', '.join(failed)}" if failed else ""),
            file=sys.stderr,
        )
    return 1 if failed else 0


def show(spec, checks, as_json: bool) -> None:
    for check in checks:
        if as_json:
            print(json.dumps({"model": spec.name, **check.as_dict()}))
        else:
            status = "PASS" if check.passed else "FAIL"
            print(
                f"{status}  {check.name:<34} max err {check.max_error:.3e}  tol {check.tolerance:.0e}  {check.detail}"
            )


def train_parity(spec, config, args, tier1: list) -> list:
    """Tier 2: both twins trained in lockstep; the report goes to the run folder (and the card)."""
    result = engine.run_parity(
        spec,
        config,
        steps=args.steps,
        seeds=args.seeds,
        smoke=args.smoke,
        threads=args.threads,
        tier1=tier1,
        command=shlex.join(["python", *sys.argv]),
    )
    checks = [Check(**c) for c in result["checks"]]
    show(spec, checks, args.json)
    paths = report.write_report(result, args.out or f"runs/parity/{spec.name.replace('/', '-')}")
    divergence = result["first_divergence"]
    if divergence and not args.json:
        print(
            f"dropout-off runs part at step {divergence['parted_at']}: {divergence['cause']}", file=sys.stderr
        )
    if args.update_card:
        card = report.update_card(result)
        table = report.update_summary(models=registry.list_models())
        print(f"card {card}; table {table}", file=sys.stderr)
    if not args.json:
        print(f"report {paths['markdown']}  {paths['json']}  {paths['loss']}", file=sys.stderr)
    return checks


if __name__ == "__main__":
    main_wrapper(main)()
