"""Robustness kit (``visionpipe.models.robustness``): corruptions, FGSM and PGD in pixel units
on the classification task's model trained on coloured squares, the robustness gate's
verdicts, and the ``evaluate.robustness`` config section's checks."""
import numpy as np
import pytest

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core.config import load_config
from visionpipe.core.errors import ConfigError
from visionpipe.models import robustness


def _cfg(*overrides):
    return load_config(overrides=["evaluate.robustness.enabled=true", *overrides]).evaluate.robustness


def _targets(fixture):
    return tf.one_hot(fixture.labels, fixture.task.num_classes).numpy()


def _accuracy(fixture, images):
    return float(np.mean(np.argmax(fixture.model.predict(images, verbose=0), -1) == fixture.labels))


def test_fgsm_and_pgd_stay_in_the_pixel_ball_and_lower_the_accuracy_pgd_more(squares_classifier):
    fixture = squares_classifier
    loss, targets = fixture.task.robustness_loss, tf.constant(_targets(fixture))
    assert _accuracy(fixture, fixture.images) >= 0.95
    for epsilon in (16.0, 32.0):
        single = robustness.fgsm(fixture.model, loss, fixture.images, targets, epsilon)
        many = robustness.pgd(fixture.model, loss, fixture.images, targets, epsilon, steps=10)
        for adversarial in (single, many):
            assert np.abs(adversarial - fixture.images).max() <= epsilon + 1e-3
            assert adversarial.min() >= 0.0 and adversarial.max() <= 255.0
        assert _accuracy(fixture, many) <= _accuracy(fixture, single)
    assert _accuracy(fixture, robustness.pgd(fixture.model, loss, fixture.images, targets, 16.0)) < 0.5
    # a tiny epsilon barely moves a confident model
    assert _accuracy(fixture, robustness.fgsm(fixture.model, loss, fixture.images, targets, 1.0)) >= 0.9


def test_more_pgd_steps_never_help_the_model(squares_classifier):
    """The gradient-masking sanity check: a stronger attack of the same budget is no weaker."""
    fixture = squares_classifier
    loss, targets = fixture.task.robustness_loss, tf.constant(_targets(fixture))
    few = robustness.pgd(fixture.model, loss, fixture.images, targets, 8.0, steps=2)
    many = robustness.pgd(fixture.model, loss, fixture.images, targets, 8.0, steps=20)
    assert _accuracy(fixture, many) <= _accuracy(fixture, few)


def test_evaluate_scores_every_configured_condition_and_the_gate_judges_them(squares_classifier):
    fixture = squares_classifier
    cfg = _cfg("evaluate.robustness.fgsm_epsilons=[2, 32]", "evaluate.robustness.pgd_epsilons=[16]",
               "evaluate.robustness.pgd_steps=5")
    batches = robustness.limit_batches([(fixture.images, _targets(fixture))], 40)
    result = robustness.evaluate(fixture.model, batches, fixture.task.robustness_loss,
                                 fixture.task.robustness_score, cfg, keep_examples=3)
    metrics = result["metrics"]
    assert list(metrics) == cfg.condition_names() == [
        "clean", "occlusion_0.1", "occlusion_0.25", "brightness_0.5", "brightness_1.5",
        "contrast_0.5", "gradient_0.5", "fgsm_2", "fgsm_32", "pgd_16"]
    assert metrics["clean"] >= 0.95 and metrics["fgsm_32"] < metrics["clean"] - 0.3
    assert result["examples"]["pgd_16"][0].shape == (3, 32, 32, 3)
    strict = robustness.judge(metrics, {"fgsm_32": 0.9}, {"pgd_16": 0.1})
    assert [f.split(":")[0] for f in strict["failures"]] == ["robustness fgsm_32",
                                                             "robustness pgd_16"]
    assert "below the threshold 0.9" in strict["failures"][0]
    assert "dropped more than 0.1 below the clean" in strict["failures"][1]
    lenient = robustness.judge(metrics, {"fgsm_2": 0.9, "brightness_0.5": 0.9},
                               {"occlusion_0.1": 0.2})
    assert lenient["failures"] == []


