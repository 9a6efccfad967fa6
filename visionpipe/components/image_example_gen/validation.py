"""Read, fully decode and check one image with its annotations.

Runs inside a Beam ``Map``: every failure becomes a ``Quarantined`` entry naming the file
and the reason, never an exception, so one bad file cannot stop a large ingest.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

from visionpipe.components.image_example_gen import items as it

# PIL's format name -> the image/format value (what tf.io.decode_image accepts).
_PIL_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "GIF": "gif", "BMP": "bmp"}
BOX_TOLERANCE_PX = 1.0


@dataclass(frozen=True)
class ImageRules:
    """What the task asks of an image's annotations, from ``task`` and ``data.*``.

    Labels: a ``classification`` image needs a label; a ``multilabel`` image without any is
    a negative (all labels 0) only with ``allow_unlabeled``; a ``detection`` image without
    boxes is a background image and is kept. Otherwise it is quarantined as ``no_labels``.
    An empty ``task`` checks no labels. An image of more than ``max_image_pixels`` pixels
    is quarantined as ``too_large`` before it is decoded.

    Semantic masks: with ``needs_semantic_mask`` (the task's declaration) an image without
    one is quarantined as ``bad_mask``; ``mask_values`` (``data.mask_values``: pixel value ->
    class name) maps the stored values to class ids in ascending value order (a 0/255 binary
    mask becomes ids 0/1), and a mask holding a value not listed is quarantined.
    ``mask_ignore`` is the task's ignore value (``Task.mask_ignore_value``): never a class,
    and what a source's own "not labelled" value (VOC's 255) is written as.
    """
    image_labels: str = ""  # the task's declaration: "single", "multi" or "" (none needed)
    allow_unlabeled: bool = False
    max_image_pixels: int = 0  # 0: PIL's decompression-bomb limit only
    needs_semantic_mask: bool = False
    mask_values: Tuple[int, ...] = ()  # the stored values of ids 0, 1, ... (empty: value = id)
    mask_ignore: int = 255

    @classmethod
    def from_config(cls, config) -> "ImageRules":
        from visionpipe.core.registry import task_class

        task = task_class(config.task)
        return cls(image_labels=task.image_labels,
                   allow_unlabeled=config.data.allow_unlabeled,
                   max_image_pixels=config.data.max_image_pixels,
                   needs_semantic_mask=task.needs_semantic_mask,
                   mask_values=tuple(config.data.mask_value_list),
                   mask_ignore=task.mask_ignore_value(config))

    def labels_problem(self, item: it.SourceItem) -> Optional[str]:
        if item.labels or item.objects:  # image labels, or those of its objects
            return None
        if self.image_labels == "single":
            return "has no label (a single-label image needs exactly one)"
        if self.image_labels == "multi" and not self.allow_unlabeled:
            return ("has no labels; set data.allow_unlabeled=true to train on images without "
                    "labels as negatives (every label 0)")
        return None


def read_bytes(path: str) -> bytes:
    import visionpipe  # noqa: F401
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def file_exists(path: str) -> bool:
    import visionpipe  # noqa: F401
    import tensorflow as tf

    return tf.io.gfile.exists(path)


def decode_image(data: bytes, max_pixels: int = 0
                 ) -> Union[Tuple[str, int, int], Tuple[str, str]]:
    """Returns ``(format, width, height)`` or ``(kind, reason)`` when it cannot be used.

    The pixel count is checked from the header before anything is decoded (``max_pixels``,
    0: PIL's decompression-bomb limit only)."""
    from PIL import Image, UnidentifiedImageError

    from visionpipe.core.image_limits import ImageTooLarge, check_pixels

    if not data:
        return it.ZERO_BYTES, "zero-byte file"
    try:
        check_pixels(data, max_pixels)
    except ImageTooLarge as err:
        return it.TOO_LARGE, f"{err} (data.max_image_pixels; checked before decoding)"
    try:
        with Image.open(io.BytesIO(data)) as image:
            pil_format = image.format
            image.verify()  # checksums and structure
    except UnidentifiedImageError:
        return it.UNSUPPORTED_FORMAT, "not a recognised image (unsupported format or not an image)"
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
        return it.CORRUPT_IMAGE, f"corrupt image: {err}"
    if pil_format not in _PIL_FORMATS:
        return it.UNSUPPORTED_FORMAT, (f"unsupported image format {pil_format} "
                                       f"(supported: {', '.join(sorted(set(_PIL_FORMATS.values())))})")
    try:
        # verify() does not decode pixels; load() does, and fails on truncated data.
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
    except Exception as err:  # noqa: BLE001
        return it.CORRUPT_IMAGE, f"truncated or corrupt image: {err}"
    if width < 1 or height < 1:
        return it.CORRUPT_IMAGE, f"image has no pixels ({width}x{height})"
    return _PIL_FORMATS[pil_format], width, height


def box_problem(index: int, box_px: Sequence[float], width: int, height: int) -> Optional[str]:
    """Why a pixel box ``(xmin, ymin, xmax, ymax)`` is unusable, or None."""
    xmin, ymin, xmax, ymax = box_px
    where = f"box {index} (xmin={xmin:g}, ymin={ymin:g}, xmax={xmax:g}, ymax={ymax:g})"
    if not all(math.isfinite(v) for v in box_px):
        return f"{where} has a non-finite coordinate"
    if xmax <= xmin or ymax <= ymin:
        return f"{where} has zero or negative area"
    tol = BOX_TOLERANCE_PX
    if xmin < -tol or ymin < -tol or xmax > width + tol or ymax > height + tol:
        return f"{where} lies outside the {width}x{height} image"
    return None


def rasterize_segmentation(segmentation, width: int, height: int) -> bytes:
    """COCO polygon list or RLE (compressed or not) -> PNG mask with values 0/255."""
    import numpy as np
    from PIL import Image

    mask = segmentation_bitmap(segmentation, width, height).astype(np.uint8) * 255
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def segmentation_bitmap(segmentation, width: int, height: int):
    """COCO polygon list or RLE (compressed or not, e.g. an ``iscrowd`` region) -> bool
    ``[height, width]``; ValueError when malformed."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        if not segmentation or any(len(p) < 6 or len(p) % 2 for p in segmentation):
            raise ValueError("polygon needs at least 3 (x, y) points")
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(f"RLE size {segmentation['size']} differs from the image's "
                             f"[{height}, {width}]")
        if isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            counts = segmentation["counts"]
            rle = {"size": [height, width],
                   "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise ValueError("expected a polygon list or an RLE dict with 'counts' and 'size'")
    return mask_utils.decode(rle).astype(bool)


BACKGROUND = "background"  # the class of pixels no object covers in a painted class map


def paint_class_map(bitmaps, class_ids: Sequence[int], background_id: int, height: int, width: int):
    """Object bitmaps -> one uint8 class map: pixels no object covers get ``background_id``;
    objects are painted largest first (by pixel count, ties in annotation order), so a
    small object lying on a large one stays visible."""
    import numpy as np

    canvas = np.full((height, width), background_id, np.uint8)
    for index in sorted(range(len(bitmaps)), key=lambda i: -int(bitmaps[i].sum())):
        canvas[bitmaps[index]] = class_ids[index]
    return canvas


MASK_MODES = ("L", "P", "1", "I", "I;16")  # single-channel PIL modes: a class id per pixel


def semantic_mask_png(data: bytes, width: int, height: int, name: str,
                      mask_values: Sequence[int] = (), ignore: int = 255,
                      source_ignore: Optional[int] = None) -> bytes:
    """A semantic mask (PNG of class ids, one channel) checked against its image and
    re-encoded as an 8-bit grey PNG whose values are the ids (a palette PNG keeps its
    indices, not its colours). ``mask_values``: the stored value of id 0, 1, ... (e.g.
    ``(0, 255)`` for a binary mask); a value not among them is an error. Pixels of
    ``source_ignore`` (the source's "not labelled" value) are written as ``ignore``.
    ValueError naming ``name`` when it cannot be used."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError(f"mask {name} is a zero-byte file")
    try:
        with Image.open(io.BytesIO(data)) as mask:
            mask_format, mode, size = mask.format, mask.mode, mask.size
            mask.load()
            ids = np.asarray(mask)
    except UnidentifiedImageError:
        raise ValueError(f"mask {name} is not a readable image") from None
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
        raise ValueError(f"mask {name} is corrupt: {err}") from None
    if mask_format != "PNG":
        raise ValueError(f"mask {name} is {mask_format}; masks must be PNG (lossless class ids)")
    if mode not in MASK_MODES:
        raise ValueError(f"mask {name} has mode {mode}; a mask is one channel of class ids "
                         "(a grey 'L' or palette 'P' PNG)")
    if size != (width, height):
        raise ValueError(f"mask {name} is {size[0]}x{size[1]} but its image is {width}x{height}")
    if ids.size and (ids.min() < 0 or ids.max() > 255):
        raise ValueError(f"mask {name} has class ids outside [0, 255] ({ids.min()}..{ids.max()})")
    ignored = ids == source_ignore if source_ignore is not None else np.zeros(ids.shape, bool)
    if mask_values:
        lookup = np.full(256, -1, np.int64)
        lookup[list(mask_values)] = np.arange(len(mask_values))
        mapped = lookup[ids.astype(np.int64)]
        unknown = (mapped < 0) & ~ignored
        if unknown.any():
            values = sorted(set(ids[unknown].tolist()))
            raise ValueError(f"mask {name} has pixel values {values[:10]} that data.mask_values "
                             f"does not list (it lists {list(mask_values)})")
        ids = mapped
    ids = np.where(ignored, ignore, ids)
    buffer = io.BytesIO()
    Image.fromarray(ids.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _mask_labels(mask_png: bytes, class_names: Sequence[str], name: str, ignore: int = 255):
    """(problem or None, the class names of the ids in a checked mask PNG); ``ignore`` (the
    task's ignore value) is never a class."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(mask_png)) as mask:
        ids = sorted(int(i) for i in np.unique(np.asarray(mask)) if i != ignore)
    unknown = [i for i in ids if i >= len(class_names)]
    if unknown:
        return (f"mask {name} has class ids {unknown[:10]} but there are {len(class_names)} "
                f"classes {list(class_names)[:10]} (ids 0..{len(class_names) - 1}; "
                f"{ignore} is ignored)"), []
    return None, [class_names[i] for i in ids]


def _class_map_problem(class_names: Optional[Sequence[str]]) -> Optional[str]:
    if class_names is None or BACKGROUND not in class_names:
        return (f"a class map painted from object outlines needs a {BACKGROUND!r} class for the "
                f"pixels no object covers; the class list is {list(class_names or [])[:10]}")
    return None


def _png(ids) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(ids, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _label_problem(label: str, class_names: Optional[Sequence[str]], what: str) -> Optional[str]:
    if class_names is None or label in class_names:
        return None
    shown = ", ".join(class_names[:10]) + (", ..." if len(class_names) > 10 else "")
    return f"{what} {label!r} is not in the class list ({len(class_names)} classes: {shown})"


def validate_item(item: it.SourceItem, class_names: Optional[Sequence[str]],
                  rules: ImageRules = ImageRules()) -> Union[it.ValidImage, it.Quarantined]:
    """Decode ``item`` fully and check every annotation against the image and ``rules``."""
    def quarantine(kind: str, reason: str) -> it.Quarantined:
        return it.Quarantined(file=item.filename, kind=kind, reason=reason)

    if item.problem is not None:
        return quarantine(*item.problem)
    data = item.encoded
    if data is None:
        if not item.path or not file_exists(item.path):
            return quarantine(it.MISSING_FILE, f"image file not found: {item.path}")
        try:
            data = read_bytes(item.path)
        except Exception as err:  # noqa: BLE001 - any I/O error is this file's problem
            return quarantine(it.UNREADABLE, f"cannot read {item.path}: {err}")
    decoded = decode_image(data, rules.max_image_pixels)
    if len(decoded) == 2:
        return quarantine(*decoded)
    image_format, width, height = decoded
    if item.declared_size and all(item.declared_size) and tuple(item.declared_size) != (width, height):
        return quarantine(it.SIZE_MISMATCH,
                          f"annotation gives size {item.declared_size[0]}x{item.declared_size[1]} "
                          f"but the image is {width}x{height}")
    for label in item.labels:
        problem = _label_problem(label, class_names, "label")
        if problem:
            return quarantine(it.UNKNOWN_LABEL, problem)
    problem = rules.labels_problem(item)
    if problem:
        return quarantine(it.NO_LABELS, problem)

    boxes: List[Tuple[float, float, float, float]] = []
    masks: List[bytes] = []
    bitmaps = []  # of the objects painted into the class map (item.mask_from_objects)
    for index, obj in enumerate(item.objects):
        problem = _label_problem(obj.label, class_names, f"object {index} label")
        if problem:
            return quarantine(it.UNKNOWN_LABEL, problem)
        xmin, ymin, xmax, ymax = obj.box
        if obj.normalized:
            xmin, xmax, ymin, ymax = xmin * width, xmax * width, ymin * height, ymax * height
        problem = box_problem(index, (xmin, ymin, xmax, ymax), width, height)
        if problem:
            return quarantine(it.BAD_BOX, problem)
        boxes.append(tuple(min(max(v, 0.0), 1.0) for v in
                           (ymin / height, xmin / width, ymax / height, xmax / width)))
        if item.mask_from_objects:
            if obj.segmentation is None:
                return quarantine(it.BAD_MASK, f"object {index} ({obj.label!r}) has no segmentation: "
                                               "the class map needs every object's outline")
            try:
                bitmaps.append(segmentation_bitmap(obj.segmentation, width, height))
            except Exception as err:  # noqa: BLE001 - malformed annotations vary widely
                return quarantine(it.BAD_MASK, f"object {index} segmentation: {err}")
        elif obj.segmentation is not None:
            try:
                masks.append(rasterize_segmentation(obj.segmentation, width, height))
            except Exception as err:  # noqa: BLE001 - malformed annotations vary widely
                return quarantine(it.BAD_MASK, f"object {index} segmentation: {err}")
        elif obj.mask_png is not None:
            masks.append(obj.mask_png)
    if masks and len(masks) != len(boxes):
        return quarantine(it.BAD_MASK, f"{len(masks)} masks for {len(boxes)} objects: "
                                       "every object needs a mask or none may have one")
    segmentation_mask = None
    labels = list(item.labels)
    if item.mask_from_objects:
        problem = _class_map_problem(class_names)
        if problem:
            return quarantine(it.BAD_MASK, problem)
        class_map = paint_class_map(bitmaps, [class_names.index(o.label) for o in item.objects],
                                    class_names.index(BACKGROUND), height, width)
        item = dataclasses.replace(item, mask_encoded=_png(class_map))
    if rules.needs_semantic_mask and item.mask_path is None and item.mask_encoded is None:
        return quarantine(it.BAD_MASK, "has no semantic mask (the task needs a mask of class ids "
                                       "for every image)")
    if item.mask_path is not None or item.mask_encoded is not None:
        name = item.mask_path or (f"the class map painted from {item.filename}'s objects"
                                  if item.mask_from_objects else f"the {item.filename} record's mask")
        mask_data = item.mask_encoded
        if mask_data is None:
            if not file_exists(item.mask_path):
                return quarantine(it.BAD_MASK, f"mask file not found: {item.mask_path}")
            try:
                mask_data = read_bytes(item.mask_path)
            except Exception as err:  # noqa: BLE001 - any I/O error is this file's problem
                return quarantine(it.BAD_MASK, f"cannot read mask {item.mask_path}: {err}")
        try:
            segmentation_mask = semantic_mask_png(
                mask_data, width, height, name, () if item.mask_from_objects else rules.mask_values,
                rules.mask_ignore, item.mask_ignore_value)
        except ValueError as err:
            return quarantine(it.BAD_MASK, str(err))
        if not labels and class_names is not None:
            # the classes the mask shows are the image's labels (the class tally, drift)
            problem, labels = _mask_labels(segmentation_mask, class_names, name, rules.mask_ignore)
            if problem:
                return quarantine(it.BAD_MASK, problem)
    return it.ValidImage(
        sha256=hashlib.sha256(data).hexdigest(), encoded=data, image_format=image_format,
        height=height, width=width, filename=item.filename, labels=labels,
        boxes=boxes, object_labels=[o.label for o in item.objects], masks=masks,
        text=item.text, source_split=item.source_split, listing_index=item.listing_index,
        group_id=item.group_id, segmentation_mask=segmentation_mask)
