"""The standard gRPC health service (grpc.health.v1.Health), following the loaded models.

Service names: "" is the whole server, SERVING when every configured model has an AVAILABLE
version (the same rule as REST /healthz); each model name is SERVING while at least one of its
versions is AVAILABLE and NOT_SERVING otherwise (every version failed, was deleted, or the
model was removed from the config). Other names answer NOT_FOUND (Check) or SERVICE_UNKNOWN
(Watch), as grpcio-health-checking does. Real TF Serving does not implement this service.
"""
from __future__ import annotations

import threading
from typing import Dict

from grpc_health.v1 import health, health_pb2, health_pb2_grpc

OVERALL = health.OVERALL_HEALTH
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ModelHealth:
    def __init__(self):
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self._lock = threading.Lock()
        self._reported: Dict[str, int] = {}
        self._set(OVERALL, NOT_SERVING)  # until the first refresh sees loaded models

    def refresh(self, manager) -> None:
        """Recompute every status from the manager; Watch streams hear only real changes."""
        with self._lock:  # read and publish under one lock: a stale snapshot never wins
            names = manager.model_names()
            statuses = {name: SERVING if manager.available_versions(name) else NOT_SERVING
                        for name in names}
            for name in self._reported:
                if name != OVERALL and name not in statuses:
                    statuses[name] = NOT_SERVING  # removed from the config
            ready = bool(names) and all(statuses[name] == SERVING for name in names)
            statuses[OVERALL] = SERVING if ready else NOT_SERVING
            for service, status in statuses.items():
                self._set(service, status)

    def _set(self, service: str, status: int) -> None:
        if self._reported.get(service) != status:
            self.servicer.set(service, status)
            self._reported[service] = status

    def shutdown(self) -> None:
        """Everything NOT_SERVING from now on (called before the servers stop)."""
        self.servicer.enter_graceful_shutdown()

    def add_to_server(self, server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
