"""Seeded synthetic "shapes" data on real photographic backgrounds.

Every image is first a :class:`Scene`: a square crop of one of the real photos that
scikit-image ships inside its package (read from disk, never fetched), a lighting change,
and a stack of layers -- coloured geometric shapes (the labelled objects) and irregular
distractor blobs that partly occlude them. The scene keeps each object's polygon, colour,
visible instance mask and the pixel box around that mask, so one scene renders to every
kind of target: a class label, several labels, boxes, instance masks, and, across frames
of :func:`render_sequence`, track ids.

Everything is a pure function of ``(seed, kind of data, image index)``: the same seed
writes byte-identical files, and image ``i`` does not depend on how many images are made.

Boxes are ``(xmin, ymin, xmax, ymax)`` in pixel-edge coordinates: pixel column ``c``
spans ``[c, c + 1)``, so a box holds exactly the columns ``xmin .. xmax - 1``.
"""
from __future__ import annotations

import colorsys
import csv
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image


def _regular_polygon(sides: int, phase: float = 0.0) -> np.ndarray:
    angles = phase + np.arange(sides) * 2.0 * np.pi / sides
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _cross(half_width: float = 0.33) -> np.ndarray:
    w = half_width
    return np.array([(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1),
                     (-w, w), (-1, w), (-1, -w), (-w, -w)], dtype=np.float64)


# Unit templates centred on the origin with their farthest vertex at radius 1, so a
# shape's size is one number whatever its class. The diamond is narrow so that it stays
# distinct from a square rotated by 45 degrees.
SHAPE_TEMPLATES: Dict[str, np.ndarray] = {
    "circle": _regular_polygon(48),
    "square": _regular_polygon(4, np.pi / 4),
    "triangle": _regular_polygon(3, -np.pi / 2),
    "star": _star(),
    "cross": _cross(),
    "hexagon": _regular_polygon(6),
    "diamond": np.array([(0.0, -1.0), (0.55, 0.0), (0.0, 1.0), (-0.55, 0.0)]),
}
DEFAULT_CLASSES: Tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")

# Real photographs shipped inside scikit-image (no synthetic test patterns, no pages of
# text, which would leak into a future OCR task).
BACKGROUND_PHOTOS: Tuple[str, ...] = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png",
    "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
    "motorcycle_left.png", "retina.jpg", "rocket.jpg",
)

# Independent random streams per kind of data, so the same seed gives unrelated images
# for classification, multi-label, detection and video.
_STREAM_CLASSIFICATION, _STREAM_MULTILABEL, _STREAM_DETECTION, _STREAM_SEQUENCE = 1, 2, 3, 4

_MIN_VISIBLE_FRACTION = 0.55  # occlusion never hides more of an object than this allows
_MIN_COLOUR_DISTANCE = 120.0  # L1 distance (0..765) between a shape and its background
_PLACEMENT_TRIES = 30


# --------------------------------------------------------------------------- scene model
@dataclass(frozen=True)
class BackgroundCrop:
    """A square crop ``[top, top + side) x [left, left + side)`` of a packaged photo."""

    photo: str
    top: int
    left: int
    side: int
    flip: bool = False


@dataclass(frozen=True)
class Lighting:
    """Global light: contrast around mid-grey, brightness shift, per-channel colour cast,
    a linear illumination gradient and sensor noise."""

    contrast: float = 1.0
    brightness: float = 0.0
    colour_gain: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    gradient: Tuple[float, float] = (0.0, 0.0)  # gain change per image width along x, y
    noise_std: float = 0.0
    noise_seed: int = 0


