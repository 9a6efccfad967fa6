"""The embedder: the shared backbone (``visionpipe.models.backbones``, layer ``backbone``, so
``model.weights`` transfers a classifier's backbone), global average pooling, a linear
projection to ``embedding.dim`` and L2 normalisation (output ``embedding``)."""
from __future__ import annotations

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models import backbones
from visionpipe.tasks.embedding.losses import ArcFaceCentres

EMBEDDING_LAYER = "embedding"
CENTRES_LAYER = "arcface_centres"


@tf.keras.utils.register_keras_serializable(package="visionpipe")
class L2Normalize(tf.keras.layers.Layer):
    def call(self, inputs):
        return tf.math.l2_normalize(tf.cast(inputs, tf.float32), axis=-1, epsilon=1e-12)


def build_embedder(task) -> tf.keras.Model:
    cfg, ecfg = task.config.model, task.config.embedding
    inputs, x, task.weights_loaded = backbones.pooled_backbone(cfg, task.image_size, cfg.pooling)
    x = tf.keras.layers.Dense(ecfg.dim, name="projection")(x)
    x = L2Normalize(dtype="float32", name=EMBEDDING_LAYER)(x)
    if ecfg.loss == "arcface":
        x = ArcFaceCentres(task.num_classes, dtype="float32", name=CENTRES_LAYER)(x)
    return tf.keras.Model(inputs, x, name=f"embedding_{cfg.backbone}")
