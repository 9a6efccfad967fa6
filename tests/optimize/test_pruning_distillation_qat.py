import numpy as np
import pytest

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.optimize import distillation, pruning, qat
from visionpipe.runtime import tflite_convert
from visionpipe.runtime.tflite_runtime import TFLiteModel, top1_accuracy

from .conftest import NUM_CLASSES, compile_sparse, keras_accuracy, small_cnn, train_batches


def _compile_fine_tune(model):
    compile_sparse(model, 1e-3)


def test_pruned_model_has_the_target_sparsity_in_every_pruned_layer(trained_cnn, digits):
    before = trained_cnn.get_weights()
    result = pruning.prune(trained_cnn, train_batches(digits), _compile_fine_tune,
                           sparsity=0.5, structure="unstructured", epochs=2)
    assert set(result.layer_sparsity) == {"features", "conv2", "probabilities"}
    for name, sparsity in result.layer_sparsity.items():
        assert sparsity == pytest.approx(0.5, abs=0.01), name
    assert result.overall_sparsity == pytest.approx(0.5, abs=0.01)
    # stripped: plain Keras layers, and the caller's model was not pruned in place
    assert not any("prune" in type(layer).__name__.lower() for layer in result.model.layers)
    assert all(np.array_equal(a, b) for a, b in zip(before, trained_cnn.get_weights()))
    assert keras_accuracy(result.model, digits) >= keras_accuracy(trained_cnn, digits) - 0.1


def test_two_by_four_pruning_zeroes_two_of_every_four_input_channel_weights(trained_cnn, digits):
    result = pruning.prune(trained_cnn, train_batches(digits), _compile_fine_tune,
                           sparsity=0.5, structure="2by4", epochs=1)
    # 'features' has 3 input channels (not a multiple of 4) and is left dense.
    assert set(result.layer_sparsity) == {"conv2", "probabilities"}
    kernel = result.model.get_layer("conv2").kernel.numpy()  # [3, 3, 8, 16]
    groups = np.moveaxis(kernel, 2, -1).reshape(-1, 2, 4)  # every 4 consecutive input channels
    assert np.all(np.sum(groups == 0, axis=-1) >= 2)


def test_pruning_a_model_without_prunable_layers_names_the_model():
    inputs = tf.keras.Input((4,))
    model = tf.keras.Model(inputs, tf.keras.layers.Activation("relu")(inputs), name="no_kernels")
    with pytest.raises(ValueError, match="no_kernels"):
        pruning.wrap_for_pruning(model, 0.5, "unstructured", total_steps=10)


def test_distillation_loss_is_zero_when_student_equals_teacher_and_positive_otherwise():
    distiller = distillation.Distiller(tf.keras.Sequential([tf.keras.layers.Dense(3)]),
                                       tf.keras.Sequential([tf.keras.layers.Dense(3)]),
                                       teacher_probabilities=True, student_probabilities=True)
    distiller.compile(tf.keras.optimizers.Adam(), hard_loss="sparse_categorical_crossentropy",
                      alpha=0.1, temperature=4.0)
    p = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert float(distiller.distillation_loss(p, p)) == pytest.approx(0.0, abs=1e-6)
    q = tf.constant([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1]])
    assert float(distiller.distillation_loss(p, q)) > 0.1


def test_distilled_student_follows_the_teacher_better_than_an_untrained_student(trained_cnn, digits):
    student = small_cnn(width=2, name="student", seed=1)
    untrained_agreement = _agreement(trained_cnn, student, digits)
    compile_sparse(student, 3e-3)
    assert distillation.count_parameters(student) * 4 <= distillation.count_parameters(trained_cnn)
    distillation.distill(trained_cnn, student, train_batches(digits), hard_loss=student.loss,
                         learning_rate=3e-3, epochs=3, alpha=0.1, temperature=4.0)
    assert _agreement(trained_cnn, student, digits) > max(0.5, untrained_agreement + 0.3)


def _agreement(teacher, student, digits):
    images, _ = digits["eval"]
    return float(np.mean(np.argmax(teacher.predict(images, verbose=0), -1)
                         == np.argmax(student.predict(images, verbose=0), -1)))


