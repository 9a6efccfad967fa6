"""The faiss index beside an embedder: each kind built and checked against exact search, and
an index refused for a model it was not built from."""
import json

import numpy as np
import pytest

from visionpipe.runtime import vector_index


def _unit(n, d, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", vector_index.KINDS)
def test_each_index_kind_finds_most_of_the_exact_neighbours(kind):
    gallery, queries = _unit(600, 16), _unit(50, 16, seed=1)
    index, factory = vector_index.build(gallery, kind, nlist=8, m=4, nprobe=8, hnsw_m=16)
    recall = vector_index.recall_vs_exact(index, queries, gallery, [1, 10])
    assert index.ntotal == 600
    floor = {"flat": 1.0, "hnsw": 0.9, "ivfpq": 0.3}[kind]  # PQ codes are lossy
    assert recall["index_recall_at_10"] >= floor, (factory, recall)
    if kind == "flat":
        assert recall["index_recall_at_1"] == 1.0


def test_ivfpq_factory_fits_a_small_gallery():
    assert vector_index.factory_string("ivfpq", 60, 64, nlist=16, m=8) == "IVF7,PQ8x3"
    assert vector_index.factory_string("ivfpq", 100000, 64, nlist=16, m=8) == "IVF16,PQ8x8"


def test_an_index_is_refused_for_another_models_fingerprint(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"model one")
    index, factory = vector_index.build(_unit(20, 8), "flat")
    rows = [{"id": i % 2, "name": "ab"[i % 2], "source": f"{i}.png"} for i in range(20)]
    folder = tmp_path / "index"
    vector_index.write(str(folder), index, rows, vector_index.model_fingerprint(str(model)),
                       {"kind": "flat", "factory": factory})
    loaded = vector_index.load(str(folder), vector_index.model_fingerprint(str(model)))
    scores, hits = loaded.search(_unit(2, 8, seed=3), 3)
    assert scores.shape == (2, 3) and len(hits[0]) == 3 and "source" in hits[0][0]

    (model / "saved_model.pb").write_bytes(b"model two")
    with pytest.raises(vector_index.IndexMismatch, match="refusing to mix versions"):
        vector_index.load(str(folder), vector_index.model_fingerprint(str(model)))
    meta = json.loads((folder / vector_index.META_FILE).read_text())
    assert meta["size"] == 20 and meta["dim"] == 8 and meta["metric"] == "inner_product"


def test_identity_recall_counts_a_query_whose_k_nearest_include_its_identity():
    from visionpipe.components.index_builder.executor import identity_recall

    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    index, _ = vector_index.build(gallery, "flat")
    queries = np.array([[0.9, 0.1], [0.1, 0.9]], np.float32)
    # query 0 (id 5): nearest gallery 0 (id 5) -> hit; query 1 (id 5): nearest 1 (id 6), then 0
    r = identity_recall(index, queries, np.array([5, 5]), gallery, np.array([5, 6, 7]), [1, 2])
    assert r["identity_recall_at_1"] == 0.5 and r["identity_recall_at_2"] == 1.0
    assert r["exact_identity_recall_at_1"] == 0.5
