"""IndexBuilder executor: gallery embeddings -> faiss index + ids + metadata + report.

Writes ``<artifact>/index/`` (``runtime.vector_index``'s layout, the model's fingerprint in
``index_meta.json``) and ``index_report.json`` there: size, bytes, build time, the factory
string and ``index_recall_at_k`` of the eval split's embeddings against exact search. A model
the Evaluator did not bless gets no index (the Pusher will not push it either)."""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, List

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf
from tfx import types
from tfx.components.util import model_utils
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from visionpipe.core import features
from visionpipe.core.config import config_from_dict
from visionpipe.core.examples import read_class_names, split_files
from visionpipe.runtime import vector_index
from visionpipe.tasks.base import predict_examples

log = logging.getLogger("visionpipe.index_builder")
CONFIG_KEY = "config"
EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"
INDEX_KEY = "index"
GALLERY_SPLIT = "train"
QUERY_SPLIT = "eval"


def embed_split(export_dir_or_loaded, files) -> tuple:
    """(embeddings [N, D], class ids [N], file names [N]) of the Examples in ``files``."""
    loaded = (tf.saved_model.load(export_dir_or_loaded)
              if isinstance(export_dir_or_loaded, str) else export_dir_or_loaded)

    def target_of(parsed):
        label = np.asarray(parsed[features.LABEL]).reshape(-1)
        name = parsed.get(features.FILENAME, b"")
        name = name.decode() if isinstance(name, bytes) else str(name)
        return int(label[0]) if label.size else -1, name

    outputs, targets = predict_examples(loaded.signatures["serving_default"], files,
                                        [features.LABEL, features.FILENAME], target_of)
    embeddings = outputs.get("embedding", np.zeros([0, 0], np.float32)).astype(np.float32)
    return embeddings, np.array([t[0] for t in targets], np.int64), [t[1] for t in targets]


def build_index_folder(export_dir: str, examples_uri: str, embedding_config, folder: str) -> Dict:
    """Build and write the index of ``export_dir``'s embeddings of the training split; returns
    the report (also written as ``index_report.json`` in ``folder``)."""
    start = time.time()
    class_names = read_class_names(examples_uri)
    loaded = tf.saved_model.load(export_dir)
    gallery, ids, names = embed_split(loaded, split_files(examples_uri, GALLERY_SPLIT))
    if len(gallery) == 0:
        raise ValueError(f"{examples_uri}: the {GALLERY_SPLIT} split is empty: nothing to index")
    queries, query_ids, _ = embed_split(loaded, split_files(examples_uri, QUERY_SPLIT))
    cfg = embedding_config
    index, factory = vector_index.build(gallery, cfg.index, cfg.nlist, cfg.m, cfg.nprobe, cfg.hnsw_m)
    built_s = time.time() - start
    rows: List[dict] = [{"id": int(i), "name": class_names[i] if 0 <= i < len(class_names) else "",
                         "source": name} for i, name in zip(ids, names)]
    meta = {"kind": cfg.index, "factory": factory, "nprobe": cfg.nprobe,
            "gallery_split": GALLERY_SPLIT}
    paths = vector_index.write(folder, index, rows, vector_index.model_fingerprint(export_dir), meta)
    report = {"kind": cfg.index, "factory": factory, "size": int(index.ntotal),
              "dim": int(gallery.shape[1]), "bytes": os.path.getsize(paths[vector_index.INDEX_FILE]),
              "build_seconds": round(built_s, 3), "num_queries": int(len(queries)),
              **vector_index.recall_vs_exact(index, queries, gallery, cfg.recall_ks),
              **identity_recall(index, queries, query_ids, gallery, ids, cfg.recall_ks)}
    with open(os.path.join(folder, vector_index.REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2)
    log.info("index %s: %d vectors, %d bytes, %s", factory, report["size"], report["bytes"],
             {k: v for k, v in report.items() if k.startswith("index_recall")})
    return report


def identity_recall(index, queries, query_ids, gallery, gallery_ids, ks) -> Dict[str, float]:
    """``identity_recall_at_k`` (index) and ``exact_identity_recall_at_k`` (brute force): the
    share of eval queries with an image of their own identity among the k nearest of the
    training gallery (what a search user sees; an index may return other neighbours of the
    same identity than exact search does)."""
    result: Dict[str, float] = {}
    if len(queries) == 0:
        return result
    depth = min(max(ks), len(gallery))
    _, found = index.search(np.ascontiguousarray(queries, np.float32), depth)
    exact = vector_index.exact_top_k(queries, gallery, depth)
    for k in ks:
        k_eff = min(int(k), depth)
        for name, ranked in (("identity_recall", found), ("exact_identity_recall", exact)):
            hits = [np.any(gallery_ids[row[:k_eff][row[:k_eff] >= 0]] == q)
                    for row, q in zip(ranked, query_ids)]
            result[f"{name}_at_{k}"] = float(np.mean(hits))
    return result


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        config = config_from_dict(json.loads(exec_properties[CONFIG_KEY]))
        out = artifact_utils.get_single_instance(output_dict[INDEX_KEY])
        blessing = input_dict.get(BLESSING_KEY)
        if blessing and not model_utils.is_model_blessed(blessing[0]):
            out.set_string_custom_property("skipped", "the evaluator did not bless the model")
            return
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        report = build_index_folder(path_utils.serving_model_path(model.uri), examples.uri,
                                    config.embedding, os.path.join(out.uri, vector_index.INDEX_DIR))
        for key in ("size", "bytes"):
            out.set_int_custom_property(key, int(report[key]))
        for key, value in report.items():
            if key.startswith("index_recall_at_"):
                out.set_float_custom_property(key, float(value))
