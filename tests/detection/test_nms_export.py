import numpy as np
import tensorflow as tf

from visionpipe.tasks.detection.task import DetectionTask
from visionpipe.core.config import PipelineConfig

CLASSES = ["rbc", "wbc"]
SIZE = 64


def _task(**detection) -> DetectionTask:
    config = PipelineConfig(task="detection")
    config.model.image_size = SIZE
    for key, value in detection.items():
        setattr(config.detection, key, value)
    return DetectionTask(config.validate(), CLASSES)


class _ControlledRawDetector(tf.Module):
    """A 'model' whose pre-NMS boxes and scores are fixed, exported with the task's NMS."""

    def __init__(self, task, boxes, scores):
        super().__init__()
        self.task = task
        self.boxes = tf.constant(boxes, tf.float32)
        self.scores = tf.constant(scores, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serving_default(self, images):
        batch = tf.shape(images)[0]
        boxes = tf.tile(self.boxes[None], [batch, 1, 1])
        scores = tf.tile(self.scores[None], [batch, 1, 1])
        return self.task.postprocess(boxes, scores)


def test_exported_model_nms_removes_duplicates_but_keeps_other_classes(tmp_path):
    # three near-identical rbc boxes, one wbc box on the same spot, one separate rbc box
    boxes = [[10, 10, 30, 30], [11, 10, 31, 30], [10, 11, 30, 31], [10, 10, 30, 30], [40, 40, 60, 60]]
    scores = [[0.9, 0.0], [0.8, 0.0], [0.7, 0.0], [0.0, 0.6], [0.5, 0.0]]
    module = _ControlledRawDetector(_task(score_threshold=0.3, iou_threshold=0.5, max_detections=10),
                                    boxes, scores)
    export_dir = str(tmp_path / "model")
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serving_default})

    served = tf.saved_model.load(export_dir).signatures["serving_default"]
    out = {k: v.numpy() for k, v in served(images=tf.constant([b"a", b"b"])).items()}
    assert out["num_detections"].tolist() == [3, 3]
    n = 3
    assert out["detection_classes"][0, :n].tolist() == [0, 1, 0]
    assert [s.decode() for s in out["detection_class_names"][0, :n]] == ["rbc", "wbc", "rbc"]
    np.testing.assert_allclose(out["detection_scores"][0, :n], [0.9, 0.6, 0.5], rtol=1e-6)
    np.testing.assert_allclose(out["detection_boxes"][0, 0], np.array([10, 10, 30, 30]) / SIZE, rtol=1e-6)
    assert out["detection_boxes"].shape == (2, 10, 4)
    assert (out["detection_classes"][0, n:] == -1).all() and (out["detection_scores"][0, n:] == 0).all()
    assert all(s == b"" for s in out["detection_class_names"][0, n:])


def test_export_thresholds_come_from_the_config():
    boxes = tf.constant([[[10, 10, 30, 30], [11, 10, 31, 30], [40, 40, 60, 60]]], tf.float32)
    scores = tf.constant([[[0.9, 0.0], [0.8, 0.0], [0.2, 0.0]]], tf.float32)
    strict = _task(score_threshold=0.5, iou_threshold=0.5).postprocess(boxes, scores)
    loose = _task(score_threshold=0.1, iou_threshold=0.95).postprocess(boxes, scores)
    single = _task(score_threshold=0.1, iou_threshold=0.95, max_detections=1,
                   pre_nms_top_k=10).postprocess(boxes, scores)
    assert int(strict["num_detections"][0]) == 1
    assert int(loose["num_detections"][0]) == 3
    assert int(single["num_detections"][0]) == 1 and single["detection_boxes"].shape == (1, 1, 4)


def test_tflite_nms_counts_only_real_detections_like_the_saved_model(tmp_path):
    from visionpipe.tasks.detection.evaluation import tflite_predict_fn

    task = _task(score_threshold=0.3, iou_threshold=0.5, max_detections=10)
    boxes = tf.constant([[10, 10, 30, 30], [11, 10, 31, 30], [10, 10, 30, 30], [40, 40, 60, 60]], tf.float32)
    scores = tf.constant([[0.9, 0.0], [0.8, 0.0], [0.0, 0.6], [0.5, 0.0]], tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32, name="pixels")])
    def serving_tensor(pixels):
        batch = tf.shape(pixels)[0]
        return task.postprocess(tf.tile(boxes[None], [batch, 1, 1]), tf.tile(scores[None], [batch, 1, 1]))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serving_tensor.get_concrete_function()],
                                                                tf.Module())
    path = tmp_path / "nms.tflite"
    path.write_bytes(converter.convert())
    lite = tflite_predict_fn(str(path))(np.zeros((2, SIZE, SIZE, 3), np.float32))
    assert lite["num_detections"].tolist() == [3, 3]  # not max_detections: padding is not a box
    np.testing.assert_allclose(lite["detection_scores"][0], [0.9, 0.6, 0.5] + [0.0] * 7, rtol=1e-6)
    assert lite["detection_classes"][0].tolist() == [0, 1, 0] + [-1] * 7
