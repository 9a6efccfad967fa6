"""Client for TF Serving's REST and gRPC APIs (ours or the real tensorflow_model_server).

Images go over the wire as their encoded bytes (``{"b64": ...}`` in REST, a DT_STRING tensor in
gRPC); the model decodes them. UNAVAILABLE (queue full, server starting or restarting) is
retried with exponential backoff within the overall deadline.
"""
from __future__ import annotations

import base64
import json
import random
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

RETRYABLE_HTTP = (503,)


class ServingClientError(RuntimeError):
    """A request the server rejected (or never answered within the deadline)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _split_server(server: str) -> str:
    server = server.removeprefix("http://").removeprefix("grpc://").rstrip("/")
    if ":" not in server:
        raise ValueError(f"server {server!r} must be host:port")
    return server


def _rows(outputs: Dict[str, object], count: int) -> List[dict]:
    return [{name: (value[i].tolist() if isinstance(value, np.ndarray) else value[i])
             for name, value in outputs.items()} for i in range(count)]


def _decode_strings(value):
    if isinstance(value, list):
        return [_decode_strings(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


class RestClient:
    def __init__(self, server: str, timeout_s: float = 30.0):
        self.base = f"http://{_split_server(server)}"
        self.timeout_s = timeout_s

    def _request(self, method: str, path: str, payload: Optional[dict], timeout: float) -> dict:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            body = err.read()
            try:
                message = json.loads(body).get("error", body.decode("utf-8", "replace"))
            except ValueError:
                message = body.decode("utf-8", "replace")
            raise ServingClientError(f"HTTP {err.code}", message) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise ServingClientError("UNAVAILABLE", f"{self.base}: {reason}") from None

    def predict(self, model_name: str, images: Sequence[bytes], signature_name: str,
                timeout: float, version: Optional[int] = None) -> List[dict]:
        path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version else "") + ":predict"
        payload = {"signature_name": signature_name,
                   "instances": [{"b64": base64.b64encode(b).decode("ascii")} for b in images]}
        predictions = self._request("POST", path, payload, timeout)["predictions"]
        return [p if isinstance(p, dict) else {"output": p} for p in predictions]

    def status(self, model_name: str, timeout: float = 10.0) -> dict:
        return self._request("GET", f"/v1/models/{model_name}", None, timeout)

    @staticmethod
    def retryable(err: ServingClientError) -> bool:
        return err.code == "UNAVAILABLE" or err.code in {f"HTTP {c}" for c in RETRYABLE_HTTP}


def _channel(server: str, credentials=None, options=()):
    import grpc

    target = _split_server(server)
    if credentials is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, credentials, options=list(options))


class GrpcClient:
    """``credentials``: grpc.ChannelCredentials for a TLS port (see
    ``visionpipe.serving.tls.channel_credentials``); None speaks plaintext."""

    def __init__(self, server: str, max_message_bytes: int = 64 * 1024 * 1024, credentials=None):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self._grpc = grpc
        self.channel = _channel(server, credentials, [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def predict(self, model_name: str, images: Sequence[bytes], signature_name: str,
                timeout: float, version: Optional[int] = None) -> List[dict]:
        import visionpipe  # noqa: F401
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature_name
        if version:
            request.model_spec.version.value = version
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(list(images), dtype=tf.string))
        try:
            response = self.stub.Predict(request, timeout=timeout)
        except self._grpc.RpcError as err:
            raise ServingClientError(err.code().name, err.details() or "") from None
        outputs = {name: _decode_strings(tf.make_ndarray(proto).tolist())
                   for name, proto in response.outputs.items()}
        rows = _rows(outputs, len(images))
        for row in rows:
            row["model_version"] = response.model_spec.version.value
        return rows

    @staticmethod
    def retryable(err: ServingClientError) -> bool:
        return err.code == "UNAVAILABLE"

    def close(self) -> None:
        self.channel.close()


def health_check(server: str, service: str = "", timeout_s: float = 5.0, credentials=None) -> str:
    """grpc.health.v1.Health/Check as grpc_health_probe calls it: "SERVING", "NOT_SERVING", ...

    ``service`` "" asks about the whole server, a model name about that model. A service the
    server does not know raises ServingClientError("NOT_FOUND"); a server without the health
    service (real TF Serving) raises ServingClientError("UNIMPLEMENTED")."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with _channel(server, credentials) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as err:
            raise ServingClientError(err.code().name, err.details() or "") from None
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def with_retries(call, retryable, deadline_s: float, retries: int, base_delay_s: float = 0.05):
    """Call ``call(timeout)`` until it succeeds, fails for good, or the deadline passes."""
    end = time.monotonic() + deadline_s
    attempt = 0
    while True:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise ServingClientError("DEADLINE_EXCEEDED", f"no answer within {deadline_s:.1f}s")
        try:
            return call(remaining)
        except ServingClientError as err:
            attempt += 1
            if not retryable(err) or attempt > retries:
                raise
            delay = min(base_delay_s * 2 ** (attempt - 1), 2.0) * (0.5 + random.random() / 2)
            if time.monotonic() + delay >= end:
                raise
            time.sleep(delay)


def predict_images(server: str, model_name: str, paths: Sequence[str | Path], protocol: str = "rest",
                   signature_name: str = "serving_default", deadline_s: float = 30.0,
                   retries: int = 3, version: Optional[int] = None, ca_cert: Optional[str] = None,
                   client_cert: Optional[str] = None, client_key: Optional[str] = None) -> List[dict]:
    """Send image files (as encoded bytes) to a TF Serving-compatible server, one request.

    Returns one dict per path: the signature's outputs for that image plus ``path`` (and
    ``model_version`` over gRPC, where the response names it). ``ca_cert`` (PEM file of the CA
    that signed the server's certificate), ``client_cert`` and ``client_key`` (for a server with
    ``client_verify``) make the gRPC call over TLS."""
    if protocol not in ("rest", "grpc"):
        raise ValueError(f"protocol must be 'rest' or 'grpc', got {protocol!r}")
    credentials = None
    if ca_cert or client_cert or client_key:
        if protocol != "grpc":
            raise ValueError("--ca_cert/--client_cert/--client_key are for --protocol grpc "
                             "(REST is plain HTTP, as in TF Serving)")
        from visionpipe.serving.tls import channel_credentials

        credentials = channel_credentials(ca_cert, client_cert, client_key)
    images = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        images.append(path.read_bytes())
    if not images:
        return []
    client = RestClient(server) if protocol == "rest" else GrpcClient(server, credentials=credentials)
    try:
        rows = with_retries(
            lambda timeout: client.predict(model_name, images, signature_name, timeout, version),
            client.retryable, deadline_s, retries)
    finally:
        if isinstance(client, GrpcClient):
            client.close()
    for row, path in zip(rows, paths):
        row["path"] = str(path)
    return rows
