"""The embedding task's wiring: the IndexBuilder stage after the Evaluator feeding the Pusher,
backbone transfer from a classifier through ``model.weights``, and what ``predict`` prints."""
from types import SimpleNamespace

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.components.pusher import executor as pusher
from visionpipe.core.config import load_config
from visionpipe.pipeline.pipeline import create_pipeline
from visionpipe.tasks import get_task


def test_the_index_builder_runs_after_the_evaluator_and_feeds_the_pusher(tmp_path):
    config = load_config(overrides=["task=embedding", f"runner.output_dir={tmp_path}"]).validate()
    pipeline = create_pipeline(config, str(tmp_path / "root"), str(tmp_path / "m.sqlite"),
                               str(tmp_path), ["a", "b"])
    ids = [c.id for c in pipeline.components]
    assert ids.index("IndexBuilder") > ids.index("Evaluator")
    pusher_node = next(c for c in pipeline.components if c.id == "VisionPusher")
    assert pusher_node.inputs[pusher.PUSH_FILES_KEY].producer_component_id == "IndexBuilder"


def test_a_classifiers_backbone_transfers_into_the_embedder(tmp_path):
    overrides = ["model.image_size=16", "model.width=4"]
    classifier = get_task(load_config(overrides=overrides).validate(), ["a", "b"])
    donor = classifier.build_model()
    donor_backbone = classifier.backbone_of(donor)
    donor_backbone.set_weights([w + 0.5 for w in donor_backbone.get_weights()])
    path = str(tmp_path / "backbone.weights.h5")
    donor_backbone.save_weights(path)
    task = get_task(load_config(overrides=["task=embedding", f"model.weights={path}",
                                           "embedding.dim=8", *overrides]).validate(), ["a", "b"])
    model = task.build_model()
    assert task.weights_loaded and task.backbone_of(model).name == task.transfer_layer
    for got, want in zip(task.backbone_of(model).get_weights(), donor_backbone.get_weights()):
        np.testing.assert_array_equal(got, want)
    out = model(tf.random.stateless_uniform([2, 16, 16, 3], seed=[1, 2], maxval=255.0))
    assert out.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(out.numpy(), axis=1), 1.0, atol=1e-5)


def test_predict_prints_the_embedding_norm_or_the_nearest_identities():
    cls = get_task(load_config(overrides=["task=embedding"]).validate(), ["a", "b"]).__class__
    options = SimpleNamespace(as_json=False, output_dir="", min_score=0.0)
    lines = cls.present(["x.png"], [b""], {"embedding": np.array([[0.6, 0.8]])}, options)
    assert lines == ["x.png: embedding dim 2, norm 1.000, [+0.600, +0.800, ...]"]
    lines = cls.present(["x.png"], [b""], {"embedding": np.array([[0.6, 0.8]]),
                                           "names": np.array([[b"a", b"b"]]),
                                           "scores": np.array([[0.9, 0.1]])}, options)
    assert lines == ["x.png: nearest a 0.900, b 0.100"]


def test_an_arcface_embedder_trains_its_centres_and_reloads_from_a_saved_model(tmp_path):
    from visionpipe.models import export
    from visionpipe.tasks.embedding.models import CENTRES_LAYER

    config = load_config(overrides=["task=embedding", "embedding.loss=arcface", "embedding.dim=8",
                                    "model.image_size=16", "model.width=4"]).validate()
    task = get_task(config, ["a", "b", "c"])
    model = task.build_model()
    task.compile_model(model, 0.01)
    centres = model.get_layer(CENTRES_LAYER).centres.numpy().copy()
    images = tf.random.stateless_uniform([6, 16, 16, 3], seed=[3, 4], maxval=255.0)
    loss = model.train_on_batch(images, tf.constant([0, 0, 1, 1, 2, 2]))
    assert np.isfinite(loss)
    assert not np.allclose(model.get_layer(CENTRES_LAYER).centres.numpy(), centres)
    export.export_saved_model(model, task, str(tmp_path / "export"))
    reloaded = export.load_keras_model(str(tmp_path / "export"))
    np.testing.assert_allclose(reloaded(images).numpy(), model(images).numpy(), atol=1e-5)
