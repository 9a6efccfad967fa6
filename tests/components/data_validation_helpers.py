"""Tiny Examples and direct runs of the real TFX executors for the data-validation tests."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

import visionpipe  # noqa: F401
from visionpipe.core import features as F

CLASSES = ["circle", "square", "star"]


def png_bytes(seed: int, size: int = 8) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def serialized_example(seed: int, label_text: str, label: int,
                       drop: Sequence[str] = (), encoded: Optional[bytes] = None) -> bytes:
    """One Example in the VisionPipe feature spec (an 8x8 PNG unless ``encoded`` is given),
    without the keys in ``drop``."""
    import tensorflow as tf

    encoded = png_bytes(seed) if encoded is None else encoded

    def strings(*values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[v if isinstance(v, bytes) else v.encode() for v in values]))

    def ints(*values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    feature = {
        F.ENCODED: strings(encoded), F.FORMAT: strings("png"), F.HEIGHT: ints(8),
        F.WIDTH: ints(8), F.SOURCE_ID: strings(hashlib.sha256(encoded).hexdigest()),
        F.FILENAME: strings(f"{label_text}/{seed}.png"), F.LABEL: ints(label),
        F.LABEL_TEXT: strings(label_text),
    }
    for key in drop:
        del feature[key]
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def labelled(counts: Dict[str, int], first_seed: int = 0, classes=CLASSES,
             drop: Sequence[str] = ()) -> List[bytes]:
    records, seed = [], first_seed
    for name, count in counts.items():
        label = classes.index(name) if name in classes else len(classes)
        for _ in range(count):
            records.append(serialized_example(seed, name, label, drop))
            seed += 1
    return records


def write_examples(root: Path, splits: Dict[str, List[bytes]]):
    """An Examples artifact laid out as ExampleGen writes it (GZIP TFRecords per split)."""
    import tensorflow as tf
    from tfx.types import artifact_utils, standard_artifacts

    artifact = standard_artifacts.Examples()
    artifact.uri = str(root)
    artifact.split_names = artifact_utils.encode_split_names(list(splits))
    for split, records in splits.items():
        (root / f"Split-{split}").mkdir(parents=True, exist_ok=True)
        path = str(root / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for record in records:
                writer.write(record)
    return artifact


def run_statistics_gen(examples, out_dir: Path, stats_options=None):
    """The pipeline's StatisticsGen executor, with the options as the component serializes them."""
    from tfx.types import channel_utils, standard_artifacts

    from visionpipe.components.data_validation import image_stats_options
    from visionpipe.components.data_validation.statistics_gen import ImageStatisticsGen

    component = ImageStatisticsGen(examples=channel_utils.as_channel([examples]),
                                   stats_options=stats_options or image_stats_options())
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(out_dir)
    component.executor_spec.executor_class().Do(
        {"examples": [examples]}, {"statistics": [statistics]}, dict(component.exec_properties))
    return statistics


def import_schema(schema, out_dir: Path):
    from tfx.components.schema_gen.import_schema_gen import executor as import_executor
    from tfx.types import standard_artifacts

    from visionpipe.components.data_validation import write_schema

    source = write_schema(schema, out_dir / "source" / "schema.pbtxt")
    artifact = standard_artifacts.Schema()
    artifact.uri = str(out_dir / "artifact")
    import_executor.Executor().Do({}, {"schema": [artifact]}, {"schema_file": source})
    return artifact


def run_example_validator(statistics, schema, out_dir: Path):
    from tfx.components.example_validator import executor as validator_executor
    from tfx.types import standard_artifacts

    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(out_dir)
    validator_executor.Executor().Do(
        {"statistics": [statistics], "schema": [schema]}, {"anomalies": [anomalies]},
        {"exclude_splits": json.dumps([]), "custom_validation_config": None})
    return anomalies


def run_data_gate(anomalies, statistics, out_dir: Path, baseline=None, schema=None,
                  accept=(), drift=0.25, imbalance=3.0, class_names=CLASSES) -> dict:
    """The real DataGate executor with the exec properties its component builds;
    returns the report it wrote (on failure the executor raises and writes the report to
    ``rejected_report_path(out_dir)``)."""
    from tfx.types import channel_utils, standard_artifacts

    from visionpipe.components.data_validation import DataGate, DataValidationReport
    from visionpipe.components.data_validation.executor import REPORT_FILE, Executor

    def channel(artifact_type, artifact: Optional[object]):
        return channel_utils.as_channel([artifact]) if artifact is not None else None

    component = DataGate(
        anomalies=channel(standard_artifacts.ExampleAnomalies, anomalies),
        statistics=channel(standard_artifacts.ExampleStatistics, statistics),
        baseline_statistics=channel(standard_artifacts.ExampleStatistics, baseline),
        schema=channel(standard_artifacts.Schema, schema),
        accept_anomalies=accept, drift_linf_threshold=drift, imbalance_ratio_warn=imbalance,
        class_names=class_names)
    report = DataValidationReport()
    report.uri = str(Path(out_dir) / "report" / "1")
    accepted = standard_artifacts.ExampleStatistics()
    accepted.uri = str(Path(out_dir) / "accepted_statistics" / "1")
    inputs = {"anomalies": [anomalies], "statistics": [statistics],
              "baseline_statistics": [baseline] if baseline is not None else [],
              "schema": [schema] if schema is not None else []}
    Executor().Do(inputs, {"report": [report], "accepted_statistics": [accepted]},
                  dict(component.exec_properties))
    return json.loads((Path(report.uri) / REPORT_FILE).read_text())


def rejected_report_path(out_dir: Path) -> Path:
    """Where ``run_data_gate`` leaves the report of a rejected run."""
    from visionpipe.components.data_validation.executor import REPORT_FILE, rejected_report_dir

    return Path(rejected_report_dir(str(Path(out_dir) / "report" / "1"))) / REPORT_FILE


def accepted_statistics_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "accepted_statistics" / "1"