def test_flattening_a_nested_backbone_keeps_the_function_exactly():
    from visionpipe.models import backbones
    from visionpipe.core.config import ModelConfig

    backbone = backbones.build_backbone(ModelConfig(image_size=16, width=4, squeeze_excite=True))
    inputs = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(x))
    flat = qat.flatten_nested(model)
    assert not any(isinstance(layer, tf.keras.Model) for layer in flat.layers)
    images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(flat(images).numpy(), model(images).numpy(), rtol=1e-6, atol=1e-6)


def test_quantization_aware_training_converts_to_an_accurate_int8_tflite(trained_cnn, digits):
    qat_model = qat.train_quantization_aware(trained_cnn, train_batches(digits), _compile_fine_tune,
                                             epochs=1)
    assert any("quantize" in type(layer).__name__.lower() for layer in qat_model.layers)
    representative = tflite_convert.representative_dataset(digits["train"][0], 32)
    model = TFLiteModel(model_content=tflite_convert.convert(qat_model, "int8", representative))
    assert model.input_dtype == np.int8 and model.output_dtypes == [np.int8]
    images, labels = digits["eval"]
    assert top1_accuracy(model, [(images, labels)]) >= keras_accuracy(trained_cnn, digits) - 0.03


def test_mixup_hard_loss_is_the_cross_entropy_against_the_blended_labels():
    distiller = distillation.Distiller(tf.keras.Sequential([tf.keras.layers.Dense(3)]),
                                       tf.keras.Sequential([tf.keras.layers.Dense(3)]),
                                       teacher_probabilities=True, student_probabilities=True)
    distiller.compile(tf.keras.optimizers.Adam(), hard_loss="sparse_categorical_crossentropy",
                      mixup_alpha=1.0)
    outputs = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    labels = tf.constant([0, 2, 1])
    lam = tf.constant([0.25, 1.0, 0.6])
    partner = tf.constant([1, 0, 0])
    blended = (lam[:, None] * tf.one_hot(labels, 3)
               + (1 - lam[:, None]) * tf.one_hot(tf.gather(labels, partner), 3))
    expected = tf.keras.losses.CategoricalCrossentropy()(blended, outputs)
    got = distiller._hard_loss(labels, outputs, lam, partner)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    # without MixUp: the batch mean (a loss named by a string is reduced, not summed)
    plain = tf.keras.losses.SparseCategoricalCrossentropy()(labels, outputs)
    assert float(distiller._hard_loss(labels, outputs)) == pytest.approx(float(plain), rel=1e-5)


