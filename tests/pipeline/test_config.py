import subprocess
import sys

import pytest
import yaml

from visionpipe.core.config import ConfigError, load_config, parse_overrides


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_overrides_defaults_and_cli_overrides_yaml(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 5\n  batch_size: 16\nmodel:\n  backbone: resnet50\n")
    config = load_config(path, ["train.epochs=2", "augment.mixup_alpha=0.2"])
    assert config.train.epochs == 2          # CLI beats YAML
    assert config.train.batch_size == 16     # YAML beats default
    assert config.model.backbone == "resnet50"
    assert config.augment.mixup_alpha == 0.2
    assert config.train.learning_rate == pytest.approx(2e-3)  # default kept


def test_unknown_key_is_rejected_with_the_closest_key_suggested(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train.epoch'; did you mean 'train.epochs'"):
        load_config(overrides=["train.epoch=3"])
    path = write(tmp_path, "model:\n  backbon: small_cnn\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown config key 'model.backbon'; did you mean 'model.backbone'"):
        load_config(path)


def test_misspelt_section_is_matched_first_then_the_key_within_it():
    for typo, meant in [("trian.epochs", "train.epochs"), ("modle.backbone", "model.backbone"),
                        ("optimise.enabled", "optimize.enabled"), ("train.epoch", "train.epochs")]:
        with pytest.raises(ConfigError, match=rf"'{typo}'; did you mean '{meant}'\?"):
            load_config(overrides=[f"{typo}=1"])


def test_values_are_type_checked_and_never_evaluated():
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        load_config(overrides=["train.epochs=__import__('os').getcwd()"])
    with pytest.raises(ConfigError, match="augment.enabled: expected true or false"):
        load_config(overrides=["augment.enabled=maybe"])


def test_a_teacher_initialised_student_must_share_the_teacher_backbone():
    with pytest.raises(ConfigError, match="optimize.student_init: 'teacher' selects .* "
                                          "set optimize.student_init=scratch"):
        load_config(overrides=["optimize.distill=true", "optimize.student_backbone=mobilenet_v2"])
    config = load_config(overrides=["optimize.distill=true", "optimize.student_init=scratch",
                                    "optimize.student_backbone=mobilenet_v2"])
    assert config.optimize.student_init == "scratch"
    with pytest.raises(ConfigError, match="optimize.student_init: must be one of"):
        load_config(overrides=["optimize.student_init=pretrained"])


def test_validate_names_the_key_of_a_bad_value():
    with pytest.raises(ConfigError, match="model.backbone: must be one of"):
        load_config(overrides=["model.backbone=vgg"])
    with pytest.raises(ConfigError, match="data.split_ratios: must sum to 1"):
        load_config(overrides=["data.split_ratios={train: 0.5, eval: 0.2}"])


def test_unlabelled_images_are_allowed_for_multilabel_only():
    assert load_config(overrides=["task=multilabel", "data.allow_unlabeled=true"]).data.allow_unlabeled
    for task in ("classification", "detection"):
        with pytest.raises(ConfigError, match="data.allow_unlabeled: applies to multi-label tasks only"):
            load_config(overrides=[f"task={task}", "data.allow_unlabeled=true"])


def test_missing_weights_file_is_a_one_line_cli_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "visionpipe.cli", "config", "--config",
                           "configs/classification.yaml", f"model.weights={tmp_path}/nope.h5"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "model.weights: file not found" in lines[0] and "nope.h5" in lines[0]


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = load_config("configs/classification.yaml", ["train.epochs=1"])
    saved = config.save(tmp_path / "resolved.yaml")
    again = load_config(saved)
    assert again == config
    assert yaml.safe_load(saved.read_text())["train"]["epochs"] == 1


def test_every_shipped_config_is_valid():
    from pathlib import Path

    for path in sorted(Path("configs").glob("*.yaml")):
        load_config(path, validate=False)  # keys and types
        assert path.stat().st_size > 0


def test_overrides_build_nested_dicts():
    assert parse_overrides(["a.b.c=1", "a.b.d=x"]) == {"a": {"b": {"c": 1, "d": "x"}}}


def test_image_size_is_one_integer_or_height_and_width(tmp_path):
    config = load_config(overrides=["model.image_size=[32, 48]"])
    assert config.model.image_size == [32, 48] and config.model.hw == (32, 48)
    assert load_config(overrides=["model.image_size=40"]).model.hw == (40, 40)
    path = write(tmp_path, "model:\n  image_size: [32, 128]\n")
    assert load_config(path).model.hw == (32, 128)
    saved = load_config(path).save(tmp_path / "resolved.yaml")
    assert yaml.safe_load(saved.read_text())["model"]["image_size"] == [32, 128]
    for bad, message in (("[32]", "expected one integer .a square. or \\[height, width\\], got \\[32\\]"),
                         ("[32, 48, 3]", "expected one integer .a square. or \\[height, width\\]"),
                         ("abc", "expected an integer or a list of integers, got 'abc'"),
                         ("[8, 48]", "height and width must be in \\[16, 1024\\], got \\[8, 48\\]")):
        with pytest.raises(ConfigError, match=f"^model.image_size: {message}"):
            load_config(overrides=[f"model.image_size={bad}"])


def test_a_detector_needs_each_side_a_multiple_of_32():
    assert load_config(overrides=["task=detection", "model.image_size=[64, 96]"]).model.hw == (64, 96)
    with pytest.raises(ConfigError, match="model.image_size: a detector needs a height and width "
                                          "that are multiples of 32 .* got \\[64, 80\\]"):
        load_config(overrides=["task=detection", "model.image_size=[64, 80]"])


def test_onnx_keys_parse_and_an_out_of_range_onnx_drop_names_its_key():
    config = load_config(overrides=["optimize.onnx=true", "optimize.max_onnx_drop=0.005"])
    assert config.optimize.onnx is True and config.optimize.max_onnx_drop == 0.005
    with pytest.raises(ConfigError, match=r"optimize.max_onnx_drop: must be in \[0, 1\]"):
        load_config(overrides=["optimize.max_onnx_drop=1.5"])
