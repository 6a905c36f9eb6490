"""The HTTP side: a FastAPI application over a Service, and the uvicorn server that runs it.

    GET  /healthz      {"status": "ok", "model": NAME}
    GET  /v1/models    {"models": [{name, version, task, framework, checkpoint, signature, limits, ...}]}
    POST /v1/predict   see shared/serve/service.py
    GET  /metrics      Prometheus text (shared/serve/metrics.py)

Every error is a one-line JSON body {"error": "..."} with a 4xx status (5xx when the model fails), and
the server keeps serving. Request bodies over max_body_bytes are answered 413 without being kept in
memory. On SIGTERM or SIGINT uvicorn stops accepting connections, lets requests in flight finish
(their inputs still run), then the batcher drains and the process exits 0.
"""

from __future__ import annotations

import logging
import socket
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from shared.errors import UserError
from shared.serve.errors import RequestError, one_line
from shared.serve.service import Service

log = logging.getLogger("zoo.serve")
DRAIN_LIMIT = 64 << 20  # an oversize body up to this size is read (and dropped) so the 413 reaches the client


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status)


async def read_body(request, limit: int) -> bytes:
    """The request body, or RequestError(413) once it passes `limit` bytes (nothing past it is kept)."""
    drain = max(limit, DRAIN_LIMIT)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError(400, f"Content-Length {declared!r} is not a number") from None
        if size > limit:
            if size <= drain:
                async for _ in request.stream():
                    pass
            raise RequestError(
                413, f"the request body is {size:,} bytes; this server takes at most {limit:,}"
            )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > drain:
            break
        if size <= limit:
            chunks.append(chunk)
    if size > limit:  # read to the end (up to `drain`) so that the client, still sending, sees the 413
        raise RequestError(413, f"the request body is over {limit:,} bytes, the most this server takes")
    return b"".join(chunks)


class Instrumented:
    """ASGI wrapper: counts every response by endpoint and status and times it (404s and 413s included)."""

    def __init__(self, app, service: Service):
        self.app, self.metrics = app, service.metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def capture(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, capture)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.observe_request(scope["path"], scope["method"], status, time.perf_counter() - start)


def create_app(service: Service):
    @asynccontextmanager
    async def lifespan(app):
        service.start()
        yield
        service.stop()  # after uvicorn has let the requests in flight finish

    app = FastAPI(title="zoo serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestError)
    async def request_error(request, err: RequestError):
        return error_response(err.status, err.message)

    @app.exception_handler(HTTPException)
    async def http_error(request, err: HTTPException):
        if err.status_code == 404:
            return error_response(404, f"no route {request.method} {request.url.path}: see GET /v1/models")
        return error_response(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def internal_error(request, err: Exception):
        log.exception("unhandled error")
        return error_response(500, f"internal error: {type(err).__name__}: {err}")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "model": service.name}

    @app.get("/v1/models")
    async def models():
        return {"models": [service.describe()]}

    @app.post("/v1/predict")
    async def predict(request: Request):
        body = await read_body(request, service.settings.max_body_bytes)
        return JSONResponse(await service.predict(body))

    @app.get("/metrics")
    async def metrics():
        content, media_type = service.metrics.render()
        return Response(content, media_type=media_type)

    return Instrumented(app, service)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: any free port, read back with getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror}; pick another --port") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def make_server(
    service: Service, graceful_seconds: float = 30.0, access_log: bool = False, log_level="warning"
):
    import uvicorn

    config = uvicorn.Config(
        create_app(service),
        lifespan="on",
        access_log=access_log,
        log_level=log_level,
        timeout_graceful_shutdown=max(1, round(graceful_seconds)),
        timeout_keep_alive=30,
        server_header=False,
    )
    return uvicorn.Server(config)
