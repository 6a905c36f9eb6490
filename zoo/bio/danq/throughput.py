"""Sequences per second of DanQ, training and inference, in one framework:

    python -m zoo.bio.danq.throughput --fw torch --threads 1 [--batches 20] [--set key=value ...]

Training runs whole optimizer steps through the framework's trainer (the code tools/train.py runs, Keras
through model.fit); inference runs spec.forward in eval mode (with reverse-complement averaging when the
config has it), the code evaluation runs. A warm-up pass (tracing, allocation) is not timed. Both wall
time and this process's CPU time are reported: on a shared machine the CPU figure is the steadier one.
"""

from __future__ import annotations

import importlib
import json
import time

from shared.cli import Parser, check_fw, main_wrapper
from shared.data.iterator import BatchIterator
from shared.recipe import parse_set_flags
from zoo import registry


def measure(fw: str, threads: int | None, batches: int, overrides: dict) -> dict:

    spec = registry.get("bio/danq")
    config = spec.config(**overrides)
    trainer = importlib.import_module(f"shared.train.{fw}_trainer")
    runtime = trainer.setup(0, threads, config.seed)
    session = trainer.Session(spec, config, runtime, total_steps=batches + 2)
    example = spec.example_batch(config, config.batch_size * (batches + 2), seed=0)
    warm_up = BatchIterator(
        {k: v[: 2 * config.batch_size] for k, v in example.items()}, config.batch_size, shuffle=False
    )
    timed_batches = BatchIterator(
        {k: v[2 * config.batch_size :] for k, v in example.items()}, config.batch_size, shuffle=False
    )

    def timed(fn):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    session.train_epoch(warm_up, 0, progress=False)  # tracing, allocation
    train_wall, train_cpu = timed(lambda: session.train_epoch(timed_batches, 1, progress=False))
    sequences = example["sequence"][: config.eval_batch_size * max(1, batches // 2)]
    spec.forward(session.model, {"sequence": sequences[: config.eval_batch_size]})  # warm-up
    infer_wall, infer_cpu = timed(
        lambda: [
            spec.forward(session.model, {"sequence": sequences[i : i + config.eval_batch_size]})
            for i in range(0, len(sequences), config.eval_batch_size)
        ]
    )
    trained = batches * config.batch_size
    return {
        "framework": fw,
        "threads": threads,
        "batch_size": config.batch_size,
        "eval_batch_size": config.eval_batch_size,
        "rc_average": config.rc_average,
        "train_sequences_per_s_wall": round(trained / train_wall, 1),
        "train_sequences_per_s_cpu": round(trained / train_cpu, 1),
        "inference_sequences_per_s_wall": round(len(sequences) / infer_wall, 1),
        "inference_sequences_per_s_cpu": round(len(sequences) / infer_cpu, 1),
    }


def main(argv=None) -> int:

    parser = Parser(prog="python -m zoo.bio.danq.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fw", required=True, help="keras or torch")
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.add_argument("--batches", type=int, default=20, help="timed training batches (default 20)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args(argv)
    print(json.dumps(measure(check_fw(args.fw), args.threads, args.batches, parse_set_flags(args.set))))
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
