import io

import numpy as np
from PIL import Image

from visionpipe.models.draw import detections_to_rows, draw_detections_png

from .scenes import png_bytes


def test_drawn_png_has_the_box_outline_where_the_detection_is():
    image = np.zeros((40, 80, 3), np.uint8)
    outputs = {"num_detections": np.array([1]), "detection_class_names": np.array([[b"wbc", b""]]),
               "detection_classes": np.array([[1, -1]]), "detection_scores": np.array([[0.9, 0.0]]),
               "detection_boxes": np.array([[[0.25, 0.25, 0.75, 0.75], [0, 0, 0, 0]]])}
    assert detections_to_rows(outputs) == [{"class": "wbc", "class_id": 1, "score": 0.9,
                                            "box": [0.25, 0.25, 0.75, 0.75]}]
    drawn = np.asarray(Image.open(io.BytesIO(draw_detections_png(png_bytes(image), outputs))))
    assert drawn.shape == (40, 80, 3)
    assert drawn[20, 20].any() and drawn[20, 60].any()  # left and right edges at x = 20, 60
    assert not drawn[20, 40].any()  # the inside is untouched
