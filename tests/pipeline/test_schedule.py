"""`visionpipe schedule`: orchestrator files that name the pipeline, and a lock that keeps two
scheduled runs from overlapping and survives a run killed with SIGKILL."""
import datetime
import json
import signal
import subprocess
import sys

import pytest
import yaml

from visionpipe.cli.main import main
from visionpipe.pipeline import schedule


def test_files_for_airflow_kubernetes_and_kubeflow_name_the_pipeline_and_its_schedule(tmp_path, capsys):
    out = tmp_path / "schedule"
    rc = main(["schedule", "--config", "configs/digits.yaml", "--cron", "0 2 * * *",
               "--output_dir", str(out), "--config_uri", "gs://bucket/configs/digits.yaml",
               f"runner.output_dir={tmp_path}/runs", "data.num_images=40"])
    assert rc == 0
    dag = (out / "digits_airflow_dag.py").read_text()
    compile(dag, "digits_airflow_dag.py", "exec")  # Airflow is not installed: it must compile
    assert "PIPELINE_NAME = 'digits'" in dag and "SCHEDULE = '0 2 * * *'" in dag
    assert "AirflowDagRunner" in dag and "'max_active_runs': 1" in dag.replace('"', "'")
    cronjob = yaml.safe_load((out / "digits_cronjob.yaml").read_text())
    assert cronjob["kind"] == "CronJob" and cronjob["spec"]["schedule"] == "0 2 * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["visionpipe", "run", "--config", "gs://bucket/configs/digits.yaml"]
    recurring = json.loads((out / "digits_recurring_run.json").read_text())
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"  # KFP: seconds first
    package = json.loads(open(recurring["pipeline_package_path"]).read())
    assert package["pipelineSpec"]["pipelineInfo"]["name"] == "digits"
    assert "kubectl apply" in capsys.readouterr().out


def test_a_bad_cron_expression_is_a_one_line_error_naming_the_flag(capsys):
    assert main(["schedule", "--config", "configs/digits.yaml", "--cron", "every night"]) == 2
    assert "--cron: 'every night' is not a five-field cron expression" in capsys.readouterr().err


def test_a_second_run_while_one_holds_the_lock_exits_with_a_clear_message(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir = tmp_path / "runs" / "digits"
        run_dir.mkdir(parents=True)
        import socket
        (run_dir / schedule.LOCK_NAME).write_text(f"{holder.pid} {socket.gethostname()}\n")
        rc = main(["schedule", "--config", "configs/digits.yaml", "--cron", "0 2 * * *",
                   "--run-now", f"runner.output_dir={tmp_path}/runs"])
        err = capsys.readouterr().err
        assert rc == 2 and "another scheduled run of this pipeline is running" in err
        assert f"pid {holder.pid}" in err and "Traceback" not in err
    finally:
        holder.kill()


def test_a_lock_left_by_a_run_killed_with_sigkill_is_taken_over(tmp_path):
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    import socket
    (tmp_path / schedule.LOCK_NAME).write_text(f"{killed.pid} {socket.gethostname()}\n")
    said, ran = [], []
    status = schedule.run_on_schedule(str(tmp_path), "0 2 * * *", lambda: ran.append(1) or 0,
                                      now_first=True, loop=False, say=said.append)
    assert status == 0 and ran == [1]
    assert f"pid {killed.pid} is not running" in said[0]
    assert not (tmp_path / schedule.LOCK_NAME).exists()  # released after the run


def test_the_loop_sleeps_until_each_cron_time_then_runs(tmp_path):
    now = [datetime.datetime(2026, 12, 2, 1, 30)]
    slept, runs = [], []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += datetime.timedelta(seconds=seconds)

    def run_once():
        runs.append(now[0])
        if len(runs) == 2:
            raise KeyboardInterrupt  # stop the endless loop
        return 0

    with pytest.raises(KeyboardInterrupt):
        schedule.run_on_schedule(str(tmp_path), "0 2 * * *", run_once, now_first=False, loop=True,
                                 say=lambda _: None, sleep=sleep, clock=lambda: now[0])
    assert runs == [datetime.datetime(2026, 12, 2, 2, 0), datetime.datetime(2026, 12, 3, 2, 0)]
    assert slept[0] == 30 * 60
