"""Server-side batching in the manner of TF Serving's SharedBatchScheduler.

Requests for the same (model version, signature, input shapes) queue together; a pool of
``num_batch_threads`` workers takes a batch when it holds ``max_batch_size`` rows or its oldest
request has waited ``batch_timeout_micros``, concatenates the inputs along axis 0 (padded up to
the next ``allowed_batch_sizes`` entry), runs the model once and splits the outputs back. A
request that would push a queue past ``max_enqueued_batches`` full batches fails at once with
UNAVAILABLE, so overload sheds requests instead of growing latency without bound.
"""
from __future__ import annotations

import bisect
import collections
import dataclasses
import threading
import time
from typing import Callable, Deque, Dict, Hashable, List, Mapping, Optional

import numpy as np

from visionpipe.serving import errors

RunFn = Callable[[Mapping[str, np.ndarray]], Dict[str, np.ndarray]]


@dataclasses.dataclass
class BatchingOptions:
    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 2
    allowed_batch_sizes: tuple = ()

    @classmethod
    def from_proto(cls, params) -> "BatchingOptions":
        from visionpipe.serving.model_config import batching_values

        values = batching_values(params)
        return cls(values["max_batch_size"], values["batch_timeout_micros"],
                   values["max_enqueued_batches"], values["num_batch_threads"],
                   tuple(values["allowed_batch_sizes"]))


class _Task:
    __slots__ = ("inputs", "size", "deadline", "enqueued", "done", "outputs", "error", "abandoned")

    def __init__(self, inputs: Mapping[str, np.ndarray], size: int, deadline: Optional[float]):
        self.inputs = inputs
        self.size = size
        self.deadline = deadline
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.outputs: Optional[Dict[str, np.ndarray]] = None
        self.error: Optional[BaseException] = None
        self.abandoned = False


class _Queue:
    def __init__(self, run_fn: RunFn, on_batch: Optional[Callable[[int, int], None]]):
        self.run_fn = run_fn
        self.on_batch = on_batch
        self.tasks: Deque[_Task] = collections.deque()
        self.rows = 0


