"""Sources: turn a folder tree, CSV manifest, COCO JSON, Pascal VOC tree, image + mask folder
pairs, TFDS dataset or TFRecord files into a PCollection of ``SourceItem``.

Annotation files are small next to the images, so folder/CSV/COCO/VOC sources read them on
the launcher (which also fixes the class list before any image is read); images are read,
decoded and checked later inside Beam. TFDS and TFRecord sources carry image bytes, so
their records are read inside Beam too. Problems found in the annotations become items
with a ``problem`` and are quarantined like any bad image.
"""
from __future__ import annotations

import abc
import dataclasses
import csv
import io
import json
import posixpath
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import apache_beam as beam

import visionpipe  # noqa: F401
from visionpipe.core import features as F
from visionpipe.components.image_example_gen import items as it
from visionpipe.components.image_example_gen import validation as vd
from visionpipe.core.config import ConfigError, DataConfig


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _join(base: str, relative: str) -> str:
    return relative if relative.startswith("/") or "://" in relative else posixpath.join(base, relative)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


class ImageSource(abc.ABC):
    """What a source tells the ingest pipeline, and how to read it.

    ``semantic_masks``: the task needs a semantic mask per image (``Task.needs_semantic_mask``);
    a source that can give one (VOC's ``SegmentationClass/``, COCO's object outlines painted
    into a class map) then does."""

    def __init__(self, data: DataConfig, semantic_masks: bool = False):
        self.data = data
        self.semantic_masks = semantic_masks

    @property
    def class_names(self) -> Optional[List[str]]:
        """The classes the source declares, in id order; None: discovered from the items."""
        return None

    @property
    def split_names(self) -> Optional[List[str]]:
        """The source's own splits, or None when it has none."""
        return None

    @abc.abstractmethod
    def read(self, pipeline: beam.Pipeline) -> beam.PCollection:
        """A PCollection of ``SourceItem``."""


class _ListedSource(ImageSource):
    """A source whose items are listed from small annotation files.

    The launcher lists them to learn the classes and splits; a Beam worker lists them again
    and reshuffles them to the workers that read the images, so the job graph carries only
    the config (a graph holding a million items would exceed Dataflow's size limit).
    """

    def __init__(self, data: DataConfig, semantic_masks: bool = False):
        super().__init__(data, semantic_masks)
        if len(data.span_paths) > 1:
            self._items, self._class_names, self._split_names = self._list_spans()
        else:
            self._items, self._class_names, self._split_names = self._list()
        for index, item in enumerate(self._items):
            item.listing_index = (index,)

    @abc.abstractmethod
    def _list(self) -> Tuple[List[it.SourceItem], Optional[List[str]], Optional[List[str]]]:
        """Returns (items, declared class names, source split names)."""

    def _list_spans(self):
        """A window of spans (data.span_paths): every span's items, each file named by its span
        folder (``span-2/cat/1.jpg``); the classes of all spans, in first-seen order."""
        common = posixpath.commonpath([p.rstrip("/") for p in self.data.span_paths])
        items, names, splits = [], [], []
        for path in self.data.span_paths:
            span_data = dataclasses.replace(self.data, path=path, span_paths=[])
            span_source = type(self)(span_data, self.semantic_masks)
            span_items, span_names, span_splits = (span_source.items, span_source.class_names,
                                                   span_source.split_names)
            prefix = posixpath.relpath(path.rstrip("/"), common) if common else path
            for item in span_items:
                item.filename = f"{prefix}/{item.filename}"
            items.extend(span_items)
            names.extend(n for n in span_names or [] if n not in names)
            splits.extend(n for n in span_splits or [] if n not in splits)
        return items, (names or None), (splits or None)

    @property
    def class_names(self):
        return self._class_names

    @property
    def split_names(self):
        return self._split_names

    @property
    def items(self) -> List[it.SourceItem]:
        return self._items

    def read(self, pipeline):
        return (pipeline
                | "SourceConfig" >> beam.Create([self.data])
                | "ListItems" >> beam.FlatMap(_list_items, type(self), self.semantic_masks)
                | "SpreadItems" >> beam.Reshuffle())


def _list_items(data: DataConfig, source_class, semantic_masks: bool) -> List[it.SourceItem]:
    return source_class(data, semantic_masks).items


