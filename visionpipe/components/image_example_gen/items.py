"""The records that flow through the ingest Beam pipeline.

A source turns its annotations into ``SourceItem``s (cheap: paths and labels, no pixels);
validation reads and decodes each one and yields either a ``ValidImage`` or a
``Quarantined`` entry. All are plain dataclasses so Beam can pickle them to any runner.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

# Reason kinds: the keys of ``counts_by_reason`` in quarantine.json.
MISSING_FILE = "missing_file"
UNREADABLE = "unreadable_file"
ZERO_BYTES = "zero_byte_file"
UNSUPPORTED_FORMAT = "unsupported_format"
CORRUPT_IMAGE = "corrupt_image"
UNKNOWN_LABEL = "unknown_label"
BAD_BOX = "bad_box"
BAD_MASK = "bad_mask"
SIZE_MISMATCH = "size_mismatch"
BAD_ANNOTATION = "bad_annotation"
MISSING_IMAGE_DATA = "missing_image_data"
NO_LABELS = "no_labels"
TOO_LARGE = "too_large"
MISSING_GROUP = "missing_group"
NO_OBJECTS = "no_objects"  # data.crop_objects: an image without boxes
CROP_TOO_SMALL = "crop_too_small"  # data.crop_objects: a box under data.crop_min_size


@dataclass
class ObjectAnnotation:
    """One object: a box (``xmin, ymin, xmax, ymax``) and optionally a mask.

    ``box`` is in pixels unless ``normalized``; ``segmentation`` is a COCO polygon list or
    RLE dict (rasterised during validation); ``mask_png`` is an already encoded mask.
    """
    label: str
    box: Tuple[float, float, float, float]
    normalized: bool = False
    segmentation: Any = None
    mask_png: Optional[bytes] = None


@dataclass
class SourceItem:
    """One image as a source describes it, before its bytes are checked."""
    filename: str  # as the source names it; reported and written to image/filename
    path: Optional[str] = None  # where to read the bytes (None when ``encoded`` is given)
    encoded: Optional[bytes] = None
    labels: List[str] = field(default_factory=list)
    objects: List[ObjectAnnotation] = field(default_factory=list)
    text: Optional[str] = None
    source_split: Optional[str] = None
    declared_size: Optional[Tuple[int, int]] = None  # (width, height) from the annotation
    problem: Optional[Tuple[str, str]] = None  # (kind, reason) found while reading the source
    # position in the source's own listing (row, image, split and record); () when the
    # source has none. Of exact duplicates, the first listed is kept.
    listing_index: Tuple[int, ...] = ()
    group_id: Optional[str] = None  # video / patient / sequence id (image/group_id)
    # semantic mask of class ids (image/segmentation/mask): a PNG file, or its bytes
    mask_path: Optional[str] = None
    mask_encoded: Optional[bytes] = None
    # the mask value this source uses for "not labelled" (VOC: 255); ingestion writes it as
    # the task's ignore value (``Task.mask_ignore_value``)
    mask_ignore_value: Optional[int] = None
    # the semantic mask is painted from ``objects``' segmentations (COCO outlines)
    mask_from_objects: bool = False


@dataclass
class ValidImage:
    """A decoded, checked image with its annotations (boxes normalised to [0, 1])."""
    sha256: str
    encoded: bytes
    image_format: str
    height: int
    width: int
    filename: str
    labels: List[str]
    boxes: List[Tuple[float, float, float, float]]  # (ymin, xmin, ymax, xmax)
    object_labels: List[str]
    masks: List[bytes]
    text: Optional[str]
    source_split: Optional[str]
    listing_index: Tuple[int, ...] = ()
    group_id: Optional[str] = None
    segmentation_mask: Optional[bytes] = None  # single-channel PNG of class ids, image-sized


@dataclass
class Quarantined:
    file: str
    kind: str
    reason: str

    def to_json(self) -> dict:
        return {"file": self.file, "kind": self.kind, "reason": self.reason}
