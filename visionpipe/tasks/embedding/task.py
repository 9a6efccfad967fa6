"""Image embedding with similarity search (issue 14): an L2-normalised embedding trained with
a metric-learning loss on class-balanced P x K batches (identity = class), gated on
retrieval recall@1 of the eval split's queries against the eval split, exported with an
in-model ``search`` signature over the training split's embeddings and shipped with a faiss
index (the ``index_builder`` stage) in the same model version."""
from __future__ import annotations

import logging
import os
from typing import Dict

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core import features
from visionpipe.core.registry import register_task
from visionpipe.models import augment, preprocessing
from visionpipe.tasks.base import Task
from visionpipe.tasks.embedding import evaluation
from visionpipe.tasks.embedding.config import EmbeddingConfig

log = logging.getLogger("visionpipe.embedding")

SEARCH_SIGNATURE = "search"
NEIGHBOUR_QUERIES = 6  # eval queries drawn with their neighbours in the evaluation report
NEIGHBOUR_K = 5
NEIGHBOURS_FILE = "neighbours.png"
#: augment.* keys that mix labels do not apply: an image has one identity
_MIXING_KEYS = ("mixup_alpha", "cutmix_alpha")


@register_task
class EmbeddingTask(Task):
    name = "embedding"
    feature_keys = (features.ENCODED, features.LABEL)
    image_labels = "single"  # the identity of an image is its class
    config_sections = {"embedding": EmbeddingConfig}
    default_gate_metric = "recall_at_1"
    generated_sources = ("shapes", "digits")
    augment_keys = tuple(k for k in augment.honoured_keys(augment.LABELS) if k not in _MIXING_KEYS)
    finalizes = True  # the in-model search gallery: the training split's embeddings
    finalize_split = "train"
    pipeline_stages = ("index_builder",)

    @classmethod
    def metric_names(cls, config):
        return evaluation.metric_names(config.embedding.recall_ks)

    def __init__(self, config, class_names):
        super().__init__(config, class_names)
        if self.num_classes < 2:
            raise ValueError(f"{self.name} needs at least 2 identities (classes), got "
                             f"{self.class_names}")
        self.ecfg = config.embedding
        self.gallery = np.zeros([0, self.ecfg.dim], np.float32)
        self.gallery_ids = np.zeros([0], np.int32)

    # --- data -------------------------------------------------------------------------
    def example_to_inputs(self, parsed):
        image = preprocessing.preprocess_image(parsed[features.ENCODED], self.image_size)
        return image, tf.cast(parsed[features.LABEL][0], tf.int32)

    def batch_dataset(self, dataset, batch_size, drop_remainder=False):
        """Training data (an infinite stream): P x K class-balanced batches over the classes
        the training split holds (a class it lacks is not drawn: its draws would wait
        forever); otherwise plain. The classes come from ``train_class_counts`` (every label of
        the split, which the trainer reads), or else from a scan of the stream's first
        ``sampler.CLASS_SCAN`` pairs."""
        if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
            from visionpipe.tasks.embedding.sampler import classes_in, pk_batches

            if self.train_class_counts is not None:
                classes = [c for c, n in enumerate(self.train_class_counts) if n > 0]
            else:
                classes = classes_in(dataset)
            if len(classes) < self.num_classes:
                log.warning("P x K sampler: the training data holds %d of the %d classes",
                            len(classes), self.num_classes)
            return pk_batches(dataset, classes, self.ecfg.classes_per_batch,
                              self.ecfg.images_per_class, seed=self.config.train.seed)
        return dataset.batch(batch_size, drop_remainder=drop_remainder)

    def augment_batch(self, images, targets, seed):
        if not hasattr(self, "_cached_augmenter"):
            with tf.init_scope():
                self._cached_augmenter = augment.build_augmenter(self.config.augment,
                                                                 self.image_size)
        if self._cached_augmenter is None:
            return images, targets
        images, _ = self._cached_augmenter(images, tf.zeros_like(targets, tf.float32), seed)
        return images, targets

    # --- model ------------------------------------------------------------------------
    def build_model(self):
        from visionpipe.tasks.embedding.models import build_embedder

        return build_embedder(self)

    def compile_model(self, model, learning_rate):
        from visionpipe.tasks.embedding.losses import MetricLoss
        from visionpipe.tasks.embedding.models import CENTRES_LAYER

        centres = model.get_layer(CENTRES_LAYER) if self.ecfg.loss == "arcface" else None
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                      loss=MetricLoss(self.ecfg.loss, self.ecfg.margin, self.ecfg.scale, centres))

    def finalize(self, model, held_out):
        """The search gallery: embeddings and identities of the split handed in (the Trainer
        hands the training split, ``finalize_split``), up to ``embedding.max_in_model_gallery``."""
        embeddings, ids = [], []
        for images, labels in held_out:
            embeddings.append(model(images, training=False).numpy())
            ids.append(labels.numpy())
        self.gallery = np.concatenate(embeddings).astype(np.float32) if embeddings else self.gallery
        self.gallery_ids = np.concatenate(ids).astype(np.int32) if ids else self.gallery_ids
        if len(self.gallery) > self.ecfg.max_in_model_gallery:
            log.warning("gallery of %d images exceeds embedding.max_in_model_gallery=%d: the "
                        "export has no in-model search signature (the faiss index has them all)",
                        len(self.gallery), self.ecfg.max_in_model_gallery)

    # --- export -----------------------------------------------------------------------
    def serving_outputs(self, model, images) -> Dict[str, tf.Tensor]:
        return {"embedding": tf.cast(model(images, training=False), tf.float32)}

    def has_in_model_gallery(self) -> bool:
        return 0 < len(self.gallery) <= self.ecfg.max_in_model_gallery

    def signatures(self, model):
        signatures = super().signatures(model)
        if not self.has_in_model_gallery():
            return signatures
        gallery = tf.constant(self.gallery, tf.float32)
        gallery_ids = tf.constant(self.gallery_ids, tf.int32)
        names = tf.constant(self.class_names, tf.string)
        k = min(max(self.ecfg.recall_ks), len(self.gallery))
        size = self.image_size

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def search(images):
            """Top-k of the in-model gallery (the training split) by inner product."""
            embedding = self.serving_outputs(model, preprocessing.preprocess_batch(images, size))[
                "embedding"]
            scores, index = tf.math.top_k(tf.matmul(embedding, gallery, transpose_b=True), k=k)
            ids = tf.gather(gallery_ids, index)
            return {"embedding": embedding, "gallery_index": index, "scores": scores,
                    "ids": ids, "names": tf.gather(names, ids)}

        signatures[SEARCH_SIGNATURE] = search.get_concrete_function()
        return signatures

    # --- evaluation -------------------------------------------------------------------
    def target_of(self, parsed):
        return int(np.asarray(parsed[features.LABEL]).reshape(-1)[0])

    def score(self, predictions, targets):
        return evaluation.split_metrics(predictions["embedding"], targets, self.ecfg.recall_ks,
                                        self.ecfg.query_fraction)

    def trivial_metrics(self, eval_files, train_files):
        """A ranking that ignores the image (a random one; a constant embedding ties every
        gallery item, broken at random): per query with n gallery items (own image out), m of
        its identity, recall@k = 1 - C(n-m, k)/C(n, k), precision@k = m/n, MAP@R about
        (m/n)(m/n + H_m/m)
        (``evaluation.random_ranking_metrics``), averaged over the queries."""
        return evaluation.random_ranking_metrics(self.targets(eval_files), self.ecfg.recall_ks,
                                                 self.ecfg.query_fraction)

    def evaluation_details(self, export_dir, eval_files, output_dir: str = "",
                           num_queries: int = NEIGHBOUR_QUERIES, k: int = NEIGHBOUR_K):
        """``neighbours``: a few of the gate's eval queries (identities in turn) with their
        top-k neighbours in the eval split (own image out), each with file, identity, score and
        whether it shares the query's identity; with ``output_dir`` also drawn as
        ``neighbours.png`` there (a row per query, green/red frames for same/other identity)."""
        import os

        from visionpipe.tasks.base import predict_examples
        from visionpipe.tasks.embedding import neighbours

        keys = (features.ENCODED, features.LABEL, features.FILENAME)
        predictions, rows = predict_examples(
            self.load_export(export_dir).signatures["serving_default"], eval_files, keys,
            lambda p: (self.target_of(p), bytes(p[features.ENCODED]), p[features.FILENAME].decode()))
        if not rows:
            return {}
        identities, encoded, filenames = (list(column) for column in zip(*rows))
        embeddings = predictions["embedding"]
        queries = neighbours.pick_queries(identities, self.ecfg.query_fraction, num_queries)
        k = min(k, len(identities) - 1)
        nearest = neighbours.neighbour_rows(embeddings, identities, queries, k)
        scores = np.take_along_axis(embeddings[queries] @ embeddings.T, nearest, axis=1)
        details = {"neighbours": neighbours.listing(filenames, identities, self.class_names,
                                                    queries, nearest, scores), "k": k}
        if output_dir:
            tf.io.gfile.makedirs(output_dir)
            with tf.io.gfile.GFile(os.path.join(output_dir, NEIGHBOURS_FILE), "wb") as f:
                f.write(neighbours.grid_png(encoded, identities, queries, nearest))
            details["neighbours_image"] = NEIGHBOURS_FILE
        return details

    def report_panels(self, evaluation, evaluation_dir, report_dir):
        """The neighbour grid ``evaluation_details`` drew (copied into the report folder) and
        each drawn query's share of same-identity neighbours."""
        from visionpipe.report import Panel, copy_in

        details = evaluation.get("details") or {}
        rows = [(q["file"], q["identity"],
                 sum(n["same_identity"] for n in q["neighbours"]), len(q["neighbours"]))
                for q in details.get("neighbours") or []]
        out = [Panel(f"eval queries: same-identity neighbours in the top {details.get('k', '')}",
                     headers=("query", "identity", "same identity", "neighbours"), rows=rows)]
        image = details.get("neighbours_image")
        if image and os.path.exists(os.path.join(evaluation_dir, image)):
            out.append(Panel("eval queries (left) and their nearest neighbours: green frame same "
                             "identity, red another",
                             images=[copy_in(os.path.join(evaluation_dir, image), report_dir,
                                             "embedding")]))
        return out

    def evaluate_tflite(self, tflite_path, dataset):
        """Retrieval metrics (recall@1 the gate's) of the .tflite embedder's embeddings of the
        eval split, scored as the SavedModel's are."""
        from visionpipe.runtime.tflite_runtime import TFLiteModel

        model = TFLiteModel(str(tflite_path))
        embeddings, ids = [], []
        for images, labels in dataset:
            embeddings.append(model.scores(np.asarray(images)))
            ids.append(np.asarray(labels).reshape(-1))
        embeddings = np.concatenate(embeddings).astype(np.float32)
        # an int8 file's dequantized output is not exactly unit length
        embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        return self.score({"embedding": embeddings}, list(np.concatenate(ids)))

    # --- generated data and presentation ----------------------------------------------
    @classmethod
    def write_generated(cls, source, data, out_dir):
        """Class folders of shapes or digits: an image's identity is its class."""
        from visionpipe.tasks.classification.task import ClassificationTask

        return ClassificationTask.write_generated(source, data, out_dir)

    @classmethod
    def present(cls, paths, images, outputs, options):
        if options.as_json or "embedding" not in outputs:
            return super().present(paths, images, outputs, options)
        lines = []
        for i, path in enumerate(paths):
            if "names" in outputs:
                shown = ", ".join(f"{n.decode() if isinstance(n, bytes) else n} {s:.3f}"
                                  for n, s in zip(outputs["names"][i], outputs["scores"][i]))
                lines.append(f"{path}: nearest {shown}")
                continue
            vector = np.asarray(outputs["embedding"][i])
            first = ", ".join(f"{v:+.3f}" for v in vector[:6])
            lines.append(f"{path}: embedding dim {vector.size}, norm {np.linalg.norm(vector):.3f}, "
                         f"[{first}, ...]")
        return lines