def _name_order(name: str):
    """Files by name without extension, then extension: ``ok_0.jpg`` is listed before its
    copies ``ok_0 (copy).jpg`` and ``ok_0 - Copy.jpg``, which plain sorting puts first."""
    return posixpath.splitext(name)


def _has_dirs_at(root: str, depth: int) -> bool:
    """Whether ``root`` has a (non-hidden) folder ``depth`` levels down."""
    gfile = _gfile()
    level = [root]
    for _ in range(depth):
        level = [_join(d, s.rstrip("/")) for d in level for s in gfile.listdir(d)
                 if not _is_hidden(s) and gfile.isdir(_join(d, s.rstrip("/")))]
        if not level:
            return False
    return True


class FolderSource(_ListedSource):
    """``root/<class>/<image>`` or ``root/<split>/<class>/<image>``; hidden files are skipped.
    Files are listed folder by folder, by name (``_name_order``).

    With ``data.group_path_level`` N > 0 images sit N folders below their class,
    ``<class>/<group>/.../<image>``, and the first of them is the image's group
    (``image/group_id``, e.g. a video of frames or a patient's scans)."""

    def _list(self):
        gfile = _gfile()
        root = self.data.path.rstrip("/")
        if not gfile.isdir(root):
            raise ConfigError(f"data.path: image folder not found: {root}")
        top_dirs = sorted(d.rstrip("/") for d in gfile.listdir(root)
                          if not _is_hidden(d) and gfile.isdir(_join(root, d)))
        levels = self.data.group_path_level
        has_splits = _has_dirs_at(root, 2 + levels)
        depth = (3 if has_splits else 2) + levels
        items, classes = [], set()
        for dirpath, dirnames, filenames in gfile.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d.rstrip("/")))
            rel_dir = posixpath.relpath(dirpath.rstrip("/"), root)
            parts = [] if rel_dir == "." else rel_dir.split("/")
            if len(parts) == depth - 1:
                classes.add(parts[-1 - levels])
            for name in sorted((f for f in filenames if not _is_hidden(f)), key=_name_order):
                rel = "/".join(parts + [name])
                item = it.SourceItem(filename=rel, path=_join(dirpath, name))
                if len(parts) != depth - 1:
                    layout = ("<split>/<class>/" if has_splits else "<class>/") + "<group>/" * levels
                    item.problem = (it.BAD_ANNOTATION, f"not inside a {layout} folder, so it has no label")
                else:
                    item.labels = [parts[-1 - levels]]
                    item.source_split = parts[0] if has_splits else None
                    item.group_id = parts[-levels] if levels else None
                items.append(item)
        if not items:
            raise ConfigError(f"data.path: no files found under {root}")
        return items, sorted(classes), (top_dirs if has_splits else None)


MASK_COLUMNS = ("mask", "mask_path")  # CSV columns naming an image's semantic mask PNG


class CsvSource(_ListedSource):
    """A manifest with columns ``path,label`` (optional ``split``, ``text``, ``mask`` or
    ``mask_path``: a PNG of class ids per image, and the group column ``data.group_key``,
    default ``group``). A header with both mask columns is refused: which one holds the
    mask would be a guess."""

    def _list(self):
        gfile = _gfile()
        manifest = self.data.path
        if not gfile.exists(manifest):
            raise ConfigError(f"data.path: CSV manifest not found: {manifest}")
        base = self.data.images_dir or posixpath.dirname(manifest)
        with gfile.GFile(manifest, "r") as f:
            reader = csv.DictReader(io.StringIO(f.read()))
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = {"path", "label"} - set(columns)
            if missing:
                raise ConfigError(f"{manifest}: missing column(s) {sorted(missing)}; "
                                  f"found {columns}, expected a header 'path,label'")
            # extra cells beyond the header land under the key None: ignored
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                    for row in reader]
        mask_columns = [c for c in MASK_COLUMNS if c in columns]
        if len(mask_columns) > 1:
            raise ConfigError(f"{manifest}: has both mask columns {mask_columns}; keep one")
        mask_column = mask_columns[0] if mask_columns else None
        group_column = self.data.group_key or "group"
        if self.data.group_key and group_column not in columns:
            raise ConfigError(f"data.group_key: {manifest} has no column {group_column!r}; "
                              f"found {columns}")
        sep = self.data.csv_label_separator
        items, classes, splits = [], set(), set()
        for line, row in enumerate(rows, start=2):  # line 1 is the header
            path = row["path"]
            mask = (row.get(mask_column) or None) if mask_column else None
            item = it.SourceItem(filename=path or f"{manifest}:{line}", path=_join(base, path) if path else None,
                                 text=row.get("text") or None, source_split=row.get("split") or None,
                                 group_id=row.get(group_column) or None,
                                 mask_path=_join(base, mask) if mask else None)
            labels = list(dict.fromkeys(l.strip() for l in row["label"].split(sep) if l.strip()))
            if not path:
                item.problem = (it.BAD_ANNOTATION, f"{manifest} line {line}: empty path")
            # an empty label is the task's to judge (validation.ImageRules): a negative for
            # multilabel with data.allow_unlabeled, else quarantined as no_labels
            item.labels = labels
            classes.update(labels)
            if item.source_split:
                splits.add(item.source_split)
            items.append(item)
        if not items:
            raise ConfigError(f"data.path: CSV manifest has no rows: {manifest}")
        return items, sorted(classes), (sorted(splits) if splits else None)


