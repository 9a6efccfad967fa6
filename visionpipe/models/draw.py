"""Draw detections (or ground-truth boxes) on an image, for `predict` and `augment-preview`."""
from __future__ import annotations

import io
from typing import Dict, List, Optional, Sequence

import numpy as np

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128)]


def detections_to_rows(outputs: Dict[str, np.ndarray], index: int = 0) -> List[dict]:
    """One image's signature outputs -> ``[{class, class_id, score, box: [ymin, xmin, ymax, xmax]}]``."""
    count = int(np.asarray(outputs["num_detections"])[index])
    names = np.asarray(outputs["detection_class_names"])[index][:count]
    return [{"class": n.decode() if isinstance(n, bytes) else str(n),
             "class_id": int(c), "score": round(float(s), 4),
             "box": [round(float(v), 4) for v in b]}
            for n, c, s, b in zip(names, np.asarray(outputs["detection_classes"])[index][:count],
                                  np.asarray(outputs["detection_scores"])[index][:count],
                                  np.asarray(outputs["detection_boxes"])[index][:count])]


def draw_boxes(image: np.ndarray, boxes: Sequence[Sequence[float]], labels: Sequence[str],
               class_ids: Sequence[int], scores: Optional[Sequence[float]] = None,
               width: int = 2) -> np.ndarray:
    """uint8 ``[H, W, 3]`` with normalised yxyx boxes drawn and captioned."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.asarray(image, np.uint8))
    draw = ImageDraw.Draw(canvas)
    height, width_px = canvas.height, canvas.width
    for i, (box, label, class_id) in enumerate(zip(boxes, labels, class_ids)):
        ymin, xmin, ymax, xmax = box
        colour = PALETTE[int(class_id) % len(PALETTE)]
        rect = [xmin * width_px, ymin * height, xmax * width_px, ymax * height]
        draw.rectangle(rect, outline=colour, width=width)
        caption = label if scores is None else f"{label} {scores[i]:.2f}"
        draw.text((rect[0] + 2, max(0, rect[1] - 11)), caption, fill=colour)
    return np.asarray(canvas)


def draw_detections_png(encoded: bytes, outputs: Dict[str, np.ndarray], index: int = 0) -> bytes:
    """Encoded image + one image's serving outputs -> PNG bytes with the detections drawn."""
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
    rows = detections_to_rows(outputs, index)
    drawn = draw_boxes(image, [r["box"] for r in rows], [r["class"] for r in rows],
                       [r["class_id"] for r in rows], [r["score"] for r in rows])
    buffer = io.BytesIO()
    Image.fromarray(drawn).save(buffer, format="PNG")
    return buffer.getvalue()
