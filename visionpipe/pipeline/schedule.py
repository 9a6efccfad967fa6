"""Scheduled runs: the files the orchestrators users run take (an Airflow DAG with TFX's
AirflowDagRunner, a Kubernetes CronJob, a Kubeflow Pipelines recurring run), and a lock that
keeps two runs of one pipeline on one machine from overlapping."""
from __future__ import annotations

import datetime
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import yaml

from visionpipe.core.errors import UserError

LOCK_NAME = "schedule.lock"


def check_cron(expression: str) -> str:
    """The five-field cron expression, or a one-line error naming --cron."""
    from croniter import croniter

    fields = expression.split()
    if len(fields) != 5 or not croniter.is_valid(expression):
        raise UserError(f"--cron: {expression!r} is not a five-field cron expression "
                        "(minute hour day-of-month month day-of-week, e.g. '0 2 * * *')")
    return " ".join(fields)


def next_run(expression: str, after: datetime.datetime) -> datetime.datetime:
    from croniter import croniter

    return croniter(expression, after).get_next(datetime.datetime)


def airflow_dag(name: str, config_uri: str, cron: str, start: datetime.date) -> str:
    """A DAG file for Airflow's dags folder: TFX's AirflowDagRunner on the pipeline of the
    config at ``config_uri`` (as the Airflow workers see it), one active run at a time."""
    return f'''"""Airflow DAG of the VisionPipe pipeline {name!r} (written by `visionpipe schedule`).

Copy it to Airflow's dags folder; the workers need visionpipe installed and the config at
CONFIG_URI. Airflow runs one instance at a time (max_active_runs=1) and does not backfill.
"""
import datetime
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

from visionpipe.core.config import load_config
from visionpipe.pipeline.runners import build_pipeline

PIPELINE_NAME = {name!r}
CONFIG_URI = {config_uri!r}
SCHEDULE = {cron!r}

# the DAG's id is the pipeline's name (PIPELINE_NAME), set by the runner
DAG = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config={{
    "schedule_interval": SCHEDULE,
    "start_date": datetime.datetime({start.year}, {start.month}, {start.day}),
    "catchup": False,
    "max_active_runs": 1,
}})).run(build_pipeline(load_config(CONFIG_URI)))
'''


def kubernetes_cronjob(name: str, config_uri: str, cron: str, image: str) -> str:
    """A batch/v1 CronJob running ``visionpipe run`` in the pipeline image; a run still going
    when the next is due makes Kubernetes skip the new one (concurrencyPolicy: Forbid)."""
    job = {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": _k8s_name(name), "labels": {"app.kubernetes.io/part-of": "visionpipe"}},
        "spec": {
            "schedule": cron, "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "pipeline", "image": image,
                    "command": ["visionpipe", "run", "--config", config_uri],
                    "env": [{"name": "TF_USE_LEGACY_KERAS", "value": "1"}],
                }]}}}},
        },
    }
    return yaml.safe_dump(job, sort_keys=False)


def kubeflow_recurring_run(name: str, pipeline_package: str, cron: str) -> str:
    """The body of a Kubeflow Pipelines v2 recurring run (``kfp.Client().create_recurring_run``
    takes the same fields); KFP's cron has a seconds field first."""
    run = {
        "display_name": f"{name}-nightly", "description": f"VisionPipe pipeline {name} on {cron!r}",
        "pipeline_package_path": pipeline_package, "mode": "ENABLE",
        "trigger": {"cron_schedule": {"cron": f"0 {cron}"}},
        "max_concurrency": "1", "no_catchup": True,
    }
    return json.dumps(run, indent=2) + "\n"


def _k8s_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return f"visionpipe-{cleaned}"[:52]  # CronJob names: at most 52 characters


@dataclass
class RunLock:
    """``<run_dir>/schedule.lock`` holding ``pid hostname``: taken atomically (O_EXCL); a lock
    whose process no longer runs on this host (killed, even with SIGKILL) is stale and taken
    over."""
    path: str
    stale_pid: Optional[int] = None

    @classmethod
    def acquire(cls, run_dir: str) -> "RunLock":
        os.makedirs(run_dir, exist_ok=True)
        lock = cls(os.path.join(run_dir, LOCK_NAME))
        for _ in range(3):
            try:
                fd = os.open(lock.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = lock._holder()
                if pid is not None and (host != socket.gethostname() or _alive(pid)):
                    where = "" if host == socket.gethostname() else f" on {host}"
                    raise UserError(f"{lock.path}: another scheduled run of this pipeline is "
                                    f"running (pid {pid}{where}); not starting a second one")
                lock.stale_pid = pid
                _remove(lock.path)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {socket.gethostname()}\n")
            return lock
        raise UserError(f"{lock.path}: could not take the lock (another run keeps taking it)")

    def _holder(self):
        try:
            with open(self.path) as f:
                pid, _, host = f.read().strip().partition(" ")
            return int(pid), host
        except (OSError, ValueError):
            return None, ""  # unreadable or half-written: stale

    def release(self) -> None:
        pid, _ = self._holder()
        if pid == os.getpid():
            _remove(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def run_on_schedule(run_dir: str, cron: str, run_once: Callable[[], int], now_first: bool,
                    loop: bool, say: Callable[[str], None] = print,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], datetime.datetime] = datetime.datetime.now) -> int:
    """Run now (``now_first``) and then, with ``loop``, at every cron time; each run holds the
    lock. Returns the last run's status."""
    status = 0
    if now_first:
        status = _locked_run(run_dir, run_once, say)
    while loop:
        due = next_run(cron, clock())
        say(f"next run at {due:%Y-%m-%d %H:%M} ({cron})")
        sleep(max(0.0, (due - clock()).total_seconds()))
        status = _locked_run(run_dir, run_once, say)
    return status


def _locked_run(run_dir: str, run_once: Callable[[], int], say) -> int:
    with RunLock.acquire(run_dir) as lock:
        if lock.stale_pid is not None:
            say(f"took over a stale lock {lock.path} (pid {lock.stale_pid} is not running)")
        return run_once()


def write_schedule(name: str, output_dir: str, cron: str, config_uri: str, image: str,
                   pipeline_package: str, start: datetime.date) -> Dict[str, str]:
    """Write the three orchestrator files; returns {kind: path}."""
    os.makedirs(output_dir, exist_ok=True)
    files = {
        "airflow": (f"{name}_airflow_dag.py", airflow_dag(name, config_uri, cron, start)),
        "kubernetes": (f"{name}_cronjob.yaml", kubernetes_cronjob(name, config_uri, cron, image)),
        "kubeflow": (f"{name}_recurring_run.json", kubeflow_recurring_run(name, pipeline_package, cron)),
    }
    written = {}
    for kind, (filename, text) in files.items():
        path = os.path.join(output_dir, filename)
        with open(path, "w") as f:
            f.write(text)
        written[kind] = path
    return written
