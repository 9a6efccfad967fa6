"""Tiny real data (scikit-learn's digits, 16x16 RGB) and small trained models for the
optimization tests. Session-scoped: each model is trained once, in a few seconds."""
import numpy as np
import pytest

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models.preprocessing import normalization_layer
from visionpipe.optimize.optimizer import TaskHooks
from visionpipe.runtime.tflite_runtime import TFLiteModel, top1_accuracy

IMAGE_SIZE = 16
NUM_CLASSES = 10
OUTLIER = 1e4  # a constant channel this large blows up the int8 range of its tensor


def digits_pixels():
    """(images float32 [N, 16, 16, 3] in [0, 255], labels int [N]), dark ink on white."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = digits.images * (255.0 / 16.0)
    images = 255.0 - np.kron(ink, np.ones((2, 2)))
    images = np.repeat(images[..., None], 3, axis=-1).astype(np.float32)
    return images, digits.target.astype(np.int64)


@pytest.fixture(scope="session")
def digits():
    images, labels = digits_pixels()
    return {"train": (images[:1000], labels[:1000]), "eval": (images[1000:1400], labels[1000:1400])}


def compile_sparse(model, learning_rate):
    model.compile(tf.keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def small_cnn(width=8, outlier=False, name="digits_cnn", seed=0):
    """normalise -> conv -> [outlier expand -> select] -> conv -> pool -> softmax.

    With ``outlier`` two frozen 1x1 convs are inserted that are an exact identity in float:
    the first appends a channel that is the constant OUTLIER, the second drops it again. In
    int8 the first tensor's range is [0, OUTLIER], so its real channels quantize to zero."""
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="pixels")
    x = normalization_layer()(inputs)
    x = tf.keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="features")(x)
    if outlier:
        expand = np.zeros((1, 1, width, width + 1), np.float32)
        expand[0, 0, np.arange(width), np.arange(width)] = 1.0
        bias = np.zeros(width + 1, np.float32)
        bias[-1] = OUTLIER
        x = tf.keras.layers.Conv2D(width + 1, 1, name="outlier", trainable=False,
                                   kernel_initializer=tf.keras.initializers.Constant(expand),
                                   bias_initializer=tf.keras.initializers.Constant(bias))(x)
        select = np.zeros((1, 1, width + 1, width), np.float32)
        select[0, 0, np.arange(width), np.arange(width)] = 1.0
        x = tf.keras.layers.Conv2D(width, 1, name="select", trainable=False,
                                   kernel_initializer=tf.keras.initializers.Constant(select))(x)
    x = tf.keras.layers.Conv2D(width * 2, 3, strides=2, padding="same", activation="relu",
                               name="conv2")(x)
    x = tf.keras.layers.MaxPooling2D(name="pool")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    outputs = tf.keras.layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    return tf.keras.Model(inputs, outputs, name=name)


def train(model, data, epochs=3, learning_rate=3e-3):
    compile_sparse(model, learning_rate)
    images, labels = data["train"]
    model.fit(images, labels, epochs=epochs, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def trained_cnn(digits):
    return train(small_cnn(), digits)


@pytest.fixture(scope="session")
def outlier_cnn(digits):
    return train(small_cnn(outlier=True, name="outlier_cnn"), digits)


def keras_accuracy(model, data) -> float:
    images, labels = data["eval"]
    return float(np.mean(np.argmax(model.predict(images, verbose=0), -1) == labels))


def hooks_for(data, build_student=None) -> TaskHooks:
    images, labels = data["eval"]

    def evaluate_tflite(path):
        return {"accuracy": top1_accuracy(TFLiteModel(path), [(images, labels)])}

    return TaskHooks(evaluate_tflite=evaluate_tflite, gate_metric="accuracy",
                     compile_model=compile_sparse, tflite_metadata_kind="image_classifier",
                     build_student=build_student)


def train_batches(data, batch_size=32):
    images, labels = data["train"]
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