def test_mixup_blends_each_image_with_a_partner_of_the_same_batch():
    distiller = distillation.Distiller(tf.keras.Sequential([tf.keras.layers.Dense(3)]),
                                       tf.keras.Sequential([tf.keras.layers.Dense(3)]),
                                       teacher_probabilities=True, student_probabilities=True)
    distiller.compile(tf.keras.optimizers.Adam(), hard_loss="mse", mixup_alpha=0.5)
    images = tf.reshape(tf.range(8, dtype=tf.float32) * 10.0, [8, 1, 1, 1])
    mixed, lam, partner = distiller._mixup(images)
    lam, partner = lam.numpy(), partner.numpy()
    assert np.all((lam >= 0) & (lam <= 1)) and sorted(partner) == list(range(8))
    expected = lam * images.numpy().ravel() + (1 - lam) * images.numpy().ravel()[partner]
    np.testing.assert_allclose(mixed.numpy().ravel(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="mixup_alpha"):
        distiller.compile(tf.keras.optimizers.Adam(), hard_loss="mse", mixup_alpha=-1.0)


def test_mixup_blends_are_reproducible_per_step_and_differ_between_steps():
    def blends(seed, step):
        distiller = distillation.Distiller(tf.keras.Sequential([tf.keras.layers.Dense(3)]),
                                           tf.keras.Sequential([tf.keras.layers.Dense(3)]),
                                           teacher_probabilities=True, student_probabilities=True)
        distiller.compile(tf.keras.optimizers.Adam(), hard_loss="mse", mixup_alpha=0.5,
                          mixup_seed=seed)
        distiller.optimizer.iterations.assign(step)
        tf.random.set_seed(step + 17)  # stateful draws would follow this; stateless ones must not
        mixed, lam, partner = distiller._mixup(tf.reshape(tf.range(16.0), [16, 1, 1, 1]))
        return np.concatenate([mixed.numpy().ravel(), lam.numpy(), partner.numpy()])

    np.testing.assert_array_equal(blends(0, 5), blends(0, 5))
    assert not np.array_equal(blends(0, 5), blends(0, 6))
    assert not np.array_equal(blends(0, 5), blends(1, 5))


def _kl_to_teacher(teacher, student, images):
    p = np.clip(teacher.predict(images, verbose=0), 1e-7, 1)
    q = np.clip(student.predict(images, verbose=0), 1e-7, 1)
    return float(np.mean(np.sum(p * np.log(p / q), axis=-1)))


def test_function_matching_student_matches_the_teacher_better_than_one_trained_alone(
        trained_cnn, digits):
    """Same student, same data, same steps and the same augmentation: the student distilled
    with MixUp inputs ends closer to the teacher's outputs on held-out images than the one
    trained on the hard labels alone, and much closer than before it was trained."""
    def augment(images, labels):  # a stand-in for the Trainer's augmentation
        return tf.roll(images, shift=tf.random.uniform([], -1, 2, tf.int32), axis=2), labels

    batches = train_batches(digits)
    epochs, steps = 4, int(tf.data.experimental.cardinality(batches))
    alone = small_cnn(width=2, name="alone", seed=1)
    # distill() decays the learning rate with a cosine over the run: so does the baseline
    compile_sparse(alone, tf.keras.optimizers.schedules.CosineDecay(
        3e-3, decay_steps=epochs * steps, alpha=0.01))
    alone.fit(batches.map(augment), epochs=epochs, verbose=0)

    student = small_cnn(width=2, name="student", seed=1)
    compile_sparse(student, 3e-3)
    images = digits["eval"][0]
    before = _kl_to_teacher(trained_cnn, student, images)
    distillation.distill(trained_cnn, student, batches, hard_loss=student.loss,
                         learning_rate=3e-3, epochs=epochs, alpha=0.1, temperature=4.0,
                         augment_batches=lambda dataset: dataset.map(augment))
    after = _kl_to_teacher(trained_cnn, student, images)
    assert after < 0.75 * before, (after, before)
    alone_kl = _kl_to_teacher(trained_cnn, alone, images)
    assert after < alone_kl, (after, alone_kl)


def test_distillation_options_are_validated_by_key():
    from visionpipe.core.config import ConfigError, OptimizeConfig

    OptimizeConfig(distill_mixup_alpha=0.0, distill_augment=False).validate()
    with pytest.raises(ConfigError, match=r"optimize\.distill_mixup_alpha: must be >= 0"):
        OptimizeConfig(distill_mixup_alpha=-0.5).validate()
    with pytest.raises(ConfigError, match=r"optimize\.distill_temperature"):
        OptimizeConfig(distill_temperature=0).validate()


def _head_model(bias, activation="softmax", name="teacher"):
    """Input -> Dense (logits = bias, the kernel is zero) -> Activation: a stand-in head."""
    inputs = tf.keras.Input((2,))
    dense = tf.keras.layers.Dense(len(bias), kernel_initializer="zeros",
                                  bias_initializer=tf.keras.initializers.Constant(bias), name="logits")
    outputs = tf.keras.layers.Activation(activation, name="probabilities")(dense(inputs))
    return tf.keras.Model(inputs, outputs, name=name)


def test_dark_knowledge_of_a_confident_teacher_survives_when_its_probabilities_underflow():
    """Logits 120 / 20 / 0: in float32 the wrong classes' probabilities underflow to 0, so
    log-probabilities cannot tell them apart; the Distiller reads the logits before the
    softmax layer, and the tempered targets keep class 1 far above class 2."""
    teacher = _head_model([120.0, 20.0, 0.0])
    images = tf.zeros([1, 2])
    probabilities = teacher(images).numpy()[0]
    assert probabilities[1] == probabilities[2] == 0.0  # nothing left to rank in the outputs
    view = distillation.OutputView(teacher, probabilities=True)
    logits, outputs = view(images, training=False)
    np.testing.assert_allclose(logits.numpy()[0], [120.0, 20.0, 0.0])
    np.testing.assert_allclose(outputs.numpy(), teacher(images).numpy())
    tempered = tf.nn.softmax(logits / 20.0).numpy()[0]
    assert tempered[1] > 2.5 * tempered[2] > 0


def test_multilabel_heads_are_distilled_per_label_with_the_binary_kl():
    teacher, student = _head_model([3.0, -2.0], "sigmoid"), _head_model([0.0, 0.0], "sigmoid", "student")
    distiller = distillation.Distiller(teacher, student, teacher_probabilities=False,
                                       student_probabilities=False)
    distiller.compile(tf.keras.optimizers.Adam(), hard_loss="binary_crossentropy", temperature=2.0)
    assert distiller.student_view.kind == "sigmoid"
    z = tf.constant([[3.0, -2.0]])
    assert float(distiller.distillation_loss(z, z)) == pytest.approx(0.0, abs=1e-6)
    p, q = tf.sigmoid(z / 2.0).numpy(), 0.5
    expected = np.mean(p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))) * 4.0
    assert float(distiller.distillation_loss(z, tf.zeros_like(z))) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="heads differ"):
        distillation.Distiller(teacher, _head_model([0.0, 0.0], "softmax", "student"),
                               teacher_probabilities=False, student_probabilities=True)