class MaskFolderSource(_ListedSource):
    """Image and mask folder pairs: ``<data.path>/<data.image_folder>/<stem>.<ext>`` with its
    semantic mask ``<data.path>/<data.mask_folder>/<stem>.png`` (folder names default to
    ``images``/``masks``). An image without a mask of the same stem is quarantined by name
    (``bad_mask``); so is a mask without an image (``missing_file``). The classes are
    ``data.class_names``, else the names of ``data.mask_values`` (which also maps stored
    values such as a binary mask's 0/255 to ids 0/1); one of them is required."""

    def _list(self):
        gfile = _gfile()
        root = self.data.path.rstrip("/")
        image_dir, mask_dir = _join(root, self.data.image_folder), _join(root, self.data.mask_folder)
        for key, folder in (("data.image_folder", image_dir), ("data.mask_folder", mask_dir)):
            if not gfile.isdir(folder):
                raise ConfigError(f"{key}: folder not found: {folder}")
        names = list(self.data.class_names) or self.data.mask_class_names
        if not names:
            raise ConfigError("data.mask_values: source 'mask_folder' needs the class of each "
                              "mask id: set data.mask_values ({pixel value: class name}) or "
                              "data.class_names (in id order)")

        def listing(folder):
            return {posixpath.splitext(n)[0]: n for n in sorted(gfile.listdir(folder), key=_name_order)
                    if not _is_hidden(n) and not gfile.isdir(_join(folder, n))}

        images, masks = listing(image_dir), listing(mask_dir)
        items = []
        for stem in sorted(set(images) | set(masks)):
            if stem not in images:
                rel = f"{self.data.mask_folder}/{masks[stem]}"
                items.append(it.SourceItem(filename=rel, problem=(
                    it.MISSING_FILE, f"mask {rel} has no image {self.data.image_folder}/{stem}.*")))
                continue
            rel = f"{self.data.image_folder}/{images[stem]}"
            item = it.SourceItem(filename=rel, path=_join(image_dir, images[stem]))
            if stem in masks:
                item.mask_path = _join(mask_dir, masks[stem])
            else:
                item.problem = (it.BAD_MASK, f"{rel} has no mask {self.data.mask_folder}/{stem}.png")
            items.append(item)
        if not items:
            raise ConfigError(f"data.path: no images under {image_dir}")
        return items, names, None


