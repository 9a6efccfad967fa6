"""`visionpipe anchors`: fit anchors to the training boxes and compare them with the config's.

Boxes come from the source annotations (COCO, VOC, or generated shapes written as COCO) or
from ingested Examples (``--examples`` TFRecord glob). They are measured in pixels of the
model input, i.e. after the image is resized to ``model.image_size`` (one integer: a square, or
``[height, width]``), because that is the space the anchors live in.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np

from visionpipe.cli.args import add_config_arguments, load_config_from_args
from visionpipe.core.errors import UserError

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "anchors", help="fit detection anchors to the training boxes (k-means on 1 - IoU) and "
                        "report best-possible recall and mean best IoU, configured vs fitted")
    add_config_arguments(p)
    p.add_argument("--examples", help="read boxes from Examples TFRecords (a glob, e.g. "
                                      "<run>/ImageExampleGen/examples/<id>/Split-train/*) instead "
                                      "of the source annotations")
    p.add_argument("--write-config", metavar="YAML",
                   help="write the resolved config with the fitted anchors adopted, if they do "
                        "not lower the best-possible recall on the real anchor grid")
    p.add_argument("--force", action="store_true",
                   help="with --write-config: write the fitted anchors even when they lower "
                        "the grid best-possible recall")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=cmd_anchors)


def cmd_anchors(args) -> int:
    from visionpipe.core.registry import task_class
    from visionpipe.tasks.detection import anchors
    from visionpipe.tasks.detection.config import DetectionConfig

    config = load_config_from_args(args)
    # Anchors belong to the tasks that declare the detection config section (by its type,
    # not by a task's name).
    sections = [name for name, section in task_class(config.task).config_sections.items()
                if section is DetectionConfig]
    if not sections:
        raise UserError(f"task is {config.task!r}, which has no detection anchors "
                        "(no `detection` config section)")
    det = getattr(config, sections[0])
    if det.architecture != "retinanet":
        raise UserError("detection.architecture yolov8 is anchor-free; there are no anchors to fit")
    if args.examples:
        boxes, origin, zero_area = boxes_from_examples(args.examples, config.model.hw)
    else:
        boxes, origin, zero_area = boxes_from_source(config)
    if len(boxes) == 0:
        raise UserError(f"no boxes found in {origin}")
    num_clusters = len(det.anchor_sizes) * len(det.anchor_scales) * len(det.anchor_aspect_ratios)
    if len(boxes) < num_clusters:
        raise UserError(f"{origin}: {len(boxes)} boxes cannot fit {num_clusters} anchor shapes")
    report = anchors.anchor_report(boxes, config.model.hw, det.anchor_sizes,
                                   det.anchor_strides, det.anchor_scales, det.anchor_aspect_ratios,
                                   iou_threshold=det.anchor_fit_iou, seed=config.train.seed)
    report.update({"boxes_from": origin, "zero_area_boxes_skipped": zero_area,
                   "image_size": config.model.image_size})
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    if args.write_config:
        recommendation = report["recommendation"]
        if not recommendation["adopt"] and not args.force:
            print(f"not writing {args.write_config}: {recommendation['reason']}. Pass --force to "
                  "write the fitted anchors anyway.", file=sys.stderr)
            return 1
        adopted = copy.deepcopy(config)
        adopted_det = getattr(adopted, sections[0])
        adopted_det.anchor_sizes = report["adopted"]["sizes"]
        adopted_det.anchor_aspect_ratios = report["adopted"]["aspect_ratios"]
        path = adopted.validate().save(args.write_config)
        forced = "" if recommendation["adopt"] else \
            f" (--force: {recommendation['reason']})"
        print(f"wrote {path} with detection.anchor_sizes and detection.anchor_aspect_ratios "
              f"adopted{forced}")
    return 0


def format_report(report) -> str:
    t = report["iou_threshold"]
    lines = [f"{report['num_boxes']} boxes from {report['boxes_from']} "
             f"({report['zero_area_boxes_skipped']} zero-area skipped), "
             f"measured at {_size_text(report['image_size'])}",
             "BPR: best-possible recall at IoU {t:g}; 'shape' centres an anchor on every box, "
             "'grid' uses the anchors' real positions (what RetinaNet's matcher sees)".format(t=t),
             f"{'anchors':<18}{'count':>6}{'BPR shape':>11}{'IoU shape':>11}{'BPR grid':>10}"
             f"{'IoU grid':>10}  parameters"]
    for key, label in (("configured", "configured"), ("fitted_clusters", "fitted (k-means)"),
                       ("adopted", "adopted")):
        row = report[key]
        params = (f"clusters(w,h)={row['clusters_wh']}" if key == "fitted_clusters" else
                  f"sizes={row['sizes']} scales={row['scales']} aspect_ratios={row['aspect_ratios']}")
        grid = (f"{row['grid_best_possible_recall']:>10.3f}{row['grid_mean_best_iou']:>10.3f}"
                if "grid_best_possible_recall" in row else f"{'-':>10}{'-':>10}")
        lines.append(f"{label:<18}{row['num_anchors']:>6}{row['best_possible_recall']:>11.3f}"
                     f"{row['mean_best_iou']:>11.3f}{grid}  {params}")
    for key in ("configured", "adopted"):
        small = report[key].get("smaller_than_stride") or []
        if small:
            lines.append(f"warning: {key} anchors smaller than their level's stride: " + ", ".join(
                f"{s['level']} size {s['size']:g} < stride {s['stride']}" for s in small))
    lines.append(f"=> {report['recommendation']['reason']}")
    return "\n".join(lines)


def _size_text(image_size) -> str:
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    return f"{height}px" if height == width else f"{height}x{width}px (height x width)"


def boxes_from_examples(pattern: str, image_size: Tuple[int, int]) -> Tuple[np.ndarray, str, int]:
    """Normalised Example boxes -> model-pixel yxyx at ``image_size`` ``(height, width)``."""
    import visionpipe  # noqa: F401
    import tensorflow as tf

    from visionpipe.core import features

    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise UserError(f"--examples: no files match {pattern}")
    compression = "GZIP" if files[0].endswith(".gz") else ""
    keys = [features.BBOX_YMIN, features.BBOX_XMIN, features.BBOX_YMAX, features.BBOX_XMAX]
    boxes: List[np.ndarray] = []
    for record in tf.data.TFRecordDataset(files, compression_type=compression).as_numpy_iterator():
        parsed = features.parse_single(tf.constant(record), keys)
        boxes.append(np.stack([parsed[k].numpy() for k in keys], axis=-1)
                     * np.array([*image_size, *image_size], np.float64))
    return _positive(boxes, f"{len(files)} Examples file(s) {pattern}")


def boxes_from_source(config) -> Tuple[np.ndarray, str, int]:
    """Training boxes from the source annotations: the source's train split when
    ``data.use_source_splits``, else every box (content-hash splits exist only after ingest)."""
    from visionpipe.components.image_example_gen.sources import make_source

    data = copy.deepcopy(config.data)
    if data.source in ("shapes",):
        from visionpipe.tasks import prepare_generated_source

        data.path, data.source = prepare_generated_source(config, config.runner.output_dir)
    if data.source not in ("coco", "voc"):
        raise UserError(f"data.source {data.source!r}: read boxes from its Examples with --examples")
    source = make_source(data)
    items = [item for item in source.items if item.problem is None]
    if data.use_source_splits and source.split_names:
        train_names = {s for s in source.split_names if data.source_split_map.get(s, s) == "train"}
        items = [item for item in items if item.source_split in train_names]
        origin = f"{data.path} (source splits {sorted(train_names)})"
    else:
        origin = f"{data.path} (all splits)"
    size_y, size_x = config.model.hw
    boxes = []
    for item in items:
        width, height = item.declared_size or (0, 0)
        if width <= 0 or height <= 0:
            width, height = _image_size(item.path)
        for obj in item.objects:
            xmin, ymin, xmax, ymax = obj.box
            boxes.append([ymin / height * size_y, xmin / width * size_x, ymax / height * size_y,
                          xmax / width * size_x])
    return _positive(boxes, origin)


def _positive(boxes, origin: str) -> Tuple[np.ndarray, str, int]:
    """Model-pixel yxyx boxes with positive area, and how many zero-area ones were skipped."""
    boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in boxes]) \
        if len(boxes) else np.zeros((0, 4))
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep], origin, int((~keep).sum())


def _image_size(path: str) -> Tuple[int, int]:
    from PIL import Image

    if not path or not Path(path).exists():
        raise UserError(f"cannot read the size of image {path!r} (no size in its annotation)")
    with Image.open(path) as image:
        return image.size
