"""REST front end with TF Serving's URLs, JSON formats and status-code mapping.

A threaded stdlib HTTP/1.1 server (keep-alive, TCP_NODELAY) is enough here: the model call
dominates, requests are bounded in size before the body is read, idle connections time out,
and the number of concurrent connections is capped so overload is answered with 503.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Tuple

from google.protobuf import json_format

from visionpipe.serving import errors, rest_json
from visionpipe.serving.grpc_service import model_status
from visionpipe.serving.inference import InferenceService, Limits, ModelSpec
from visionpipe.serving.metrics import ServerMetrics
from visionpipe.serving.model_manager import ModelManager

log = logging.getLogger(__name__)

_MODEL_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d{1,18})|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>predict|classify|regress|search))?$")


class _Routes:
    """Everything the handler needs, shared by all connections."""

    def __init__(self, service: InferenceService, manager: ModelManager, metrics: ServerMetrics,
                 limits: Limits, timeout_s: float, metrics_path: Optional[str]):
        self.service = service
        self.manager = manager
        self.metrics = metrics
        self.limits = limits
        self.timeout_s = timeout_s
        self.metrics_path = metrics_path


class RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "VisionPipe-ModelServer"
    timeout = 60  # idle keep-alive connections are closed after this many seconds
    routes: _Routes  # set on the subclass built by build_rest_server

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # --- responses ----------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload, separators=(",", ":")).encode("utf-8"))

    def _send_error(self, err: errors.ServingError) -> None:
        self._send_json(err.http_status, {"error": err.message})

    # --- request reading ----------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self.close_connection = True
            raise errors.invalid_argument("Chunked request bodies are not supported; send Content-Length")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self.close_connection = True
            raise errors.invalid_argument("Content-Length is not an integer") from None
        if length < 0:
            self.close_connection = True
            raise errors.invalid_argument("Content-Length is negative")
        if length > self.routes.limits.max_request_bytes:
            self.close_connection = True  # the unread body must not be parsed as a next request
            raise errors.resource_exhausted(
                f"Request body of {length} bytes exceeds the limit of "
                f"{self.routes.limits.max_request_bytes} bytes (--max_request_bytes)")
        return self.rfile.read(length)

    def _parse_json(self) -> dict:
        body = self._read_body()
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError) as err:
            raise errors.invalid_argument(f"JSON Parse error: {err}") from None
        if not isinstance(parsed, dict):
            raise errors.invalid_argument("JSON Value: request body must be a JSON object")
        return parsed

    # --- dispatch -----------------------------------------------------------------------
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            return self._health()
        if self.routes.metrics_path and path == self.routes.metrics_path:
            return self._send(200, self.routes.metrics.render(), self.routes.metrics.content_type)
        self._dispatch("GET", path)

    def do_POST(self):
        self._dispatch("POST", self.path.split("?", 1)[0])

    def _unsupported_method(self):
        self._drain()
        self._send_error(self._malformed(self.command, self.path.split("?", 1)[0]))

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _unsupported_method

    def _malformed(self, method: str, path: str) -> errors.ServingError:
        return errors.not_found(f"Malformed request: {method} {path[:200]}")

    def _dispatch(self, method: str, path: str) -> None:
        try:
            match = _MODEL_URL.match(path)
            if match is None:
                if method == "POST":
                    self._drain()
                raise self._malformed(method, path)
            spec = ModelSpec(name=match["name"],
                             version=int(match["version"]) if match["version"] else None,
                             label=match["label"])
            verb = match["verb"]
            if method == "GET" and verb is None:
                if match["metadata"]:
                    with self.routes.service.timed("metadata", spec):
                        return self._send_json(200, self._metadata(spec))
                return self._send_json(200, _to_json(model_status(self.routes.manager, spec)))
            if method != "POST" or verb is None:
                if method == "POST":
                    self._drain()
                raise self._malformed(method, path)
            body = self._parse_json()
            spec = ModelSpec(spec.name, spec.version, spec.label, self._signature_name(body))
            with self.routes.service.timed(verb, spec):
                payload = getattr(self, f"_{verb}")(spec, body)
            self._send_json(200, payload)
        except errors.ServingError as err:
            self._send_error(err)
        except Exception as err:  # never let a bug turn into a dropped connection
            log.exception("REST %s %s failed", method, path)
            self._send_error(errors.internal(f"{type(err).__name__}: {err}"))

    def _drain(self) -> None:
        try:
            self._read_body()
        except errors.ServingError:
            pass

    @staticmethod
    def _signature_name(body: dict) -> str:
        name = body.get("signature_name", "")
        if not isinstance(name, str):
            raise errors.invalid_argument("'signature_name' must be a string")
        return name

    def _deadline(self) -> float:
        return time.monotonic() + self.routes.timeout_s

    def _metadata(self, spec: ModelSpec) -> dict:
        # The Any is unpacked: TF Serving's REST metadata shows the SignatureDefMap itself.
        servable = self.routes.service.resolve(spec)
        return {"model_spec": {"name": servable.model_name, "signature_name": "",
                               "version": str(servable.version)},
                "metadata": {"signature_def": _to_json(servable.signature_def_map())}}

    def _predict(self, spec: ModelSpec, body: dict) -> dict:
        service = self.routes.service
        servable = service.resolve(spec)
        signature = servable.signature(spec.signature_name)
        inputs, row_format = rest_json.predict_inputs(body, signature)
        outputs = service.predict_on(servable, signature, inputs, deadline=self._deadline())
        return rest_json.predict_response(outputs, row_format)

    def _classify(self, spec: ModelSpec, body: dict) -> dict:
        _, _, results = self.routes.service.classify(
            spec, rest_json.serialized_examples(body), self._deadline())
        return {"result": [[[label, score] for label, score in row] for row in results]}

    def _regress(self, spec: ModelSpec, body: dict) -> dict:
        _, _, values = self.routes.service.regress(
            spec, rest_json.serialized_examples(body), self._deadline())
        return {"result": values}

    def _search(self, spec: ModelSpec, body: dict) -> dict:
        """VisionPipe's extension: nearest gallery images from the version's pushed index."""
        from visionpipe.serving import search

        return search.search(self.routes.service, spec, body, self._deadline())

    def _health(self) -> None:
        models = {name: self.routes.manager.available_versions(name)
                  for name in self.routes.manager.model_names()}
        ready = bool(models) and all(models.values())
        self._send_json(200 if ready else 503, {"status": "ok" if ready else "unavailable",
                                                "models": models})


def _to_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     including_default_value_fields=True)


class _BoundedThreadingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address, handler, max_connections: int):
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            try:
                body = b'{"error":"Too many concurrent connections"}'
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def build_rest_server(service: InferenceService, manager: ModelManager, metrics: ServerMetrics,
                      limits: Limits, host: str, port: int, timeout_s: float, max_connections: int,
                      metrics_path: Optional[str]) -> Tuple[ThreadingHTTPServer, int]:
    routes = _Routes(service, manager, metrics, limits, timeout_s, metrics_path)
    handler = type("BoundRestHandler", (RestHandler,), {"routes": routes})
    try:
        server = _BoundedThreadingHTTPServer((host, port), handler, max_connections)
    except OSError as err:
        raise OSError(f"cannot bind REST server to {host}:{port}: {err.strerror or err}") from None
    return server, server.server_address[1]

