"""The one Evaluator with ``evaluate.robustness`` on: a digits classifier trained for a few
epochs and exported by the Trainer's code, judged twice by the real executor with real TFX
artifacts. FGSM at 32 pixels lowers its accuracy, so a strict threshold on it blocks the model;
a bound on FGSM at 2 pixels, which it meets, blesses it. The report carries the metric per condition and the images the run report
shows."""
import copy
import json
import os
from pathlib import Path

import pytest

from tests.models.conftest import digits_examples  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def digits_export(digits_examples, tmp_path_factory):  # noqa: F811
    from visionpipe.components.trainer.run_fn import finalize_and_export
    from visionpipe.core.examples import split_files
    from visionpipe.models import training
    from visionpipe.tasks import get_task

    config, examples_uri, names = digits_examples
    config = copy.deepcopy(config)
    config.train.epochs = 4
    root = tmp_path_factory.mktemp("robust_export")
    task = get_task(config, names)
    train, held_out = split_files(examples_uri, "train"), split_files(examples_uri, "eval")
    result = training.train(config, task, train, held_out, log_dir=str(root / "logs"))
    model_uri = root / "model"
    finalize_and_export(task, result, held_out, str(model_uri / "Format-Serving"),
                        config.model_name)
    return config, examples_uri, str(model_uri)


def _evaluate(config, examples_uri, model_uri, root: Path, thresholds):
    from tfx.types import standard_artifacts

    from visionpipe.components.evaluator import spec
    from visionpipe.components.evaluator.executor import Executor
    from visionpipe.core.config import config_from_dict

    values = config.to_dict()
    values["evaluate"]["robustness"].update({
        "enabled": True, "max_images": 48, "occlusion": [0.25], "brightness": [0.5],
        "contrast": [], "illumination_gradient": [], "fgsm_epsilons": [2.0, 32.0],
        "pgd_epsilons": [], "thresholds": thresholds, "explain_images": 4})
    values["evaluate"]["min_margin_over_trivial"] = 0.0
    config = config_from_dict(values).validate()

    def artifact(cls, uri):
        instance = cls()
        instance.uri = str(uri)
        os.makedirs(instance.uri, exist_ok=True)
        return instance

    examples = artifact(standard_artifacts.Examples, examples_uri)
    examples.split_names = json.dumps(["train", "eval"])
    evaluation = artifact(standard_artifacts.ModelEvaluation, root / "evaluation")
    blessing = artifact(standard_artifacts.ModelBlessing, root / "blessing")
    Executor().Do({spec.EXAMPLES_KEY: [examples],
                   spec.MODEL_KEY: [artifact(standard_artifacts.Model, model_uri)]},
                  {spec.EVALUATION_KEY: [evaluation], spec.BLESSING_KEY: [blessing]},
                  {spec.CONFIG_KEY: json.dumps(config.to_dict()), spec.EVAL_SPLIT_KEY: "eval"})
    report = json.loads((root / "evaluation" / spec.REPORT_FILE).read_text())
    return report, blessing


@pytest.mark.e2e
def test_the_robustness_gate_blocks_a_model_fgsm_breaks_and_blesses_it_at_a_lenient_bound(
        digits_export, tmp_path):
    from tfx.components.evaluator import constants

    from visionpipe.components.evaluator import robustness
    from visionpipe.report import write_page, Section

    config, examples_uri, model_uri = digits_export
    strict, blessing = _evaluate(config, examples_uri, model_uri, tmp_path / "strict",
                                 {"fgsm_32": 0.8})
    metrics = strict["robustness"]["metrics"]
    assert list(metrics) == ["clean", "occlusion_0.25", "brightness_0.5", "fgsm_2", "fgsm_32"]
    assert metrics["clean"] > 0.6, metrics  # the model learned the digits ...
    assert metrics["fgsm_32"] < metrics["clean"] - 0.2, metrics  # ... and FGSM breaks it
    assert not strict["blessed"]
    assert any(f.startswith("robustness fgsm_32: ") and "below the threshold 0.8" in f
               for f in strict["failures"]), strict["failures"]
    assert blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == \
        constants.NOT_BLESSED_VALUE

    # two pixels of FGSM leave it mostly right: a bound it meets blesses it
    assert metrics["fgsm_2"] >= 0.5, metrics
    lenient, blessing = _evaluate(config, examples_uri, model_uri, tmp_path / "lenient",
                                  {"fgsm_2": 0.5})
    assert lenient["blessed"], lenient["failures"]
    assert blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == \
        constants.BLESSED_VALUE

    # the run report's panels: the table and the three images, copied beside the page
    evaluation_dir = str(tmp_path / "strict" / "evaluation")
    assert set(strict["robustness"]["images"]) == {"curve", "adversarial", "gradcam"}
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    shown = robustness.panels_of(strict["robustness"], evaluation_dir, str(report_dir))
    assert [row[0] for row in shown[0].rows] == list(metrics)
    assert [row[-1] for row in shown[0].rows] == ["pass", "pass", "pass", "pass", "FAIL"]
    page = Path(write_page(str(report_dir), "t", [Section("evaluation", shown)])).read_text()
    for panel in shown:
        for image in panel.images:
            assert (report_dir / image).stat().st_size > 1000 and image in page
