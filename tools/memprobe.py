"""Peak resident memory of one-epoch training runs, printed as JSON (issue 15's data-at-scale targets).

    python tools/memprobe.py                                  driving/perception, torch and keras, 3,000 scenes
    python tools/memprobe.py --train 3000 30000 --fw torch    also at 30,000 training scenes
    python tools/memprobe.py --root /path/to/other/checkout   measure another checkout's code (before/after)

Each case runs in a fresh child process and reads its peak resident set (VmHWM, /proc/self/status): the
child either imports the framework and builds the model (`baseline`), or trains one epoch on
roads:train=N (`peak`); `above_baseline` is their difference. The dataset is generated (and, with the
dataset cache, written to disk) before the children start, so generation is not counted. Timings are not
reported: the machine's load changes them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GB = 1024**3


# Run in a fresh child (python -c), with the measured checkout first on sys.path: argv[1] is a JSON
# {mode, model, fw, data, sets}; prints {"peak_rss_bytes": VmHWM of the child}.
CHILD = """
import importlib, json, sys, tempfile
from pathlib import Path
from shared.models import get_spec
from shared.recipe import parse_set_flags
from shared.train import run

case = json.loads(sys.argv[1])
spec = get_spec(case["model"])
config = spec.config(**{**parse_set_flags(case["sets"]), "epochs": 1})
if case["mode"] == "baseline":  # import the framework, build the model and its optimizer
    trainer = importlib.import_module(f"shared.train.{case['fw']}_trainer")
    trainer.Session(spec, config, trainer.setup(0, None, config.seed), total_steps=1)
else:  # one epoch of training, validation, test metrics and the checkpoint
    with tempfile.TemporaryDirectory() as out:
        run.train(spec, config, case["fw"], out=Path(out) / "run", data=case["data"], progress=False)
for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
        print(json.dumps({"peak_rss_bytes": int(line.split()[1]) * 1024}))
"""


def measure(root: Path, mode: str, model: str, fw: str, data: str, sets: list[str]) -> int:
    """The peak resident set (bytes) of a child process running `mode` with `root`'s code."""
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    case = json.dumps({"mode": mode, "model": model, "fw": fw, "data": data, "sets": sets})
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, case], cwd=root, env=env, capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(f"error: {mode} {fw} {data} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_bytes"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tools/memprobe.py", description=__doc__)
    parser.add_argument("--model", default="driving/perception")
    parser.add_argument("--fw", nargs="+", default=["torch", "keras"])
    parser.add_argument("--train", nargs="+", type=int, default=[3000], help="training scenes")
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose code is measured")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    cases = []
    for n in args.train:
        data = f"roads:train={n}"
        subprocess.run(  # generate (and cache) the data first, in its own process
            [sys.executable, "-c", f"from shared.data import load; load({data!r})"],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            check=True,
        )
        for fw in args.fw:
            baseline = measure(root, "baseline", args.model, fw, data, args.set)
            peak = measure(root, "peak", args.model, fw, data, args.set)
            cases.append(
                {
                    "model": args.model,
                    "framework": fw,
                    "train_scenes": n,
                    "baseline_gb": round(baseline / GB, 3),
                    "peak_gb": round(peak / GB, 3),
                    "above_baseline_gb": round((peak - baseline) / GB, 3),
                }
            )
            print(json.dumps(cases[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"root": str(root), "sets": args.set, "cases": cases}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
