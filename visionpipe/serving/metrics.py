"""Prometheus metrics named after TF Serving's (``:tensorflow:serving:*``), one registry per server."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            ":tensorflow:serving:request_count", "Requests by model, API, signature and status.",
            ["model_name", "api", "signature_name", "status"], registry=self.registry)
        self.latency = Histogram(
            ":tensorflow:serving:request_latency", "End-to-end request latency in seconds.",
            ["model_name", "api", "signature_name"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Rows in each batch the model ran (after padding).",
            ["model_name"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.padding_rows = Counter(
            ":tensorflow:serving:batching_session:padding_rows",
            "Rows added to reach an allowed batch size.", ["model_name"], registry=self.registry)
        self.version_events = Counter(
            ":tensorflow:serving:model_version_events", "Version loads, unloads and load failures.",
            ["model_name", "event"], registry=self.registry)
        self.available_versions = Gauge(
            ":tensorflow:serving:available_versions", "Versions currently loaded and serving.",
            ["model_name"], registry=self.registry)

    def observe_request(self, model_name: str, api: str, signature_name: str, status: str,
                        seconds: float) -> None:
        self.requests.labels(model_name, api, signature_name, status).inc()
        self.latency.labels(model_name, api, signature_name).observe(seconds)

    def observe_batch(self, model_name: str, rows: int, padded_rows: int) -> None:
        self.batch_size.labels(model_name).observe(padded_rows)
        if padded_rows > rows:
            self.padding_rows.labels(model_name).inc(padded_rows - rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)
