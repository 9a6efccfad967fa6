"""TensorFlow's import-time CUDA plugin lines are dropped; every other stderr line is kept."""
import os
import subprocess
import sys

from visionpipe._quiet_import import filtered_stderr

PLUGIN_LINE = (b"2026-12-02 E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:10575] Unable "
               b"to register cuDNN factory: Attempting to register factory for plugin cuDNN when "
               b"one has already been registered\n")


def test_filter_drops_the_plugin_lines_and_keeps_a_real_error(capfd):
    with filtered_stderr():
        os.write(2, PLUGIN_LINE)
        os.write(2, b"E tensorflow/core/kernels/foo.cc:1] a real error\n")
    assert capfd.readouterr().err == "E tensorflow/core/kernels/foo.cc:1] a real error\n"


def test_importing_tensorflow_after_visionpipe_prints_no_plugin_registration_line():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    proc = subprocess.run([sys.executable, "-c", "import visionpipe, tensorflow"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Unable to register" not in proc.stderr
