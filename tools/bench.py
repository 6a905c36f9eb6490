"""Training throughput of the twins: examples/s of each model's plain training loop, per framework.

    python tools/bench.py all --threads 1                       # every model, both frameworks
    python tools/bench.py zoo/vision/cnn --fw torch --batch-size 64 --json
    python tools/bench.py all --smoke --steps 5 --repeats 2     # a few seconds per model (the CI run)

The plain loop is forward + loss + backward + optimizer step on one batch already in memory, repeated: the
ceiling a trainer can reach with this twin. torch: eager, `torch.optim.AdamW`. Keras (TensorFlow backend):
one `tf.function` step with a GradientTape and `keras.optimizers.AdamW`. Each figure is the median over
--repeats timed blocks of --steps steps, after --warmup untimed steps (graph building, allocator warm-up).
Threads are set explicitly (default 1), so that figures from one run compare. Exit 0, 2 on a usage error.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time

import _path  # noqa: F401

from shared.cli import Parser, check_fw, main_wrapper, positive_int
from shared.errors import UserError
from shared.frameworks import load_both
from shared.models import get_spec
from shared.recipe import parse_set_flags
from zoo import registry


def torch_loop(spec, config, batch: dict, threads: int):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    impl = spec.impl("torch")
    model = spec.build("torch", config)
    model.train()
    tensors = {k: torch.from_numpy(v.copy()) for k, v in batch.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = impl.compute_loss(impl.call(model, tensors, training=True), tensors, config)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def keras_loop(spec, config, batch: dict, threads: int):
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise UserError(
            f"the Keras plain loop is written for the TensorFlow backend; found {keras.backend.backend()}"
        )
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(0)
    impl = spec.impl("keras")
    model = spec.build("keras", config)
    tensors = {k: tf.convert_to_tensor(v) for k, v in batch.items()}
    optimizer = keras.optimizers.AdamW(learning_rate=1e-4)
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(reduce_retracing=True)
    def train_step(inputs):
        with tf.GradientTape() as tape:
            loss = impl.compute_loss(impl.call(model, inputs, training=True), inputs, config)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return lambda: float(train_step(tensors))


LOOPS = {"torch": torch_loop, "keras": keras_loop}


def measure(step, batch_size: int, steps: int, repeats: int, warmup: int) -> dict:
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        rates.append(batch_size * steps / (time.perf_counter() - start))
    return {"examples_per_s": statistics.median(rates), "spread": [min(rates), max(rates)], "last_loss": loss}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = Parser(prog="tools/bench.py", description=__doc__)
    parser.add_argument("model", help="a model (zoo/vision/cnn) or 'all'")
    parser.add_argument("--fw", default="torch,keras", help="frameworks, comma-separated (default both)")
    parser.add_argument("--batch-size", type=int, help="examples per step (default: the recipe's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--smoke", action="store_true", help="each model's small smoke config")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks; the median is kept (default 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="CPU threads per framework (default 1)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    for name in ("steps", "repeats", "threads"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1; found {getattr(args, name)}")
    if args.warmup < 0 or (args.batch_size is not None and args.batch_size < 1):
        raise UserError("--warmup must be >= 0 and --batch-size >= 1")
    frameworks = [check_fw(fw.strip()) for fw in args.fw.split(",") if fw.strip()]
    load_both()
    names = registry.list_models() if args.model == "all" else [get_spec(args.model).name]
    overrides = parse_set_flags(args.set)
    results = []
    for name in names:
        spec = registry.get(name)
        config = spec.config(**({**spec.smoke_config, **overrides} if args.smoke else overrides))
        batch_size = args.batch_size or config.batch_size
        batch = spec.example_batch(config, batch_size=batch_size, seed=0)
        for fw in frameworks:
            step = LOOPS[fw](spec, config, batch, args.threads)
            row = {"model": name, "framework": fw, "batch_size": batch_size, "threads": args.threads}
            row.update(measure(step, batch_size, args.steps, args.repeats, args.warmup))
            results.append(row)
            if not args.json:
                print(
                    f"{name:20s} {fw:6s} batch {batch_size:4d}  {row['examples_per_s']:10.1f} examples/s",
                    flush=True,
                )
    if args.json:
        print(
            json.dumps(
                {
                    "machine": platform.processor() or platform.machine(),
                    "pid": os.getpid(),
                    "command": shlex.join(["python", "tools/bench.py", *argv]),  # the site names it
                    "results": results,
                }
            )
        )
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
