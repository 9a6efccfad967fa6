"""Serving benchmark: server overhead over a direct model call, and batching throughput.

Prints (targets from the serving issue):
  REST p50 / direct p50  (one base64 image per request; target <= 1.5)
  gRPC p50 / direct p50  (target <= 1.3)
  throughput with batching / without, 32 concurrent gRPC clients (target >= 2)

The server runs in its own process (as in production), the clients in this one. The model is
VisionPipe's own classifier (small_cnn backbone, untrained weights: speed does not depend on
them) exported by ``visionpipe.models.export``; latency ratios are measured per image size
because the server's fixed cost (about a millisecond) weighs more on a faster model.
"""
from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import visionpipe  # noqa: E402,F401
from visionpipe.pipeline.local_beam_cluster import free_port  # noqa: E402

MODEL = "bench"


class _Server:
    """``python -m visionpipe.cli serve`` in a subprocess, stopped on exit."""

    def __init__(self, base: Path, *flags: str):
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "visionpipe.cli", "serve", f"--port={self.grpc_port}",
             f"--rest_api_port={self.rest_port}", f"--model_name={MODEL}", f"--model_base_path={base}",
             "--file_system_poll_wait_seconds=0", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self):
        import requests

        end = time.monotonic() + 120
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError("the model server exited during start-up")
            try:
                if requests.get(f"http://127.0.0.1:{self.rest_port}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("the model server did not become ready within 120 s")

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _interleaved_p50(calls, count: int, warmup: int = 10) -> list:
    """p50 seconds of each call, timed in rotation so background load hits all alike."""
    for _ in range(warmup):
        for call in calls:
            call()
    times = [[] for _ in calls]
    for _ in range(count):
        for call, bucket in zip(calls, times):
            began = time.perf_counter()
            call()
            bucket.append(time.perf_counter() - began)
    return [statistics.median(bucket) for bucket in times]


def _predict_request(image: bytes):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
    return request


def _throughput(port: int, image: bytes, clients: int, per_client: int) -> float:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = _predict_request(image)
    gate = threading.Barrier(clients + 1)
    failures = []

    def client():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            stub.Predict(request, timeout=60)
            gate.wait()
            for _ in range(per_client):
                try:
                    stub.Predict(request, timeout=60)
                except grpc.RpcError as err:
                    failures.append(err.code())

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    gate.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return clients * per_client / seconds


def _export(export_dir: Path, image_size: int) -> None:
    from visionpipe.models.export import export_saved_model
    from visionpipe.tasks import get_task
    from visionpipe.core.config import load_config
    from tests.support.toy_model import sample_image

    config = load_config(None, [f"model.image_size={image_size}"])
    task = get_task(config, ["class_a", "class_b", "class_c", "class_d", "class_e"])
    export_saved_model(task.build_model(), task, str(export_dir), [sample_image(image_size)], MODEL)


def _latencies(base: Path, image: bytes, count: int) -> tuple:
    """p50 seconds of (direct call, REST :predict, gRPC Predict) on one image."""
    import grpc
    import requests
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from visionpipe.serving.servable import LoadedVersion

    signature = LoadedVersion(MODEL, 1, base / "1").signature("serving_default")
    payload = {"instances": [{"b64": base64.b64encode(image).decode("ascii")}]}
    with _Server(base) as server, requests.Session() as session, \
            grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}:predict"
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = _predict_request(image)
        direct, rest, grpc_p50 = _interleaved_p50([
            lambda: signature.function(images=tf.constant([image])),
            lambda: session.post(url, json=payload, timeout=30).raise_for_status(),
            lambda: stub.Predict(request, timeout=30)], count)
    return direct, rest, grpc_p50


def main(argv=()) -> int:
    """Run the benchmark; ``argv`` are its own flags (none when called by ``python -m benchmarks``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per latency measurement")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per_client", type=int, default=15, help="requests per concurrent client")
    parser.add_argument("--image_sizes", default="64,128",
                        help="model input sizes to measure latency at; batching uses the first")
    args = parser.parse_args(argv)

    from tests.support.toy_model import sample_image, write_toy_classifier

    sizes = [int(s) for s in args.image_sizes.split(",")]
    print("serving benchmark (PNG input; server in its own process)")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            base = Path(tmp) / str(size) / MODEL
            _export(base / "1", size)
            image = sample_image(size, seed=1)
            direct, rest, grpc_p50 = _latencies(base, image, args.requests)
            print(f"  {size}px  direct p50 {direct * 1e3:6.2f} ms | REST p50 {rest * 1e3:6.2f} ms, "
                  f"ratio {rest / direct:4.2f} (target <= 1.5) | gRPC p50 {grpc_p50 * 1e3:6.2f} ms, "
                  f"ratio {grpc_p50 / direct:4.2f} (target <= 1.3)")

        batching = Path(tmp) / "batching.config"
        batching.write_text(f"max_batch_size {{ value: {args.clients} }} batch_timeout_micros {{ value: 5000 }} "
                            "max_enqueued_batches { value: 100 } num_batch_threads { value: 2 }")
        size = sizes[0]
        # The second model is decode + a linear head: its cost is per call, not per image, which
        # is where batching pays off (as on a GPU); a CNN on a few CPU cores is compute-bound.
        toy_base = Path(tmp) / "linear" / MODEL
        write_toy_classifier(toy_base / "1", image_size=size, model_name=MODEL)
        for label, base in ((f"small_cnn {size}px", Path(tmp) / str(size) / MODEL),
                            (f"linear head {size}px", toy_base)):
            image = sample_image(size, seed=1)
            with _Server(base) as server:
                unbatched = _throughput(server.grpc_port, image, args.clients, args.per_client)
            with _Server(base, "--enable_batching=true", f"--batching_parameters_file={batching}") as server:
                batched = _throughput(server.grpc_port, image, args.clients, args.per_client)
            print(f"  {label}, {args.clients} concurrent gRPC clients: {unbatched:.1f} req/s without batching, "
                  f"{batched:.1f} req/s with, ratio {batched / unbatched:4.2f} (target >= 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