def test_pruning_reaches_its_target_early_enough_to_fine_tune_at_the_target_sparsity():
    for total in (2, 3, 10, 58, 470):
        steps = pruning.schedule_steps(total)
        assert 0 <= steps["end_step"] < total and steps["end_step"] % steps["frequency"] == 0
        if total >= 10:  # a third of the fine-tune is left at the final sparsity
            assert total - steps["end_step"] >= total // 3
    with pytest.raises(ValueError, match="at least 2 fine-tune steps"):
        pruning.schedule_steps(1)


def test_distilling_with_only_the_hard_loss_trains_exactly_like_the_student_alone(trained_cnn, digits):
    """alpha=1 leaves only the labels: on the same shuffled batches, schedule and initial
    weights the distilled student must end with the alone student's weights, bit for bit (so
    the benchmark's paired runs differ by the distillation loss and nothing else)."""
    images, labels = digits["train"]

    def batches():  # one dataset object per run: iterating one advances its shuffle seeds
        return tf.data.Dataset.from_tensor_slices(
            (images[:256], np.eye(NUM_CLASSES, dtype=np.float32)[labels[:256]])).shuffle(
            256, seed=3).batch(32)

    epochs, steps = 2, 8
    alone = small_cnn(width=2, name="alone", seed=1)
    alone.compile(tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(
        3e-3, decay_steps=epochs * steps, alpha=0.01)), tf.keras.losses.CategoricalCrossentropy())
    alone.fit(batches().repeat(), epochs=epochs, steps_per_epoch=steps, verbose=0)
    student = small_cnn(width=2, name="student", seed=1)
    distillation.distill(trained_cnn, student, batches(),
                         hard_loss=tf.keras.losses.CategoricalCrossentropy(),
                         learning_rate=3e-3, epochs=epochs, alpha=1.0)
    for a, s in zip(alone.get_weights(), student.get_weights()):
        np.testing.assert_array_equal(a, s)


def test_distilling_with_mixup_gives_the_same_student_whatever_the_global_random_state(
        trained_cnn, digits):
    images, labels = digits["train"]

    def run(global_seed):
        batches = tf.data.Dataset.from_tensor_slices((images[:128], labels[:128])).batch(32)
        student = small_cnn(width=2, name="student", seed=1)
        tf.random.set_seed(global_seed)  # the blends depend on the run's own seed and step only
        distillation.distill(trained_cnn, student, batches, hard_loss="sparse_categorical_crossentropy",
                             learning_rate=3e-3, epochs=2, mixup_alpha=0.4)
        return student.get_weights()

    for a, b in zip(run(1), run(2)):
        np.testing.assert_array_equal(a, b)
