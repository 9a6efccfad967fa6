"""ImageExampleGen as a TFX component: a real LocalDagRunner run and the executor's gate."""
import json

import pytest

from visionpipe.core import features as F
from visionpipe.components.image_example_gen import QuarantineLimitExceeded
from visionpipe.components.image_example_gen.executor import Executor
from visionpipe.core.examples import read_class_names
from visionpipe.components.image_example_gen.spec import (CONFIG_KEY, EXAMPLES_KEY,
                                                          QUARANTINE_REPORT_KEY, QuarantineReport)

from .image_example_gen_helpers import folder_config, read_examples, write_folder_tree, write_image


def _executor_outputs(tmp_path):
    from tfx.types import standard_artifacts

    examples, report = standard_artifacts.Examples(), QuarantineReport()
    examples.uri, report.uri = str(tmp_path / "examples"), str(tmp_path / "report")
    return {EXAMPLES_KEY: [examples], QUARANTINE_REPORT_KEY: [report]}


def test_executor_records_splits_and_counts_on_the_artifacts(tmp_path):
    write_folder_tree(tmp_path / "data", {"cat": 6, "dog": 6})
    (tmp_path / "data" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    config = folder_config(tmp_path / "data", split_ratios={"train": 0.5, "eval": 0.5}, max_bad_fraction=0.1)
    outputs = _executor_outputs(tmp_path)

    Executor().Do({}, outputs, {CONFIG_KEY: json.dumps(config.to_dict())})

    examples, report = outputs[EXAMPLES_KEY][0], outputs[QUARANTINE_REPORT_KEY][0]
    assert json.loads(examples.split_names) == ["train", "eval"]
    counts = {s: examples.get_int_custom_property(f"num_examples_{s}") for s in ("train", "eval")}
    assert counts == {s: len(read_examples(examples.uri, s)) for s in ("train", "eval")}
    assert sum(counts.values()) == 12
    assert examples.get_int_custom_property("quarantined_count") == 1
    assert report.get_int_custom_property("quarantined_count") == 1
    assert examples.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    assert read_class_names(examples.uri) == ["cat", "dog"]


def test_executor_fails_with_the_quarantine_message_naming_a_report_that_outlives_the_run(tmp_path):
    import shutil

    write_folder_tree(tmp_path / "data", {"cat": 3, "dog": 3})
    (tmp_path / "data" / "cat" / "empty.jpg").write_bytes(b"")
    config = folder_config(tmp_path / "data")
    tmp_path.joinpath("outputs", "report").mkdir(parents=True)
    outputs = _executor_outputs(tmp_path / "outputs")
    outputs[QUARANTINE_REPORT_KEY][0].uri = str(tmp_path / "outputs" / "report" / "7")

    with pytest.raises(QuarantineLimitExceeded, match=r"(?s)1 of 7 inputs .*cat/empty.jpg: zero-byte file") as raised:
        Executor().Do({}, outputs, {CONFIG_KEY: json.dumps(config.to_dict())})

    shutil.rmtree(tmp_path / "outputs" / "report" / "7")  # what TFX does to a failed execution
    kept = tmp_path / "outputs" / "report_rejected" / "7" / "quarantine.json"
    assert f"Report: {kept}" in str(raised.value)
    assert [q["file"].endswith("cat/empty.jpg") for q in json.loads(kept.read_text())["quarantined"]] == [True]


def test_component_runs_in_local_dag_runner_and_statistics_gen_reads_its_examples(tmp_path):
    from tfx.components import StatisticsGen
    from tfx.orchestration import metadata, pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.types import standard_artifacts
    import tensorflow_data_validation as tfdv

    from visionpipe.components.image_example_gen.component import ImageExampleGen

    seed = write_folder_tree(tmp_path / "data", {"cat": 6, "dog": 5}, split="train")
    write_folder_tree(tmp_path / "data", {"cat": 2, "dog": 3}, split="val", seed=seed)
    config = folder_config(tmp_path / "data", use_source_splits=True, source_split_map={"val": "eval"})
    example_gen = ImageExampleGen(config)
    statistics_gen = StatisticsGen(examples=example_gen.outputs[EXAMPLES_KEY])
    metadata_path = str(tmp_path / "metadata.sqlite")
    LocalDagRunner().run(pipeline.Pipeline(
        pipeline_name="image-example-gen-test", pipeline_root=str(tmp_path / "root"),
        components=[example_gen, statistics_gen], enable_cache=False,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(metadata_path)))

    with metadata.Metadata(metadata.sqlite_metadata_connection_config(metadata_path)) as store:
        (examples,) = store.store.get_artifacts_by_type(standard_artifacts.Examples.TYPE_NAME)
        (report,) = store.store.get_artifacts_by_type(QuarantineReport.TYPE_NAME)
        (statistics,) = store.store.get_artifacts_by_type(standard_artifacts.ExampleStatistics.TYPE_NAME)
    assert examples.custom_properties["num_examples_train"].int_value == 11
    assert examples.custom_properties["num_examples_eval"].int_value == 5
    assert report.custom_properties["quarantined_count"].int_value == 0
    assert len(read_examples(examples.uri, "eval")) == 5
    assert read_class_names(examples.uri) == ["cat", "dog"]
    train_stats = tfdv.load_stats_binary(f"{statistics.uri}/Split-train/FeatureStats.pb")
    features = {f.path.step[0]: f for f in train_stats.datasets[0].features}
    assert train_stats.datasets[0].num_examples == 11
    assert features[F.WIDTH].num_stats.mean == 32


def test_tfx_cache_reruns_the_ingest_only_when_the_images_change(tmp_path):
    from tfx.orchestration import metadata, pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.types import standard_artifacts

    from visionpipe.components.image_example_gen.component import ImageExampleGen

    write_folder_tree(tmp_path / "data", {"cat": 5, "dog": 5})
    config = folder_config(tmp_path / "data", split_ratios={"train": 0.5, "eval": 0.5},
                           min_examples_per_class=0)  # 5 images a class: any may miss train
    connection = metadata.sqlite_metadata_connection_config(str(tmp_path / "metadata.sqlite"))

    def run_and_count():
        LocalDagRunner().run(pipeline.Pipeline(
            pipeline_name="image-example-gen-cache", pipeline_root=str(tmp_path / "root"),
            components=[ImageExampleGen(config)], enable_cache=True, metadata_connection_config=connection))
        with metadata.Metadata(connection) as store:
            artifacts = store.store.get_artifacts_by_type(standard_artifacts.Examples.TYPE_NAME)
        return [a.custom_properties["total_inputs"].int_value for a in artifacts]

    assert run_and_count() == [10]
    assert run_and_count() == [10]  # same files: the cached output is reused
    write_image(tmp_path / "data" / "dog" / "late.png", 900)
    assert sorted(run_and_count()) == [10, 11]  # a new file: a new run
