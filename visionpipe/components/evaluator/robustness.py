"""The Evaluator's robustness gate (``evaluate.robustness``): the task's metric on the
candidate's Keras model under the configured corruptions and attacks (``models.robustness``),
judged against the thresholds, plus the files the run report shows: the metric per condition,
adversarial examples with their predictions, Grad-CAM overlays of eval images."""
from __future__ import annotations

import os
from typing import Any, Dict

import numpy as np

import visionpipe  # noqa: F401

CURVE_FILE = "robustness.png"
ADVERSARIAL_FILE = "robustness_adversarial.png"
GRADCAM_FILE = "gradcam.png"
BATCH_SIZE = 32
SHOWN_EXAMPLES = 8


def evaluate(task, export_dir: str, eval_files, cfg, output_dir: str = "") -> Dict[str, Any]:
    """``{"metrics": {condition: value}, "failures", "notes", "thresholds", "max_drops",
    "images": {what: file name in output_dir}}`` of the candidate export."""
    from visionpipe.models import data, robustness

    model = task.robustness_model(export_dir)
    batches = robustness.limit_batches(
        data.pairs(eval_files, task).batch(BATCH_SIZE).as_numpy_iterator(), cfg.max_images)
    keep = max(SHOWN_EXAMPLES, cfg.explain_images) if output_dir else 0
    result = robustness.evaluate(model, batches, task.robustness_loss, task.robustness_score,
                                 cfg, keep_examples=keep)
    verdict = robustness.judge(result["metrics"], cfg.thresholds, cfg.max_drops)
    report = {"metric": task.gate_metric, "metrics": result["metrics"], **verdict,
              "thresholds": dict(cfg.thresholds), "max_drops": dict(cfg.max_drops),
              "images": {}}
    if output_dir and result["examples"]:
        report["images"] = _draw(task, model, result["examples"], result["metrics"], cfg,
                                 output_dir)
    return report


def _captions(task, outputs, targets=None):
    ids = task.explained_class(outputs)
    names = [task.class_names[i] if i < len(task.class_names) else str(i) for i in ids]
    scores = np.asarray(outputs).reshape(len(outputs), -1)[np.arange(len(ids)), ids]
    return [f"{name} {score:.2f}" for name, score in zip(names, scores)], ids


def _draw(task, model, examples, metrics, cfg, output_dir) -> Dict[str, str]:
    from visionpipe.models import explain
    from visionpipe.report import panels

    files = {"curve": panels.bars_png(list(metrics.items()), output_dir, CURVE_FILE,
                                      title=f"{task.gate_metric} per condition",
                                      xlabel=task.gate_metric)}
    attacked = [name for name in metrics if name.startswith(("pgd_", "fgsm_"))]
    if attacked:
        strongest = attacked[-1]
        clean_images, clean_outputs = examples["clean"]
        images, outputs = examples[strongest]
        shown = min(SHOWN_EXAMPLES, len(images))
        before, _ = _captions(task, clean_outputs[:shown])
        after, _ = _captions(task, outputs[:shown])
        files["adversarial"] = panels.image_grid_png(
            [*clean_images[:shown], *images[:shown]],
            [f"clean: {c}" for c in before] + [f"{strongest}: {c}" for c in after],
            output_dir, ADVERSARIAL_FILE, columns=shown,
            title=f"top: clean eval images; bottom: under {strongest} (predicted class, score)")
    if cfg.explain_images:
        images, outputs = examples["clean"]
        images = images[:cfg.explain_images]
        captions, ids = _captions(task, outputs[:len(images)])
        maps = explain.gradcam(model, images, explain.class_target(ids))
        files["gradcam"] = panels.image_grid_png(
            [explain.overlay(image, heatmap) for image, heatmap in zip(images, maps)],
            captions, output_dir, GRADCAM_FILE, columns=min(8, len(images)),
            title=f"Grad-CAM of the predicted class on layer {explain.last_conv_layer(model)!r}")
    return files


def panels_of(robustness: Dict[str, Any], evaluation_dir: str, report_dir: str):
    """The run report's robustness panels from what ``evaluate`` returned."""
    from visionpipe.report import Panel, copy_in

    metrics = robustness.get("metrics") or {}
    clean = metrics.get("clean")
    failed = " ".join(robustness.get("failures", []))
    rows = [(name, value, None if clean is None or value is None else value - clean,
             robustness.get("thresholds", {}).get(name), robustness.get("max_drops", {}).get(name),
             "FAIL" if f"robustness {name}:" in failed else "pass")
            for name, value in metrics.items()]
    images = {key: copy_in(os.path.join(evaluation_dir, name), report_dir, "evaluation")
              for key, name in (robustness.get("images") or {}).items()
              if os.path.exists(os.path.join(evaluation_dir, name))}
    out = [Panel(f"robustness: {robustness.get('metric')} under corruptions and attacks",
                 headers=("condition", "model", "change vs clean", "threshold", "max drop",
                          "verdict"), rows=rows,
                 images=[images[k] for k in ("curve",) if k in images],
                 note="\n".join([*robustness.get("failures", []),
                                 *(f"note: {n}" for n in robustness.get("notes", []))]))]
    if "adversarial" in images:
        out.append(Panel("adversarial examples and their predictions", images=[images["adversarial"]]))
    if "gradcam" in images:
        out.append(Panel("Grad-CAM of eval images (predicted class)", images=[images["gradcam"]]))
    return out
