"""Generated shapes for segmentation: images, mask PNGs and a ``path,label,mask`` CSV."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import List

import numpy as np

BACKGROUND = "background"
#: the shapes generator's random stream of segmentation scenes (1..4 are the other writers')
STREAM = 5


def class_list(data) -> List[str]:
    """The class names of generated segmentation data, in mask-id order.

    ``data.class_names`` when set (every class, ``background`` included, in id order; the
    others are the shapes drawn), else ``background`` and the default shapes sorted by name:
    the order ingestion discovers the classes from the manifest's labels in."""
    from visionpipe.core.errors import ConfigError
    from visionpipe.datasets.shapes import DEFAULT_CLASSES

    if data.class_names:
        names = list(data.class_names)
        if BACKGROUND not in names:
            raise ConfigError(f"data.class_names: generated segmentation data needs a class "
                              f"{BACKGROUND!r} (the pixels no shape covers), got {names}")
        return names
    return sorted([BACKGROUND, *DEFAULT_CLASSES])


def _scene(index: int, image_size: int, seed: int, drawn, max_objects: int):
    """1..``max_objects`` shapes; the first is of class ``index % len(drawn)``, so every
    class appears once ``len(drawn)`` images are written (the others are drawn uniformly)."""
    from visionpipe.datasets import shapes

    rng = shapes._rng(seed, STREAM, index)
    count = int(rng.integers(1, max_objects + 1))
    class_ids = [index % len(drawn)] + rng.integers(0, len(drawn), size=count - 1).tolist()
    return shapes.make_scene(rng, image_size, class_ids, list(drawn), occlusion_probability=0.35,
                             clutter_blobs=1)


def write_shapes_segmentation(out_dir, data, max_objects: int = 3) -> str:
    """``<out_dir>/images/<i>.png`` with ``<out_dir>/images/labels.csv`` (``path,label,mask``,
    relative to the CSV; ``label`` lists the classes present, joined by
    ``data.csv_label_separator``) and the masks, class ids of ``class_list(data)``, in
    ``<out_dir>/masks/<i>.png`` (beside the image folder, so that the folder holding the
    manifest holds only the images). Returns the CSV's path."""
    from PIL import Image

    from visionpipe.core.errors import ConfigError
    from visionpipe.datasets import shapes

    names = class_list(data)
    drawn = [n for n in names if n != BACKGROUND]
    # the shapes generator's ids: 0 background, k + 1 shape k of ``drawn``
    to_id = np.array([names.index(BACKGROUND)] + [names.index(n) for n in drawn], np.uint8)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    rows, seen = [], set()
    for index in range(data.num_images):
        scene = _scene(index, data.image_size, data.seed, drawn, max_objects)
        ids = to_id[scene.semantic_mask()]
        image_rel, mask_rel = f"{index:05d}.png", f"../masks/{index:05d}.png"
        Image.fromarray(scene.render()).save(out_dir / "images" / image_rel)
        Image.fromarray(ids, mode="L").save(out_dir / "masks" / f"{index:05d}.png")
        present = [names[i] for i in np.unique(ids)]
        seen.update(present)
        rows.append((image_rel, data.csv_label_separator.join(present), mask_rel))
    missing = [n for n in names if n not in seen]
    if missing and not data.class_names:
        raise ConfigError(f"data.num_images: {data.num_images} generated images show no "
                          f"{missing}; the class list is discovered from the images, so every "
                          f"class must appear (generate more images or set data.class_names)")
    csv_path = out_dir / "images" / "labels.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("path", "label", "mask"))
        writer.writerows(rows)
    return str(csv_path)