@dataclass
class SceneObject:
    """One labelled shape. ``mask`` and ``bbox`` describe what is visible after occlusion."""

    class_name: str
    class_id: int
    polygon: np.ndarray  # (K, 2) float, (x, y) pixel coordinates
    colour: Tuple[int, int, int]
    mask: np.ndarray  # bool [H, W], visible pixels
    bbox: Tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (pixel edges, max exclusive)
    full_area: int  # pixels of the unoccluded shape
    track_id: int = -1
    #: the box of the whole shape, hidden parts included (set for video frames: MOT's
    #: ground truth boxes are amodal, with the visible fraction beside them)
    full_bbox: Optional[Tuple[int, int, int, int]] = None

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def visible_fraction(self) -> float:
        return self.area / max(self.full_area, 1)

    def normalized_bbox(self, image_size: int) -> Tuple[float, float, float, float]:
        """``(ymin, xmin, ymax, xmax)`` in [0, 1], the order of ``features.BBOX_KEYS``."""
        xmin, ymin, xmax, ymax = self.bbox
        return (ymin / image_size, xmin / image_size, ymax / image_size, xmax / image_size)


@dataclass(frozen=True)
class Distractor:
    """An unlabelled blob drawn over the objects (partial occlusion, clutter)."""

    polygon: np.ndarray
    colour: Tuple[int, int, int]


@dataclass
class Scene:
    image_size: int
    background: BackgroundCrop
    lighting: Lighting
    objects: List[SceneObject] = field(default_factory=list)
    distractors: List[Distractor] = field(default_factory=list)

    @property
    def labels(self) -> List[str]:
        """Distinct class names present, in class-id order."""
        return [name for _, name in sorted({(o.class_id, o.class_name) for o in self.objects})]

    def semantic_mask(self) -> np.ndarray:
        """uint8 [H, W]: ``class_id + 1`` where an object is visible, 0 elsewhere."""
        mask = np.zeros((self.image_size, self.image_size), np.uint8)
        for obj in self.objects:
            mask[obj.mask] = obj.class_id + 1
        return mask

    def render(self) -> np.ndarray:
        """The scene as a uint8 [H, W, 3] RGB image."""
        image = _background_pixels(self.background, self.image_size).astype(np.float32)
        for obj in self.objects:
            image[_rasterize(obj.polygon, self.image_size)] = obj.colour
        for blob in self.distractors:
            image[_rasterize(blob.polygon, self.image_size)] = blob.colour
        return _apply_lighting(image, self.lighting)


# --------------------------------------------------------------------------- primitives
def _photo_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


@functools.lru_cache(maxsize=None)
def _available_photos() -> Tuple[str, ...]:
    folder = _photo_dir()
    found = tuple(name for name in BACKGROUND_PHOTOS if (folder / name).is_file())
    if not found:
        raise FileNotFoundError(
            f"none of the background photos {BACKGROUND_PHOTOS} are in {folder}; "
            "reinstall scikit-image (its wheel ships them)")
    return found


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    path = _photo_dir() / name
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    pixels.setflags(write=False)
    return pixels


def _background_pixels(crop: BackgroundCrop, image_size: int) -> np.ndarray:
    photo = _photo(crop.photo)
    patch = photo[crop.top:crop.top + crop.side, crop.left:crop.left + crop.side]
    if crop.flip:
        patch = patch[:, ::-1]
    interpolation = cv2.INTER_AREA if crop.side >= image_size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(patch), (image_size, image_size),
                      interpolation=interpolation)


