"""Data validation inside real LocalDagRunner pipelines: generated shapes -> ImageExampleGen
-> validation_components, with the previous run's statistics as the drift baseline."""
import json
import shutil
from pathlib import Path

import pytest

from visionpipe.components.data_validation import (
    curated_schema, expected_class_names, previous_accepted_statistics, validation_components)
from visionpipe.tasks import prepare_generated_source
from visionpipe.core.config import load_config


def test_validation_components_wire_the_config_into_each_component(tmp_path):
    from tfx import types
    from tfx.types import standard_artifacts

    config = load_config(overrides=["data.accept_anomalies=[image/width]",
                                    "data.drift_linf_threshold=0.3",
                                    "data.imbalance_ratio_warn=2.5"])
    examples = types.Channel(type=standard_artifacts.Examples)
    parts = validation_components(examples, config, schema_dir=str(tmp_path))
    assert [type(c).__name__ for c in parts] == [
        "ImageStatisticsGen", "ImportSchemaGen", "ExampleValidator", "DataGate"]
    assert [c.id for c in parts] == ["StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                                     "DataGate"]
    gate = parts.data_gate.exec_properties
    assert json.loads(gate["accept_anomalies"]) == ["image/width"]
    assert gate["drift_linf_threshold"] == 0.3 and gate["imbalance_ratio_warn"] == 2.5
    assert json.loads(gate["class_names"]) == ["circle", "square", "triangle", "star", "cross"]
    stats_options = json.loads(parts.statistics_gen.exec_properties["stats_options_json"])
    assert stats_options["enable_semantic_domain_stats"] is True
    schema_file = Path(parts.schema_gen.exec_properties["schema_file"])
    assert schema_file.parent == tmp_path and "image_domain" in schema_file.read_text()


def test_schema_file_name_changes_with_the_classes(tmp_path):
    config = load_config()
    first = validation_components(_channel(), config, schema_dir=str(tmp_path),
                                  class_names=["a", "b"])
    again = validation_components(_channel(), config, schema_dir=str(tmp_path),
                                  class_names=["a", "b"])
    other = validation_components(_channel(), config, schema_dir=str(tmp_path),
                                  class_names=["a", "b", "c"])
    path = lambda parts: parts.schema_gen.exec_properties["schema_file"]  # noqa: E731
    assert path(first) == path(again) != path(other)


def test_validation_components_without_a_schema_source_is_an_error():
    with pytest.raises(ValueError, match="schema_file .* or schema_dir"):
        validation_components(_channel(), load_config())


def test_curated_schema_requires_one_label_for_classification_and_bounds_it():
    import tensorflow_data_validation as tfdv

    schema = curated_schema("classification", ["cat", "dog"])
    label = tfdv.get_feature(schema, "image/class/label")
    assert (label.presence.min_fraction, label.value_count.min, label.value_count.max) == (1, 1, 1)
    assert (label.int_domain.min, label.int_domain.max) == (0, 1)
    assert list(tfdv.get_feature(schema, "image/class/text").string_domain.value) == ["cat", "dog"]
    boxes = tfdv.get_feature(schema, "image/object/bbox/xmin")
    assert boxes.presence.min_fraction == 0 and boxes.float_domain.max == 1.0
    detection_label = tfdv.get_feature(curated_schema("detection", ["cat"]), "image/class/label")
    assert detection_label.presence.min_fraction == 0 and detection_label.value_count.min == 0


def test_multilabel_schema_lets_unlabelled_images_through_only_when_allowed(tmp_path):
    import tensorflow_data_validation as tfdv

    from visionpipe.components.data_validation import load_schema

    def label_bounds(*overrides):
        parts = validation_components(_channel(), load_config(overrides=["task=multilabel", *overrides]),
                                      schema_dir=str(tmp_path), class_names=["cat", "dog"])
        schema = load_schema(parts.schema_gen.exec_properties["schema_file"])
        return [(f.presence.min_fraction, f.value_count.min) for f in
                (tfdv.get_feature(schema, key) for key in ("image/class/label", "image/class/text"))]

    assert label_bounds() == [(1, 1), (1, 1)]
    assert label_bounds("data.allow_unlabeled=true") == [(0, 0), (0, 0)]


def test_expected_classes_come_from_the_config_then_the_generated_source():
    assert expected_class_names(load_config(overrides=["data.source=digits"])) == list("0123456789")
    assert expected_class_names(load_config(overrides=["data.class_names=[b,a]"])) == ["b", "a"]
    assert expected_class_names(load_config(overrides=["data.source=folder",
                                                       "data.path=/x"])) == []


def _channel():
    from tfx import types
    from tfx.types import standard_artifacts

    return types.Channel(type=standard_artifacts.Examples)


def _pipeline(config, root: Path):
    from tfx import v1 as tfx

    from visionpipe.components.image_example_gen.component import ImageExampleGen

    example_gen = ImageExampleGen(config)
    baseline = previous_accepted_statistics()
    parts = validation_components(example_gen.outputs["examples"], config,
                                  baseline_statistics=baseline.outputs["statistics"],
                                  schema_dir=str(root / "schema"))
    return tfx.dsl.Pipeline(
        pipeline_name="data_validation_e2e", pipeline_root=str(root / "pipeline"),
        components=[example_gen, baseline, *parts],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / "metadata.db")),
        enable_cache=False)


