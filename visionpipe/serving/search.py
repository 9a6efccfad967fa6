"""``POST /v1/models/{name}[/versions/N]:search``: VisionPipe's extension of the TF Serving
REST API (TF Serving has no such verb) for embedding models pushed with a faiss index.

Body: ``{"instances": [{"b64": <encoded image>}, ...], "k": 5}`` (the images are embedded
by the version's ``serving_default``) or ``{"embeddings": [[...], ...], "k": 5}``.
Answer: ``{"results": [[{"id", "name", "source", "score"}, ...] per query], "model_spec"}``.

The index searched is the one pushed in the same version folder (``index/``); a version
without one, or whose index records another model's fingerprint (``runtime.vector_index``),
is refused by name (NOT_FOUND / FAILED_PRECONDITION), never answered from a stale index.
"""
from __future__ import annotations

import os
import threading
from typing import Dict, Tuple

import numpy as np

from visionpipe.runtime import vector_index
from visionpipe.serving import errors, rest_json

DEFAULT_K = 5
MAX_K = 1000
#: the signature output a search embeds its query images with (or a signature's only output)
QUERY_OUTPUT = "embedding"
_cache: Dict[Tuple[str, int, str], vector_index.LoadedIndex] = {}
_lock = threading.Lock()


def index_of(servable) -> vector_index.LoadedIndex:
    """The faiss index pushed with ``servable`` (a LoadedVersion), fingerprint-checked once."""
    folder = os.path.join(str(servable.export_dir), vector_index.INDEX_DIR)
    key = (servable.model_name, int(servable.version), str(servable.export_dir))
    with _lock:
        if key in _cache:
            return _cache[key]
    where = f"model {servable.model_name!r} version {servable.version}"
    if not os.path.isdir(folder):
        raise errors.not_found(f"{where} has no similarity-search index ({folder} is missing)")
    try:
        loaded = vector_index.load(folder, vector_index.model_fingerprint(servable.export_dir))
    except vector_index.IndexMismatch as err:
        raise errors.ServingError(errors.grpc.StatusCode.FAILED_PRECONDITION,
                                  f"{where}: {err}") from None
    with _lock:
        _cache[key] = loaded
    return loaded


def search(service, spec, body: dict, deadline: float) -> dict:
    servable = service.resolve(spec)
    index = index_of(servable)
    k = body.get("k", DEFAULT_K)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise errors.invalid_argument(f"'k' must be an integer in [1, {MAX_K}], got {k!r}")
    if "embeddings" in body:
        queries = np.asarray(body["embeddings"], np.float32) if body["embeddings"] else None
        if queries is None or queries.ndim != 2 or queries.shape[1] != index.index.d:
            raise errors.invalid_argument(
                f"'embeddings' must be a non-empty list of {index.index.d}-vectors")
    elif "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances or not all(
                rest_json.is_b64(i) for i in instances):
            raise errors.invalid_argument("'instances' must be a non-empty list of {\"b64\": ...}")
        signature = servable.signature(spec.signature_name)
        output = QUERY_OUTPUT if QUERY_OUTPUT in signature.outputs else (
            next(iter(signature.outputs)) if len(signature.outputs) == 1 else None)
        if output is None or len(signature.inputs) != 1:
            raise errors.invalid_argument(
                f"signature {signature.name!r} has no {QUERY_OUTPUT!r} output from one image input")
        (name,) = signature.inputs
        images = np.array([rest_json.decode_b64(i) for i in instances], dtype=object)
        outputs = service.predict_on(servable, signature, {name: images}, deadline=deadline)
        queries = np.asarray(outputs[output], np.float32)
    else:
        raise errors.invalid_argument("a search needs 'instances' (images) or 'embeddings'")
    scores, rows = index.search(queries, k)
    return {"model_spec": {"name": servable.model_name, "version": str(servable.version)},
            "results": [[{**row, "score": float(s)} for row, s in zip(hits, row_scores)]
                        for hits, row_scores in zip(rows, scores)]}
