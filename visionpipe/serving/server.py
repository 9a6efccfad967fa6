"""The model server: model manager + batching + REST and gRPC front ends in one process."""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Optional

import visionpipe  # noqa: F401

from visionpipe.serving import model_config, model_scan, tls
from visionpipe.serving.batching import BatchScheduler
from visionpipe.serving.grpc_service import build_grpc_server, tensor_to_ndarray
from visionpipe.serving.health import ModelHealth
from visionpipe.serving.inference import InferenceService, Limits, coerce_input
from visionpipe.serving.metrics import ServerMetrics
from visionpipe.serving.model_manager import ModelManager
from visionpipe.serving.options import ServerOptions
from visionpipe.serving.rest import build_rest_server
from visionpipe.serving.servable import LoadedVersion

log = logging.getLogger(__name__)


def load_and_warm(name: str, version: int, path: Path, warmup: bool = True,
                  allowed_ops=(), max_request_bytes: Optional[int] = None) -> LoadedVersion:
    """Scan, load a version and replay its warm-up requests; any failure rejects the version.

    Warm-up tensors are held to the request limit like requests (a record declaring a huge
    shape fails the version instead of exhausting memory)."""
    model_scan.check_saved_model(path, allowed_ops)  # before TensorFlow loads anything
    servable = LoadedVersion(name, version, path)
    if warmup:
        for i, request in enumerate(servable.warmup_requests()):
            signature = servable.signature(request.model_spec.signature_name)
            inputs = {k: coerce_input(signature.inputs[k], tensor_to_ndarray(k, v, max_request_bytes))
                      for k, v in request.inputs.items()}
            try:
                servable.run(signature, inputs)
            except Exception as err:
                raise RuntimeError(f"warm-up request {i} failed: {err}") from err
    return servable


class ModelServer:
    """Start with ``start()``; ``stop()`` shuts everything down (also usable as a context manager)."""

    def __init__(self, options: ServerOptions):
        self.options = options
        config = options.model_server_config()
        monitoring = model_config.load_monitoring_config(options.monitoring_config_file or None)
        batching = options.batching_options()
        allowed_ops = model_scan.parse_allowed_ops(options.allowed_ops)
        credentials = (tls.server_credentials(tls.load_ssl_config(options.ssl_config_file))
                       if options.ssl_config_file else None)
        self.metrics = ServerMetrics()
        self.health = ModelHealth()
        self.manager = ModelManager(
            config, lambda n, v, p: load_and_warm(n, v, p, options.enable_model_warmup, allowed_ops,
                                          options.max_request_bytes),
            poll_wait_seconds=options.file_system_poll_wait_seconds, on_change=self._on_change,
            on_models_changed=self._refresh_health)
        self.scheduler = BatchScheduler(batching) if batching else None
        limits = Limits(max_image_pixels=options.max_image_pixels,
                        max_request_bytes=options.max_request_bytes)
        self.service = InferenceService(self.manager, self.metrics, limits, self.scheduler)
        prometheus = monitoring.prometheus_config
        self.grpc_server, self.grpc_port = build_grpc_server(
            self.service, self.manager, f"{options.host}:{options.port}", options.grpc_max_threads,
            options.max_request_bytes, self.health, credentials)
        self.rest_server, self.rest_port = build_rest_server(
            self.service, self.manager, self.metrics, limits, options.host, options.rest_api_port,
            options.rest_api_timeout_in_ms / 1000.0, options.rest_api_num_threads,
            prometheus.path if prometheus.enable else None)
        self._rest_thread: Optional[threading.Thread] = None
        self._config_thread: Optional[threading.Thread] = None
        self._stopped = threading.Event()

    def _on_change(self, name: str, version: int, event: str) -> None:
        self.metrics.version_events.labels(name, event).inc()
        self.metrics.available_versions.labels(name).set(len(self.manager.available_versions(name)))
        self._refresh_health()

    def _refresh_health(self) -> None:
        manager = getattr(self, "manager", None)  # None while the manager is being built
        if manager is not None:
            self.health.refresh(manager)

    def start(self) -> "ModelServer":
        self.manager.start()
        self._refresh_health()  # models configured without any version yet are NOT_SERVING
        self.grpc_server.start()
        self._rest_thread = threading.Thread(target=self.rest_server.serve_forever,
                                             kwargs={"poll_interval": 0.2}, name="rest", daemon=True)
        self._rest_thread.start()
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            self._config_thread = threading.Thread(target=self._poll_config, name="config-poll",
                                                   daemon=True)
            self._config_thread.start()
        log.info("serving gRPC on %s:%d and REST on %s:%d", self.options.host, self.grpc_port,
                 self.options.host, self.rest_port)
        return self

    def _poll_config(self) -> None:
        last = None
        while not self._stopped.wait(self.options.model_config_file_poll_wait_seconds):
            try:
                config = model_config.load_model_server_config(self.options.model_config_file)
            except model_config.ConfigFileError as err:
                log.error("keeping the current model config: %s", err)
                continue
            if config != last:
                self.manager.set_config(config)
                last = config

    def wait(self) -> None:
        self._stopped.wait()

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.shutdown()
        self.rest_server.shutdown()
        self.rest_server.server_close()
        self.grpc_server.stop(grace=1).wait(5)
        self.manager.stop()
        if self.scheduler is not None:
            self.scheduler.stop()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
