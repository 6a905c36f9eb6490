"""Memory of a training step with 100k-user x 100k-item tables, per framework and recipe (Linux only).

    python -m zoo.recsys.memory          # every case, each in a fresh process; prints a table

Each case builds the model with 100,000 users and 100,000 items (MF with 64 factors, NeuMF with the
paper's sizes), runs one warm-up step through the zoo's trainer (optimizer state, graph tracing), then
resets the process's peak resident memory (/proc/self/clear_refs) and runs five more steps. `step peak`
is how far resident memory rose above its level before those steps: what one step allocates (gradients
included) on top of the tables and the optimizer state. glibc is told to serve every allocation over
128 KiB by mmap (MALLOC_MMAP_THRESHOLD_), so freed buffers leave resident memory at once instead of
hiding in the heap.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from zoo import registry

ROOT = Path(__file__).resolve().parents[2]
USERS = ITEMS = 100_000
SIZES = {"recsys/mf": {"num_factors": 64}, "recsys/neumf": {}}  # NeuMF: the paper's sizes (the defaults)
RECIPES = {  # name -> Config overrides
    "adam, dense tables": {"optimizer": "adam"},
    "sgd, dense tables": {"optimizer": "sgd", "sgd_momentum": 0.0},
    "sgd, sparse tables": {"optimizer": "sgd", "sgd_momentum": 0.0, "sparse_embeddings": True},
}


def _status(field: str) -> float:
    """A /proc/self/status memory field in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/self/status has no {field}")


class FixedBatches:
    """A few fixed batches behind the trainers' iterator interface: len() and batches(epoch, start)."""

    def __init__(self, batches: list[dict]):
        self._batches = batches

    def __len__(self) -> int:
        return len(self._batches)

    def batches(self, epoch: int, start: int = 0):
        return iter(self._batches[start:])


def measure(model: str, fw: str, recipe: str, steps: int = 5, batch_size: int = 256) -> dict:
    """One case, in this process: resident memory before the measured steps and the step peak above it."""
    spec = registry.get(model)
    config = spec.config(
        num_users=USERS, num_items=ITEMS, batch_size=batch_size, **SIZES[model], **RECIPES[recipe]
    )
    trainer = importlib.import_module(f"shared.train.{fw}_trainer")
    runtime = trainer.setup(0, 1, 0)
    session = trainer.Session(spec, config, runtime, total_steps=steps + 1)
    net = session.model
    tables = sum(
        w.nbytes for name, w in spec.get_weights(net).items() if w.ndim and w.shape[0] in (USERS, ITEMS)
    )
    batches = [spec.example_batch(config, batch_size=batch_size, seed=s) for s in range(steps + 1)]
    session.train_epoch(FixedBatches(batches[:1]), 0, progress=False)  # warm-up: optimizer state, tracing
    if fw == "torch":  # torch holds the last gradients until the next zero_grad; Keras frees them
        net.zero_grad(set_to_none=True)
    Path("/proc/self/clear_refs").write_text("5")  # peak resident memory := current
    before = _status("VmRSS")
    start = time.perf_counter()
    session.train_epoch(FixedBatches(batches[1:]), 1, progress=False)
    seconds = time.perf_counter() - start
    return {
        "model": model,
        "framework": fw,
        "recipe": recipe,
        "tables_mib": tables / 2**20,
        "resident_mib": before,
        "step_peak_mib": _status("VmHWM") - before,
        "ms_per_step": 1e3 * seconds / steps,
    }


def measure_in_subprocess(model: str, fw: str, recipe: str) -> dict:
    env = {
        **os.environ,
        "MALLOC_MMAP_THRESHOLD_": "131072",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    code = (
        f"import json, sys\nfrom zoo.recsys.memory import measure\n"
        f"print('RESULT ' + json.dumps(measure({model!r}, {fw!r}, {recipe!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{model} {fw} {recipe} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    print(
        f"{'model':<13} {'fw':<6} {'recipe':<19} {'tables MiB':>10} {'resident MiB':>12} {'step peak MiB':>13} "
        f"{'ms/step':>8}"
    )
    for model in ("recsys/mf", "recsys/neumf"):
        for fw in ("torch", "keras"):
            for recipe in RECIPES:
                r = measure_in_subprocess(model, fw, recipe)
                print(
                    f"{model:<13} {fw:<6} {recipe:<19} {r['tables_mib']:>10.1f} {r['resident_mib']:>12.1f} "
                    f"{r['step_peak_mib']:>13.1f} {r['ms_per_step']:>8.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
