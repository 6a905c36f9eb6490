"""Frames per second of driving/perception on this machine, per framework, at batch 1 and batch 32.

    python tools/bench_perception.py --threads 1
    python tools/bench_perception.py --checkpoint runs/driving-perception-torch --batch-sizes 1,8,32 --json

Eval-mode forward passes (logits per pixel and steering) on images of the model's size; the weights do not
change the work, so a checkpoint is optional. torch runs eagerly under torch.inference_mode(); Keras runs
model.predict_on_batch (a compiled graph on the TensorFlow backend). Each figure is the median of timed
batches after warm-up ones; frames/s = batch size / median seconds per batch.
"""

from __future__ import annotations

import importlib
import json
import statistics
import time

import _path  # noqa: F401

from shared.cli import Parser, check_fw, main_wrapper, positive_int
from shared.errors import UserError
from shared.models import get_spec, load_model
from shared.recipe import parse_set_flags


def forward_fn(fw: str, model):
    """A callable running one eval-mode forward pass on an NHWC float32 numpy batch."""
    if fw == "torch":
        import torch

        def run(images):
            with torch.inference_mode():
                model(torch.from_numpy(images))

        model.eval()
        return run
    return lambda images: model.predict_on_batch(images)  # the twin's call(image), as torch's forward(image)


def bench(fw: str, model, config, batch_size: int, warmup: int, seconds: float, min_batches: int) -> dict:
    import numpy as np

    images = (
        np.random.default_rng(0)
        .standard_normal((batch_size, config.image_height, config.image_width, config.in_channels))
        .astype(np.float32)
    )
    run = forward_fn(fw, model)
    for _ in range(warmup):
        run(images)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_batches or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        run(images)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "framework": fw,
        "batch_size": batch_size,
        "ms_per_batch": 1000 * median,
        "frames_per_second": batch_size / median,
        "batches_timed": len(times),
    }


def main(argv=None) -> int:
    parser = Parser(prog="tools/bench_perception.py", description=__doc__)
    parser.add_argument("--fw", action="append", help="keras or torch (repeatable; default both)")
    parser.add_argument(
        "--checkpoint", help="run or checkpoint folder (default: the default Config, random init)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Config override")
    parser.add_argument("--batch-sizes", default="1,32", help="comma-separated (default 1,32)")
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="CPU threads per framework (default 1)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first (default 3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time at least this long per figure")
    parser.add_argument("--min-batches", type=int, default=10, help="and at least this many batches")
    parser.add_argument("--json", action="store_true", help="print one JSON object per figure")
    args = parser.parse_args(argv)
    frameworks = [check_fw(fw) for fw in (args.fw or ["keras", "torch"])]  # TensorFlow loads before torch
    try:
        sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        raise UserError(f"--batch-sizes takes comma-separated integers; found {args.batch_sizes!r}") from None
    if min(sizes) < 1 or args.threads < 1:
        raise UserError("--batch-sizes and --threads must be >= 1")

    rows = []
    for fw in frameworks:
        importlib.import_module(f"shared.train.{fw}_trainer").setup(0, args.threads, 0)
        if args.checkpoint:
            if args.set:
                raise UserError("--set applies to a fresh model; a checkpoint brings its own Config")
            spec, config, model, _ = load_model(args.checkpoint, fw)
        else:
            spec = get_spec("driving/perception")
            config = spec.config(**parse_set_flags(args.set))
            model = spec.build(fw, config)
        if spec.task != "perception":
            raise UserError(f"{spec.name} is not a perception model; this benchmark runs driving/perception")
        for batch_size in sizes:
            row = bench(fw, model, config, batch_size, args.warmup, args.seconds, args.min_batches)
            rows.append(row)
            if args.json:
                print(
                    json.dumps(
                        {
                            "model": spec.name,
                            "threads": args.threads,
                            "image": f"{config.image_height}x{config.image_width}",
                            **row,
                        }
                    ),
                    flush=True,
                )
    if not args.json:
        print(
            f"| framework | batch | ms / batch | frames / s |   ({args.threads} thread(s), "
            f"{config.image_height}x{config.image_width} images)"
        )
        print("| --- | --- | --- | --- |")
        for r in rows:
            print(
                f"| {r['framework']} | {r['batch_size']} | {r['ms_per_batch']:.1f} | {r['frames_per_second']:.1f} |"
            )
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
