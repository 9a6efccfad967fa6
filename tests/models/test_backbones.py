"""Multi-scale backbone features: one output per stride, what pyramid, U-Net and DeepLab heads
build on (detection's P3..P5 come from here)."""
import numpy as np
import pytest
import tensorflow as tf

from visionpipe.core.config import load_config
from visionpipe.core.errors import ConfigError
from visionpipe.models import backbones


def test_small_cnn_gives_one_map_per_stride_extended_past_its_own_depth():
    config = load_config(overrides=["model.image_size=[32, 48]", "model.width=4"]).model
    features = backbones.multiscale_features(config, strides=(2, 4, 8, 16, 32))
    shapes = [tuple(o.shape[1:3]) for o in features.outputs]
    assert shapes == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]  # ceil(h / s) x ceil(w / s)
    assert [o.shape[-1] for o in features.outputs] == [8, 16, 32, 64, 128]  # 16, 32: extra blocks
    assert {"extra_stride16_conv", "extra_stride32_conv"} <= {layer.name for layer in features.layers}
    assert features.input_shape == (None, 32, 48, 3) and features.weights_loaded == ""
    out = features(tf.random.uniform([2, 32, 48, 3], 0, 255))
    assert all(np.isfinite(o.numpy()).all() for o in out)


def test_a_keras_application_gives_its_own_maps_at_each_stride():
    config = load_config(overrides=["model.backbone=mobilenet_v2", "model.image_size=[64, 96]"]).model
    features = backbones.multiscale_features(config, strides=(8, 16, 32))
    assert [tuple(o.shape[1:3]) for o in features.outputs] == [(8, 12), (4, 6), (2, 3)]
    assert not any(layer.name.startswith("extra_") for layer in features.layers)


def test_strides_must_be_increasing_powers_of_two():
    config = load_config(overrides=["model.image_size=32", "model.width=4"]).model
    for bad in ((8, 4), (3, 6), (1, 2), ()):
        with pytest.raises(ValueError, match="increasing powers of two"):
            backbones.multiscale_features(config, strides=bad)


def test_stem_stride_halves_every_feature_map_and_keeps_the_weights():
    build_backbone = backbones.build_backbone
    plain = build_backbone(load_config(overrides=["model.image_size=32", "model.width=4"]).model)
    stem = build_backbone(load_config(overrides=["model.image_size=32", "model.width=4",
                                                 "model.stem_stride=2"]).model)
    assert plain.output_shape == (None, 4, 4, 32) and stem.output_shape == (None, 2, 2, 32)
    assert stem.get_layer("stage0_conv0").strides == (2, 2)
    assert stem.get_layer("stage0_conv1").strides == (1, 1)
    assert [w.shape for w in stem.weights] == [w.shape for w in plain.weights]


def test_stem_stride_is_checked_by_name():
    with pytest.raises(ConfigError, match="model.stem_stride: must be 1 or 2"):
        load_config(overrides=["model.stem_stride=4"])
    with pytest.raises(ConfigError, match="model.stem_stride: applies to small_cnn only"):
        load_config(overrides=["model.backbone=mobilenet_v2", "model.stem_stride=2"])


def test_classifier_head_pools_as_configured_and_pooling_is_checked_by_name():
    from visionpipe.tasks import get_task

    for pooling, layer in (("avg", tf.keras.layers.GlobalAveragePooling2D),
                           ("max", tf.keras.layers.GlobalMaxPooling2D)):
        config = load_config(overrides=["task=multilabel", "model.image_size=32", "model.width=4",
                                        f"model.pooling={pooling}"])
        assert isinstance(get_task(config, ["a", "b"]).build_model().get_layer("pool"), layer)
    with pytest.raises(ConfigError, match="model.pooling: must be avg or max"):
        load_config(overrides=["model.pooling=mean"])


def _attention_backbone(attention, width=8):
    return backbones.build_backbone(load_config(overrides=[
        "model.image_size=32", f"model.width={width}", f"model.attention={attention}"]).model)


def test_cbam_gates_channels_then_positions_and_keeps_the_feature_shape():
    plain, cbam = _attention_backbone("none"), _attention_backbone("cbam")
    assert cbam.output_shape == plain.output_shape
    names = {layer.name for layer in cbam.layers}
    assert {f"stage{s}_cbam_{part}" for s in range(4)
            for part in ("channel_gate", "spatial_gate")} <= names
    images = tf.random.uniform([2, 32, 32, 3], 0, 1)
    probe = tf.keras.Model(cbam.inputs, [cbam.get_layer("stage1_cbam_channel_gate").output,
                                         cbam.get_layer("stage1_cbam_spatial_gate").output,
                                         cbam.get_layer("stage1_relu1").output,
                                         cbam.get_layer("stage1_cbam_spatial_scale").output])
    channel, spatial, before, after = [t.numpy() for t in probe(images)]
    assert channel.shape == (2, 1, 1, 16) and spatial.shape == (2, 16, 16, 1)
    assert (0 < channel).all() and (channel < 1).all() and (0 < spatial).all() and (spatial < 1).all()
    np.testing.assert_allclose(after, before * channel * spatial, rtol=1e-5, atol=1e-6)


def test_a_cbam_classifier_converts_to_int8_tflite_with_builtin_ops_only_and_agrees():
    from visionpipe.runtime import tflite_convert
    from visionpipe.runtime.tflite_runtime import TFLiteModel

    inputs = tf.keras.Input((32, 32, 3))
    x = tf.keras.layers.GlobalAveragePooling2D()(_attention_backbone("cbam", width=4)(inputs))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, activation="softmax")(x))
    images = np.random.default_rng(0).uniform(0, 1, (16, 32, 32, 3)).astype(np.float32)
    representative = tflite_convert.representative_dataset(images, 16)
    content = tflite_convert.convert(model, "int8", representative)  # builtins only: no Flex
    interpreter = TFLiteModel(model_content=content)
    got = interpreter.scores(images)
    np.testing.assert_allclose(got, model.predict(images, verbose=0), atol=0.05)


def test_attention_is_checked_by_name_and_squeeze_excite_is_attention_se():
    assert load_config(overrides=["model.squeeze_excite=true"]).model.attention == "se"
    with pytest.raises(ConfigError, match="model.attention: must be none, se or cbam"):
        load_config(overrides=["model.attention=transformer"])
    with pytest.raises(ConfigError, match="model.squeeze_excite: is attention: se"):
        load_config(overrides=["model.squeeze_excite=true", "model.attention=cbam"])
    with pytest.raises(ConfigError, match="model.attention: applies to small_cnn only"):
        load_config(overrides=["model.backbone=mobilenet_v2", "model.attention=cbam"])
