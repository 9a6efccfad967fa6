"""optimize.* on the embedder: pruning and quantization-aware training rewrite it (its
L2-normalisation layer included) and the results convert to TFLite embedders."""
import numpy as np
import pytest

import visionpipe  # noqa: F401
import tensorflow as tf
import keras_cv  # noqa: F401  (before tensorflow_model_optimization)

from visionpipe.core.config import load_config
from visionpipe.optimize import pruning, qat
from visionpipe.runtime import tflite_convert
from visionpipe.runtime.tflite_runtime import TFLiteModel
from visionpipe.tasks import get_task

DIM = 8


@pytest.fixture(scope="module")
def embedder():
    config = load_config(overrides=["task=embedding", "embedding.loss=multi_similarity",
                                    f"embedding.dim={DIM}", "model.image_size=16",
                                    "model.width=4"]).validate()
    task = get_task(config, ["a", "b", "c"])
    model = task.build_model()
    task.compile_model(model, 1e-2)
    images = tf.random.stateless_uniform([12, 16, 16, 3], seed=[3, 4], maxval=255.0)
    labels = tf.constant([0] * 4 + [1] * 4 + [2] * 4)
    batches = tf.data.Dataset.from_tensors((images, labels)).repeat(3)
    return task, model, batches, images


def test_pruned_embedder_reaches_the_target_sparsity_and_stays_unit_length(embedder):
    task, model, batches, images = embedder
    result = pruning.prune(model, batches, lambda m: task.compile_model(m, 1e-3), sparsity=0.5,
                           epochs=1)
    assert result.overall_sparsity == pytest.approx(0.5, abs=0.02)
    np.testing.assert_allclose(np.linalg.norm(result.model(images).numpy(), axis=1), 1.0, atol=1e-5)


def test_quantization_aware_embedder_converts_to_an_int8_tflite_embedder(embedder, tmp_path):
    task, model, batches, images = embedder
    qat_model = qat.train_quantization_aware(model, batches, lambda m: task.compile_model(m, 1e-3))
    flatbuffer = tflite_convert.convert(qat_model, "int8", lambda: ([images[i:i + 1]] for i in range(4)))
    path = tmp_path / "qat_int8.tflite"
    path.write_bytes(flatbuffer)
    out = TFLiteModel(str(path)).scores(images.numpy())
    assert out.shape == (12, DIM) and np.isfinite(out).all()
    assert np.all(np.linalg.norm(out, axis=1) > 0.5)  # dequantized, about unit length
