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
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GB = 1024**3


def peak_rss() -> int:
    """This process's peak resident set in bytes (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(mode: str, model: str, fw: str, data: str, sets: list[str]) -> dict:
    """In the child: build (baseline) or train one epoch (peak); the peak resident set."""
    from shared.models import get_spec
    from shared.recipe import parse_set_flags

    spec = get_spec(model)
    config = spec.config(**{**parse_set_flags(sets), "epochs": 1})
    if mode == "baseline":
        import importlib

        trainer = importlib.import_module(f"shared.train.{fw}_trainer")
        runtime = trainer.setup(0, None, config.seed)
        trainer.Session(spec, config, runtime, total_steps=1)
    else:
        from shared.train import run

        with tempfile.TemporaryDirectory() as out:
            run.train(spec, config, fw, out=Path(out) / "run", data=data, progress=False)
    return {"peak_rss_bytes": peak_rss()}


def measure(root: Path, mode: str, model: str, fw: str, data: str, sets: list[str]) -> int:
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--model", model, "--fw", fw]
    command += ["--data", data, "--root", str(root)] + [f"--set={s}" for s in sets]
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
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
    parser.add_argument("--child", choices=["baseline", "peak"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    sys.path.insert(0, str(root))
    if args.child:
        print(json.dumps(child(args.child, args.model, args.fw[0], args.data, args.set)))
        return 0
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
