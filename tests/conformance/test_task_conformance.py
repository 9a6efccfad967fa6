"""Every registered task meets the task contract (``visionpipe/tasks/base.py``), checked the
same way for each: a new task gets these tests by registering.

Per task, once (module-scoped fixtures): its generated ``shapes`` data at 32 px, ingested by
the real ingestion; one training step; the Trainer's finalize-and-export; the export reloaded.
Then: the three signatures agree with each other, the declared signature methods are in the
SavedModel and TF Serving's Classify API answers a classify signature, the float32 and int8
TFLite files score the gate metric and carry the declared metadata, the local model server
answers a REST predict, and an export with 0 training steps is not blessed by the Evaluator
(issue 24: the trivial-predictor floor). The declarations are checked against what they name.
"""
from __future__ import annotations

import base64
import copy
import dataclasses
import json
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core import features
from visionpipe.core.config import AugmentConfig, load_config
from visionpipe.core.registry import task_classes

TASKS = sorted(task_classes())
SIZE = 32
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
SERVING_METHODS = (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD)
SIGNATURES = ("serving_default", "serving_examples", "serving_tensor")
#: the TFLite modes every task must convert to (the cheap ones; int8 calibrated)
CHECKED_TFLITE_MODES = ("float32", "int8")
#: keep the models tiny: overrides of the config sections tasks contribute, by section name
#: (a section not listed keeps its defaults)
TINY_SECTIONS = {"detection": {"fpn_channels": 8, "head_conv_layers": 1, "max_detections": 5,
                               "pre_nms_top_k": 50,
                               # one step leaves scores near the 0.01 prior: keep some boxes so
                               # the signatures have detections to agree on
                               "score_threshold": 0.001},
                 "segmentation": {"width": 4, "depth": 3}}
MODEL_NAME = "conformance"


def tiny_config(task_name: str, run_dir, *overrides):
    config = load_config(overrides=[
        f"task={task_name}", f"name={MODEL_NAME}", "data.source=shapes", "data.num_images=100",
        "data.image_size=32", "data.split_ratios={train: 0.6, calibration: 0.2, eval: 0.2}",
        f"model.image_size={SIZE}", "model.width=4", "train.epochs=1", "train.steps_per_epoch=1",
        "train.batch_size=8", "augment.enabled=false", f"runner.output_dir={run_dir}", *overrides])
    for section, values in TINY_SECTIONS.items():
        if section in config.task_sections:
            for key, value in values.items():
                setattr(getattr(config, section), key, value)
    return config.validate()


def _generated_source(cls) -> str:
    if not cls.generated_sources:
        pytest.fail(f"task {cls.name!r} declares no generated_sources: the conformance suite "
                    f"needs generated data to train it on")
    return "shapes" if "shapes" in cls.generated_sources else cls.generated_sources[0]


# --- the expensive setup, once per task -----------------------------------------------------

@pytest.fixture(scope="module", params=TASKS)
def ingested(request, tmp_path_factory):
    """The task's generated data, written and ingested: config, class names, split files."""
    from visionpipe.components.image_example_gen import ingest
    from visionpipe.core.examples import optional_split_files, split_files
    from visionpipe.tasks import prepare_generated_source

    name = request.param
    root = tmp_path_factory.mktemp(f"conformance_{name}")
    config = tiny_config(name, root, f"data.source={_generated_source(task_classes()[name])}")
    resolved = copy.deepcopy(config)
    resolved.data.path, resolved.data.source = prepare_generated_source(config, root / "run")
    result = ingest(resolved, str(root / "ingest"))
    return SimpleNamespace(
        name=name, root=root, config=config, class_names=result.class_names,
        examples_uri=result.examples_uri, train=split_files(result.examples_uri, "train"),
        eval=split_files(result.examples_uri, "eval"),
        calibration=optional_split_files(result.examples_uri, "calibration"))


def _train_and_export(data, config, folder: str):
    """training.train + the Trainer's finalize_and_export into ``<root>/<folder>/Format-Serving``
    (the Model artifact's layout)."""
    from visionpipe.components.trainer.run_fn import finalize_and_export
    from visionpipe.models import training
    from visionpipe.tasks import get_task

    task = get_task(config, data.class_names)
    result = training.train(config, task, data.train, data.eval,
                            log_dir=str(data.root / folder / "logs"))
    model_uri = data.root / folder / "model"
    export_dir = str(model_uri / "Format-Serving")
    finalize_and_export(task, result, data.eval, export_dir, config.model_name, data.calibration)
    return task, result, str(model_uri), export_dir


