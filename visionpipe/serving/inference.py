"""Predict, Classify and Regress on numpy tensors: the logic both front ends share.

The REST and gRPC layers only translate their wire formats to ``{input name: ndarray}`` and
back; model lookup, signature checks, limits, batching, deadlines and metrics live here, so the
two protocols cannot drift apart.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from visionpipe.serving import errors
from visionpipe.serving.batching import BatchScheduler, queue_key
from visionpipe.serving.metrics import ServerMetrics
from visionpipe.serving.model_manager import ModelManager
from visionpipe.serving.servable import (CLASSIFY_METHOD, REGRESS_METHOD, LoadedVersion, Signature,
                                         check_image_pixels)

CLASSIFY_INPUT = "inputs"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    version: Optional[int] = None
    label: Optional[str] = None
    signature_name: str = ""


@dataclasses.dataclass
class Limits:
    max_image_pixels: int = 4096 * 4096
    max_request_bytes: int = 64 * 1024 * 1024


def _dtype_name(dtype) -> str:
    return "string" if dtype.kind in "OSU" else dtype.name


def coerce_input(info, value: np.ndarray) -> np.ndarray:
    """Check a request tensor's dtype against the signature; strings become bytes objects."""
    want = info.dtype
    if want.name == "string":
        if value.dtype.kind not in "OSU":
            raise errors.invalid_argument(
                f"Expects arg {info.name!r} to be string but {_dtype_name(value.dtype)} is provided")
        if value.dtype.kind == "U":
            value = np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(value)
        return value.astype(object)
    if value.dtype.kind in "OSU":
        raise errors.invalid_argument(
            f"Expects arg {info.name!r} to be {want.name} but string is provided")
    if value.dtype != np.dtype(want.as_numpy_dtype):  # TF Serving never casts: neither do we
        raise errors.invalid_argument(
            f"Expects arg {info.name!r} to be {want.name} but {value.dtype.name} is provided")
    return value


