import numpy as np
import pytest

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models.backbones import small_cnn
from visionpipe.optimize.weight_selection import evenly_spaced, initialize_from_teacher


def _classifier(width, attention="none", seed=0):
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(small_cnn(16, width, attention)(inputs))
    return tf.keras.Model(inputs, tf.keras.layers.Dense(5, name="logits")(x))


def test_evenly_spaced_indices_span_the_teacher_dimension():
    assert evenly_spaced(24, 6).tolist() == [0, 5, 9, 14, 18, 23]
    assert evenly_spaced(5, 5).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="cannot select 6 of 4"):
        evenly_spaced(4, 6)


def test_a_student_as_wide_as_the_teacher_becomes_an_exact_copy():
    teacher, student = _classifier(8, seed=1), _classifier(8, seed=2)
    images = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype(np.float32)
    assert not np.allclose(teacher(images), student(images))
    result = initialize_from_teacher(teacher, student)
    assert not result.kept_random
    np.testing.assert_allclose(student(images), teacher(images), rtol=1e-5, atol=1e-5)


def test_a_narrower_student_keeps_the_same_channels_out_of_one_layer_and_into_the_next():
    teacher, student = _classifier(12, attention="se"), _classifier(4, seed=3)
    result = initialize_from_teacher(teacher, student)
    weights = {w.name: w.numpy() for w in teacher.weights}
    kept = evenly_spaced(12, 4)  # stage 0 has `width` channels
    conv0 = student.get_layer("backbone").get_layer("stage0_conv0").kernel.numpy()
    conv1 = student.get_layer("backbone").get_layer("stage0_conv1").kernel.numpy()
    np.testing.assert_array_equal(conv0, weights["stage0_conv0/kernel:0"][..., kept])
    np.testing.assert_array_equal(conv1, weights["stage0_conv1/kernel:0"][:, :, kept][..., kept])
    gamma = student.get_layer("backbone").get_layer("stage0_bn0").gamma.numpy()
    np.testing.assert_array_equal(gamma, weights["stage0_bn0/gamma:0"][kept])
    logits = student.get_layer("logits").kernel.numpy()  # 8w = 32 features in, 5 classes out
    np.testing.assert_array_equal(logits, weights["logits/kernel:0"][evenly_spaced(96, 32)])
    assert not result.kept_random  # every student weight selected; the teacher's SE is ignored


def test_student_weights_that_do_not_fit_the_teacher_keep_their_initialisation_and_are_listed():
    teacher, student = _classifier(4), _classifier(8, seed=3)
    before = student.get_layer("backbone").get_layer("stage0_conv0").kernel.numpy()
    result = initialize_from_teacher(teacher, student)
    assert "stage0_conv0/kernel:0" in result.kept_random
    assert "does not fit" in result.kept_random["stage0_conv0/kernel:0"]
    np.testing.assert_array_equal(
        student.get_layer("backbone").get_layer("stage0_conv0").kernel.numpy(), before)
    assert "logits/bias:0" in result.selected  # same shape: copied


def test_a_student_sharing_no_weight_names_is_refused_with_both_model_names():
    teacher = _classifier(4)
    other = tf.keras.Sequential([tf.keras.Input((16, 16, 3)), tf.keras.layers.Conv2D(2, 3, name="c")],
                                name="other")
    with pytest.raises(ValueError, match="'other' shares no weight names with teacher"):
        initialize_from_teacher(teacher, other)