class BatchScheduler:
    """Shared batching queues served by one worker pool."""

    def __init__(self, options: BatchingOptions):
        if options.max_batch_size < 1 or options.num_batch_threads < 1:
            raise ValueError("max_batch_size and num_batch_threads must be >= 1")
        self.options = options
        self._queues: Dict[Hashable, _Queue] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._workers = [threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for worker in self._workers:
            worker.start()

    # --- client side ------------------------------------------------------------------
    def run(self, key: Hashable, inputs: Mapping[str, np.ndarray], run_fn: RunFn,
            deadline: Optional[float] = None,
            on_batch: Optional[Callable[[int, int], None]] = None) -> Dict[str, np.ndarray]:
        """Queue one request and wait for its slice of the batched result.

        ``key`` must identify the servable, signature and inner input shapes (requests in one
        queue are concatenated); ``deadline`` is a time.monotonic() instant."""
        sizes = {int(v.shape[0]) if v.ndim else -1 for v in inputs.values()}
        if len(sizes) != 1 or -1 in sizes:
            raise errors.invalid_argument(
                "Batching session Run() input tensors must have equal 0th-dimension size")
        size = sizes.pop()
        if size > self.options.max_batch_size:
            raise errors.invalid_argument(
                f"Task size {size} is larger than maximum batch size {self.options.max_batch_size}")
        task = _Task(inputs, size, deadline)
        limit = self.options.max_enqueued_batches * self.options.max_batch_size
        with self._cond:
            if self._stopped:
                raise errors.unavailable("Batch scheduler is shutting down")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(run_fn, on_batch)
            if queue.rows + size > limit:
                raise errors.unavailable(
                    "The batch scheduling queue to which this task was submitted is full")
            queue.tasks.append(task)
            queue.rows += size
            self._cond.notify()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not task.done.wait(timeout):
            with self._cond:
                task.abandoned = True
            if not task.done.is_set():
                raise errors.deadline_exceeded("Deadline exceeded while waiting in the batch queue")
        if task.error is not None:
            raise task.error
        return task.outputs

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join(timeout=5)

    # --- worker side ------------------------------------------------------------------
    def _ready_batch(self, now: float):
        """(queue, tasks) for the queue whose batch is due, or (None, seconds to wait)."""
        timeout = self.options.batch_timeout_micros / 1e6
        wait = None
        for key, queue in list(self._queues.items()):
            while queue.tasks and queue.tasks[0].abandoned:
                queue.rows -= queue.tasks.popleft().size
            if not queue.tasks:
                del self._queues[key]
                continue
            due = queue.tasks[0].enqueued + timeout
            if queue.rows >= self.options.max_batch_size or due <= now:
                return queue, self._take(queue)
            wait = due - now if wait is None else min(wait, due - now)
        return None, wait

    def _take(self, queue: _Queue) -> List[_Task]:
        batch, rows = [], 0
        while queue.tasks and rows + queue.tasks[0].size <= self.options.max_batch_size:
            task = queue.tasks.popleft()
            queue.rows -= task.size
            if not task.abandoned:
                batch.append(task)
                rows += task.size
        return batch

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        self._fail_pending()
                        return
                    queue, batch_or_wait = self._ready_batch(time.monotonic())
                    if queue is not None:
                        break
                    self._cond.wait(batch_or_wait)
            self._process(queue, batch_or_wait)

    def _fail_pending(self) -> None:
        for queue in self._queues.values():
            for task in queue.tasks:
                task.error = errors.unavailable("Batch scheduler is shutting down")
                task.done.set()
        self._queues.clear()

    def _process(self, queue: _Queue, tasks: List[_Task]) -> None:
        now = time.monotonic()
        live = []
        for task in tasks:
            if task.deadline is not None and task.deadline <= now:
                task.error = errors.deadline_exceeded("Deadline exceeded before the batch ran")
                task.done.set()
            else:
                live.append(task)
        if not live:
            return
        rows = sum(t.size for t in live)
        padded = self._padded_size(rows)
        try:
            inputs = {name: _concat([t.inputs[name] for t in live], padded - rows)
                      for name in live[0].inputs}
            outputs = queue.run_fn(inputs)
            offset = 0
            for task in live:
                task.outputs = {}
                for name, value in outputs.items():
                    if value.ndim == 0 or value.shape[0] != padded:
                        raise errors.internal(
                            f"Batched output {name!r} has 0th dimension {value.shape[:1]}, "
                            f"expected the batch size {padded}")
                    task.outputs[name] = value[offset:offset + task.size]
                offset += task.size
        except errors.ServingError as err:
            for task in live:
                task.error = err
        except Exception as err:  # a bug in run_fn must not kill the worker thread
            for task in live:
                task.error = errors.internal(f"batch failed: {err}")
        if queue.on_batch is not None:
            queue.on_batch(rows, padded)
        for task in live:
            task.done.set()

    def _padded_size(self, rows: int) -> int:
        sizes = self.options.allowed_batch_sizes
        if not sizes:
            return rows
        return sizes[bisect.bisect_left(sizes, rows)]


def _concat(arrays: List[np.ndarray], pad_rows: int) -> np.ndarray:
    if pad_rows:
        # Padding repeats the first row (always a valid input, unlike zeros for encoded bytes).
        arrays = arrays + [np.repeat(arrays[0][:1], pad_rows, axis=0)]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)


def queue_key(servable_id: Hashable, signature_name: str, inputs: Mapping[str, np.ndarray]) -> tuple:
    """Requests batch together only when their inputs agree beyond the 0th dimension."""
    return (servable_id, signature_name,
            tuple(sorted((name, v.dtype.str, v.shape[1:]) for name, v in inputs.items())))
