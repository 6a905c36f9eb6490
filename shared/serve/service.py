"""A request body -> inputs -> batches -> a response body; and what /v1/models says of the model.

POST /v1/predict takes a JSON object:

    {"inputs": [INPUT, ...], "options": {...}, "model": "vision/cnn"}

`inputs` (or `input`, a single one) holds task-native inputs (shared/serve/tasks.py lists them per task);
`options` and `model` may be left out (a `model` other than the one served is a 404). The answer is
{"model": NAME, "outputs": [OUTPUT, ...]}, one output per input, in order. Each input goes through the
batcher on its own, so the inputs of one request and of concurrent requests share forward passes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from shared.errors import UserError
from shared.recipe import config_to_dict
from shared.serve.batcher import Batcher
from shared.serve.errors import RequestError
from shared.serve.metrics import Metrics
from shared.serve.tasks import Parsed, adapter_for, slice_rows

log = logging.getLogger("zoo.serve")
REQUEST_FIELDS = ("inputs", "input", "options", "model")
INLINE_PARSE_BYTES = 16 << 10


@dataclass(frozen=True)
class Settings:
    max_batch: int = 16  # inputs per forward pass
    max_delay_ms: float = 2.0  # how long the oldest queued input waits for others
    max_body_bytes: int = 8 << 20  # larger request bodies are answered 413
    max_inputs: int = 256  # inputs per request

    def check(self) -> Settings:
        if self.max_batch < 1 or self.max_delay_ms < 0 or self.max_body_bytes < 1 or self.max_inputs < 1:
            raise UserError(
                f"--max-batch >= 1, --max-delay-ms >= 0, --max-body-bytes >= 1 and --max-inputs >= 1 are "
                f"required; found {self.max_batch}, {self.max_delay_ms}, {self.max_body_bytes}, {self.max_inputs}"
            )
        return self


class Service:
    def __init__(self, backend, settings: Settings, server_options: dict | None = None):
        self.backend, self.settings = backend, settings.check()
        self.spec = backend.spec
        self.name = backend.spec.name
        self.adapter = adapter_for(backend, server_options or {})
        self.metrics = Metrics()
        self.batcher = Batcher(
            self._process, settings.max_batch, settings.max_delay_ms / 1000.0, self._on_batch
        )
        self.tensors: list[dict] = []
        self.version = str(
            backend.checkpoint.get("manifest_sha256") or backend.checkpoint.get("sha256") or ""
        )[:12]
        self.metrics.model.labels(self.name, backend.framework, self.spec.task, self.version).set(1)

    # ---- lifecycle

    def warm_up(self) -> None:
        """Run the example inputs once (first-call costs are paid before the first request) and record the
        input tensors the model receives (for /v1/models)."""
        options = self.adapter.parse_options({})
        parsed = [
            self.adapter.parse(x, f"example[{i}]", options) for i, x in enumerate(self.adapter.example())
        ]
        batch = self.adapter.collate([p.arrays for p in parsed])
        self.tensors = [
            {"name": k, "dtype": str(v.dtype), "shape": [None, *v.shape[1:]]} for k, v in batch.items()
        ]
        for p, rows in zip(parsed, self._process(parsed[0].key, parsed)):
            self.adapter.answer(rows, p.context, options)

    def start(self) -> None:
        self.batcher.start()

    def stop(self) -> None:
        self.batcher.stop()

    # ---- the model's description

    def describe(self) -> dict:
        signature = {
            **self.adapter.schema(),
            "tensors": self.tensors,
            "example": {"model": self.name, "inputs": self.adapter.example()},
        }
        return {
            "name": self.name,
            "version": self.version or None,
            "task": self.spec.task,
            **self.backend.describe(),
            "signature": signature,
            "config": config_to_dict(self.backend.config),
            "limits": {
                "max_batch": self.settings.max_batch,
                "max_delay_ms": self.settings.max_delay_ms,
                "max_body_bytes": self.settings.max_body_bytes,
                "max_inputs": self.settings.max_inputs,
            },
        }

    # ---- predictions

    def parse(self, body: bytes) -> tuple[dict, list[Parsed]]:
        """A request body -> (checked options, one Parsed per input); RequestError names the first problem."""
        try:
            request = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RequestError(400, f"malformed JSON: {err}") from None
        if not isinstance(request, dict):
            raise RequestError(
                422, f'the request must be a JSON object {{"inputs": [...]}}; found {type(request).__name__}'
            )
        unknown = sorted(set(request) - set(REQUEST_FIELDS))
        if unknown:
            raise RequestError(
                422, f"unknown field(s) {', '.join(unknown)}; a request has {', '.join(REQUEST_FIELDS)}"
            )
        model = request.get("model", self.name)
        if model != self.name:
            raise RequestError(404, f"model {model!r} is not served here; this server serves {self.name}")
        if ("inputs" in request) == ("input" in request):
            raise RequestError(
                422, 'the request needs exactly one of "inputs" (a list) or "input" (one input)'
            )
        inputs = request["inputs"] if "inputs" in request else [request["input"]]
        if not isinstance(inputs, list) or not inputs:
            raise RequestError(422, '"inputs" must be a non-empty list of inputs')
        if len(inputs) > self.settings.max_inputs:
            raise RequestError(
                413,
                f"{len(inputs)} inputs in one request; this server takes at most {self.settings.max_inputs}",
            )
        options = request.get("options", {})
        if not isinstance(options, dict):
            raise RequestError(422, f'"options" must be an object; found {type(options).__name__}')
        options = self.adapter.parse_options(options)
        where = "inputs" if "inputs" in request else "input"
        return options, [
            self.adapter.parse(item, f"{where}[{i}]" if where == "inputs" else where, options)
            for i, item in enumerate(inputs)
        ]

    async def predict(self, body: bytes) -> dict:
        if len(body) > INLINE_PARSE_BYTES:  # images: decoded off the event loop
            options, parsed = await run_in_threadpool(self.parse, body)
        else:  # small bodies parse faster than a thread hop
            options, parsed = self.parse(body)
        self.metrics.queue.set(self.batcher.queued + len(parsed))
        try:
            futures = [self.batcher.submit(p.key, p) for p in parsed]
        except RuntimeError as err:  # shutting down
            raise RequestError(503, str(err)) from None
        try:
            rows = await asyncio.gather(*futures)
        except RequestError:
            raise
        except Exception as err:
            log.exception("forward pass failed")
            raise RequestError(500, f"the model failed on this batch: {type(err).__name__}: {err}") from None
        outputs = [self.adapter.answer(r, p.context, options) for r, p in zip(rows, parsed)]
        return {"model": self.name, "outputs": outputs}

    def _process(self, key, parsed: list[Parsed]) -> list:
        """One forward pass over the inputs' rows; each input's slice of the outputs (worker thread)."""
        outputs = self.adapter.run(self.adapter.collate([p.arrays for p in parsed]), key)
        parts, start = [], 0
        for p in parsed:
            parts.append(slice_rows(outputs, start, start + p.rows))
            start += p.rows
        return parts

    def _on_batch(self, size: int, seconds: float) -> None:
        self.metrics.observe_batch(size, seconds)
        self.metrics.queue.set(self.batcher.queued)
