"""``data.crop_objects``: each object box of a detection source becomes its own image,
labelled with the object's category, so image-label tasks (embedding identities,
classification) train on object crops.

A crop is the box widened by ``data.crop_margin`` of its width/height on each side (clipped
to the image), encoded as PNG and named ``<source file>#object-<index>`` (the index in the
source's annotation order). It keeps its source image's split, source split and group, so
crops of one image never straddle train and eval. A box whose shorter side is under
``data.crop_min_size`` pixels is quarantined as ``crop_too_small``; an image without
objects as ``no_objects``; two identical crops of one image (a repeated box) are reported
as duplicates like any copy.
"""
from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from typing import Iterator, Tuple

from apache_beam import pvalue

from visionpipe.components.image_example_gen import items as it


@dataclass(frozen=True)
class CropRules:
    margin: float  # share of the box's width / height added on each side
    min_size: int  # pixels: a box with a shorter side is quarantined

    @classmethod
    def from_config(cls, data) -> "CropRules":
        return cls(margin=data.crop_margin, min_size=data.crop_min_size)


def crop_filename(source_filename: str, index: int) -> str:
    return f"{source_filename}#object-{index}"


def crop_window(box: Tuple[float, float, float, float], width: int, height: int,
                margin: float) -> Tuple[int, int, int, int]:
    """Pixel ``(left, top, right, bottom)`` of a normalised ``(ymin, xmin, ymax, xmax)`` box
    widened by ``margin`` on each side, rounded outwards and clipped to the image."""
    ymin, xmin, ymax, xmax = box
    box_w, box_h = (xmax - xmin) * width, (ymax - ymin) * height
    left = math.floor(xmin * width - margin * box_w)
    top = math.floor(ymin * height - margin * box_h)
    right = math.ceil(xmax * width + margin * box_w)
    bottom = math.ceil(ymax * height + margin * box_h)
    return max(left, 0), max(top, 0), min(right, width), min(bottom, height)


def _png(pixels) -> bytes:
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG")
    return buffer.getvalue()


def crop_objects(keyed: Tuple[str, it.ValidImage], rules: CropRules, quarantined_tag: str,
                 duplicates_tag: str) -> Iterator:
    """(split, image) -> (split, crop) for each usable object; the others go to the tags."""
    from PIL import Image

    split, image = keyed
    if not image.boxes:
        yield pvalue.TaggedOutput(quarantined_tag, it.Quarantined(
            file=image.filename, kind=it.NO_OBJECTS,
            reason="has no object boxes, so data.crop_objects makes no image of it").to_json())
        return
    with Image.open(io.BytesIO(image.encoded)) as opened:
        pixels = opened.convert("L" if opened.mode in ("L", "1", "I", "I;16") else "RGB")
    seen = {}
    for index, (box, label) in enumerate(zip(image.boxes, image.object_labels)):
        name = crop_filename(image.filename, index)
        ymin, xmin, ymax, xmax = box
        box_w, box_h = (xmax - xmin) * image.width, (ymax - ymin) * image.height
        if min(box_w, box_h) < rules.min_size:
            yield pvalue.TaggedOutput(quarantined_tag, it.Quarantined(
                file=name, kind=it.CROP_TOO_SMALL,
                reason=(f"{label} box of {box_w:.0f}x{box_h:.0f} pixels is smaller than "
                        f"data.crop_min_size={rules.min_size}")).to_json())
            continue
        left, top, right, bottom = crop_window(box, image.width, image.height, rules.margin)
        encoded = _png(pixels.crop((left, top, right, bottom)))
        sha256 = hashlib.sha256(encoded).hexdigest()
        if sha256 in seen:
            yield pvalue.TaggedOutput(duplicates_tag, {"file": name, "duplicate_of": seen[sha256],
                                                       "sha256": sha256})
            continue
        seen[sha256] = name
        yield split, it.ValidImage(
            sha256=sha256, encoded=encoded, image_format="png", height=bottom - top,
            width=right - left, filename=name, labels=[label], boxes=[], object_labels=[],
            masks=[], text=image.text, source_split=image.source_split,
            listing_index=tuple(image.listing_index) + (index,), group_id=image.group_id)