class InferenceService:
    def __init__(self, manager: ModelManager, metrics: ServerMetrics, limits: Limits,
                 scheduler: Optional[BatchScheduler] = None):
        self.manager = manager
        self.metrics = metrics
        self.limits = limits
        self.scheduler = scheduler

    # --- lookups ------------------------------------------------------------------------
    def resolve(self, spec: ModelSpec) -> LoadedVersion:
        return self.manager.get(spec.name, spec.version, spec.label)

    def _signature(self, servable: LoadedVersion, spec: ModelSpec, method: Optional[str]) -> Signature:
        signature = servable.signature(spec.signature_name)
        if method and signature.method_name != method:
            kind = "classification" if method == CLASSIFY_METHOD else "regression"
            raise errors.invalid_argument(
                f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}")
        return signature

    # --- the three inference APIs --------------------------------------------------------
    def predict(self, spec: ModelSpec, inputs: Mapping[str, np.ndarray],
                output_filter: Sequence[str] = (), deadline: Optional[float] = None
                ) -> Tuple[LoadedVersion, Signature, Dict[str, np.ndarray]]:
        servable = self.resolve(spec)
        signature = self._signature(servable, spec, None)
        return servable, signature, self.predict_on(servable, signature, inputs, output_filter, deadline)

    def predict_on(self, servable: LoadedVersion, signature: Signature,
                   inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = (),
                   deadline: Optional[float] = None) -> Dict[str, np.ndarray]:
        """Predict on an already resolved version (it stays usable even if unloaded meanwhile)."""
        unknown = [k for k in output_filter if k not in signature.outputs]
        if unknown:
            raise errors.invalid_argument(f"output tensor alias not found in signature: {unknown[0]}")
        outputs = self.run(servable, signature, inputs, deadline)
        if output_filter:
            outputs = {k: outputs[k] for k in output_filter}
        return outputs

    def classify(self, spec: ModelSpec, serialized_examples: List[bytes],
                 deadline: Optional[float] = None):
        """-> (servable, signature, [[(label, score), ...] per example])."""
        servable = self.resolve(spec)
        signature = self._signature(servable, spec, CLASSIFY_METHOD)
        return servable, signature, self.classify_on(servable, signature, serialized_examples, deadline)

    def classify_on(self, servable: LoadedVersion, signature: Signature,
                    serialized_examples: List[bytes], deadline: Optional[float] = None):
        outputs = self.run(servable, signature, self._examples_input(signature, serialized_examples),
                           deadline)
        classes, scores = outputs.get("classes"), outputs.get("scores")
        if classes is None and scores is None:
            raise errors.invalid_argument("Classification signature has neither 'classes' nor 'scores' output")
        results = []
        for i in range(len(serialized_examples)):
            row_classes = classes[i] if classes is not None else [b""] * len(scores[i])
            row_scores = scores[i] if scores is not None else [0.0] * len(classes[i])
            results.append([(c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c), float(s))
                            for c, s in zip(row_classes, row_scores)])
        return results

    def regress(self, spec: ModelSpec, serialized_examples: List[bytes],
                deadline: Optional[float] = None):
        """-> (servable, signature, [value per example])."""
        servable = self.resolve(spec)
        signature = self._signature(servable, spec, REGRESS_METHOD)
        return servable, signature, self.regress_on(servable, signature, serialized_examples, deadline)

    def regress_on(self, servable: LoadedVersion, signature: Signature,
                   serialized_examples: List[bytes], deadline: Optional[float] = None):
        outputs = self.run(servable, signature, self._examples_input(signature, serialized_examples),
                           deadline)
        if "outputs" not in outputs:
            raise errors.invalid_argument("Regression signature has no 'outputs' output")
        values = outputs["outputs"].reshape(len(serialized_examples), -1)
        if values.shape[1] != 1:
            raise errors.invalid_argument("Regression output must hold one value per example")
        return [float(v) for v in values[:, 0]]

    def multi_inference(self, tasks: Sequence[Tuple[ModelSpec, str]], serialized_examples: List[bytes],
                        deadline: Optional[float] = None):
        """Classify and/or regress tasks on one input, as TF Serving's MultiInference.

        ``tasks`` are (model spec, method name) pairs. The first task's spec picks the version;
        every task must name the same model, a distinct signature and a method matching its
        signature; all are checked before any runs. -> (servable, [(signature, method, results)]).
        """
        if not tasks or not tasks[0][0].name:  # TF Serving's answer when looking up the version
            raise errors.invalid_argument("ModelSpec has no name specified.")
        servable = self.resolve(tasks[0][0])
        checked, seen = [], set()
        for spec, method in tasks:
            if not spec.name:
                raise errors.invalid_argument("Found ModelSpec with an empty model name.")
            if spec.name != tasks[0][0].name:
                raise errors.invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name.")
            self._check_same_version(servable, spec)
            signature_name = spec.signature_name or "serving_default"
            if signature_name in seen:
                raise errors.invalid_argument(f"Duplicate evaluation of signature: {signature_name}")
            seen.add(signature_name)
            if signature_name not in servable.signatures:
                raise errors.invalid_argument(
                    f"Requested signature not found in model graph: {signature_name}")
            if method not in _TASK_RUNNERS:
                raise errors.unimplemented(f"Unsupported signature method_name: {method}")
            checked.append((self._signature(servable, spec, method), method))
        return servable, [(signature, method, _TASK_RUNNERS[method](self, servable, signature,
                                                                    serialized_examples, deadline))
                          for signature, method in checked]

    def _check_same_version(self, servable: LoadedVersion, spec: ModelSpec) -> None:
        """TF Serving answers every task from the first task's version and ignores the versions
        the others name; a task naming a different version is refused here rather than answered
        by a version it did not ask for."""
        asked = spec.version
        if spec.label:
            asked = self.manager.label_version(spec.name, spec.label)
        if asked is not None and asked != servable.version:
            raise errors.invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model version: "
                f"a task asks for version {asked}, the first task's spec resolved to {servable.version}")

    def _examples_input(self, signature: Signature, serialized: List[bytes]) -> Dict[str, np.ndarray]:
        if list(signature.inputs) != [CLASSIFY_INPUT]:
            raise errors.invalid_argument(
                f"Expected one input Tensor named {CLASSIFY_INPUT!r}, signature has {sorted(signature.inputs)}")
        if not serialized:
            raise errors.invalid_argument("Input is empty: no examples")
        array = np.empty(len(serialized), dtype=object)
        array[:] = serialized
        return {CLASSIFY_INPUT: array}

    # --- execution ----------------------------------------------------------------------
    def run(self, servable: LoadedVersion, signature: Signature, inputs: Mapping[str, np.ndarray],
            deadline: Optional[float]) -> Dict[str, np.ndarray]:
        expected, sent = set(signature.inputs), set(inputs)
        if expected != sent:
            raise errors.invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{', '.join(sorted(sent))}}}) != len({{{', '.join(sorted(expected))}}}). "
                f"Sent extra: {{{', '.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{', '.join(sorted(expected - sent))}}}.")
        checked = {}
        for name, value in inputs.items():
            info = signature.inputs[name]
            value = coerce_input(info, np.asarray(value) if not isinstance(value, np.ndarray) else value)
            info.check(value, "input")
            if info.dtype.name == "string":
                check_image_pixels(value, self.limits.max_image_pixels, name)
            checked[name] = value
        if deadline is not None and time.monotonic() >= deadline:
            raise errors.deadline_exceeded()
        batchable = self.scheduler is not None and all(
            v.ndim >= 1 and (i.shape is None or (len(i.shape) >= 1 and i.shape[0] is None))
            for v, i in ((checked[n], signature.inputs[n]) for n in checked))
        if not batchable:
            return servable.run(signature, checked)
        model_name = servable.model_name
        return self.scheduler.run(
            queue_key(id(servable), signature.name, checked), checked,
            lambda batch: servable.run(signature, batch), deadline,
            on_batch=lambda rows, padded: self.metrics.observe_batch(model_name, rows, padded))

    def timed(self, api: str, spec: ModelSpec):
        """Context manager recording a request's status and latency."""
        return _Timed(self.metrics, api, spec, self.manager.has_model(spec.name))


_TASK_RUNNERS = {CLASSIFY_METHOD: InferenceService.classify_on, REGRESS_METHOD: InferenceService.regress_on}


class _Timed:
    def __init__(self, metrics: ServerMetrics, api: str, spec: ModelSpec, known_model: bool):
        self.metrics, self.api, self.spec = metrics, api, spec
        self.known_model = known_model
        self.start = time.perf_counter()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        status = "OK" if exc is None else (exc.code_name if isinstance(exc, errors.ServingError)
                                           else "INTERNAL")
        # Names from failed requests are not label values: a scan of random model or signature
        # names would otherwise grow the metric cardinality without bound.
        model = self.spec.name if self.known_model else "<unknown>"
        signature = (self.spec.signature_name or "serving_default") if exc is None else "<error>"
        self.metrics.observe_request(model, self.api, signature, status,
                                     time.perf_counter() - self.start)
        return False
