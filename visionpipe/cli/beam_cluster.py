"""CLI: ``visionpipe beam-cluster --workers 2``: a Beam job service and an EXTERNAL SDK worker
pool on this machine (the portable path of Flink/Spark on Kubernetes), until Ctrl-C."""
from __future__ import annotations

import signal
import time


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "beam-cluster", help="run a local Beam job service + SDK worker pool for "
                             "runner.beam_runner=portable (until Ctrl-C)")
    p.add_argument("--workers", type=int, default=2, help="SDK harness processes per job")
    p.add_argument("--job_port", type=int, default=8099, help="the job service's port")
    p.add_argument("--pool_port", type=int, default=50000, help="the worker pool's port")
    p.add_argument("--log_dir", default="", help="write the services' logs here")
    p.set_defaults(handler=cmd_beam_cluster)


def cmd_beam_cluster(args) -> int:
    from visionpipe.pipeline.local_beam_cluster import LocalBeamCluster

    cluster = LocalBeamCluster(workers=args.workers, job_port=args.job_port,
                               pool_port=args.pool_port, log_dir=args.log_dir or None)
    with cluster:
        args_text = ", ".join(cluster.beam_args)
        print(f"Beam job service on 127.0.0.1:{cluster.job_port}, worker pool on "
              f"127.0.0.1:{cluster.pool_port}; run with:\n"
              f"  runner.beam_runner=portable \"runner.beam_args=[{args_text}]\"", flush=True)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        try:
            while not stop:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0
