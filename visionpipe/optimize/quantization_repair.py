"""Selective int8 quantization: find the layers whose int8 error is largest with TFLite's
quantization debugger and keep them in float until the int8 model is accurate enough.

The debugger runs every quantized op next to a float copy fed with the same (dequantized)
inputs, so its per-layer error is local to the layer, not accumulated from earlier ones.
The error we rank by is the per-channel relative RMSE: a tensor whose range is blown up by
an outlier channel quantizes its ordinary channels to zero, which the usual RMSE/scale does
not show (the error is small relative to the huge scale) but a relative error near 1 does.

Keeping a tensor in float only helps when its consumers read it in float too (otherwise they
re-quantize it with the same blown-up range), so a layer is kept in float together with its
consumers.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
from typing import Callable, Dict, List, Optional

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.runtime import tflite_convert

_NUMERIC_VERIFY = "NumericVerify"


def per_channel_relative_rmse(float_values: np.ndarray, quantized: np.ndarray, scale: float,
                              zero_point: int) -> float:
    """Mean over channels of RMSE(dequantized - float) / RMS(float); channels that are all
    zero in float are skipped."""
    channels = float_values.shape[-1] if float_values.ndim else 1
    reference = float_values.reshape(-1, channels).astype(np.float64)
    dequantized = (quantized.reshape(-1, channels).astype(np.float64) - zero_point) * scale
    reference_rms = np.sqrt(np.mean(reference ** 2, axis=0))
    error_rms = np.sqrt(np.mean((dequantized - reference) ** 2, axis=0))
    active = reference_rms > 1e-12
    if not active.any():
        return 0.0
    return float(np.mean(error_rms[active] / reference_rms[active]))


@dataclasses.dataclass
class LayerError:
    tensor_name: str
    op_name: str
    relative_rmse: float
    rmse_over_scale: float
    scale: float
    consumers: List[str]

    def to_dict(self) -> Dict:
        return {k: (round(v, 6) if isinstance(v, float) else v)
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass
class RepairResult:
    model: bytes
    metric: float
    float_layers: List[str]  # tensor names kept in float (denylisted nodes)
    repaired_for: List[LayerError]  # the ranked layers that caused each float layer group
    worst_layers: List[LayerError]  # the top of the ranking, for the report
    attempts: List[Dict]  # [{float_layers, metric}] per conversion tried


def _debug_options(denylisted_nodes: Optional[List[str]] = None):
    return tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"relative_rmse": per_channel_relative_rmse},
        denylisted_nodes=denylisted_nodes or None,
        fully_quantize=True)  # int8 input and output, as the plain int8 conversion


def rank_layers(debugger) -> List[LayerError]:
    """Layers of a debugger that has ``run()``, worst relative error first."""
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = list(csv.DictReader(io.StringIO(dump.getvalue())))
    names_by_index = {int(row["tensor_idx"]): row["tensor_name"] for row in rows}
    ops = tf.lite.Interpreter(model_content=debugger.quant_model)._get_ops_details()  # noqa: SLF001
    layers = []
    for row in rows:
        index = int(row["tensor_idx"])
        consumers = [names_by_index[int(out)] for op in ops
                     if op["op_name"] != _NUMERIC_VERIFY and index in op["inputs"]
                     for out in op["outputs"] if int(out) in names_by_index]
        scale = float(row["scale"])
        mse = float(row["mean_squared_error"])
        layers.append(LayerError(
            tensor_name=row["tensor_name"], op_name=row["op_name"],
            relative_rmse=float(row["relative_rmse"]),
            rmse_over_scale=math.sqrt(mse) / scale if scale > 0 else float("nan"),
            scale=scale, consumers=consumers))
    return sorted(layers, key=lambda layer: -layer.relative_rmse)


def repair_int8(model: tf.keras.Model, representative: tflite_convert.RepresentativeDataset,
                evaluate: Callable[[bytes], float], baseline_metric: float, max_drop: float,
                max_float_layers: int, int8_model: Optional[bytes] = None,
                int8_metric: Optional[float] = None, report_top: int = 5) -> RepairResult:
    """Keep the worst layers in float, one ranked layer (plus consumers) at a time, until
    ``baseline_metric - evaluate(model) <= max_drop`` or more than ``max_float_layers``
    tensors would be float. Returns the best attempt (highest metric) and the ranking.

    ``evaluate`` maps TFLite bytes to the task metric (higher is better)."""
    converter = tflite_convert.make_converter(model, "int8", representative)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative, debug_options=_debug_options())
    debugger.run()
    ranking = rank_layers(debugger)

    if int8_model is None:
        int8_model = tflite_convert.convert(model, "int8", representative)
    if int8_metric is None:
        int8_metric = evaluate(int8_model)
    best = RepairResult(model=int8_model, metric=int8_metric, float_layers=[], repaired_for=[],
                        worst_layers=ranking[:report_top],
                        attempts=[{"float_layers": [], "metric": int8_metric}])
    float_layers: List[str] = []
    repaired_for: List[LayerError] = []
    for layer in ranking:
        if baseline_metric - best.metric <= max_drop:
            break
        if layer.tensor_name in float_layers:
            continue
        added = [name for name in [layer.tensor_name, *layer.consumers] if name not in float_layers]
        if len(float_layers) + len(added) > max_float_layers:
            break
        float_layers = float_layers + added
        repaired_for = repaired_for + [layer]
        debugger.options = _debug_options(float_layers)
        candidate = debugger.get_nondebug_quantized_model()
        metric = evaluate(candidate)
        best.attempts.append({"float_layers": list(float_layers), "metric": metric})
        if metric > best.metric:
            best.model, best.metric = candidate, metric
            best.float_layers, best.repaired_for = list(float_layers), list(repaired_for)
    return best
