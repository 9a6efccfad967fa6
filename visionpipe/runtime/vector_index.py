"""A faiss similarity-search index shipped beside the SavedModel that embeds its queries.

On disk (a folder, ``index/`` of a pushed model version)::

    gallery.faiss     the faiss index (inner product over L2-normalised embeddings)
    ids.json          one row per indexed vector: {"id": class id, "name": class name, "source": ...}
    index_meta.json   kind, factory string, dim, size, and ``model_fingerprint``: the sha256
                      of the ``saved_model.pb`` whose embeddings were indexed

A model and an index of different versions must never be served together: ``load`` takes the
fingerprint of the model it will serve with and refuses an index built from another one.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

INDEX_DIR = "index"
INDEX_FILE = "gallery.faiss"
IDS_FILE = "ids.json"
META_FILE = "index_meta.json"
REPORT_FILE = "index_report.json"
KINDS = ("flat", "ivfpq", "hnsw")


class IndexMismatch(Exception):
    """The index is missing, unreadable, or belongs to another model version."""


def model_fingerprint(export_dir: str) -> str:
    """sha256 of the SavedModel's ``saved_model.pb`` (graph, signatures and, for the search
    signature, its baked-in gallery): what the index records and ``load`` compares."""
    path = os.path.join(str(export_dir), "saved_model.pb")
    if not os.path.exists(path):
        raise IndexMismatch(f"{path}: no saved_model.pb to fingerprint")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def factory_string(kind: str, n: int, dim: int, nlist: int = 16, m: int = 8,
                   hnsw_m: int = 16) -> str:
    """The faiss ``index_factory`` string of ``kind`` for ``n`` vectors: ``Flat``;
    ``IVF{nlist},PQ{m}x{bits}`` with nlist capped at n/8 and bits at log2(n/4) (a PQ codebook
    of 2^bits centroids needs that many training vectors; 8 bits from 1024 vectors); ``HNSW{M}``."""
    if kind == "flat":
        return "Flat"
    if kind == "ivfpq":
        lists = max(1, min(int(nlist), n // 8))
        bits = max(1, min(8, int(math.log2(max(n // 4, 2)))))
        return f"IVF{lists},PQ{int(m)}x{bits}"
    if kind == "hnsw":
        return f"HNSW{int(hnsw_m)}"
    raise ValueError(f"unknown index kind {kind!r}; choose one of {KINDS}")


def build(vectors: np.ndarray, kind: str, nlist: int = 16, m: int = 8, nprobe: int = 4,
          hnsw_m: int = 16):
    """A trained faiss index (inner product) holding ``vectors`` (row i has id i)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, np.float32)
    n, dim = vectors.shape
    factory = factory_string(kind, n, dim, nlist, m, hnsw_m)
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    _set_nprobe(index, nprobe)
    return index, factory


def _set_nprobe(index, nprobe: int) -> None:
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return
    ivf.nprobe = min(int(nprobe), ivf.nlist)


def exact_top_k(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    scores = np.asarray(queries, np.float32) @ np.asarray(gallery, np.float32).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall_vs_exact(index, queries: np.ndarray, gallery: np.ndarray, ks: Sequence[int]
                    ) -> Dict[str, float]:
    """``index_recall_at_k``: the share of the exact top k (brute-force inner product) that the
    index returns in its top k, averaged over the queries."""
    result = {}
    if len(queries) == 0:
        return result
    for k in ks:
        k_eff = min(int(k), len(gallery))
        _, found = index.search(np.ascontiguousarray(queries, np.float32), k_eff)
        exact = exact_top_k(queries, gallery, k_eff)
        result[f"index_recall_at_{k}"] = float(np.mean(
            [len(set(f.tolist()) & set(e.tolist())) / k_eff for f, e in zip(found, exact)]))
    return result


def write(folder: str, index, rows: List[dict], fingerprint: str, meta: dict) -> Dict[str, str]:
    """Write the index, its rows and its metadata into ``folder``; returns {name: path}."""
    import faiss

    os.makedirs(folder, exist_ok=True)
    paths = {name: os.path.join(folder, name) for name in (INDEX_FILE, IDS_FILE, META_FILE)}
    faiss.write_index(index, paths[INDEX_FILE])
    with open(paths[IDS_FILE], "w") as f:
        json.dump(rows, f)
    with open(paths[META_FILE], "w") as f:
        json.dump({**meta, "model_fingerprint": fingerprint, "size": int(index.ntotal),
                   "dim": int(index.d), "metric": "inner_product"}, f, indent=2)
    return paths


@dataclass
class LoadedIndex:
    index: object
    rows: List[dict]
    meta: dict

    def search(self, queries: np.ndarray, k: int):
        """(scores [Q, k], rows [Q][k]) of the k nearest indexed vectors of each query."""
        k = max(1, min(int(k), int(self.index.ntotal)))
        scores, ids = self.index.search(np.ascontiguousarray(queries, np.float32), k)
        return scores, [[self.rows[i] for i in row if i >= 0] for row in ids]


def load(folder: str, expected_fingerprint: Optional[str]) -> LoadedIndex:
    """Read an index folder; ``expected_fingerprint`` (``model_fingerprint`` of the model it is
    served with) must equal the one the index recorded (None: not checked)."""
    import faiss

    meta_path = os.path.join(folder, META_FILE)
    if not os.path.exists(meta_path):
        raise IndexMismatch(f"{folder}: no {META_FILE} (no index was pushed with this version)")
    with open(meta_path) as f:
        meta = json.load(f)
    recorded = meta.get("model_fingerprint", "")
    if expected_fingerprint is not None and recorded != expected_fingerprint:
        raise IndexMismatch(f"{folder}: the index was built from model {recorded[:12] or '?'}..., "
                          f"not the model it would serve with ({expected_fingerprint[:12]}...): "
                          f"refusing to mix versions")
    with open(os.path.join(folder, IDS_FILE)) as f:
        rows = json.load(f)
    index = faiss.read_index(os.path.join(folder, INDEX_FILE))
    if int(index.ntotal) != len(rows):
        raise IndexMismatch(f"{folder}: {index.ntotal} vectors but {len(rows)} rows in {IDS_FILE}")
    if "nprobe" in meta:
        _set_nprobe(index, meta["nprobe"])
    return LoadedIndex(index, rows, meta)
