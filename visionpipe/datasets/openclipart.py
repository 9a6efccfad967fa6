"""Semi-real many-class segmentation scenes: openclipart drawings (Debian's ``openclipart-png``,
public domain) alpha-composited on the real textures scikit-image ships (``skimage.data``
brick, grass, gravel: read from its package, never fetched). A drawing's alpha channel is
the artist's exact mask, so the class map is exact: pixel = the id of the topmost drawing whose
alpha there is above ``ALPHA_THRESHOLD``, else 0 (``background``).

Classes are openclipart's top-level folders (a category, e.g. ``animals``, drawings of its
sub-folders included). ``write_scenes`` writes ``images/NNNNN.png`` and ``masks/NNNNN.png``
(8-bit class ids) for the ``mask_folder`` source and returns the class names in id order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

DEBIAN_ROOT = Path("/usr/share/openclipart/png")
BACKGROUND = "background"
DEFAULT_CATEGORIES = ("animals", "food", "people", "plants", "tools", "transportation")
TEXTURES = ("brick", "grass", "gravel")
ALPHA_THRESHOLD = 128
MAX_DRAWING_PIXELS = 4_000_000  # larger PNGs are skipped (and counted), not decoded


@dataclass
class Drawings:
    """The usable drawings per category, and every PNG left out with why."""
    by_category: Dict[str, List[Path]]
    skipped: Dict[str, str] = field(default_factory=dict)  # path -> reason


def find_drawings(root=DEBIAN_ROOT, categories: Sequence[str] = DEFAULT_CATEGORIES,
                  max_pixels: int = MAX_DRAWING_PIXELS) -> Drawings:
    """The PNGs under ``<root>/<category>/`` (recursive, sorted) that have an alpha channel
    and at most ``max_pixels`` pixels."""
    root = Path(root)
    found = Drawings({})
    for category in categories:
        folder = root / category
        if not folder.is_dir():
            raise FileNotFoundError(f"openclipart category folder not found: {folder}")
        usable = []
        for path in sorted(folder.rglob("*.png")):
            try:
                with Image.open(path) as image:
                    size, has_alpha = image.size, _has_alpha(image)
            except Image.DecompressionBombError as error:  # Pillow refuses to open it at all
                found.skipped[str(path)] = f"over {max_pixels:,} pixels ({error})"
                continue
            except OSError as error:
                found.skipped[str(path)] = f"unreadable: {error}"
                continue
            if size[0] * size[1] > max_pixels:
                found.skipped[str(path)] = f"{size[0]}x{size[1]} is over {max_pixels:,} pixels"
            elif not has_alpha:
                found.skipped[str(path)] = f"no alpha channel (mode {image.mode})"
            else:
                usable.append(path)
        if not usable:
            raise ValueError(f"openclipart category {category!r} has no usable drawing in {folder}")
        found.by_category[category] = usable
    return found


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def texture_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random ``size`` x ``size`` crop of one scikit-image texture, tinted, uint8 RGB."""
    import skimage.data

    texture = getattr(skimage.data, TEXTURES[int(rng.integers(len(TEXTURES)))])()
    scale = max(1.0, size / min(texture.shape))
    if scale > 1.0:
        texture = np.asarray(Image.fromarray(texture).resize(
            (int(np.ceil(texture.shape[1] * scale)), int(np.ceil(texture.shape[0] * scale)))))
    top = int(rng.integers(texture.shape[0] - size + 1))
    left = int(rng.integers(texture.shape[1] - size + 1))
    grey = texture[top:top + size, left:left + size].astype(np.float32)
    tint = rng.uniform(0.6, 1.0, size=3)
    return np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)


def composite(image: np.ndarray, mask: np.ndarray, drawing: Image.Image, class_id: int,
              top: int, left: int) -> None:
    """Alpha-blend an RGBA ``drawing`` onto ``image`` (uint8 RGB) at ``(top, left)``, in place;
    where its alpha is above ``ALPHA_THRESHOLD`` the ``mask`` becomes ``class_id`` (a later
    drawing covers an earlier one). The parts outside the image are cut off."""
    rgba = np.asarray(drawing.convert("RGBA"))
    height, width = image.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + rgba.shape[0], height), min(left + rgba.shape[1], width)
    if y1 <= y0 or x1 <= x0:
        return
    part = rgba[y0 - top:y1 - top, x0 - left:x1 - left]
    alpha = part[..., 3:].astype(np.float32) / 255.0
    region = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = np.round(part[..., :3] * alpha + region * (1.0 - alpha)).astype(np.uint8)
    mask[y0:y1, x0:x1][part[..., 3] > ALPHA_THRESHOLD] = class_id


def render_scene(rng: np.random.Generator, drawings: Drawings, categories: Sequence[str],
                 size: int, max_drawings: int, first_class: int) -> Tuple[np.ndarray, np.ndarray]:
    """One texture with 1..``max_drawings`` drawings at random scale (their longer side 30% to
    70% of the scene) and position (up to a quarter may hang outside); the first drawing is of
    category ``first_class`` (so every class shows up), the rest of random ones."""
    image = texture_background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    count = int(rng.integers(1, max_drawings + 1))
    classes = [first_class] + rng.integers(len(categories), size=count - 1).tolist()
    for class_index in classes:
        paths = drawings.by_category[categories[class_index]]
        with Image.open(paths[int(rng.integers(len(paths)))]) as drawing:
            longer = max(4, int(size * rng.uniform(0.3, 0.7)))
            ratio = longer / max(drawing.size)
            resized = drawing.convert("RGBA").resize(
                (max(1, round(drawing.size[0] * ratio)), max(1, round(drawing.size[1] * ratio))),
                Image.LANCZOS)
        h, w = resized.size[1], resized.size[0]
        top = int(rng.integers(-h // 4, size - 3 * h // 4 + 1))
        left = int(rng.integers(-w // 4, size - 3 * w // 4 + 1))
        composite(image, mask, resized, class_index + 1, top, left)
    return image, mask


def write_scenes(out_dir, drawings: Drawings, num_images: int, size: int = 256, seed: int = 0,
                 max_drawings: int = 3) -> List[str]:
    """Write ``<out_dir>/images/NNNNN.png`` and ``<out_dir>/masks/NNNNN.png``; returns the
    class names in id order: ``background``, then the categories as ``drawings`` lists them."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    categories = list(drawings.by_category)
    for index in range(num_images):
        rng = np.random.default_rng([seed, index])
        image, mask = render_scene(rng, drawings, categories, size, max_drawings,
                                   index % len(categories))
        Image.fromarray(image).save(out / "images" / f"{index:05d}.png")
        Image.fromarray(mask, mode="L").save(out / "masks" / f"{index:05d}.png")
    return [BACKGROUND, *categories]
