"""StatisticsGen -> ImportSchemaGen -> ExampleValidator -> DataGate, with the real executors
on tiny hand-written Examples. Each dataset's statistics are computed once per module."""
import json
from pathlib import Path

import pytest

from . import data_validation_helpers as H
from visionpipe.core import features as F
from visionpipe.components.data_validation import (
    DataValidationError, curated_schema, image_stats_options)

BALANCED = {"circle": 8, "square": 8, "star": 8}
SKEWED = {"circle": 16, "square": 4, "star": 4}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("data_validation")


@pytest.fixture(scope="module")
def schema(work):
    return H.import_schema(curated_schema("classification", H.CLASSES), work / "schema")


def _statistics(work, name, splits):
    examples = H.write_examples(work / name / "examples", splits)
    return H.run_statistics_gen(examples, work / name / "statistics")


@pytest.fixture(scope="module")
def balanced(work):
    return _statistics(work, "balanced", {"train": H.labelled(BALANCED),
                                          "eval": H.labelled({"circle": 2, "square": 2,
                                                              "star": 2}, first_seed=100)})


@pytest.fixture(scope="module")
def skewed(work):
    return _statistics(work, "skewed", {"train": H.labelled(SKEWED, first_seed=200)})


@pytest.fixture(scope="module")
def unknown_class(work):
    eval_records = H.labelled({"circle": 2, "hexagon": 2}, first_seed=300)
    return _statistics(work, "unknown", {"train": H.labelled(BALANCED, first_seed=400),
                                         "eval": eval_records})


@pytest.fixture(scope="module")
def no_filename(work):
    return _statistics(work, "no_filename",
                       {"train": H.labelled(BALANCED, first_seed=500, drop=[F.FILENAME])})


def _validate(work, name, statistics, schema):
    return H.run_example_validator(statistics, schema, work / name / "anomalies")


def test_clean_data_passes_the_gate_with_the_curated_schema(work, balanced, schema, tmp_path):
    anomalies = _validate(work, "balanced", balanced, schema)
    report = H.run_data_gate(anomalies, balanced, tmp_path, schema=schema)
    assert report["passed"] and report["failures"] == [] and report["accepted"] == []
    assert report["imbalance"]["train"]["counts"] == {"circle": 8, "square": 8, "star": 8}
    assert report["imbalance"]["train"]["warning"] is None
    assert report["drift"]["train"] == {"skipped": "no baseline statistics (first run)"}
    accepted = H.accepted_statistics_dir(tmp_path)
    for split in ("train", "eval"):
        copied = (accepted / f"Split-{split}" / "FeatureStats.pb").read_bytes()
        assert copied == (Path(balanced.uri) / f"Split-{split}" / "FeatureStats.pb").read_bytes()


def test_unknown_class_stops_the_run_naming_each_anomaly_and_the_accept_override(
        work, unknown_class, schema, tmp_path):
    anomalies = _validate(work, "unknown", unknown_class, schema)
    with pytest.raises(DataValidationError) as raised:
        H.run_data_gate(anomalies, unknown_class, tmp_path, schema=schema)
    message = str(raised.value)
    assert "split 'eval', image/class/text: ENUM_TYPE_UNEXPECTED_STRING_VALUES" in message
    assert "hexagon" in message
    assert "split 'eval', image/class/label: INT_TYPE_BIG_INT" in message
    override = message.rsplit("data.accept_anomalies=", 1)[1]
    assert sorted(override.strip("[]").split(",")) == [
        "image/class/label:INT_TYPE_BIG_INT", "image/class/text:ENUM_TYPE_UNEXPECTED_STRING_VALUES"]
    report = json.loads(H.rejected_report_path(tmp_path).read_text())
    assert str(H.rejected_report_path(tmp_path)) in message
    assert not report["passed"]
    assert not H.accepted_statistics_dir(tmp_path).exists(), "rejected data became a baseline"
    assert {f["split"] for f in report["failures"]} == {"eval"}


def test_unknown_class_passes_when_its_anomalies_are_accepted_by_name(
        work, unknown_class, schema, tmp_path):
    anomalies = _validate(work, "unknown", unknown_class, schema)
    accept = ["image/class/text:ENUM_TYPE_UNEXPECTED_STRING_VALUES", "image/class/label"]
    report = H.run_data_gate(anomalies, unknown_class, tmp_path, schema=schema, accept=accept)
    assert report["passed"]
    assert sorted(f["accepted_by"] for f in report["accepted"]) == sorted(accept)


def test_accepting_one_feature_does_not_accept_another(work, unknown_class, schema, tmp_path):
    anomalies = _validate(work, "unknown", unknown_class, schema)
    with pytest.raises(DataValidationError, match="image/class/label: INT_TYPE_BIG_INT"):
        H.run_data_gate(anomalies, unknown_class, tmp_path, schema=schema,
                        accept=["image/class/text"])


def test_missing_required_feature_stops_the_run(work, no_filename, schema, tmp_path):
    anomalies = _validate(work, "no_filename", no_filename, schema)
    with pytest.raises(DataValidationError) as raised:
        H.run_data_gate(anomalies, no_filename, tmp_path, schema=schema)
    assert "split 'train', image/filename: SCHEMA_MISSING_COLUMN" in str(raised.value)