def _rasterize(polygon: np.ndarray, image_size: int) -> np.ndarray:
    canvas = np.zeros((image_size, image_size), np.uint8)
    # 4 fractional bits: sub-pixel vertex positions, so small shapes keep their form.
    points = np.round(np.asarray(polygon) * 16).astype(np.int32)
    cv2.fillPoly(canvas, [points], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _apply_lighting(image: np.ndarray, light: Lighting) -> np.ndarray:
    size = image.shape[0]
    image = (image - 128.0) * light.contrast + 128.0 + light.brightness
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    illumination = 1.0 + light.gradient[0] * ramp[None, :] + light.gradient[1] * ramp[:, None]
    image = image * illumination[..., None] * np.asarray(light.colour_gain, np.float32)
    if light.noise_std > 0:
        noise = np.random.default_rng(light.noise_seed).normal(0.0, light.noise_std, image.shape)
        image = image + noise.astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def mask_bbox(mask: np.ndarray) -> Tuple[int, int, int, int]:
    """Tightest ``(xmin, ymin, xmax, ymax)`` box (max exclusive) around a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask_bbox: the mask is empty")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def shape_polygon(class_name: str, centre: Tuple[float, float], radius: float, angle: float,
                  aspect: float = 1.0) -> np.ndarray:
    """The template of ``class_name`` scaled to ``radius`` pixels, stretched along x by
    ``aspect``, rotated by ``angle`` radians and moved to ``centre`` (x, y)."""
    if class_name not in SHAPE_TEMPLATES:
        raise KeyError(f"unknown shape class {class_name!r}; known: {sorted(SHAPE_TEMPLATES)}")
    points = SHAPE_TEMPLATES[class_name] * np.array([aspect, 1.0]) * radius
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = points @ np.array([[cos, sin], [-sin, cos]])
    return rotated + np.asarray(centre, np.float64)


def _blob_polygon(rng: np.random.Generator, centre: Tuple[float, float],
                  radius: float) -> np.ndarray:
    # A smooth irregular outline (low-frequency radial noise): no straight edges or
    # symmetry, so a blob never looks like one of the shape classes.
    angles = np.linspace(0.0, 2.0 * np.pi, 28, endpoint=False)
    radii = np.ones_like(angles)
    for frequency in (2, 3, 5):
        radii += rng.uniform(0.08, 0.22) * np.sin(frequency * angles + rng.uniform(0, 2 * np.pi))
    radii = radius * radii / radii.max()
    return np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1)


def _random_colour(rng: np.random.Generator) -> Tuple[int, int, int]:
    hue = rng.uniform()
    saturation = rng.uniform(0.55, 1.0)
    value = rng.uniform(0.45, 1.0)
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, saturation, value))


def _contrasting_colour(rng: np.random.Generator,
                        reference: np.ndarray) -> Tuple[int, int, int]:
    """A random saturated colour far enough from the ``reference`` RGB colour."""
    best, best_distance = None, -1.0
    for _ in range(12):
        colour = _random_colour(rng)
        distance = float(np.abs(np.asarray(colour, np.float64) - reference).sum())
        if distance >= _MIN_COLOUR_DISTANCE:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def _random_background(rng: np.random.Generator) -> BackgroundCrop:
    photos = _available_photos()
    name = photos[int(rng.integers(len(photos)))]
    height, width = _photo(name).shape[:2]
    shortest = min(height, width)
    side = int(rng.uniform(0.2, 0.6) * shortest)
    return BackgroundCrop(photo=name, top=int(rng.integers(0, height - side + 1)),
                          left=int(rng.integers(0, width - side + 1)), side=side,
                          flip=bool(rng.integers(2)))


def _random_lighting(rng: np.random.Generator) -> Lighting:
    return Lighting(
        contrast=float(rng.uniform(0.7, 1.25)),
        brightness=float(rng.uniform(-30.0, 30.0)),
        colour_gain=tuple(float(g) for g in rng.uniform(0.85, 1.15, size=3)),
        gradient=tuple(float(g) for g in rng.uniform(-0.3, 0.3, size=2)),
        noise_std=float(rng.uniform(0.0, 6.0)),
        noise_seed=int(rng.integers(2**31)),
    )


# --------------------------------------------------------------------------- scene building
@dataclass
class _PlacedShape:
    class_name: str
    class_id: int
    polygon: np.ndarray
    colour: Tuple[int, int, int]
    full_area: int
    visible: np.ndarray  # what is left once every later layer is drawn


class _Layers:
    """Shapes and blobs stacked bottom to top; tracks what stays visible of each shape."""

    def __init__(self, image_size: int):
        self.size = image_size
        self.shapes: List[_PlacedShape] = []
        self.blobs: List[Distractor] = []
        # Blobs are rendered above every shape, so they hide parts of shapes added later too.
        self.blob_cover = np.zeros((image_size, image_size), bool)

    def _keeps_shapes_visible(self, cover: np.ndarray) -> bool:
        return all((shape.visible & ~cover).sum() >= _MIN_VISIBLE_FRACTION * shape.full_area
                   for shape in self.shapes)

    def add_shape(self, class_name: str, class_id: int, polygon: np.ndarray,
                  colour: Tuple[int, int, int]) -> bool:
        full = _rasterize(polygon, self.size)
        visible = full & ~self.blob_cover
        if (full.sum() < 4 or visible.sum() < _MIN_VISIBLE_FRACTION * full.sum()
                or not self._keeps_shapes_visible(full)):
            return False
        for shape in self.shapes:
            shape.visible &= ~full
        self.shapes.append(_PlacedShape(class_name, class_id, polygon, colour,
                                        int(full.sum()), visible))
        return True

    def add_blob(self, blob: Distractor) -> bool:
        cover = _rasterize(blob.polygon, self.size)
        if not self._keeps_shapes_visible(cover):
            return False
        for shape in self.shapes:
            shape.visible &= ~cover
        self.blob_cover |= cover
        self.blobs.append(blob)
        return True

    def objects(self) -> List[SceneObject]:
        return [SceneObject(class_name=shape.class_name, class_id=shape.class_id,
                            polygon=shape.polygon, colour=shape.colour, mask=shape.visible,
                            bbox=mask_bbox(shape.visible), full_area=shape.full_area)
                for shape in self.shapes]


def make_scene(rng: np.random.Generator, image_size: int, class_ids: Sequence[int],
               classes: Sequence[str], occlusion_probability: float = 0.5,
               clutter_blobs: int = 2) -> Scene:
    """A scene holding one shape per entry of ``class_ids`` (indices into ``classes``).

    One object fills 35-80% of the image side; several objects are smaller and placed so
    that each keeps at least ``_MIN_VISIBLE_FRACTION`` of its pixels visible. Each object
    is partly occluded by a blob on its outline with ``occlusion_probability``.
    """
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 for shapes, got {image_size}")
    background = _random_background(rng)
    background_pixels = _background_pixels(background, image_size)
    layers = _Layers(image_size)
    single = len(class_ids) == 1
    low, high = (0.18, 0.40) if single else (0.11, 0.24)
    for class_id in class_ids:
        name = classes[class_id]
        for _ in range(_PLACEMENT_TRIES):
            radius = rng.uniform(low, high) * image_size
            centre = tuple(rng.uniform(radius, image_size - radius, size=2))
            polygon = shape_polygon(name, centre, radius, rng.uniform(0, 2 * np.pi),
                                    aspect=rng.uniform(0.9, 1.1))
            region = _rasterize(polygon, image_size)
            under = background_pixels[region] if region.any() else background_pixels.reshape(-1, 3)
            colour = _contrasting_colour(rng, under.mean(axis=0))
            if layers.add_shape(name, class_id, polygon, colour):
                break
        else:
            raise RuntimeError(
                f"could not place {len(class_ids)} shapes in a {image_size}px image; "
                "use fewer objects per image or a larger image_size")
        if rng.uniform() < occlusion_probability:
            outline = polygon[int(rng.integers(len(polygon)))]
            for scale in (0.45, 0.3, 0.2):
                blob = Distractor(_blob_polygon(rng, tuple(outline), scale * radius),
                                  _random_colour(rng))
                if layers.add_blob(blob):
                    break
    for _ in range(int(rng.integers(0, clutter_blobs + 1))):
        centre = tuple(rng.uniform(0, image_size, size=2))
        layers.add_blob(Distractor(_blob_polygon(rng, centre, rng.uniform(0.05, 0.12) * image_size),
                                   _random_colour(rng)))
    return Scene(image_size=image_size, background=background, lighting=_random_lighting(rng),
                 objects=layers.objects(), distractors=list(layers.blobs))


def _resolve_classes(classes: Optional[Sequence[str]]) -> Tuple[str, ...]:
    resolved = tuple(classes) if classes else DEFAULT_CLASSES
    unknown = [name for name in resolved if name not in SHAPE_TEMPLATES]
    if unknown:
        raise ValueError(f"unknown shape classes {unknown}; choose from {sorted(SHAPE_TEMPLATES)}")
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"shape classes repeat: {list(resolved)}")
    return resolved


def _check_counts(num_images: int, image_size: int) -> None:
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 for shapes, got {image_size}")


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream, index])


def _write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")


# --------------------------------------------------------------------------- scene streams
def classification_scene(index: int, image_size: int, seed: int,
                         classes: Optional[Sequence[str]] = None) -> Scene:
    """Scene ``index`` of the classification set: one shape of class ``index % len(classes)``."""
    classes = _resolve_classes(classes)
    return make_scene(_rng(seed, _STREAM_CLASSIFICATION, index), image_size,
                      [index % len(classes)], classes)


def multi_object_scene(index: int, image_size: int, seed: int,
                       classes: Optional[Sequence[str]] = None, max_objects: int = 3,
                       stream: int = _STREAM_DETECTION) -> Scene:
    """Scene ``index`` with 1..``max_objects`` shapes of uniformly drawn classes."""
    classes = _resolve_classes(classes)
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    rng = _rng(seed, stream, index)
    count = int(rng.integers(1, max_objects + 1))
    class_ids = rng.integers(0, len(classes), size=count).tolist()
    return make_scene(rng, image_size, class_ids, classes, occlusion_probability=0.35,
                      clutter_blobs=1)


# --------------------------------------------------------------------------- writers
def write_classification_folder(out_dir, num_images: int = 240, image_size: int = 64,
                                seed: int = 7, classes: Optional[Sequence[str]] = None
                                ) -> List[Tuple[str, str]]:
    """Write ``<out_dir>/<class>/<index>.png``, classes balanced (counts differ by <= 1).

    Returns ``(path, class_name)`` per image in index order.
    """
    _check_counts(num_images, image_size)
    classes = _resolve_classes(classes)
    out_dir = Path(out_dir)
    written = []
    for index in range(num_images):
        scene = classification_scene(index, image_size, seed, classes)
        name = scene.objects[0].class_name
        path = out_dir / name / f"{index:05d}.png"
        _write_png(path, scene.render())
        written.append((str(path), name))
    return written


def write_multilabel_csv(out_dir, num_images: int = 240, image_size: int = 64, seed: int = 7,
                         classes: Optional[Sequence[str]] = None, max_objects: int = 3,
                         separator: str = "|") -> str:
    """Write ``<out_dir>/images/<index>.png`` and ``<out_dir>/labels.csv``.

    The CSV has a ``path,label`` header; ``path`` is relative to ``out_dir`` and ``label``
    joins the distinct classes present with ``separator``. Returns the CSV's path.
    """
    _check_counts(num_images, image_size)
    classes = _resolve_classes(classes)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(num_images):
        scene = multi_object_scene(index, image_size, seed, classes, max_objects,
                                   stream=_STREAM_MULTILABEL)
        relative = f"images/{index:05d}.png"
        _write_png(out_dir / relative, scene.render())
        rows.append((relative, separator.join(scene.labels)))
    csv_path = out_dir / "labels.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("path", "label"))
        writer.writerows(rows)
    return str(csv_path)


def mask_polygons(mask: np.ndarray) -> List[List[float]]:
    """COCO polygon segmentation (flat ``[x1, y1, x2, y2, ...]`` lists, pixel-edge
    coordinates) of a binary mask; one polygon per connected part."""
    # Traced at pixel centres, a contour lies half a pixel inside the mask's edge and
    # rasterizes back too small; traced on the mask upscaled x2 it lies a quarter pixel
    # inside, which rasterizes back to the same pixels (mean IoU 0.998 on shapes).
    upscaled = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(upscaled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if len(contour) < 3:
            continue
        points = (contour.reshape(-1, 2).astype(np.float64) + 0.5) / 2.0
        polygons.append([round(float(v), 2) for v in points.reshape(-1)])
    return polygons


def write_coco_detection(out_dir, num_images: int = 240, image_size: int = 64, seed: int = 7,
                         classes: Optional[Sequence[str]] = None, max_objects: int = 4) -> str:
    """Write ``<out_dir>/images/<index>.png`` and ``<out_dir>/annotations.json`` (COCO).

    Each annotation has ``bbox`` ``[x, y, w, h]`` around the visible mask, its ``area`` in
    pixels, and a polygon ``segmentation`` of the visible part (occlusion included).
    Category ids start at 1 in the order of ``classes``. Returns the JSON's path.
    """
    _check_counts(num_images, image_size)
    classes = _resolve_classes(classes)
    out_dir = Path(out_dir)
    images, annotations = [], []
    for index in range(num_images):
        scene = multi_object_scene(index, image_size, seed, classes, max_objects)
        relative = f"images/{index:05d}.png"
        _write_png(out_dir / relative, scene.render())
        image_id = index + 1
        images.append({"id": image_id, "file_name": relative, "width": image_size,
                       "height": image_size})
        for obj in scene.objects:
            xmin, ymin, xmax, ymax = obj.bbox
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": obj.class_id + 1,
                "bbox": [xmin, ymin, xmax - xmin, ymax - ymin], "area": obj.area,
                "segmentation": mask_polygons(obj.mask), "iscrowd": 0,
            })
    coco = {
        "info": {"description": f"VisionPipe shapes (seed {seed})", "version": "1"},
        "images": images, "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"}
                       for i, name in enumerate(classes)],
    }
    json_path = out_dir / "annotations.json"
    json_path.write_text(json.dumps(coco, indent=1))
    return str(json_path)


# --------------------------------------------------------------------------- video
@dataclass
class Frame:
    index: int
    image: np.ndarray
    scene: Scene


def render_sequence(num_frames: int, image_size: int = 64, seed: int = 7,
                    classes: Optional[Sequence[str]] = None, num_objects: int = 3,
                    sequence: int = 0) -> Iterator[Frame]:
    """Frames of shapes moving over a fixed background, each object keeping its track id.

    Objects move in straight lines, spin, bounce off the borders and pass over each other
    (later track ids are drawn on top). An object that is fully hidden in a frame is
    absent from that frame's ``scene.objects``; its track id returns when it reappears.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_objects < 1:
        raise ValueError(f"num_objects must be >= 1, got {num_objects}")
    classes = _resolve_classes(classes)
    _check_counts(1, image_size)
    rng = _rng(seed, _STREAM_SEQUENCE, sequence)
    background = _random_background(rng)
    background_pixels = _background_pixels(background, image_size)
    lighting = _random_lighting(rng)
    class_ids = rng.integers(0, len(classes), size=num_objects)
    radii = rng.uniform(0.09, 0.18, size=num_objects) * image_size
    positions = np.stack([rng.uniform(r, image_size - r, size=2) for r in radii])
    speeds = rng.uniform(0.5, 2.5, size=num_objects) * image_size / 64.0
    headings = rng.uniform(0, 2 * np.pi, size=num_objects)
    velocities = np.stack([speeds * np.cos(headings), speeds * np.sin(headings)], axis=1)
    angles = rng.uniform(0, 2 * np.pi, size=num_objects)
    spins = rng.uniform(-0.15, 0.15, size=num_objects)
    # Objects cross the whole frame, so they contrast with the background's mean colour.
    reference = background_pixels.reshape(-1, 3).mean(axis=0)
    colours = [_contrasting_colour(rng, reference) for _ in range(num_objects)]
    track_ids = np.arange(1, num_objects + 1)
    for frame_index in range(num_frames):
        yield _sequence_frame(frame_index, image_size, background, lighting, classes, class_ids,
                              positions, radii, angles, colours, track_ids)
        positions += velocities
        for axis in range(2):
            low, high = radii, image_size - radii
            bounced_low = positions[:, axis] < low
            bounced_high = positions[:, axis] > high
            velocities[bounced_low | bounced_high, axis] *= -1
            positions[:, axis] = np.clip(positions[:, axis], low, high)
        angles += spins


def _sequence_frame(index: int, image_size: int, background: BackgroundCrop, lighting: Lighting,
                    classes: Sequence[str], class_ids, centres, radii, angles, colours,
                    track_ids) -> Frame:
    """One frame of moving shapes: later entries are drawn on top of earlier ones; an object
    fully hidden is absent from ``scene.objects``."""
    full_masks, polygons = [], []
    for k in range(len(class_ids)):
        polygon = shape_polygon(classes[class_ids[k]], tuple(centres[k]), radii[k], angles[k])
        polygons.append(polygon)
        full_masks.append(_rasterize(polygon, image_size))
    objects = []
    for k in range(len(class_ids)):
        visible = full_masks[k].copy()
        for above in full_masks[k + 1:]:
            visible &= ~above
        if visible.any():
            objects.append(SceneObject(
                class_name=classes[class_ids[k]], class_id=int(class_ids[k]),
                polygon=polygons[k], colour=colours[k], mask=visible,
                bbox=mask_bbox(visible), full_area=int(full_masks[k].sum()),
                track_id=int(track_ids[k]), full_bbox=mask_bbox(full_masks[k])))
    scene = Scene(image_size=image_size, background=background, lighting=lighting,
                  objects=objects)
    return Frame(index=index, image=scene.render(), scene=scene)


def render_occlusion_sequence(num_frames: int = 30, image_size: int = 96, seed: int = 7,
                              sequence: int = 0) -> Iterator[Frame]:
    """Frames with a scripted occlusion, for tracking tests.

    Track 1 (a circle) crosses the frame left to right at mid-height and passes behind track 3
    (a large square near the centre, drawn on top), which hides it completely for a few
    frames in the middle of the sequence; track 2 (a triangle) crosses right to left along the
    top, never occluded. Track 1 comes out of the occlusion on its straight path, so a tracker
    that keeps its id must carry it through frames where it has no detection.
    """
    if num_frames < 12:
        raise ValueError(f"num_frames must be >= 12 for an occlusion, got {num_frames}")
    _check_counts(1, image_size)
    classes = ("circle", "triangle", "square")
    rng = _rng(seed, _STREAM_SEQUENCE, 1_000_000 + sequence)
    background = _random_background(rng)
    reference = _background_pixels(background, image_size).reshape(-1, 3).mean(axis=0)
    lighting = _random_lighting(rng)
    colours = [_contrasting_colour(rng, reference) for _ in classes]
    s = float(image_size)
    radii = np.array([0.08, 0.09, 0.2]) * s
    start = np.array([[0.12, 0.5], [0.86, 0.16], [0.5, 0.5]]) * s
    end = np.array([[0.88, 0.5], [0.14, 0.16], [0.5, 0.5]]) * s
    wobble = rng.uniform(-0.01, 0.01, size=(2,)) * s  # the occluder drifts a little
    for index in range(num_frames):
        t = index / (num_frames - 1)
        centres = start + (end - start) * t
        centres[2] += wobble * np.sin(2 * np.pi * t)
        angles = np.array([0.0, 0.05 * index, 0.0])
        yield _sequence_frame(index, image_size, background, lighting, classes, [0, 1, 2],
                              centres, radii, angles, colours, [1, 2, 3])


def write_mot_sequence(out_dir, frames: Iterable[Frame], image_format: str = "png") -> Path:
    """A MOT Challenge sequence folder from rendered frames: ``img1/000001.<fmt>`` ... and
    ``gt/gt.txt`` (``frame,id,x,y,w,h,1,class_id+1,visibility``, as MOT17: the whole shape's
    box, hidden parts included, and the visible fraction; frames from 1; objects hidden
    completely are absent from their frames)."""
    out = Path(out_dir)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    lines = []
    for frame in frames:
        number = frame.index + 1
        path = out / "img1" / f"{number:06d}.{image_format}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame.image).save(path)
        for obj in frame.scene.objects:
            xmin, ymin, xmax, ymax = obj.full_bbox or obj.bbox
            lines.append(f"{number},{obj.track_id},{xmin},{ymin},{xmax - xmin},{ymax - ymin},1,"
                         f"{obj.class_id + 1},{obj.visible_fraction:.3f}")
    (out / "gt" / "gt.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    return out
