"""``visionpipe augment-preview``: source images taken across the classes, each shown
original and then augmented by several seeds, the class name on every tile and the active
augmentations in a caption, through the Example encoding and task augmentation training uses."""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence

import numpy as np

from visionpipe.core.errors import UserError

TILE = 128  # pixels a tile's longer side is scaled to (generated images are 32-64 px)
HEADER = 14  # pixels of text above each tile


def item_class(item) -> str:
    """The class an item is stratified by: its first image label, else its first object's."""
    if item.labels:
        return item.labels[0]
    return item.objects[0].label if item.objects else ""


def stratified_valid(listed: Sequence, count: int, validate) -> List:
    """Up to ``count`` valid images taken round-robin over the classes of ``listed`` (in
    listing order within a class); ``validate(item)`` returns a ``ValidImage`` or not.
    Stops after ``4 * count`` items tried."""
    by_class: Dict[str, List] = {}
    for item in listed:
        by_class.setdefault(item_class(item), []).append(item)
    queues = [list(reversed(by_class[name])) for name in sorted(by_class)]
    valid, tried = [], 0
    while len(valid) < count and tried < 4 * count and any(queues):
        for queue in queues:
            if queue and len(valid) < count and tried < 4 * count:
                tried += 1
                found = validate(queue.pop())
                if found is not None:
                    valid.append(found)
    return valid


def active_augmentations(augment_config, honoured) -> List[str]:
    """``key=value`` of each augmentation the config turns on and the task applies."""
    skip = {"enabled", "seed", "randaugment_ops"}
    active = []
    for field in dataclasses.fields(augment_config):
        value = getattr(augment_config, field.name)
        if field.name in skip or not value or (honoured is not None and field.name not in honoured):
            continue
        active.append(field.name if value is True else f"{field.name}={value:g}")
    if any(name.startswith("randaugment_magnitude") for name in active):
        active.append(f"randaugment_ops={augment_config.randaugment_ops}")
    return active


def tile_label(valid) -> str:
    names = valid.labels or list(dict.fromkeys(valid.object_labels))
    return ", ".join(names) or valid.filename


def _tile(image: np.ndarray, text: str):
    from PIL import Image, ImageDraw

    picture = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype("uint8"))
    scale = TILE / max(picture.size)
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)),
                             Image.NEAREST)
    tile = Image.new("RGB", (picture.width + 4, picture.height + HEADER + 4), "white")
    tile.paste(picture, (2, HEADER + 2))
    ImageDraw.Draw(tile).text((3, 1), text[:28], fill=(0, 0, 0))
    return tile


def compose(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str], caption: str):
    """One PIL image: a row per source image (original, then each draw), captioned below."""
    from PIL import Image, ImageDraw

    tiles = [[_tile(image, f"{label} | " + ("original" if j == 0 else f"draw {j}"))
              for j, image in enumerate(row)] for row, label in zip(rows, labels)]
    width = max(sum(t.width for t in row) for row in tiles)
    lines = _wrap(caption, max(40, width // 6))
    height = sum(max(t.height for t in row) for row in tiles) + 14 * len(lines) + 6
    sheet = Image.new("RGB", (width, height), "white")
    y = 0
    for row in tiles:
        x = 0
        for tile in row:
            sheet.paste(tile, (x, y))
            x += tile.width
        y += max(t.height for t in row)
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(lines):
        draw.text((4, y + 3 + 14 * i), line, fill=(0, 0, 0))
    return sheet


def _wrap(text: str, chars: int) -> List[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > chars:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line]


def run(config, output: str, count: int, draws: int) -> str:
    """Write the preview to ``output``; returns the line the command prints."""
    import visionpipe  # noqa: F401
    import tensorflow as tf

    from visionpipe.core import features
    from visionpipe.components.image_example_gen import encoding, items as source_items, validation
    from visionpipe.components.image_example_gen.sources import source_for
    from visionpipe.tasks import get_task
    from visionpipe.pipeline.data_source import class_names_for_wiring, resolve_data_source
    from visionpipe.pipeline.runners import RunPaths

    if not config.augment.enabled:
        raise UserError("augmentation is disabled in this config (augment.enabled=false)")
    if count < 1 or draws < 1:
        raise UserError(f"--count and --draws must be at least 1, got {count} and {draws}")
    resolved = resolve_data_source(config, RunPaths.of(config).run_dir)
    names = class_names_for_wiring(resolved)
    listed = getattr(source_for(resolved), "items", None)
    if not listed:
        raise UserError("augment-preview needs a listed image source (folder, csv, coco, voc)")

    rules = validation.ImageRules.from_config(config)

    def validate(item):
        checked = validation.validate_item(item, names, rules)
        return checked if isinstance(checked, source_items.ValidImage) else None

    valid = stratified_valid(listed, count, validate)
    if not valid:
        raise UserError(f"none of the first {4 * count} images tried of {resolved.data.path} is valid")
    task = get_task(config, names)
    serialized = tf.data.Dataset.from_tensor_slices([encoding.to_tf_example(v, names) for v in valid])
    pairs = serialized.map(lambda s: task.example_to_inputs(features.parse_single(s, task.feature_keys)))
    batch = next(iter(task.batch_dataset(pairs, len(valid))))
    # draw d uses the seed training batch d gets (data.augment_batches): draw 1 is the first
    # training batch's augmentation exactly; stateless, so no global seed
    columns = [task.draw_targets(*batch)] + [
        task.draw_targets(*task.augment_batch(batch[0], batch[1],
                                              tf.constant([config.augment.seed, d], tf.int64)))
        for d in range(draws)]
    rows = [[column[i] for column in columns] for i in range(len(valid))]
    active = active_augmentations(config.augment, task.augment_keys)
    caption = (f"task {task.name}; augmentations: {', '.join(active) or 'none'}; "
               f"draw d uses seed (augment.seed={config.augment.seed}, d-1)")
    labels = [tile_label(v) for v in valid]
    compose(rows, labels, caption).save(output)
    shown = ", ".join(f"{n} {labels.count(n)}" for n in dict.fromkeys(labels))
    return (f"wrote {output}: {len(valid)} images ({shown}), each original then {draws} "
            f"augmented draw(s); augmentations: {', '.join(active) or 'none'}")
