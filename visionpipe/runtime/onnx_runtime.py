"""Run a VisionPipe model.onnx (converted from ``serving_tensor``) with onnxruntime on CPU."""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

import numpy as np


class OnnxModel:
    """An ONNX image model with one float32 pixel input ``[N, h, w, 3]`` in [0, 255].

    ``predict`` returns {output name: array}: the names of the signature it was converted
    from (strings, e.g. class names, come back as Python ``str`` objects)."""

    def __init__(self, path: str, num_threads: Optional[int] = None):
        import onnxruntime

        # errors only: tf2onnx writes nearest Resize with the deprecated (and still honoured)
        # tf_half_pixel_for_nn mode, which onnxruntime warns about on every session
        onnxruntime.set_default_logger_severity(3)
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options,
                                                    providers=["CPUExecutionProvider"])
        (self._input,) = self.session.get_inputs()

    @property
    def output_names(self) -> List[str]:
        return [output.name for output in self.session.get_outputs()]

    @property
    def image_size(self) -> Tuple[int, int]:
        height, width = self._input.shape[1:3]
        return int(height), int(width)

    def predict(self, images: np.ndarray, batch_size: int = 32) -> Dict[str, np.ndarray]:
        """float32 [N, h, w, 3] pixels in [0, 255] -> {output name: [N, ...]}."""
        images = np.asarray(images, np.float32)
        parts: Dict[str, List[np.ndarray]] = {}
        for start in range(0, len(images), batch_size):
            values = self.session.run(None, {self._input.name: images[start:start + batch_size]})
            for name, value in zip(self.output_names, values):
                parts.setdefault(name, []).append(value)
        return {name: np.concatenate(values) for name, values in parts.items()}

    def median_latency_ms(self, runs: int = 50, warmup: int = 5, seed: int = 0) -> float:
        """Median wall time of one batch-1 run, in milliseconds."""
        image = np.random.default_rng(seed).uniform(
            0, 255, (1, *self.image_size, 3)).astype(np.float32)
        feed = {self._input.name: image}
        for _ in range(warmup):
            self.session.run(None, feed)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.session.run(None, feed)
            times.append(time.perf_counter() - start)
        return float(np.median(times) * 1e3)
