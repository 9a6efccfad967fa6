"""Re-checks whether Beam's DaskRunner can carry VisionPipe's Beam components, on a real
``distributed.LocalCluster`` of 2 worker processes. Dask is not in the lock: install it to a
throw-away folder and name it, e.g.

    pip install --no-deps --target /tmp/dask-t "dask==2024.8.0" "distributed==2024.8.0" \\
        toolz partd locket sortedcontainers tblib zict msgpack click fsspec
    python -m benchmarks.dask_runner_check --dask-path /tmp/dask-t

Each line says what ImageExampleGen, StatisticsGen (TFDV) and the Evaluator (TFMA) need and
whether this Beam's DaskRunner does it. Without dask importable it prints a skip line.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

import visionpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)


def _runner_option_accepted(address: str) -> str:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    try:
        options = PipelineOptions(["--runner=apache_beam.runners.dask.dask_runner.DaskRunner",
                                   f"--dask_client_address={address}"])
        with beam.Pipeline(options=options) as pipeline:
            _ = pipeline | beam.Create([1]) | beam.Map(lambda x: x)
        return "yes"
    except Exception as error:  # noqa: BLE001 - the check reports what Beam raised
        return f"no ({type(error).__name__}: {str(error)[:120]})"


def _write_to_tfrecord(address: str, out: str) -> str:
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.dask.dask_runner import DaskRunner

    records = [b"r%d" % i for i in range(50)]
    with beam.Pipeline(runner=DaskRunner(),
                       options=PipelineOptions([f"--dask_client_address={address}"])) as pipeline:
        _ = pipeline | beam.Create(records) | beam.io.WriteToTFRecord(os.path.join(out, "records"))
    written = sum(1 for f in glob.glob(os.path.join(out, "records*"))
                  for _ in tf.data.TFRecordDataset(f))
    return f"{'yes' if written == len(records) else 'no'} ({written} of {len(records)} records written)"


class _WriteShard:
    """A sink without finish_bundle: each shard's records, grouped by key, in one file."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self, shard_records):
        import tensorflow as tf

        shard, records = shard_records
        with tf.io.TFRecordWriter(f"{self.prefix}-{shard:05d}") as writer:
            for record in records:
                writer.write(record)


def _own_sink(address: str, out: str) -> str:
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.dask.dask_runner import DaskRunner

    records = [b"r%d" % i for i in range(50)]
    with beam.Pipeline(runner=DaskRunner(),
                       options=PipelineOptions([f"--dask_client_address={address}"])) as pipeline:
        _ = (pipeline | beam.Create(records) | beam.Map(lambda r: (len(r) % 3, r))
             | beam.GroupByKey() | beam.Map(_WriteShard(os.path.join(out, "records"))))
    written = sum(1 for f in glob.glob(os.path.join(out, "records*"))
                  for _ in tf.data.TFRecordDataset(f))
    return f"{'yes' if written == len(records) else 'no'} ({written} of {len(records)} records written)"


def _touch(x, prefix: str) -> None:
    open(f"{prefix}-{x}", "w").close()


def _tagged_outputs_kept_apart(address: str, out: str) -> str:
    import apache_beam as beam
    from apache_beam import pvalue
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.dask.dask_runner import DaskRunner

    def odd_apart(x):
        yield pvalue.TaggedOutput("odd", x) if x % 2 else x

    with beam.Pipeline(runner=DaskRunner(),
                       options=PipelineOptions([f"--dask_client_address={address}"])) as pipeline:
        parts = pipeline | beam.Create(list(range(10))) | beam.FlatMap(odd_apart).with_outputs(
            "odd", main="even")
        _ = parts.even | "MarkEven" >> beam.Map(_touch, os.path.join(out, "even"))
    even = len(glob.glob(os.path.join(out, "even-*")))
    return f"{'yes' if even == 5 else 'no'} (the main output got {even} of 10 elements; 5 are even)"


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dask-path", help="a folder holding dask and distributed")
    args = parser.parse_args(argv)
    if args.dask_path:
        sys.path.append(args.dask_path)  # after the venv: Beam's cloudpickle pin wins
    try:
        from distributed import LocalCluster
    except ImportError:
        print("dask runner check: skipped (dask/distributed not importable; see --help)")
        return 0
    import apache_beam

    out = tempfile.mkdtemp(prefix="dask_check_")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        print(f"Beam {apache_beam.__version__} DaskRunner on a LocalCluster of 2 processes:")
        print("  --runner in the pipeline options (how TFX hands a component its runner):",
              _runner_option_accepted(address))
        print("  WriteToTFRecord (ImageExampleGen's and TFDV's sink):",
              _write_to_tfrecord(address, os.path.join(out, "write")))
        os.makedirs(os.path.join(out, "own"))
        print("  our own sink (GroupByKey per shard, a DoFn writes each):",
              _own_sink(address, os.path.join(out, "own")))
        os.makedirs(os.path.join(out, "tags"))
        print("  tagged outputs kept apart (the quarantine side output):",
              _tagged_outputs_kept_apart(address, os.path.join(out, "tags")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
