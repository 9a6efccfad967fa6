"""Beam's portable path on this machine: a job service and an EXTERNAL SDK worker pool, the
two services Python Beam talks to on a Flink or Spark cluster on Kubernetes (the job server
and the worker-pool sidecar). ``visionpipe beam-cluster``, the portable-runner tests and the
scale-out benchmark start it; a run reaches it with ``runner.beam_runner: portable`` and
:attr:`LocalBeamCluster.beam_args`.

Beam's ``local_job_service_main`` runs every job with one SDK worker per environment, whatever
``--sdk_worker_parallelism`` says (its runner never reads the option). A Flink job server
starts that many workers per task manager, so the job service here honours it: the pool then
starts one SDK harness process per worker and the bundles are split across them.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

from visionpipe.core.errors import UserError

JOB_SERVICE_MODULE = "visionpipe.pipeline.local_beam_cluster"
POOL_MODULE = "apache_beam.runners.worker.worker_pool_main"
#: what the pool logs for every SDK harness process it starts
WORKER_STARTED = "Starting worker"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the tests and benchmarks use it too)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalBeamCluster:
    """Start with ``with LocalBeamCluster(workers=2, log_dir=...) as cluster:``; the services
    listen on 127.0.0.1 and are stopped (terminated, killed after 30 s) on exit."""

    def __init__(self, workers: int = 2, job_port: int = 0, pool_port: int = 0,
                 log_dir: Optional[str] = None, start_timeout_s: float = 180.0):
        if workers < 1:
            raise UserError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self.job_port = job_port or free_port()
        self.pool_port = pool_port or free_port()
        self.log_dir = Path(log_dir) if log_dir else None
        self.start_timeout_s = start_timeout_s
        self._processes: List[subprocess.Popen] = []
        self._logs = []

    @property
    def beam_args(self) -> List[str]:
        """The ``runner.beam_args`` of a run on this cluster."""
        return [f"--job_endpoint=localhost:{self.job_port}", "--environment_type=EXTERNAL",
                f"--environment_config=localhost:{self.pool_port}",
                f"--sdk_worker_parallelism={self.workers}"]

    @property
    def pool_log(self) -> Optional[Path]:
        return self.log_dir / "worker_pool.log" if self.log_dir else None

    def workers_started(self) -> int:
        """SDK harness processes the pool has started so far (read from its log)."""
        if self.pool_log is None or not self.pool_log.exists():
            return 0
        return self.pool_log.read_text(errors="replace").count(WORKER_STARTED)

    def start(self) -> "LocalBeamCluster":
        # the pool starts its SDK harnesses as `python`: this interpreter's environment
        env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep
                   + os.environ.get("PATH", ""))
        self._spawn([sys.executable, "-m", JOB_SERVICE_MODULE, "--port", str(self.job_port)],
                    env, "job_service.log")
        self._spawn([sys.executable, "-m", POOL_MODULE, "--service_port", str(self.pool_port)],
                    env, "worker_pool.log")
        try:
            for process, port in zip(self._processes, (self.job_port, self.pool_port)):
                self._wait_for(port, process)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, command, env, log_name) -> None:
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.log_dir / log_name, "w")
            self._logs.append(log)
        else:
            log = subprocess.DEVNULL
        self._processes.append(subprocess.Popen(command, env=env, stdout=log,
                                                stderr=subprocess.STDOUT))

    def _wait_for(self, port: int, process: subprocess.Popen) -> None:
        end = time.time() + self.start_timeout_s
        while time.time() < end:
            if process.poll() is not None:
                raise UserError(f"{' '.join(process.args[1:3])} exited with status "
                                f"{process.returncode} before listening on 127.0.0.1:{port}")
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                return
            except OSError:
                time.sleep(0.3)
        raise UserError(f"nothing listens on 127.0.0.1:{port} after {self.start_timeout_s:.0f} s")

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()
        self._processes, self._logs = [], []

    def __enter__(self) -> "LocalBeamCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _serve_jobs(argv: List[str]) -> None:
    """Beam's local job service, running each job with ``--sdk_worker_parallelism`` workers."""
    from apache_beam.options.pipeline_options import PortableOptions
    from apache_beam.portability.api import beam_job_api_pb2
    from apache_beam.runners.portability import local_job_service, local_job_service_main
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    def invoke_runner(job):
        job.set_state(beam_job_api_pb2.JobState.RUNNING)
        options = job.pipeline_options()
        runner = fn_runner.FnApiRunner(provision_info=job._provision_info)
        # what FnApiRunner.run_pipeline sets from --direct_num_workers; the job service calls
        # run_via_runner_api directly, which keeps the default of one worker
        # (options come back from the job's Struct as strings)
        parallelism = options.view_as(PortableOptions).sdk_worker_parallelism
        runner._num_workers = max(1, int(parallelism or 1))
        return runner.run_via_runner_api(job._pipeline_proto, options)

    local_job_service.BeamJob._invoke_runner = invoke_runner
    local_job_service_main.run(argv)


if __name__ == "__main__":
    _serve_jobs(sys.argv[1:])
