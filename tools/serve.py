"""Serve a checkpoint (torch or Keras twin) or an ONNX export over HTTP/JSON, with dynamic batching.

    python tools/serve.py runs/cnn-torch --fw torch --port 8000
    python tools/serve.py exports/perception-onnx --fw onnx --max-batch 8 --max-delay-ms 2 --threads 1
    curl -s localhost:8000/v1/models
    curl -s localhost:8000/v1/predict -d '{"inputs": [{"image": "'$(base64 -w0 digit.png)'"}]}'

Endpoints: GET /v1/models (name, version, signature with an example request, checkpoint sha256),
POST /v1/predict (task-native inputs; answers what tools/predict.py prints, as JSON), GET /healthz and
GET /metrics (Prometheus). Inputs of concurrent requests run together: up to --max-batch inputs, the
first waiting at most --max-delay-ms for others. The server binds 127.0.0.1 unless --host says otherwise;
SIGTERM lets requests in flight finish before it exits. Bad requests get a 4xx and a one-line JSON error.
"""

from __future__ import annotations

import signal

import _path  # noqa: F401

from shared.cli import Parser, main_wrapper
from shared.errors import UserError
from shared.recipe import parse_set_flags
from shared.serve import backends
from shared.serve.app import bind, make_server
from shared.serve.service import Service, Settings

FRAMEWORKS = ("torch", "keras", "onnx")


def main(argv=None) -> int:
    defaults = Settings()
    parser = Parser(prog="tools/serve.py", description=__doc__)
    parser.add_argument(
        "source",
        help="checkpoint folder, run folder or store URL (--fw torch/keras); export folder (--fw onnx)",
    )
    parser.add_argument("--fw", required=True, help="torch, keras or onnx")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="TCP port (0: any free port, printed at start)"
    )
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch, help="inputs per forward pass")
    parser.add_argument(
        "--max-delay-ms", type=float, default=defaults.max_delay_ms, help="longest wait to fill a batch"
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=defaults.max_body_bytes, help="larger bodies get 413"
    )
    parser.add_argument("--max-inputs", type=int, default=defaults.max_inputs, help="inputs per request")
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads of the framework (default 1)"
    )
    parser.add_argument(
        "--graceful-seconds", type=float, default=30.0, help="how long SIGTERM waits for requests"
    )
    parser.add_argument(
        "--opt", action="append", default=[], metavar="KEY=VALUE", help="task option (recsys: data=NAME)"
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (stderr)")
    args = parser.parse_args(argv)
    if args.fw not in FRAMEWORKS:
        raise UserError(f"unknown --fw {args.fw!r}: expected torch, keras or onnx")
    if args.threads < 1 or not 0 <= args.port <= 65535 or args.graceful_seconds < 0:
        raise UserError(
            f"--threads >= 1, --port 0..65535 and --graceful-seconds >= 0 are required; found {args.threads}, "
            f"{args.port}, {args.graceful_seconds}"
        )
    settings = Settings(args.max_batch, args.max_delay_ms, args.max_body_bytes, args.max_inputs).check()

    service = Service(backends.load(args.source, args.fw, args.threads), settings, parse_set_flags(args.opt))
    service.warm_up()
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    server = make_server(service, args.graceful_seconds, args.access_log)
    # uvicorn handles SIGTERM/SIGINT while it runs, then re-raises the signal to the handler found before
    # it: that handler is its own, so a graceful stop ends with exit status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, server.handle_exit)
    where = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    print(
        f"serving {service.name} ({args.fw}, version {service.version or 'unknown'}) at {where}", flush=True
    )
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