@pytest.fixture(scope="module")
def trained(ingested):
    """One training step, finalized and exported, then reloaded."""
    task, result, model_uri, export_dir = _train_and_export(ingested, ingested.config, "trained")
    return SimpleNamespace(task=task, model=result.model, history=result.history,
                           model_uri=model_uri, export_dir=export_dir,
                           loaded=tf.saved_model.load(export_dir))


@pytest.fixture(scope="module")
def eval_inputs(ingested):
    """The eval split as each signature takes it: serialized Examples, encoded images, pixels."""
    from visionpipe.core.examples import records
    from visionpipe.models import preprocessing

    serialized = [r.numpy() for r in records(ingested.eval)]
    encoded = features.parse_examples(tf.constant(serialized), [features.ENCODED])[features.ENCODED]
    return SimpleNamespace(serialized=serialized, encoded=[bytes(e) for e in encoded.numpy()],
                           pixels=preprocessing.preprocess_batch(encoded, SIZE))


@pytest.fixture(scope="module")
def signature_outputs(trained, eval_inputs):
    signatures = trained.loaded.signatures
    return {
        "serving_default": _numpy(signatures["serving_default"](images=tf.constant(eval_inputs.encoded))),
        "serving_examples": _numpy(signatures["serving_examples"](inputs=tf.constant(eval_inputs.serialized))),
        "serving_tensor": _numpy(signatures["serving_tensor"](pixels=eval_inputs.pixels)),
    }


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """The local model server on the export, pushed as version 1."""
    from visionpipe.serving.options import ServerOptions
    from visionpipe.serving.server import ModelServer

    base = tmp_path_factory.mktemp("serving") / MODEL_NAME
    shutil.copytree(trained.export_dir, base / "1")
    options = ServerOptions(port=0, rest_api_port=0, model_name=MODEL_NAME,
                            model_base_path=str(base), file_system_poll_wait_seconds=0)
    with ModelServer(options) as running:
        yield SimpleNamespace(url=f"http://127.0.0.1:{running.rest_port}/v1/models/{MODEL_NAME}")


@pytest.fixture(scope="module")
def tflite_files(ingested, trained):
    """{mode: .tflite path} converted by the task from what the ModelOptimizer hands it: the
    Keras model reloaded from the export, or the export itself when the task's model cannot be
    rewritten as Keras (a detector); int8 calibrated on training images, as the optimizer does."""
    from visionpipe.models import data, export
    from visionpipe.runtime import tflite_convert

    task = trained.task
    source = (trained.export_dir if task.keras_rewrites_unsupported
              else export.load_keras_model(trained.export_dir))
    images = data.pairs(ingested.train, task).map(lambda image, _: image).as_numpy_iterator()
    representative = tflite_convert.representative_dataset(images, 8)
    out = ingested.root / "tflite"
    return {mode: tflite_convert.write(
                str(out / f"model_{mode}.tflite"),
                task.convert_tflite(source, mode, representative if mode == "int8" else None))
            for mode in CHECKED_TFLITE_MODES if mode in task.tflite_modes}


@pytest.fixture(scope="module")
def untrained_evaluation(ingested):
    """The Evaluator's executor, with real TFX artifacts, on an export with 0 training steps."""
    from tfx.types import standard_artifacts

    from visionpipe.components.evaluator import spec
    from visionpipe.components.evaluator.executor import Executor

    config = copy.deepcopy(ingested.config)
    config.train.epochs = 0
    _, _, model_uri, _ = _train_and_export(ingested, config, "untrained")

    def artifact(cls, uri):
        instance = cls()
        instance.uri = str(uri)
        os.makedirs(instance.uri, exist_ok=True)
        return instance

    examples = artifact(standard_artifacts.Examples, ingested.examples_uri)
    examples.split_names = json.dumps(["train", "calibration", "eval"])
    evaluation = artifact(standard_artifacts.ModelEvaluation, ingested.root / "evaluation")
    blessing = artifact(standard_artifacts.ModelBlessing, ingested.root / "blessing")
    Executor().Do({spec.EXAMPLES_KEY: [examples],
                   spec.MODEL_KEY: [artifact(standard_artifacts.Model, model_uri)]},
                  {spec.EVALUATION_KEY: [evaluation], spec.BLESSING_KEY: [blessing]},
                  {spec.CONFIG_KEY: json.dumps(config.to_dict()), spec.EVAL_SPLIT_KEY: "eval"})
    report = json.loads((Path(evaluation.uri) / spec.REPORT_FILE).read_text())
    return SimpleNamespace(report=report, blessing=blessing, gate_metric=config.evaluate.gate_metric)


