"""The batch scheduler concatenates, splits, pads, sheds load and honours deadlines."""
from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from visionpipe.serving.batching import BatchingOptions, BatchScheduler
from visionpipe.serving.errors import ServingError


@pytest.fixture
def make_scheduler():
    schedulers = []

    def make(**kwargs):
        scheduler = BatchScheduler(BatchingOptions(**kwargs))
        schedulers.append(scheduler)
        return scheduler
    yield make
    for scheduler in schedulers:
        scheduler.stop()


def run_concurrently(fn, count):
    results, errors_seen = [None] * count, []

    def call(i):
        try:
            results[i] = fn(i)
        except Exception as err:  # collected and asserted by the caller
            errors_seen.append(err)
    threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results, errors_seen


def test_concurrent_requests_share_batches_and_get_their_own_rows_back(make_scheduler):
    scheduler = make_scheduler(max_batch_size=8, batch_timeout_micros=50_000, num_batch_threads=1)
    batch_sizes = []

    def model(inputs):
        batch_sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] * 10, "z": inputs["x"][:, :1]}

    results, errors_seen = run_concurrently(
        lambda i: scheduler.run("k", {"x": np.full((1 + i % 2, 2), i, np.float32)}, model), 12)
    assert not errors_seen
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out["y"], np.full((1 + i % 2, 2), 10 * i, np.float32))
        assert out["z"].shape == (1 + i % 2, 1)
    assert sum(batch_sizes) == sum(1 + i % 2 for i in range(12))
    assert max(batch_sizes) > 2 and max(batch_sizes) <= 8


def test_batches_are_padded_to_the_next_allowed_size_and_padding_is_dropped(make_scheduler):
    scheduler = make_scheduler(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1,
                               allowed_batch_sizes=(2, 4))
    seen = []

    def model(inputs):
        seen.append(len(inputs["x"]))
        return {"y": inputs["x"] + 1}

    out = scheduler.run("k", {"x": np.array([[5.0]])}, model)
    assert seen == [2] and out["y"].tolist() == [[6.0]]


def test_full_queue_fails_at_once_with_unavailable(make_scheduler):
    scheduler = make_scheduler(max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1,
                               max_enqueued_batches=2)
    release = threading.Event()

    def slow_model(inputs):
        release.wait(10)
        return {"y": inputs["x"]}

    x = {"x": np.zeros((1, 1))}
    threads = [threading.Thread(target=scheduler.run, args=("k", x, slow_model)) for _ in range(3)]
    for t in threads:  # one runs, two wait in the queue: the queue is full
        t.start()
        time.sleep(0.1)
    start = time.monotonic()
    with pytest.raises(ServingError) as info:
        scheduler.run("k", x, slow_model)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and "queue" in info.value.message
    assert time.monotonic() - start < 0.5
    release.set()
    for t in threads:
        t.join(timeout=10)


def test_request_past_its_deadline_in_the_queue_is_deadline_exceeded(make_scheduler):
    scheduler = make_scheduler(max_batch_size=64, batch_timeout_micros=2_000_000, num_batch_threads=1)
    calls = []
    with pytest.raises(ServingError) as info:
        scheduler.run("k", {"x": np.zeros((1, 1))}, lambda i: calls.append(1) or {"y": i["x"]},
                      deadline=time.monotonic() + 0.1)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.1)
    assert calls == []


def test_oversize_task_and_unequal_batch_dimensions_are_invalid_argument(make_scheduler):
    scheduler = make_scheduler(max_batch_size=2)
    for inputs in ({"x": np.zeros((3, 1))}, {"x": np.zeros((1, 1)), "w": np.zeros((2, 1))}):
        with pytest.raises(ServingError) as info:
            scheduler.run("k", inputs, lambda i: i)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_model_error_reaches_every_request_of_the_batch_and_workers_survive(make_scheduler):
    scheduler = make_scheduler(max_batch_size=4, batch_timeout_micros=20_000, num_batch_threads=1)

    def broken(inputs):
        raise RuntimeError("boom")
    _, errors_seen = run_concurrently(lambda i: scheduler.run("k", {"x": np.zeros((1, 1))}, broken), 3)
    assert len(errors_seen) == 3 and all(e.code == grpc.StatusCode.INTERNAL for e in errors_seen)
    assert scheduler.run("k", {"x": np.ones((1, 1))}, lambda i: {"y": i["x"]})["y"].tolist() == [[1.0]]


def test_rest_request_outliving_rest_api_timeout_is_504(start_server, model_base, png_bytes, tmp_path):
    import base64

    import requests

    slow_batches = tmp_path / "batching.config"
    slow_batches.write_text("max_batch_size { value: 64 } batch_timeout_micros { value: 5000000 } "
                            "num_batch_threads { value: 1 }")
    server = start_server(model_base_path=str(model_base), enable_batching=True,
                          batching_parameters_file=str(slow_batches), rest_api_timeout_in_ms=300)
    began = time.monotonic()
    response = requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/toy:predict", timeout=30,
                             json={"instances": [{"b64": base64.b64encode(png_bytes).decode()}]})
    assert response.status_code == 504 and "Deadline exceeded" in response.json()["error"]
    assert time.monotonic() - began < 2
