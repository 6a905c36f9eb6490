"""Prometheus metrics of one server, in a registry of its own (several servers may share a process).

zoo_requests_total{endpoint, method, status}      responses sent, by route and HTTP status
zoo_request_latency_seconds{endpoint}              time from the request's arrival to its response
zoo_batch_size                                     inputs per forward pass (dynamic batching)
zoo_forward_seconds                                time of each forward pass, pre/post-processing included
zoo_queue_inputs                                   inputs waiting for a forward pass
zoo_requests_in_flight                             requests being handled
zoo_model_info{name, framework, task, sha256}      1, naming what is served
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

ENDPOINTS = ("/v1/predict", "/v1/models", "/healthz", "/metrics")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "zoo_requests",
            "HTTP responses by endpoint and status",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "zoo_request_latency_seconds",
            "Request latency, arrival to response",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "zoo_batch_size", "Inputs per forward pass", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.forward_seconds = Histogram(
            "zoo_forward_seconds", "Seconds per forward pass", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.queue = Gauge("zoo_queue_inputs", "Inputs waiting for a forward pass", registry=self.registry)
        self.in_flight = Gauge("zoo_requests_in_flight", "Requests being handled", registry=self.registry)
        self.model = Gauge(
            "zoo_model_info",
            "The model served",
            ["name", "framework", "task", "version"],
            registry=self.registry,
        )

    def observe_request(self, path: str, method: str, status: int, seconds: float) -> None:
        endpoint = path if path in ENDPOINTS else "other"  # unknown paths share one label
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.forward_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """(the Prometheus text exposition, its content type)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
