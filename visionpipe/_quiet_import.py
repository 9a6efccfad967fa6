"""Drop the CUDA plugin registration lines TensorFlow prints on import, nothing else.

Importing TensorFlow 2.16 logs ``E ... Unable to register cuFFT/cuDNN/cuBLAS factory`` (XLA and
TensorFlow each register the same CUDA plugins) from C++, straight to file descriptor 2, on
every import, GPU or not. Hiding them with ``TF_CPP_MIN_LOG_LEVEL=3`` would hide every real
C++ error too, so instead the import of the ``tensorflow`` package runs with fd 2 sent to a
temporary file, and everything but those lines is written back when the import ends.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

NOISE = re.compile(rb"Unable to register cu(FFT|DNN|BLAS) factory: Attempting to register factory"
                   rb"|All log messages before absl::InitializeLog\(\) is called are written to STDERR")


@contextlib.contextmanager
def filtered_stderr():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = b"".join(line for line in capture.read().splitlines(keepends=True)
                            if not NOISE.search(line))
            if kept:
                os.write(2, kept)


class _FilteringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr():
            self._loader.exec_module(module)

    def __getattr__(self, name):  # get_data, is_package, resource readers, ...
        return getattr(self._loader, name)


class _TensorFlowImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; the real finders locate the package
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteringLoader(spec.loader)
        return spec


def install() -> None:
    if "tensorflow" not in sys.modules and not any(
            isinstance(f, _TensorFlowImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TensorFlowImportFinder())