class CocoSource(_ListedSource):
    """COCO instances JSON: boxes, polygon/RLE masks; classes are the categories by id.

    With ``semantic_masks`` each image's object outlines (polygons, RLE, ``iscrowd`` RLE
    too) are painted into one class map (``validation.paint_class_map``): class id k is
    the k-th class, ``background`` first (id 0) and then the categories by ascending
    category id, unless a category is itself named ``background`` (then no class is
    added and uncovered pixels get its id); larger objects are painted first so small ones
    stay visible. An object without a segmentation quarantines its image."""

    def _list(self):
        gfile = _gfile()
        path = self.data.path
        if not gfile.exists(path):
            raise ConfigError(f"data.path: COCO JSON not found: {path}")
        with gfile.GFile(path, "r") as f:
            try:
                coco = json.load(f)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}: not valid JSON: {err}") from None
        for key in ("images", "annotations", "categories"):
            if not isinstance(coco.get(key), list):
                raise ConfigError(f"{path}: missing the '{key}' list of a COCO file")
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        names = [str(c["name"]) for c in categories]
        if len(set(names)) != len(names):
            raise ConfigError(f"{path}: category names are not unique: {names}")
        name_by_id = {c["id"]: str(c["name"]) for c in categories}
        base = self.data.images_dir or posixpath.dirname(path)
        if self.semantic_masks:
            if self.data.class_names and vd.BACKGROUND not in self.data.class_names:
                raise ConfigError(f"data.class_names: a class map painted from {path}'s outlines "
                                  f"needs a {vd.BACKGROUND!r} class for uncovered pixels")
            if vd.BACKGROUND not in names:
                names = [vd.BACKGROUND] + names

        if self.data.group_key and not any(self.data.group_key in image for image in coco["images"]):
            raise ConfigError(f"data.group_key: no image of {path} has the field "
                              f"{self.data.group_key!r}")
        annotations = defaultdict(list)
        image_ids = {image.get("id") for image in coco["images"]}
        items = []
        for ann in coco["annotations"]:
            if ann.get("image_id") in image_ids:
                annotations[ann["image_id"]].append(ann)
            else:
                items.append(it.SourceItem(
                    filename=f"{path}#annotation-{ann.get('id')}",
                    problem=(it.BAD_ANNOTATION, f"annotation {ann.get('id')} refers to image_id "
                                                f"{ann.get('image_id')!r}, which is not in 'images'")))
        for image in coco["images"]:
            file_name = str(image.get("file_name", ""))
            group = image.get(self.data.group_key or "video_id")
            item = it.SourceItem(filename=file_name or f"{path}#image-{image.get('id')}",
                                 path=_join(base, file_name) if file_name else None,
                                 group_id=None if group in (None, "") else str(group),
                                 mask_from_objects=self.semantic_masks)
            try:
                item.declared_size = (int(image.get("width") or 0), int(image.get("height") or 0))
                item.objects = [self._object(ann, name_by_id) for ann in annotations[image.get("id")]]
            except (TypeError, ValueError) as err:
                item.problem = (it.BAD_ANNOTATION, f"image {image.get('id')}: {err}")
            if not file_name:
                item.problem = (it.BAD_ANNOTATION, f"image {image.get('id')} has no file_name")
            items.append(item)
        return items, names, None

    @staticmethod
    def _object(ann: dict, name_by_id: Dict[int, str]) -> it.ObjectAnnotation:
        if ann.get("category_id") not in name_by_id:
            raise ValueError(f"annotation {ann.get('id')}: unknown category_id {ann.get('category_id')!r}")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise ValueError(f"annotation {ann.get('id')}: bbox must be [x, y, width, height], got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        return it.ObjectAnnotation(label=name_by_id[ann["category_id"]], box=(x, y, x + w, y + h),
                                   segmentation=ann.get("segmentation") or None)


