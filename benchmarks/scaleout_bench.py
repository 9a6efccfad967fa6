"""Scale-out benchmark: ingestion and ingestion + statistics images/s with the multi-processing DirectRunner and the
portable runner (a local job service + an EXTERNAL pool of 2 SDK harnesses) vs the
in-process one (the same images, the same Examples), and training steps/s of two
MultiWorkerMirroredStrategy workers on 127.0.0.1 vs one process at the same global batch.

    python -m benchmarks.scaleout_bench                      # 2,000 images, 2 workers
    python -m benchmarks.scaleout_bench --images 200 --steps 5   # a smoke run

On one 2-core machine the ratios measure overhead, not speed-up: both runners and both
workers share the same two cores. On a cluster each worker brings its own cores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import visionpipe  # noqa: E402,F401

from visionpipe.pipeline.local_beam_cluster import free_port  # noqa: E402

_WORKER = """
import json, sys, time, visionpipe
from visionpipe.core.config import load_config
from visionpipe.core.examples import split_files
from visionpipe.models import training
from visionpipe.tasks import get_task
uri, names, batch, steps, strategy, logs = sys.argv[1:7]
config = load_config(overrides=["task=classification", "model.image_size=32", "model.width=16",
                                "train.epochs=1", f"train.steps_per_epoch={steps}",
                                f"train.batch_size={batch}", f"train.strategy={strategy}",
                                "augment.horizontal_flip=false"])
start = time.time()
result = training.train(config, get_task(config, json.loads(names)), split_files(uri, "train"),
                        split_files(uri, "eval"), logs)
print(json.dumps({"seconds": result.seconds, "replicas": result.replicas}))
"""


def ingest_rate(images_dir: str, out: str, runner: str, workers: int, beam_args=()):
    from visionpipe.components.image_example_gen.ingest import ingest
    from visionpipe.core.config import load_config

    config = load_config(overrides=["task=classification", "data.source=folder",
                                    f"data.path={images_dir}", f"runner.beam_runner={runner}",
                                    f"runner.beam_direct_num_workers={workers}",
                                    f"runner.beam_args=[{', '.join(beam_args)}]"])
    start = time.time()
    result = ingest(config, out)
    return sum(result.counts_by_split.values()) / (time.time() - start), result


def statistics_seconds(examples_uri: str, out: str, beam_args) -> float:
    """Seconds TFDV takes to compute the statistics of the train split on ``beam_args``'
    runner (what StatisticsGen runs), read back to check it saw every Example."""
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    from visionpipe.core.examples import split_dir

    start = time.time()
    stats = tfdv.generate_statistics_from_tfrecord(
        data_location=os.path.join(split_dir(examples_uri, "train"), "*.gz"),
        output_path=os.path.join(out, "train_stats.tfrecord"),
        pipeline_options=PipelineOptions(list(beam_args)))
    seconds = time.time() - start
    return seconds, stats.datasets[0].num_examples


def ingest_and_statistics_rate(images_dir, out, runner, workers, config_args):
    """(ingestion images/s, ingestion + statistics images/s, the ingest result)."""
    from visionpipe.core.config import load_config

    rate, result = ingest_rate(images_dir, out, runner, workers, config_args)
    config = load_config(overrides=[f"runner.beam_runner={runner}",
                                    f"runner.beam_direct_num_workers={workers}",
                                    f"runner.beam_args=[{', '.join(config_args)}]"])
    images = sum(result.counts_by_split.values())
    seconds, seen = statistics_seconds(result.examples_uri, out, config.runner.beam_pipeline_args())
    if seen != result.counts_by_split["train"]:
        raise SystemExit(f"statistics saw {seen} train Examples of {result.counts_by_split['train']}")
    return rate, images / (images / rate + seconds), result


def training_runs(uri, names, batch, steps, strategy, log_root, tf_configs):
    """Seconds of each of ``len(tf_configs)`` training processes run together (TF_CONFIG
    None: a process on its own)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen(
        [sys.executable, "-c", _WORKER, uri, json.dumps(names), str(batch), str(steps), strategy,
         os.path.join(log_root, f"logs{i}")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=str(REPO), env=dict(env, TF_CONFIG=json.dumps(tf_config)) if tf_config else env)
        for i, tf_config in enumerate(tf_configs)]
    outs = [p.communicate(timeout=1800) for p in procs]
    for proc, (_, stderr) in zip(procs, outs):
        if proc.returncode:
            raise SystemExit(stderr[-2000:])
    return [json.loads(out.strip().splitlines()[-1])["seconds"] for out, _ in outs]


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32, help="per replica")
    args = parser.parse_args(argv)
    from visionpipe.datasets import shapes

    tmp = tempfile.mkdtemp(prefix="scaleout_")
    images = os.path.join(tmp, "images")
    shapes.write_classification_folder(Path(images), args.images, 32, seed=11)
    direct, direct_stats, result = ingest_and_statistics_rate(
        images, os.path.join(tmp, "direct"), "direct", 1, ())
    multi, multi_stats, _ = ingest_and_statistics_rate(
        images, os.path.join(tmp, "multi"), "direct_multiprocessing", args.workers, ())
    print(f"{args.images} images, in-process DirectRunner: ingestion {direct:.1f} images/s, "
          f"ingestion + statistics {direct_stats:.1f} images/s")
    print(f"multi-processing ({args.workers} workers): ingestion {multi:.1f} images/s "
          f"(ratio {multi / direct:.2f}), ingestion + statistics {multi_stats:.1f} images/s "
          f"(ratio {multi_stats / direct_stats:.2f})")
    from visionpipe.pipeline.local_beam_cluster import LocalBeamCluster

    with LocalBeamCluster(workers=args.workers, log_dir=os.path.join(tmp, "cluster")) as cluster:
        portable, portable_stats, _ = ingest_and_statistics_rate(
            images, os.path.join(tmp, "portable"), "portable", 1, cluster.beam_args)
        harnesses = cluster.workers_started()
    print(f"portable runner ({harnesses} SDK harness processes started in an EXTERNAL pool over "
          f"its two jobs): ingestion "
          f"{portable:.1f} images/s (ratio {portable / direct:.2f}), ingestion + statistics "
          f"{portable_stats:.1f} images/s (ratio {portable_stats / direct_stats:.2f}); both include "
          "each job's submission and harness start")

    uri, names = result.examples_uri, result.class_names
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(args.workers)]}
    multi_seconds = max(training_runs(
        uri, names, args.batch, args.steps, "multi_worker", os.path.join(tmp, "multi_worker"),
        [{"cluster": cluster, "task": {"type": "worker", "index": i}} for i in range(args.workers)]))
    single_seconds, = training_runs(uri, names, args.batch * args.workers, args.steps, "mirrored",
                                    os.path.join(tmp, "single"), [None])
    print(f"training {args.steps} steps at global batch {args.batch * args.workers}: one process "
          f"{args.steps / single_seconds:.2f} steps/s, {args.workers} workers "
          f"{args.steps / multi_seconds:.2f} steps/s: ratio {single_seconds / multi_seconds:.2f} "
          "(the seconds include each run's first-epoch tracing)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
