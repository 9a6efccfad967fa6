"""The one preprocessing function: training, evaluation, every serving signature and the
TFLite runtime call these, so the model always sees the same input for the same image.

The model input is float32 pixels in [0, 255], resized to a square; the scaling to the
network's range happens in the model's first layer (``normalization_layer``), so it is part
of every export, TFLite included, and TFLite metadata declares mean 0 / std 1.
"""
import visionpipe  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

INPUT_MEAN = 127.5
INPUT_STD = 127.5


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """Encoded bytes (JPEG/PNG/GIF/BMP) -> uint8 [H, W, 3]."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_image(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8 or float [H, W, 3] -> float32 [S, S, 3] in [0, 255] (bilinear, no antialias)."""
    image = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size],
                            method="bilinear", antialias=False)
    return tf.clip_by_value(image, 0.0, 255.0)


def preprocess_image(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded bytes of one image -> float32 [S, S, 3] model input."""
    return resize_image(decode_image(encoded), image_size)


def preprocess_batch(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """A batch of encoded images (any sizes) -> float32 [N, S, S, 3]."""
    return tf.map_fn(lambda e: preprocess_image(e, image_size), encoded,
                     fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


def normalization_layer(name: str = "normalize") -> tf.keras.layers.Layer:
    """[0, 255] -> [-1, 1]; the first layer of every VisionPipe model."""
    return tf.keras.layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name=name)
