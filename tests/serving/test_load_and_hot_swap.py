"""Under 32 concurrent clients: zero errors with and without batching, and a hot swap that
fails no request."""
from __future__ import annotations

import base64
import threading
import time

import grpc
import requests

from tests.serving.conftest import MODEL, push
from tests.serving.helpers import percentile, wait_for

CLIENTS = 32
REQUESTS_PER_CLIENT = 8


def hammer_rest(port: int, image: bytes):
    """CLIENTS threads x REQUESTS_PER_CLIENT predicts; returns (latencies, errors, seconds)."""
    payload = {"instances": [{"b64": base64.b64encode(image).decode("ascii")}]}
    latencies, failures, lock = [], [], threading.Lock()
    start_gate = threading.Barrier(CLIENTS)

    def client():
        with requests.Session() as session:
            start_gate.wait(timeout=30)
            for _ in range(REQUESTS_PER_CLIENT):
                began = time.perf_counter()
                try:
                    response = session.post(f"http://127.0.0.1:{port}/v1/models/{MODEL}:predict",
                                            json=payload, timeout=60)
                    ok = response.status_code == 200 and \
                        abs(sum(response.json()["predictions"][0]["probabilities"]) - 1) < 1e-4
                    error = None if ok else f"{response.status_code} {response.text[:200]}"
                except requests.RequestException as err:
                    error = repr(err)
                with lock:
                    (failures.append(error) if error else latencies.append(time.perf_counter() - began))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return latencies, failures, time.perf_counter() - began


def _metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


def test_32_concurrent_clients_get_zero_errors_with_and_without_batching(
        start_server, model_base, png_bytes, capsys, tmp_path):
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 32 } batch_timeout_micros { value: 2000 } "
                        "max_enqueued_batches { value: 64 } num_batch_threads { value: 2 }")
    report = []
    for label, options in (("no batching", {}),
                           ("batching", {"enable_batching": True, "batching_parameters_file": str(batching)})):
        server = start_server(model_base_path=str(model_base), **options)
        latencies, failures, seconds = hammer_rest(server.rest_port, png_bytes)
        metrics = requests.get(f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics",
                               timeout=10).text
        server.stop()
        if options:  # every row went through the batcher, in fewer model calls than requests
            batches = _metric(metrics, ":tensorflow:serving:batching_session:processed_batch_size_count")
            rows = _metric(metrics, ":tensorflow:serving:batching_session:processed_batch_size_sum")
            assert rows == CLIENTS * REQUESTS_PER_CLIENT and batches < rows
        assert failures == [], failures[:3]
        assert len(latencies) == CLIENTS * REQUESTS_PER_CLIENT
        report.append(f"{label:>11}: {len(latencies)} requests, p50 {percentile(latencies, 50) * 1e3:.1f} ms, "
                      f"p99 {percentile(latencies, 99) * 1e3:.1f} ms, {len(latencies) / seconds:.0f} req/s")
    with capsys.disabled():
        print("\nserving load, 32 concurrent REST clients:\n  " + "\n  ".join(report))


def test_hot_swap_under_load_fails_no_request_and_unloads_the_old_version(
        start_server, model_base, toy_versions, png_bytes):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    server = start_server(model_base_path=str(model_base))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([png_bytes], dtype=tf.string))
    swapped = threading.Event()
    versions_by_client, failures, lock = [], [], threading.Lock()

    def client():
        seen = []
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            after_swap = 0
            for _ in range(2000):  # bounded: stops 20 requests after the swap at the latest
                try:
                    seen.append(stub.Predict(request, timeout=30).model_spec.version.value)
                    answered.add(threading.get_ident())
                except grpc.RpcError as err:
                    with lock:
                        failures.append(f"{err.code()}: {err.details()}")
                if swapped.is_set():
                    after_swap += 1
                    if after_swap >= 20:
                        break
        with lock:
            versions_by_client.append(seen)

    answered = set()
    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    wait_for(lambda: len(answered) == 16, timeout=60, what="every client served by version 1")
    push(model_base, 2, toy_versions[2])
    wait_for(lambda: server.manager.available_versions(MODEL) == [2], timeout=60, what="swap to version 2")
    swapped.set()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    assert len(versions_by_client) == 16
    for seen in versions_by_client:
        assert seen[0] == 1 and seen[-1] == 2 and seen == sorted(seen), seen
    status = {s[0]: s[1].state for s in server.manager.status(MODEL)}
    assert status == {1: "END", 2: "AVAILABLE"}