def _failed_executions(metadata_path: Path):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(metadata_path)
    store = metadata_store.MetadataStore(connection)
    return [e.name or e.id for e in store.get_executions()
            if e.last_known_state == metadata_store_pb2.Execution.FAILED]


def _gate_reports(root: Path, folder: str = "report"):
    return sorted((root / "pipeline" / "DataGate" / folder).glob("*/report.json"),
                  key=lambda p: int(p.parent.name))


@pytest.mark.e2e
def test_drifted_run_is_stopped_and_never_becomes_the_next_baseline(tmp_path):
    from tfx import v1 as tfx

    from visionpipe.components.data_validation import DataValidationError

    config = load_config(overrides=["data.source=shapes", "data.num_images=30",
                                    "data.image_size=32"])
    folder = Path(prepare_generated_source(config, tmp_path / "data")[0])
    original = tmp_path / "original"
    shutil.copytree(folder, original)
    ingest = load_config(overrides=["data.source=folder", f"data.path={folder}",
                                    "data.image_size=32", "data.drift_linf_threshold=0.25",
                                    f"data.class_names={expected_class_names(config)}",
                                    "data.min_examples_per_class=0"])  # run 2 keeps one image a class
    run = lambda: tfx.orchestration.LocalDagRunner().run(_pipeline(ingest, tmp_path))  # noqa: E731

    run()
    (first,) = _gate_reports(tmp_path)
    report = json.loads(first.read_text())
    assert report["passed"] and report["drift"]["train"]["skipped"].startswith("no baseline")
    assert _failed_executions(tmp_path / "metadata.db") == []  # the empty baseline resolves

    # Run 2: all but one image of every class except circle are gone, so circles go from a
    # fifth of the labels to most of them.
    for name in ("square", "triangle", "star", "cross"):
        for path in sorted((folder / name).glob("*.png"))[1:]:
            path.unlink()
    with pytest.raises(DataValidationError, match="image/class/text: COMPARATOR_L_INFTY_HIGH"):
        run()
    assert len(_gate_reports(tmp_path)) == 1  # TFX removed the failed execution's output
    (rejected,) = _gate_reports(tmp_path, "report_rejected")
    second = json.loads(rejected.read_text())
    assert not second["passed"] and second["drift"]["train"]["linf"] > 0.25

    # Run 3: the data is back. Its baseline is run 1 (accepted), not run 2 (rejected).
    shutil.rmtree(folder)
    shutil.copytree(original, folder)
    run()
    third = json.loads(_gate_reports(tmp_path)[-1].read_text())
    assert third["passed"] and third["drift"]["train"]["linf"] == pytest.approx(0.0, abs=1e-9)
    run_1_accepted = tmp_path / "pipeline" / "DataGate" / "accepted_statistics" / first.parent.name
    assert Path(third["baseline_statistics"]) == run_1_accepted