def test_label_drift_above_the_threshold_stops_the_run(work, balanced, skewed, schema, tmp_path):
    anomalies = _validate(work, "skewed", skewed, schema)
    with pytest.raises(DataValidationError) as raised:
        H.run_data_gate(anomalies, skewed, tmp_path, baseline=balanced, schema=schema, drift=0.25)
    assert "split 'train', image/class/text: COMPARATOR_L_INFTY_HIGH" in str(raised.value)
    assert "image/class/text:COMPARATOR_L_INFTY_HIGH" in str(raised.value)
    report = json.loads(H.rejected_report_path(tmp_path).read_text())
    # circle: 16/24 now vs 8/24 before.
    assert report["drift"]["train"]["linf"] == pytest.approx(1 / 3, abs=1e-6)


def test_label_drift_below_the_threshold_passes_and_is_reported(work, balanced, skewed, schema,
                                                                 tmp_path):
    anomalies = _validate(work, "skewed", skewed, schema)
    report = H.run_data_gate(anomalies, skewed, tmp_path, baseline=balanced, schema=schema,
                             drift=0.4)
    assert report["passed"]
    assert report["drift"]["train"]["linf"] == pytest.approx(1 / 3, abs=1e-6)
    assert report["drift"]["train"]["threshold"] == 0.4


def test_drift_is_accepted_by_name(work, balanced, skewed, schema, tmp_path):
    anomalies = _validate(work, "skewed", skewed, schema)
    report = H.run_data_gate(anomalies, skewed, tmp_path, baseline=balanced, schema=schema,
                             accept=["image/class/text:COMPARATOR_L_INFTY_HIGH"])
    assert report["passed"] and [f["source"] for f in report["accepted"]] == ["drift"]


def test_class_imbalance_is_a_warning_in_the_report_not_a_failure(work, skewed, schema, tmp_path):
    anomalies = _validate(work, "skewed", skewed, schema)
    report = H.run_data_gate(anomalies, skewed, tmp_path, schema=schema, imbalance=3.0)
    assert report["passed"]
    assert report["imbalance"]["train"]["ratio"] == pytest.approx(4.0)
    warning = report["imbalance"]["train"]["warning"]
    assert "class imbalance 4.00 > data.imbalance_ratio_warn=3" in warning
    assert any("class imbalance" in w for w in report["warnings"])


def test_class_without_examples_is_reported(work, balanced, schema, tmp_path):
    anomalies = _validate(work, "balanced", balanced, schema)
    report = H.run_data_gate(anomalies, balanced, tmp_path, schema=schema,
                             class_names=H.CLASSES + ["triangle"])
    assert report["passed"]
    assert "classes with no example: ['triangle']" in report["imbalance"]["train"]["warning"]


def test_unused_accept_entry_is_reported(work, balanced, schema, tmp_path):
    anomalies = _validate(work, "balanced", balanced, schema)
    report = H.run_data_gate(anomalies, balanced, tmp_path, schema=schema,
                             accept=["image/width:INT_TYPE_SMALL_INT"])
    assert report["passed"]
    assert report["warnings"] == ["data.accept_anomalies entry 'image/width:INT_TYPE_SMALL_INT' "
                                  "matched no finding"]


def test_statistics_treat_encoded_images_as_images(work):
    from tfx.components.statistics_gen import stats_artifact_utils

    # TFDV's image statistics need at least 100 images in a split.
    records = H.labelled({"circle": 60, "square": 60}, first_seed=1000)
    statistics = _statistics(work, "images", {"train": records})
    stats = stats_artifact_utils.load_statistics(statistics, "train").proto().datasets[0]
    by_name = {"/".join(f.path.step): f for f in stats.features}
    encoded = by_name[F.ENCODED]
    assert encoded.HasField("bytes_stats"), "image bytes were summarised as strings"
    custom = {c.name: c for c in encoded.custom_stats}
    assert custom["domain_info"].str == "image_domain {}"
    histogram = custom["image_format_histogram"].rank_histogram
    formats = {bucket.label: bucket.sample_count for bucket in histogram.buckets}
    assert formats == {"png": 120}
    assert by_name[F.HEIGHT].num_stats.max == 8 and by_name[F.WIDTH].num_stats.min == 8


def test_statistics_of_a_small_split_carry_the_image_format_histogram(work, balanced):
    from tfx.components.statistics_gen import stats_artifact_utils

    stats = stats_artifact_utils.load_statistics(balanced, "eval").proto().datasets[0]
    (encoded,) = [f for f in stats.features if "/".join(f.path.step) == F.ENCODED]
    custom = {c.name: c for c in encoded.custom_stats}
    histogram = custom["image_format_histogram"].rank_histogram
    assert {b.label: b.sample_count for b in histogram.buckets} == {"png": 6}


def test_split_whose_encoded_bytes_are_not_all_images_fails_the_image_domain_check(work, schema,
                                                                                     tmp_path):
    webp = b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00" + b"\x00" * 24  # not a TF image format
    records = H.labelled(BALANCED, first_seed=1500)[:10] + [
        H.serialized_example(1600, "circle", 0, encoded=webp)]
    statistics = _statistics(work, "not_images", {"train": records})
    anomalies = _validate(work, "not_images", statistics, schema)

    with pytest.raises(DataValidationError) as raised:
        H.run_data_gate(anomalies, statistics, tmp_path / "gate")
    message = str(raised.value)
    assert "image/encoded: LOW_SUPPORTED_IMAGE_FRACTION" in message
    assert "image/encoded:LOW_SUPPORTED_IMAGE_FRACTION" in message  # the accept key


def test_stats_options_survive_statistics_gen_serialization():
    import tensorflow_data_validation as tfdv

    options = tfdv.StatsOptions.from_json(image_stats_options().to_json())
    assert options.enable_semantic_domain_stats
    assert options.schema.feature[0].name == F.ENCODED
    assert options.schema.feature[0].HasField("image_domain")
