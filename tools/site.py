"""Build the zoo's front page: a static, offline site of every model, its results, parity, speed and pictures.

    python tools/site.py --runs runs --out site                      # open site/index.html
    python tools/site.py --runs runs --bench bench.json --store file:///shared/zoo --out site

--runs: the folder tools/train.py wrote run folders into (the newest run per model and framework is shown;
parity reports of tools/crosscheck.py --train under it give the loss overlays). --bench: the output of
`python tools/bench.py all --json`. --store: a store URL (see docs/HUB.md). The model cards are read from
this checkout. Every figure on the site names the file it came from and the command that wrote it.
Exit 0, 2 on a usage error.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import _path  # noqa: F401

from shared.cli import Parser, main_wrapper
from shared.site import build_site


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = Parser(prog="tools/site.py", description=__doc__)
    parser.add_argument("--runs", type=Path, help="folder of run folders (tools/train.py --out)")
    parser.add_argument("--store", help="a store URL: its versions, sha256 and pull commands")
    parser.add_argument("--bench", type=Path, help="`python tools/bench.py all --json` output")
    parser.add_argument("--out", type=Path, default=Path("site"), help="the site's folder (default site)")
    args = parser.parse_args(argv)
    built = build_site(
        args.out,
        runs=args.runs,
        store=args.store,
        bench=args.bench,
        command=shlex.join(["python", "tools/site.py", *argv]),
    )
    print(
        f"wrote {len(built['pages'])} pages and {built['pictures']} pictures for {len(built['models'])} models "
        f"({built['runs']} runs read) into {built['out']}; open {Path(built['out']) / 'index.html'}"
    )
    for line in built["skipped"]:
        print(f"skipped {line}")
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