# --- helpers --------------------------------------------------------------------------------

def _numpy(outputs):
    return {key: value.numpy() for key, value in outputs.items()}


def _as_text(values):
    """Strings as text; binary strings (an ``*_bytes`` output, REST ``{"b64": ...}``) as hex."""
    if isinstance(values, list):
        return [_as_text(v) for v in values]
    if isinstance(values, dict) and set(values) == {"b64"}:
        values = base64.b64decode(values["b64"])
    if isinstance(values, bytes):
        try:
            return values.decode()
        except UnicodeDecodeError:
            return values.hex()
    return str(values)


def _assert_same(actual, expected, what: str):
    """Equal strings, or numbers equal to float32 noise (JSON lists and numpy alike)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind in "SUO":
        assert _as_text(actual.tolist()) == _as_text(expected.tolist()), what
    else:
        np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64),
                                   rtol=1e-5, atol=1e-5, err_msg=what)


def _saved_model_methods(export_dir: str):
    from tensorflow.core.protobuf import saved_model_pb2

    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())
    (meta_graph,) = saved_model.meta_graphs
    return {name: signature.method_name for name, signature in meta_graph.signature_def.items()}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


# --- the declarations ------------------------------------------------------------------------

@pytest.mark.parametrize("name", TASKS)
def test_declared_feature_keys_are_in_the_feature_spec(name):
    cls = task_classes()[name]
    spec = features.parse_spec()
    assert features.ENCODED in cls.feature_keys, f"{name}: feature_keys lack {features.ENCODED}"
    unknown = [key for key in (*cls.feature_keys, cls.label_feature) if key not in spec]
    assert not unknown, f"{name}: feature_keys/label_feature {unknown} are not in core.features"


@pytest.mark.parametrize("name", TASKS)
def test_declared_augment_keys_are_augment_config_keys(name):
    cls = task_classes()[name]
    if cls.augment_keys is None:  # honours every key
        return
    known = {f.name for f in dataclasses.fields(AugmentConfig)}
    assert set(cls.augment_keys) <= known, \
        f"{name}: augment_keys {sorted(set(cls.augment_keys) - known)} are not augment.* keys"


@pytest.mark.parametrize("name", TASKS)
def test_declared_gate_metric_labels_modes_and_metadata_are_known(name, tmp_path):
    from visionpipe.runtime import tflite_convert

    cls = task_classes()[name]
    config = tiny_config(name, tmp_path)
    known = tuple(cls.metric_names(config))
    assert cls.default_gate_metric in known, \
        f"{name}: default_gate_metric {cls.default_gate_metric!r} is not in metric_names {known}"
    assert config.evaluate.gate_metric == cls.default_gate_metric
    assert cls.image_labels in ("single", "multi", "")
    assert cls.tflite_metadata_kind in tflite_convert.METADATA_KINDS, \
        f"{name}: tflite_metadata_kind {cls.tflite_metadata_kind!r} is not one of {tflite_convert.METADATA_KINDS}"
    assert set(CHECKED_TFLITE_MODES) <= set(cls.tflite_modes) <= set(tflite_convert.PTQ_MODES), \
        f"{name}: tflite_modes {cls.tflite_modes}"
    assert set(cls.signature_methods.values()) <= set(SERVING_METHODS), f"{name}: {cls.signature_methods}"
    for section, dataclass_type in cls.config_sections.items():
        assert isinstance(getattr(config, section), dataclass_type)


@pytest.mark.parametrize("name", TASKS)
def test_declared_generated_sources_can_be_written(name, tmp_path):
    from visionpipe.datasets import GENERATED_SOURCES
    from visionpipe.tasks import prepare_generated_source

    cls = task_classes()[name]
    assert cls.generated_sources, f"{name}: declares no generated_sources"
    for source in cls.generated_sources:
        assert source in GENERATED_SOURCES, f"{name}: generated source {source!r} is not generated"
        config = tiny_config(name, tmp_path, f"data.source={source}", "data.num_images=10")
        path, ingestion_source = prepare_generated_source(config, tmp_path / source)
        written = Path(path)
        assert written.exists() and str(written).startswith(str(tmp_path / source)), (source, path)
        files = [p for p in (written.rglob("*") if written.is_dir() else written.parent.rglob("*"))
                 if p.suffix in (".png", ".jpg", ".jpeg")]
        assert len(files) == 10, f"{name}/{source}: {len(files)} images written, asked for 10"
        assert ingestion_source in ("folder", "csv", "coco", "voc", "tfrecord")


# --- build, train, export --------------------------------------------------------------------

def test_one_training_step_gives_a_finite_loss_and_the_transfer_layer(trained):
    losses = trained.history["loss"]
    assert len(losses) == 1 and np.isfinite(losses[0]), trained.history
    assert trained.task.backbone_of(trained.model).name == trained.task.transfer_layer


def test_export_has_the_three_signatures_labels_and_task_file(trained, ingested):
    from visionpipe.models import export

    assert set(SIGNATURES) <= set(trained.loaded.signatures)
    assert export.read_class_names(trained.export_dir) == ingested.class_names
    assert export.read_task_name(trained.export_dir) == ingested.name
    assert export.read_warmup_requests(trained.export_dir)
    # the files the task ships beside its model (a detector's tracker config) are there
    for relative, text in trained.task.export_files().items():
        assert (Path(trained.export_dir) / relative).read_text() == text, relative


def test_signature_methods_are_written_into_the_saved_model(trained):
    methods = _saved_model_methods(trained.export_dir)
    declared = trained.task.signature_methods
    assert set(declared) <= set(trained.loaded.signatures), \
        f"signature_methods name signatures the export lacks: {sorted(set(declared) - set(methods))}"
    for name in SIGNATURES:
        assert methods[name] == declared.get(name, PREDICT_METHOD), (name, methods)


def test_default_and_tensor_signatures_agree(signature_outputs, eval_inputs):
    default, tensor = signature_outputs["serving_default"], signature_outputs["serving_tensor"]
    assert set(default) == set(tensor)
    for key in default:
        assert len(default[key]) == len(eval_inputs.encoded), key
        _assert_same(tensor[key], default[key], f"serving_tensor[{key!r}] vs serving_default")


def test_examples_signature_agrees_with_the_default_signature(trained, signature_outputs, ingested):
    default, examples = signature_outputs["serving_default"], signature_outputs["serving_examples"]
    if trained.task.signature_methods.get("serving_examples") == CLASSIFY_METHOD:
        # TF Serving's classify contract: `classes` (the labels) and `scores`, one per class
        assert set(examples) == {"classes", "scores"}, sorted(examples)
        assert [[c.decode() for c in row] for row in examples["classes"]] == \
            [ingested.class_names] * len(examples["classes"])
        same = [key for key, value in default.items()
                if value.shape == examples["scores"].shape and value.dtype.kind == "f"
                and np.allclose(value, examples["scores"], rtol=1e-5, atol=1e-5)]
        assert same, f"serving_examples scores match no output of serving_default {sorted(default)}"
    else:
        assert set(examples) == set(default)
        for key in default:
            _assert_same(examples[key], default[key], f"serving_examples[{key!r}] vs serving_default")


# --- serving --------------------------------------------------------------------------------

def test_local_server_answers_rest_predict_as_the_export_does(server, signature_outputs, eval_inputs):
    import requests

    images = eval_inputs.encoded[:2]
    response = requests.post(f"{server.url}:predict", timeout=60,
                             json={"instances": [_b64(image) for image in images]})
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    default = signature_outputs["serving_default"]
    if len(default) == 1:  # TF Serving's row format: a single output's values, not named
        (only,) = default
        rows = [{only: row} for row in rows]
    assert len(rows) == 2 and set(rows[0]) == set(default)
    for key, value in default.items():
        _assert_same(np.array([row[key] for row in rows]), value[:2], f"REST predict {key!r}")


def test_classify_api_answers_each_signature_marked_classify(trained, server, eval_inputs,
                                                             signature_outputs, ingested):
    import requests

    marked = [name for name, method in trained.task.signature_methods.items()
              if method == CLASSIFY_METHOD]
    if not marked:
        pytest.skip(f"task {ingested.name!r} marks no signature classify")
    for name in marked:
        response = requests.post(f"{server.url}:classify", timeout=60, json={
            "signature_name": name,
            "examples": [{features.ENCODED: _b64(image)} for image in eval_inputs.encoded[:2]]})
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        assert [[label for label, _ in row] for row in result] == [ingested.class_names] * 2
        np.testing.assert_allclose([[score for _, score in row] for row in result],
                                   signature_outputs["serving_examples"]["scores"][:2],
                                   rtol=1e-5, atol=1e-5)


# --- TFLite ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", CHECKED_TFLITE_MODES)
def test_tflite_file_is_scored_on_the_gate_metric(tflite_files, trained, ingested, mode):
    from visionpipe.models import data
    from visionpipe.runtime.tflite_runtime import TFLiteModel

    task = trained.task
    metrics = task.evaluate_tflite(tflite_files[mode], task.batch_dataset(data.pairs(ingested.eval, task), 8))
    assert _finite(metrics.get(task.gate_metric)), f"{mode}: {task.gate_metric} missing in {metrics}"
    model = TFLiteModel(tflite_files[mode])
    assert model.image_size == (SIZE, SIZE)
    assert model.input_dtype == (np.int8 if mode == "int8" else np.float32)


def test_float32_tflite_scores_what_the_saved_model_scores(tflite_files, trained, ingested):
    from visionpipe.models import data

    task = trained.task
    saved_model = task.evaluate_loaded(trained.loaded, ingested.eval)
    tflite = task.evaluate_tflite(tflite_files["float32"],
                                  task.batch_dataset(data.pairs(ingested.eval, task), 8))
    assert tflite[task.gate_metric] == pytest.approx(saved_model[task.gate_metric], abs=1e-6)


def test_tflite_metadata_is_the_declared_kind_with_the_labels(tflite_files, trained, ingested, tmp_path):
    from visionpipe.runtime import tflite_convert

    with open(tflite_files["float32"], "rb") as f:
        plain = f.read()
    kind = trained.task.tflite_metadata_kind
    path = tflite_convert.write(str(tmp_path / "with_metadata.tflite"),
                                tflite_convert.add_metadata(plain, ingested.class_names, kind=kind))
    assert tflite_convert.metadata_kind(path) == kind
    assert tflite_convert.read_labels(path) == ingested.class_names


# --- the Evaluator: an untrained model is not blessed (issue 24) ------------------------------

def test_untrained_model_is_not_blessed_because_it_does_not_beat_the_trivial_predictor(
        untrained_evaluation):
    from tfx.components.evaluator import constants

    report, blessing, metric = (untrained_evaluation.report, untrained_evaluation.blessing,
                                untrained_evaluation.gate_metric)
    assert report["blessed"] is False
    assert blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == 0
    assert (Path(blessing.uri) / constants.NOT_BLESSED_FILE_NAME).exists()
    trivial_failures = [f for f in report["failures"]
                        if f.startswith(f"{metric}:") and "trivial predictor" in f]
    assert trivial_failures, report["failures"]


def test_evaluation_report_has_model_and_trivial_rows_for_the_gate_metric(untrained_evaluation):
    report, metric = untrained_evaluation.report, untrained_evaluation.gate_metric
    (row,) = [r for r in report["gate"] if r["metric"] == metric]
    assert _finite(row["model"]) and _finite(row["trivial"]), row
    assert row["model"] == report["metrics"][metric] and row["trivial"] == report["trivial"][metric]
    assert row["model"] < row["trivial"] + report["min_margin_over_trivial"]


def test_evaluator_computes_every_declared_metric_for_the_model_and_the_trivial_predictor(
        untrained_evaluation, ingested):
    """Any of ``metric_names`` may be configured as the gate metric or a threshold: the model's
    metrics and the trivial floor must both have it (a prefix such as ``ap/`` needs one entry)."""
    report = untrained_evaluation.report
    declared = task_classes()[ingested.name].metric_names(ingested.config)
    for side in ("metrics", "trivial"):
        computed = report[side]
        missing = [name for name in declared if not (
            any(key.startswith(name) for key in computed) if name.endswith("/") else name in computed)]
        assert not missing, f"{side} lacks declared metrics {missing}; has {sorted(computed)[:20]}"