class VocSource(_ListedSource):
    """Pascal VOC: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``."""

    SPLIT_FILES = ("train", "val", "test")

    def _list(self):
        gfile = _gfile()
        root = self.data.path.rstrip("/")
        ann_dir = _join(root, "Annotations")
        if not gfile.isdir(ann_dir):
            raise ConfigError(f"data.path: {root} is not a Pascal VOC folder (no Annotations/)")
        split_of = self._split_membership(root, "ImageSets/Main")
        xml_ids = {posixpath.splitext(n)[0] for n in gfile.listdir(ann_dir) if n.endswith(".xml")}
        items, classes = [], set()
        for image_id in sorted(xml_ids | set(split_of)):
            split, split_problem = split_of.get(image_id, (None, None))
            xml_rel = f"Annotations/{image_id}.xml"
            if image_id not in xml_ids:
                items.append(it.SourceItem(filename=xml_rel, problem=(
                    it.MISSING_FILE, f"listed in ImageSets/Main/{split}.txt but {xml_rel} is missing")))
                continue
            try:
                item = self._parse(root, xml_rel)
            except (ET.ParseError, ValueError) as err:
                item = it.SourceItem(filename=xml_rel, problem=(it.BAD_ANNOTATION, f"{xml_rel}: {err}"))
            item.source_split = split
            if split_problem:
                item.problem = (it.BAD_ANNOTATION, split_problem)
            classes.update(o.label for o in item.objects)
            items.append(item)
        if not items:
            raise ConfigError(f"data.path: no annotations in {ann_dir}")
        splits = sorted({s for s, _ in split_of.values()}) or None
        return items, sorted(classes), splits

    def _split_membership(self, root: str, sets_rel: str) -> Dict[str, Tuple[str, Optional[str]]]:
        gfile = _gfile()
        sets_dir = _join(root, sets_rel)
        present = [s for s in self.SPLIT_FILES if gfile.exists(_join(sets_dir, f"{s}.txt"))]
        if not {"train", "val"} & set(present) and gfile.exists(_join(sets_dir, "trainval.txt")):
            present.insert(0, "trainval")
        membership: Dict[str, Tuple[str, Optional[str]]] = {}
        for split in present:
            with gfile.GFile(_join(sets_dir, f"{split}.txt"), "r") as f:
                for image_id in f.read().split():
                    if image_id in membership and membership[image_id][0] != split:
                        membership[image_id] = (membership[image_id][0], (
                            f"listed in both {sets_rel}/{membership[image_id][0]}.txt and {split}.txt"))
                    else:
                        membership[image_id] = (split, None)
        return membership

    @staticmethod
    def _parse(root: str, xml_rel: str) -> it.SourceItem:
        with _gfile().GFile(_join(root, xml_rel), "rb") as f:
            tree = ET.fromstring(f.read())
        image_id = posixpath.splitext(posixpath.basename(xml_rel))[0]
        file_name = (tree.findtext("filename") or "").strip() or f"{image_id}.jpg"
        size = (int(float(tree.findtext("size/width") or 0)), int(float(tree.findtext("size/height") or 0)))
        objects = []
        for index, obj in enumerate(tree.findall("object")):
            name = (obj.findtext("name") or "").strip()
            box = obj.find("bndbox")
            if not name or box is None:
                raise ValueError(f"object {index} needs <name> and <bndbox>")
            try:
                coords = tuple(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                raise ValueError(f"object {index} has a missing or non-numeric bndbox coordinate") from None
            objects.append(it.ObjectAnnotation(label=name, box=coords))
        rel = f"JPEGImages/{file_name}"
        return it.SourceItem(filename=rel, path=_join(root, rel), objects=objects, declared_size=size)


# Pascal VOC's 20 object classes after the background, in SegmentationClass's palette order
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")
VOC_IGNORE = 255  # SegmentationClass's "void": object outlines and unlabelled regions


class VocSegmentationSource(VocSource):
    """Pascal VOC's semantic masks (``data.source: voc`` for a task that needs them):
    the ids in ``ImageSets/Segmentation/<split>.txt``, each ``JPEGImages/<id>.*`` with
    ``SegmentationClass/<id>.png``, a palette PNG whose palette index is the class id.
    Index 255 (void: the band along object outlines) becomes the task's ignore value.
    Classes: ``data.class_names``, else ``data.mask_values``' names, else VOC's 21
    (``VOC_CLASSES``). A listed id without its PNG or its image is quarantined by name."""

    SETS = "ImageSets/Segmentation"
    MASKS = "SegmentationClass"

    def _list(self):
        gfile = _gfile()
        root = self.data.path.rstrip("/")
        for folder in ("JPEGImages", self.MASKS, self.SETS):
            if not gfile.isdir(_join(root, folder)):
                raise ConfigError(f"data.path: {root} is not a Pascal VOC segmentation folder "
                                  f"(no {folder}/)")
        split_of = self._split_membership(root, self.SETS)
        if not split_of:
            raise ConfigError(f"data.path: {_join(root, self.SETS)} lists no image id "
                              f"(expected {', '.join(f'{s}.txt' for s in self.SPLIT_FILES)} or trainval.txt)")
        images = {posixpath.splitext(n)[0]: n for n in sorted(gfile.listdir(_join(root, "JPEGImages")),
                                                              key=_name_order)}
        masks = set(gfile.listdir(_join(root, self.MASKS)))
        items = []
        for image_id in sorted(split_of):
            split, split_problem = split_of[image_id]
            listed = f"listed in {self.SETS}/{split}.txt"
            rel = f"JPEGImages/{images.get(image_id, image_id + '.jpg')}"
            item = it.SourceItem(filename=rel, path=_join(root, rel), source_split=split,
                                 mask_ignore_value=VOC_IGNORE)
            mask_rel = f"{self.MASKS}/{image_id}.png"
            if image_id not in images:
                item.problem = (it.MISSING_FILE, f"{listed} but JPEGImages/{image_id}.* is missing")
            elif f"{image_id}.png" not in masks:
                item.problem = (it.BAD_MASK, f"{listed} but its mask {mask_rel} is missing")
            elif split_problem:
                item.problem = (it.BAD_ANNOTATION, split_problem)
            else:
                item.mask_path = _join(root, mask_rel)
            items.append(item)
        names = list(self.data.class_names) or self.data.mask_class_names or list(VOC_CLASSES)
        return items, names, sorted({s for s, _ in split_of.values()})


@dataclass(frozen=True)
class TfdsLayout:
    """Which features of a TFDS dataset hold what (picklable, sent to the Beam workers)."""
    image_key: str
    label_key: Optional[str] = None  # image-level ClassLabel, scalar or a sequence
    multi_label: bool = False
    class_names: Optional[Tuple[str, ...]] = None
    objects_key: Optional[str] = None  # a Sequence of {bbox: BBoxFeature, label: ClassLabel}
    box_key: Optional[str] = None
    object_label_key: Optional[str] = None


def _class_labels(features, tfds) -> Dict[str, Tuple[object, bool]]:
    """Image-level ClassLabel features: name -> (ClassLabel, is a sequence)."""
    labels = {}
    for key, feature in features.items():
        if isinstance(feature, tfds.features.ClassLabel):
            labels[key] = (feature, False)
        elif (isinstance(feature, tfds.features.Sequence)
              and isinstance(feature.feature, tfds.features.ClassLabel)):
            labels[key] = (feature.feature, True)
    return labels


def _object_features(name: str, features, tfds) -> Optional[Tuple[str, str, str, List[str]]]:
    """(objects key, box key, label key, class names) of the first Sequence of objects that
    has a bounding box and a ClassLabel (``objects`` in VOC, COCO, KITTI...), or None."""
    for key, feature in features.items():
        if not (isinstance(feature, tfds.features.Sequence)
                and isinstance(feature.feature, tfds.features.FeaturesDict)):
            continue
        sub = feature.feature
        boxes = [k for k, f in sub.items() if isinstance(f, tfds.features.BBoxFeature)]
        labels = [k for k, f in sub.items() if isinstance(f, tfds.features.ClassLabel)]
        if not (boxes and labels):
            continue
        box_format = getattr(sub[boxes[0]], "bbox_format", None)
        if box_format is not None and getattr(box_format, "value", box_format) != "REL_YXYX":
            raise ConfigError(f"data.tfds_name: {name} feature {key}/{boxes[0]} has boxes in "
                              f"{getattr(box_format, 'value', box_format)}; only TFDS's default "
                              "normalised (ymin, xmin, ymax, xmax) boxes are supported")
        label_key = "label" if "label" in labels else labels[0]
        return key, boxes[0], label_key, list(sub[label_key].names)
    return None


class TfdsSource(ImageSource):
    """A prepared TFDS dataset in a local ``data.tfds_data_dir`` (never downloaded).

    The image is the first ``Image`` feature. Detection datasets (a Sequence of objects with
    a ``BBoxFeature`` and a ``ClassLabel``, as VOC and COCO have) give boxes, and their
    object classes are the class list; an image-level label is then kept only when it uses
    the same classes. Otherwise the label is the ``ClassLabel`` named 'label' (else the
    first one), scalar or a sequence for multi-label. Each split is read by one Beam worker.
    """

    def __init__(self, data: DataConfig, semantic_masks: bool = False):
        super().__init__(data, semantic_masks)
        import tensorflow_datasets as tfds

        try:
            builder = tfds.builder(data.tfds_name, data_dir=data.tfds_data_dir)
        except Exception as err:  # noqa: BLE001 - TFDS raises several types for unknown names
            raise ConfigError(f"data.tfds_name: cannot open {data.tfds_name!r} in "
                              f"{data.tfds_data_dir}: {err}") from None
        features = builder.info.features
        images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
        if not images:
            raise ConfigError(f"data.tfds_name: {data.tfds_name} has no Image feature ({list(features)})")
        objects = _object_features(data.tfds_name, features, tfds)
        labels = _class_labels(features, tfds)
        if objects:
            labels = {k: v for k, v in labels.items() if list(v[0].names) == objects[3]}
        label_key = ("label" if "label" in labels else next(iter(labels))) if labels else None
        class_names = objects[3] if objects else (list(labels[label_key][0].names) if labels else None)
        self.layout = TfdsLayout(
            image_key=images[0], label_key=label_key,
            multi_label=bool(label_key and labels[label_key][1]),
            class_names=tuple(class_names) if class_names is not None else None,
            objects_key=objects[0] if objects else None, box_key=objects[1] if objects else None,
            object_label_key=objects[2] if objects else None)
        self._split_names = list(data.tfds_splits) or sorted(builder.info.splits)
        if not self._split_names:
            raise ConfigError(f"data.tfds_splits: {data.tfds_name} in {data.tfds_data_dir} lists no "
                              "prepared splits; name them, e.g. data.tfds_splits=[train,test]")

    @property
    def class_names(self):
        names = self.layout.class_names
        return list(names) if names is not None else None

    @property
    def split_names(self):
        return self._split_names

    def read(self, pipeline):
        return (pipeline
                | "TfdsSplits" >> beam.Create(list(enumerate(self._split_names)))
                | "ReadTfdsSplit" >> beam.FlatMap(_read_tfds_split, self.data.tfds_name,
                                                  self.data.tfds_data_dir, self.layout))


def _tfds_objects(example: dict, layout: TfdsLayout) -> List[it.ObjectAnnotation]:
    objects = example[layout.objects_key]
    return [it.ObjectAnnotation(label=layout.class_names[int(label)],
                                box=(float(box[1]), float(box[0]), float(box[3]), float(box[2])),
                                normalized=True)
            for box, label in zip(objects[layout.box_key], objects[layout.object_label_key])]


def _read_tfds_split(numbered_split: Tuple[int, str], name: str, data_dir: str,
                     layout: TfdsLayout) -> Iterator[it.SourceItem]:
    import tensorflow_datasets as tfds

    split_index, split = numbered_split
    dataset = tfds.load(name, split=split, data_dir=data_dir, download=False,
                        decoders={layout.image_key: tfds.decode.SkipDecoding()})
    for index, example in enumerate(tfds.as_numpy(dataset)):
        labels = []
        if layout.label_key is not None:
            value = example[layout.label_key]
            ids = value.tolist() if layout.multi_label else [int(value)]
            labels = [layout.class_names[i] for i in ids]
        objects = _tfds_objects(example, layout) if layout.objects_key else []
        yield it.SourceItem(filename=f"{name}/{split}/{index}", encoded=bytes(example[layout.image_key]),
                            labels=labels, objects=objects, source_split=split,
                            listing_index=(split_index, index))


_SPLIT_DIR = re.compile(r"(?:^|/)Split-([^/]+)/")


class TfrecordSource(ImageSource):
    """TFRecord files of tf.Example in VisionPipe's feature spec (``data.path`` is a glob).

    Files under ``Split-<name>/`` folders (a TFX Examples artifact) keep that split as
    their source split. Gzip is detected from the ``.gz`` suffix.
    """

    def __init__(self, data: DataConfig, semantic_masks: bool = False):
        super().__init__(data, semantic_masks)
        self.files = sorted(_gfile().glob(data.path))
        if not self.files:
            raise ConfigError(f"data.path: no TFRecord files match {data.path}")
        splits = [_SPLIT_DIR.search(f) for f in self.files]
        self._split_names = sorted({m.group(1) for m in splits}) if all(splits) else None

    @property
    def class_names(self):
        return list(self.data.class_names) or None

    @property
    def split_names(self):
        return self._split_names

    def read(self, pipeline):
        return (pipeline
                | "TfrecordFiles" >> beam.Create(self.files)
                | "ReadTfrecords" >> beam.io.ReadAllFromTFRecord(with_filename=True)
                | "ParseTfExamples" >> beam.Map(_item_from_record, list(self.data.class_names)))


def _item_from_record(file_and_record: Tuple[str, bytes], class_names: List[str]) -> it.SourceItem:
    import tensorflow as tf

    source_file, record = file_and_record

    split = _SPLIT_DIR.search(source_file)
    try:
        feature = tf.train.Example.FromString(record).features.feature
    except Exception as err:  # noqa: BLE001 - protobuf DecodeError and friends
        return it.SourceItem(filename=source_file, problem=(it.BAD_ANNOTATION, f"not a tf.Example: {err}"))

    def values(key):
        if key not in feature:
            return []
        kind = feature[key].WhichOneof("kind")
        return list(getattr(feature[key], kind).value) if kind else []

    def texts(key):
        return [v.decode("utf-8") for v in values(key)]

    def names(text_key, label_key, what):
        if values(text_key):
            return texts(text_key)
        ids = values(label_key)
        if ids and not class_names:
            raise ValueError(f"has {label_key} ids but no {text_key}; set data.class_names to name them")
        if any(not 0 <= i < len(class_names) for i in ids):
            raise ValueError(f"{what} id out of range for {len(class_names)} classes: {ids}")
        return [class_names[i] for i in ids]

    filename = (texts(F.FILENAME) or [""])[0] or source_file
    item = it.SourceItem(filename=filename, text=(texts(F.TEXT) or [None])[0],
                         source_split=split.group(1) if split else None,
                         group_id=(texts(F.GROUP_ID) or [None])[0] or None,
                         mask_encoded=(values(F.SEGMENTATION_MASK) or [None])[0] or None)
    encoded = values(F.ENCODED)
    if not encoded:
        item.problem = (it.MISSING_IMAGE_DATA, f"record in {source_file} has no {F.ENCODED}")
        return item
    item.encoded = encoded[0]
    try:
        item.labels = names(F.LABEL_TEXT, F.LABEL, "class")
        object_labels = names(F.OBJECT_TEXT, F.OBJECT_LABEL, "object class")
        coords = [values(k) for k in (F.BBOX_XMIN, F.BBOX_YMIN, F.BBOX_XMAX, F.BBOX_YMAX)]
        masks = values(F.OBJECT_MASK)
        if len({len(c) for c in coords} | {len(object_labels)}) != 1 or (masks and len(masks) != len(coords[0])):
            raise ValueError("box coordinate, object label and mask lists differ in length")
        item.objects = [it.ObjectAnnotation(label=label, box=box, normalized=True,
                                            mask_png=masks[i] if masks else None)
                        for i, (label, box) in enumerate(zip(object_labels, zip(*coords)))]
    except ValueError as err:
        item.problem = (it.BAD_ANNOTATION, f"record in {source_file}: {err}")
    return item


_SOURCES = {"folder": FolderSource, "csv": CsvSource, "coco": CocoSource, "voc": VocSource,
            "tfds": TfdsSource, "tfrecord": TfrecordSource, "mask_folder": MaskFolderSource}
# what a source gives instead when the task needs semantic masks
_SEMANTIC_SOURCES = {"voc": VocSegmentationSource}


def make_source(data: DataConfig, semantic_masks: bool = False) -> ImageSource:
    """The source of ``data``; a ``{SPAN}`` pattern in data.path is resolved first (the
    executor passes the driver's choice already resolved)."""
    from visionpipe.components.image_example_gen import spans

    data, _ = spans.resolve(data)
    if data.source not in _SOURCES:
        generated = " (generate it first: its images are written as a folder tree)" \
            if data.source in ("shapes", "digits") else ""
        raise ConfigError(f"data.source: ImageExampleGen reads {sorted(_SOURCES)}, "
                          f"not {data.source!r}{generated}")
    if semantic_masks and data.source in _SEMANTIC_SOURCES:
        return _SEMANTIC_SOURCES[data.source](data, semantic_masks)
    return _SOURCES[data.source](data, semantic_masks)


def source_for(config) -> ImageSource:
    """``config.data``'s source, giving semantic masks when ``config.task`` needs them."""
    from visionpipe.core.registry import task_class

    return make_source(config.data, task_class(config.task).needs_semantic_mask)

