"""Closed-loop load test of tools/serve.py on this machine: p50/p99 latency and throughput per concurrency.

    python tools/loadtest.py http://127.0.0.1:8000 --concurrency 1,8,32 --requests 2000 --seconds 30
    python tools/loadtest.py runs/perception --fw torch --threads 1 --json perception-torch.json

The target is a running server on 127.0.0.1 (other hosts are refused), or a checkpoint / export folder:
then tools/serve.py is started on a free local port with --fw, --threads, --max-batch and --max-delay-ms,
measured, and stopped. Each level runs until --requests requests or --seconds, whichever comes first,
after --warmup unmeasured requests. The request is the model's example from GET /v1/models unless --body
names a JSON file. --bad-fraction F sends that share of deliberately malformed requests (each must be
answered 4xx). Prints a table; --json writes the whole report, with the command, the date, the CPU, the
load average before and after, and where the served weights came from.

    python tools/loadtest.py --write-docs runs/perf

writes docs/PERFORMANCE.md's generated section and each model card's Deployment section from the JSON
results in runs/perf (this tool's --json files and tools/bench_export.py's --out file); it measures nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import _path  # noqa: F401

from shared.cli import Parser, main_wrapper
from shared.errors import UserError
from shared.serve import loadgen, performance

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def started_server(
    source: str, fw: str, threads: int, max_batch: int, max_delay_ms: float, start_timeout: float
):
    """tools/serve.py on 127.0.0.1 and a free port; yields its base URL; SIGTERM and wait on exit."""
    import selectors

    command = [
        sys.executable,
        str(ROOT / "tools" / "serve.py"),
        source,
        "--fw",
        fw,
        "--port",
        "0",
        "--threads",
        str(threads),
        "--max-batch",
        str(max_batch),
        "--max-delay-ms",
        str(max_delay_ms),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = tempfile.TemporaryFile("w+")  # the server's stderr (a pipe nobody reads could fill and block it)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline, line = time.monotonic() + start_timeout, ""
        while "serving" not in line:
            if (
                process.poll() is not None
                or time.monotonic() > deadline
                or not selector.select(deadline - time.monotonic())
            ):
                process.kill()
                log.seek(0)
                errors = [x for x in log.read().splitlines() if x.startswith("error:")]
                raise UserError(
                    f"tools/serve.py did not start: {errors[-1] if errors else 'no error line, timed out'}"
                )
            line = process.stdout.readline()
        yield line.split(" at ")[-1].strip()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def table(report: dict) -> str:
    model = report["model"]
    lines = [
        f"{model['name']} ({model['framework']}, version {model['version']}); "
        f"max_batch {report['limits']['max_batch']}, max_delay_ms {report['limits']['max_delay_ms']}",
        f"{'concurrency':>11} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>6}",
    ]
    for level in report["levels"]:
        latency = level["latency_ms"]
        errors = level["good_errors"] + len(level["bad_not_4xx"])
        lines.append(
            f"{level['concurrency']:>11} {level['requests']:>8} {latency['p50'] or float('nan'):>8.2f} "
            f"{latency['p99'] or float('nan'):>8.2f} {level['throughput_rps'] or 0:>8.1f} {errors:>6}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = Parser(prog="tools/loadtest.py", description=__doc__)
    parser.add_argument(
        "target", nargs="?", help="http://127.0.0.1:PORT of a running server, or a checkpoint/export to serve"
    )
    parser.add_argument("--fw", help="torch, keras or onnx: start tools/serve.py on the target folder")
    parser.add_argument("--threads", type=int, default=1, help="the started server's intra-op threads")
    parser.add_argument("--max-batch", type=int, default=16, help="the started server's --max-batch")
    parser.add_argument("--max-delay-ms", type=float, default=2.0, help="the started server's --max-delay-ms")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=1000, help="most requests per level")
    parser.add_argument("--seconds", type=float, default=30.0, help="most seconds per level")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests first")
    parser.add_argument("--bad-fraction", type=float, default=0.0, help="share of malformed requests")
    parser.add_argument("--body", help="JSON file: the request to send (default: the model's example)")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument(
        "--write-docs",
        metavar="DIR",
        help="measure nothing: write docs/PERFORMANCE.md and the model cards' Deployment sections from DIR/*.json",
    )
    args = parser.parse_args(argv)
    if args.write_docs:
        if args.target:
            raise UserError("--write-docs reads results and measures nothing: leave the target out")
        for path in performance.write_docs(args.write_docs, ROOT):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    if not args.target:
        raise UserError("name a target: http://127.0.0.1:PORT, or a checkpoint/export folder with --fw")
    try:
        concurrency = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        raise UserError(
            f"--concurrency takes comma-separated integers, e.g. 1,8,32; found {args.concurrency!r}"
        ) from None
    body = Path(args.body).read_bytes() if args.body else None

    header = performance.stamp("loadtest", "tools/loadtest.py", argv)

    def measure(base: str) -> dict:
        header["load_average"]["start"] = performance.load_average()  # after the server started
        report = loadgen.run(
            base, concurrency, args.requests, args.seconds, args.warmup, args.bad_fraction, body
        )
        report["provenance"] = performance.provenance(loadgen.describe(base))
        return performance.finish({**header, **report})

    if args.target.startswith("http"):
        if args.fw:
            raise UserError(
                "--fw starts a server on a checkpoint or export folder; a URL is already a server"
            )
        report = measure(args.target)
    else:
        if not args.fw:
            raise UserError(
                f"{args.target} is not a URL: pass --fw torch|keras|onnx to serve it, or the server's URL"
            )
        with started_server(
            args.target, args.fw, args.threads, args.max_batch, args.max_delay_ms, 600
        ) as base:
            report = measure(base)
        report["server"] = {
            "source": args.target,
            "fw": args.fw,
            "threads": args.threads,
            "max_batch": args.max_batch,
            "max_delay_ms": args.max_delay_ms,
        }
    report["client"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
