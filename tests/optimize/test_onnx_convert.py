"""ONNX conversion refuses what onnxruntime could not run: tf2onnx leaves unmapped ops in the
graph under their TensorFlow names, and the converter names them instead of writing a file."""
import pytest

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.runtime import onnx_convert


class _StringOps(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="pixels")])
    def serve(self, pixels):
        text = tf.strings.regex_replace(tf.strings.as_string(pixels), "0", "")
        return {"scores": tf.cast(tf.strings.length(text), tf.float32)}


def test_signature_with_ops_onnx_lacks_is_refused_naming_the_ops(tmp_path):
    module = _StringOps()
    tf.saved_model.save(module, str(tmp_path), signatures={
        onnx_convert.SIGNATURE: module.serve.get_concrete_function()})
    with pytest.raises(RuntimeError, match=r"without an ONNX equivalent .*'StaticRegexReplace', "
                                           r"'StringLength'"):
        onnx_convert.convert_saved_model(str(tmp_path))


def test_missing_signature_is_named(tmp_path):
    module = _StringOps()
    tf.saved_model.save(module, str(tmp_path), signatures={"other": module.serve.get_concrete_function()})
    with pytest.raises(ValueError, match=r"no signature 'serving_tensor' .*\['other'\]"):
        onnx_convert.convert_saved_model(str(tmp_path))