def test_a_pgd_weaker_than_fgsm_is_noted_as_possible_gradient_masking():
    verdict = robustness.judge({"clean": 0.9, "fgsm_8": 0.3, "pgd_8": 0.5}, {}, {})
    assert verdict["failures"] == [] and "gradient masking" in verdict["notes"][0]


def test_corruptions_change_the_pixels_as_named():
    rng = np.random.default_rng(0)
    images = rng.uniform(50, 200, (4, 20, 20, 3)).astype(np.float32)
    occluded = robustness.occlude(images, 0.25, np.random.default_rng(1))
    covered = np.all(occluded != images, axis=-1).mean(axis=(1, 2))
    np.testing.assert_allclose(covered, 0.25, atol=0.01)
    assert set(np.unique(occluded[occluded != images])) == {robustness.GREY}
    np.testing.assert_allclose(robustness.brightness(images, 0.5), images * 0.5)
    assert robustness.brightness(images, 2.0).max() == 255.0
    low = robustness.contrast(images, 0.5)
    np.testing.assert_allclose(low.mean(axis=(1, 2, 3)), images.mean(axis=(1, 2, 3)), rtol=1e-5)
    assert low.std() < images.std()
    ramp = robustness.illumination_gradient(np.full((1, 4, 5, 3), 100.0, np.float32), 0.5)
    np.testing.assert_allclose(ramp[0, 0, :, 0], [50, 75, 100, 125, 150])


@pytest.mark.parametrize("override, key", [
    ("evaluate.robustness.thresholds={fgsm_3: 0.5}", "evaluate.robustness.thresholds.fgsm_3"),
    ("evaluate.robustness.max_drops={clean: 1.5}", "evaluate.robustness.max_drops.clean"),
    ("evaluate.robustness.fgsm_epsilons=[0.03, 300]", "evaluate.robustness.fgsm_epsilons"),
    ("evaluate.robustness.occlusion=[1.5]", "evaluate.robustness.occlusion"),
    ("evaluate.robustness.pgd_steps=0", "evaluate.robustness.pgd_steps"),
])
def test_a_bad_robustness_key_is_an_error_naming_it(override, key):
    with pytest.raises(ConfigError, match=f"^{key.replace('.', '[.]')}: "):
        load_config(overrides=["evaluate.robustness.enabled=true", override])


def test_thresholds_without_the_evaluation_and_a_task_without_it_are_refused():
    with pytest.raises(ConfigError, match="^evaluate.robustness.enabled: robustness thresholds"):
        load_config(overrides=["evaluate.robustness.thresholds={fgsm_8: 0.5}"])
    with pytest.raises(ConfigError, match="^evaluate.robustness.enabled: task 'detection'"):
        load_config(overrides=["task=detection", "evaluate.robustness.enabled=true"])
    assert _cfg("evaluate.robustness.thresholds={pgd_8: 0.2}").thresholds == {"pgd_8": 0.2}


def test_the_multilabel_robustness_model_restores_the_served_thresholds(tmp_path):
    """Its F1 under attack is scored at the thresholds the export serves, not the defaults."""
    from tests.support.toy_model import sample_image
    from visionpipe.models import export
    from visionpipe.tasks import get_task

    config = load_config(overrides=["task=multilabel", "model.image_size=16", "model.width=4",
                                    "data.image_size=16"])
    trained = get_task(config, ["a", "b", "c"])
    trained.thresholds[:] = [0.2, 0.45, 0.8]  # what finalize would have calibrated
    export.export_saved_model(trained.build_model(), trained, str(tmp_path / "1"),
                              [sample_image(16)], "ml")
    fresh = get_task(config, ["a", "b", "c"])
    assert np.allclose(fresh.thresholds, config.model.multilabel_threshold)
    model = fresh.robustness_model(str(tmp_path / "1"))
    np.testing.assert_allclose(fresh.thresholds, [0.2, 0.45, 0.8], rtol=1e-6)
    outputs = model(np.zeros((2, 16, 16, 3), np.float32)).numpy()
    assert outputs.shape == (2, 3)
    targets = (outputs >= fresh.thresholds).astype(np.float32)  # exactly the served decisions
    assert fresh.robustness_score(outputs, targets) == 1.0
