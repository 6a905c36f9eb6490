"""Tier-1 cross-framework checks for a model: python tools/crosscheck.py zoo/vision/cnn [--json].

Exit 0 when every check passes, 1 on any failure, 2 on a usage error.
"""

from __future__ import annotations

import json
import sys

import _path  # noqa: F401

from shared.cli import Parser, get_spec, main_wrapper
from shared.recipe import parse_set_flags


def main(argv=None) -> int:
    parser = Parser(prog="tools/crosscheck.py", description=__doc__)
    parser.add_argument("model", help="model folder or name, e.g. zoo/vision/cnn")
    parser.add_argument("--json", action="store_true", help="print one JSON object per check")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--batch-sizes", default="1,2,5", help="forward-check batch sizes (default 1,2,5)")
    args = parser.parse_args(argv)

    spec = get_spec(args.model)
    config = spec.config(**parse_set_flags(args.set))
    from shared.crosscheck import run_tier1

    checks = run_tier1(spec, config, tuple(int(b) for b in args.batch_sizes.split(",")))
    for check in checks:
        if args.json:
            print(json.dumps({"model": spec.name, **check.as_dict()}))
        else:
            status = "PASS" if check.passed else "FAIL"
            print(f"{status}  {check.name:<34} max err {check.max_error:.3e}  tol {check.tolerance:.0e}  {check.detail}")
    failed = [c.name for c in checks if not c.passed]
    if not args.json:
        print(f"{spec.name}: {len(checks) - len(failed)}/{len(checks)} checks passed" +
              (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    main_wrapper(main)()
