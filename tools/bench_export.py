"""Batch-1 latency of each model's eager torch twin against its verified ONNX export in onnxruntime.

    python tools/bench_export.py --out runs/bench_export.json            # every model, 1 thread
    python tools/bench_export.py vision/cnn nlp/seq2seq --repeats 200

Each model is built with its default Config (random weights: latency does not depend on them), saved as
a checkpoint and exported with tools/export.py's pipeline (so the artefact timed is a verified one).
Single-graph models: one forward of a batch of 1 (torch: the twin's call under no_grad on tensors made
beforehand; onnxruntime: session.run on numpy arrays). Translation models: greedy translation of one
source through shared/decoding.py, the twin's encode / decode_step against the encoder and decoder_step
graphs (the same number of steps: the decoded tokens are checked equal). Median of --repeats runs after
warm-up, both runtimes on --threads threads. The JSON (--out) records the command, the date, the CPU and
the load average before and after; `tools/loadtest.py --write-docs` turns it into docs/PERFORMANCE.md.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import _path  # noqa: F401
import numpy as np

from shared import checkpoint
from shared import decoding as zoo_decoding
from shared.cli import Parser, main_wrapper
from shared.errors import UserError
from shared.export import decode
from shared.export.pipeline import export, load_runner
from shared.models import get_spec
from shared.recipe import config_to_dict
from shared.serve.performance import finish, stamp
from zoo.registry import list_models


def timed_ms(fn, repeats: int, warmup: int) -> tuple[float, float]:
    """(median, fastest) milliseconds of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times), 1000.0 * min(times)


def bench_model(name: str, folder: Path, repeats: int, warmup: int, threads: int) -> dict:
    import torch

    from shared.export.torch_graphs import TwinCall

    spec = get_spec(name)
    config = spec.config()
    torch.manual_seed(0)
    model = spec.build("torch", config).eval()
    ckpt = checkpoint.save(
        folder / "checkpoint",
        model_name=name,
        config=config_to_dict(config),
        weights=spec.get_weights(model),
        meta={"framework": "torch", "note": "random weights for tools/bench_export.py"},
    )
    doc = export(str(ckpt), "onnx", folder / "onnx")
    run = load_runner(folder / "onnx", doc, threads=threads)
    row = {"verified_max_rel_error": doc["verification"]["max_rel_error"], "opset": doc["opset"]}
    if spec.task == "translation":
        batch = spec.example_batch(config, batch_size=1, seed=11)
        src, mask = batch["src"], batch["src_mask"]
        step = spec.task_module.stepper(spec, model)
        max_len = doc["decoding"]["max_len"]
        ids = dict(bos_id=doc["decoding"]["bos_id"], eos_id=doc["decoding"]["eos_id"], max_len=max_len)
        eager_tokens = zoo_decoding.greedy(step, src, mask, **ids)[0].tokens
        onnx_tokens = decode.greedy(run, doc["decoding"], src, mask)[0].tokens
        if eager_tokens != onnx_tokens:
            raise UserError(f"{name}: the ONNX export decodes other tokens than the twin")
        row["what"] = (
            f"greedy translation of one {src.shape[1]}-token source ({len(eager_tokens)} tokens out)"
        )

        def eager():
            return zoo_decoding.greedy(step, src, mask, **ids)

        def exported():
            return decode.greedy(run, doc["decoding"], src, mask)

    else:
        graph = doc["graphs"]["model"]
        batch = spec.example_batch(config, batch_size=1, seed=11)
        feeds = {t["name"]: np.ascontiguousarray(batch[t["name"]]) for t in graph["inputs"]}
        tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
        twin = TwinCall(spec.impl("torch"), model).eval()

        def eager():
            with torch.no_grad():
                return twin(tensors)

        row["what"] = "forward of a batch of 1"

        def exported():
            return run("model", feeds)

    row["torch_eager_ms"], row["torch_eager_fastest_ms"] = timed_ms(eager, repeats, warmup)
    row["onnxruntime_ms"], row["onnxruntime_fastest_ms"] = timed_ms(exported, repeats, warmup)
    row["onnx_over_torch"] = row["onnxruntime_ms"] / row["torch_eager_ms"]
    return row


def main(argv=None) -> int:
    parser = Parser(prog="tools/bench_export.py", description=__doc__)
    parser.add_argument("models", nargs="*", help="models (default: all)")
    parser.add_argument("--repeats", type=int, default=100, help="timed runs per model and runtime")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and onnxruntime")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise UserError("--repeats and --threads must be >= 1 and --warmup >= 0")
    names = [get_spec(m).name for m in args.models] or list_models()
    import torch

    torch.set_num_threads(args.threads)
    results = {
        **stamp("bench_export", "tools/bench_export.py", argv),
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "config": "default",
        "versions": {"torch": torch.__version__, "onnxruntime": version("onnxruntime")},
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            row = bench_model(
                name, Path(tmp) / name.replace("/", "-"), args.repeats, args.warmup, args.threads
            )
            results["models"][name] = row
            print(
                f"{name:20s} torch eager {row['torch_eager_ms']:8.3f} ms   onnxruntime {row['onnxruntime_ms']:8.3f} ms"
                f"   ratio {row['onnx_over_torch']:.2f}   ({row['what']})",
                flush=True,
            )
    finish(results)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
