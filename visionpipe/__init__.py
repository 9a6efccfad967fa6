"""VisionPipe: a TFX pipeline for convolutional vision models.

tfmot and TFX need Keras 2, so TF_USE_LEGACY_KERAS must be set before TensorFlow is
imported anywhere in the process. Every VisionPipe module lives under this package, so
importing any of them runs this first.
"""
import os
import sys

if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    raise ImportError(
        "TensorFlow was imported before visionpipe without TF_USE_LEGACY_KERAS=1; "
        "set TF_USE_LEGACY_KERAS=1 in the environment or import visionpipe first."
    )
os.environ["TF_USE_LEGACY_KERAS"] = "1"
# C++ errors stay visible (level 2 hides INFO and WARNING); the import-time CUDA plugin
# lines that are not errors are dropped by _quiet_import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from visionpipe import _quiet_import  # noqa: E402

_quiet_import.install()

__version__ = "0.1.0"
