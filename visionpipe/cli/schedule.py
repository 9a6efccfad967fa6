"""CLI: ``visionpipe schedule --config C --cron "0 2 * * *"``: the files that run a pipeline
nightly under Airflow, Kubernetes or Kubeflow Pipelines, or (``--run-now``/``--loop``) the
run itself on this machine, never two at once."""
from __future__ import annotations

import datetime
import os

from visionpipe.cli.args import add_config_arguments, load_config_from_args

DEFAULT_IMAGE = "visionpipe:latest"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "schedule", help="write Airflow / Kubernetes CronJob / Kubeflow recurring-run files, "
                         "or run on a cron schedule here",
        description="Writes <output_dir>/<name>_airflow_dag.py (TFX's AirflowDagRunner), "
                    "<name>_cronjob.yaml (Kubernetes batch/v1 CronJob) and "
                    "<name>_recurring_run.json (Kubeflow Pipelines, beside the compiled "
                    "<name>_kubeflow.json). With --run-now it runs the pipeline now, with --loop "
                    "at every cron time, holding <run_dir>/schedule.lock so that two runs never "
                    "overlap (a lock left by a killed run is detected by its PID).")
    add_config_arguments(p)
    p.add_argument("--cron", required=True, help="five-field cron expression, e.g. '0 2 * * *'")
    p.add_argument("--output_dir", default="deploy/schedule", help="where the files are written")
    p.add_argument("--config_uri", default="",
                   help="the config's path as the scheduled job sees it (default: --config)")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="the pipeline image (CronJob, Kubeflow)")
    p.add_argument("--run-now", dest="run_now", action="store_true",
                   help="run the pipeline now on this machine, under the lock")
    p.add_argument("--loop", action="store_true",
                   help="keep running here at every cron time (after --run-now, if given)")
    p.set_defaults(handler=cmd_schedule)


def cmd_schedule(args) -> int:
    from visionpipe.pipeline import schedule
    from visionpipe.pipeline.runners import RunPaths

    cron = schedule.check_cron(args.cron)
    config = load_config_from_args(args)
    if args.run_now or args.loop:
        return schedule.run_on_schedule(RunPaths.of(config).run_dir, cron,
                                        lambda: _run(config), args.run_now, args.loop)
    from visionpipe.pipeline import runners

    config_uri = args.config_uri or args.config
    package = os.path.join(args.output_dir, f"{config.name}_kubeflow.json")
    os.makedirs(args.output_dir, exist_ok=True)
    runners.compile_kubeflow(config, package, args.image)
    written = schedule.write_schedule(config.name, args.output_dir, cron, config_uri, args.image,
                                      package, datetime.date.today())
    print(f"pipeline {config.name} on {cron!r}:")
    for kind, path in [("kubeflow pipeline spec", package), *written.items()]:
        print(f"  {kind:<24} {path}")
    print(f"  kubectl apply -f {written['kubernetes']}")
    return 0


def _run(config) -> int:
    from visionpipe.cli import pipeline_commands
    from visionpipe.pipeline import summary

    print(summary.format_summary(pipeline_commands._run(config)[1]))
    return 0  # a refused model is a finished run: the summary says why
