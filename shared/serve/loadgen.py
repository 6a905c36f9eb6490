"""A closed-loop load generator for tools/serve.py, against this machine only (127.0.0.1, ::1, localhost).

`concurrency` clients each send a request, wait for its answer and send the next, until `requests`
requests have been sent or `seconds` have passed, whichever comes first. Latency is measured per
request at the client (connect, send, model, answer); throughput is answered requests per second of
the run. A fraction of the requests can be malformed on purpose (`bad_fraction`): every k-th request
is one of a fixed list of bad requests, each of which the server must answer with a 4xx; the report
counts good requests that failed and bad ones that were not answered 4xx.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import UserError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_local(url: str) -> str:
    """The base URL (no trailing slash) if it points at this machine; else a UserError."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOCAL_HOSTS or parts.port is None:
        raise UserError(
            f"{url}: the load generator only targets this machine, http://127.0.0.1:PORT (or localhost, [::1]) "
            "with an explicit port"
        )
    return url.rstrip("/")


@dataclass(frozen=True)
class Probe:
    kind: str  # what is wrong with it ("good" for the valid request)
    method: str
    path: str
    body: bytes | None


def bad_probes(model: str, limits: dict) -> list[Probe]:
    """Malformed requests that any served model must answer with a 4xx."""
    oversize = b'{"inputs": ["' + b"x" * limits["max_body_bytes"] + b'"]}'
    return [
        Probe("malformed JSON", "POST", "/v1/predict", b'{"inputs": [{"image": '),
        Probe("wrong type", "POST", "/v1/predict", json.dumps({"inputs": 42}).encode()),
        Probe("wrong input type", "POST", "/v1/predict", json.dumps({"inputs": [[1, [2, 3]]]}).encode()),
        Probe(
            "unknown model",
            "POST",
            "/v1/predict",
            json.dumps({"model": "no/such-model", "inputs": [1]}).encode(),
        ),
        Probe("unknown field", "POST", "/v1/predict", json.dumps({"model": model, "inputz": []}).encode()),
        Probe("empty inputs", "POST", "/v1/predict", json.dumps({"inputs": []}).encode()),
        Probe("oversize body", "POST", "/v1/predict", oversize),
        Probe("unknown route", "GET", "/v1/nothing-here", None),
    ]


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def run_level(
    base: str,
    good: Probe,
    concurrency: int,
    requests: int,
    seconds: float,
    bad: list[Probe] = (),
    bad_every: int = 0,
    timeout: float = 60.0,
) -> dict:
    """One closed-loop run; returns counts, latency percentiles (ms, good requests) and throughput.

    Each client is a thread with one keep-alive connection (the standard library's http.client: the
    lightest client at hand, so that the client's own CPU time disturbs the server as little as possible
    on a small machine)."""
    parts = urlsplit(base)
    lock, issued, records = threading.Lock(), [0], []  # records: (kind, status, seconds)
    deadline = time.perf_counter() + seconds

    def next_probe() -> Probe | None:
        with lock:
            index = issued[0]
            if index >= requests or time.perf_counter() >= deadline:
                return None
            issued[0] += 1
        if bad and bad_every and index % bad_every == bad_every - 1:
            return bad[(index // bad_every) % len(bad)]
        return good

    def worker() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        while (probe := next_probe()) is not None:
            headers = {"content-type": "application/json"} if probe.body is not None else {}
            start = time.perf_counter()
            try:
                connection.request(probe.method, probe.path, body=probe.body, headers=headers)
                response = connection.getresponse()
                data, status = response.read(), response.status
                if response.will_close:
                    connection.close()  # reconnects on the next request
                if probe is good and status == 200:
                    json.loads(data)
                elif status >= 400:
                    error = json.loads(data)
                    if set(error) != {"error"} or "\n" in error["error"]:
                        status = -status  # not the one-line error body the contract promises
            except (OSError, http.client.HTTPException, ValueError):
                status = 0
                connection.close()
            records.append((probe.kind, status, time.perf_counter() - start))
        connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + timeout + 30)
    elapsed = time.perf_counter() - start
    records = list(records)
    good_latency = [s for kind, status, s in records if kind == "good" and status == 200]
    bad_records = [(kind, status) for kind, status, _ in records if kind != "good"]
    return {
        "concurrency": concurrency,
        "requests": len(records),
        "seconds": round(elapsed, 3),
        "throughput_rps": round(len(records) / elapsed, 2) if elapsed else None,
        "good": sum(1 for kind, *_ in records if kind == "good"),
        "good_ok": len(good_latency),
        "good_errors": sum(1 for kind, status, _ in records if kind == "good" and status != 200),
        "bad": len(bad_records),
        "bad_4xx": sum(1 for _, status in bad_records if 400 <= status < 500),
        "bad_not_4xx": sorted(
            {f"{kind}: {status}" for kind, status in bad_records if not 400 <= status < 500}
        ),
        "latency_ms": {
            name: None if value is None else round(1000 * value, 3)
            for name, value in (
                ("p50", percentile(good_latency, 50)),
                ("p90", percentile(good_latency, 90)),
                ("p99", percentile(good_latency, 99)),
                ("max", max(good_latency, default=None)),
                ("mean", sum(good_latency) / len(good_latency) if good_latency else None),
            )
        },
    }


def describe(base: str, timeout: float = 30.0) -> dict:
    """GET /v1/models: the served model's entry (its example request is the good request)."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", "/v1/models")
        response = connection.getresponse()
        data = response.read()
    except OSError as err:
        raise UserError(f"no server answers at {base}: {err}") from None
    finally:
        connection.close()
    if response.status != 200:
        raise UserError(f"{base}/v1/models answered {response.status}; is it tools/serve.py?")
    return json.loads(data)["models"][0]


def run(
    base: str,
    concurrency: list[int],
    requests: int,
    seconds: float,
    warmup: int = 20,
    bad_fraction: float = 0.0,
    body: bytes | None = None,
) -> dict:
    """Every concurrency level in turn, after `warmup` unmeasured requests; the JSON report."""
    base = check_local(base)
    if requests < 1 or seconds <= 0 or not concurrency or min(concurrency) < 1 or not 0 <= bad_fraction < 1:
        raise UserError(
            f"need requests >= 1, seconds > 0, concurrency levels >= 1 and 0 <= bad fraction < 1; found "
            f"{requests}, {seconds}, {concurrency}, {bad_fraction}"
        )
    model = describe(base)
    good = Probe("good", "POST", "/v1/predict", body or json.dumps(model["signature"]["example"]).encode())
    bad = bad_probes(model["name"], model["limits"]) if bad_fraction else []
    bad_every = round(1 / bad_fraction) if bad_fraction else 0
    if warmup:
        run_level(base, good, 1, warmup, seconds)
    levels = [run_level(base, good, c, requests, seconds, bad, bad_every) for c in concurrency]
    return {
        "target": base,
        "model": {k: model.get(k) for k in ("name", "version", "task", "framework", "config")},
        "limits": model["limits"],
        "request_bytes": len(good.body),
        "bad_fraction": bad_fraction,
        "levels": levels,
    }
