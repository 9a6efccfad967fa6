"""Panels of the run report and the matplotlib plots they show (files are PNGs beside the
page; a panel names them relative to the report folder)."""
from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Sequence

import numpy as np


@dataclasses.dataclass
class Panel:
    title: str
    images: List[str] = dataclasses.field(default_factory=list)
    headers: Sequence[str] = ()
    rows: List[Sequence] = dataclasses.field(default_factory=list)
    note: str = ""


@dataclasses.dataclass
class Section:
    title: str
    panels: List[Panel]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def save(fig, report_dir: str, name: str) -> str:
    """Write ``fig`` as ``<report_dir>/<name>`` and close it; returns ``name``."""
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(os.path.join(report_dir, name), dpi=90)
    plt.close(fig)
    return name


def copy_in(source: str, report_dir: str, prefix: str) -> str:
    """Copy an image another stage drew (e.g. the evaluation's) into the report folder, so the
    page stands alone; returns its name there (``<prefix>_<file name>``)."""
    import shutil

    name = f"{prefix}_{os.path.basename(source)}"
    shutil.copyfile(source, os.path.join(report_dir, name))
    return name


def confusion_matrix_png(matrix: np.ndarray, class_names: Sequence[str], report_dir: str,
                         name: str, normalised: bool) -> str:
    """Rows: true class, columns: predicted; counts, or each row divided by its total."""
    plt = _pyplot()
    matrix = np.asarray(matrix, np.float64)
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalised else matrix
    size = max(4.0, 0.55 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalised else None)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (normalised by true class)" if normalised else " (counts)"))
    if len(class_names) <= 20:
        top = shown.max() or 1
        for (i, j), value in np.ndenumerate(shown):
            ax.text(j, i, f"{value:.2f}" if normalised else f"{int(value)}", ha="center",
                    va="center", fontsize=8, color="white" if value > 0.6 * top else "black")
    return save(fig, report_dir, name)


def curves_png(curves: Sequence[tuple], report_dir: str, name: str, title: str, xlabel: str,
               ylabel: str, diagonal: bool = False) -> str:
    """``curves``: (label, x, y) lines on one plot."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label, x, y in curves:
        ax.plot(x, y, label=label)
    if diagonal:
        ax.plot([0, 1], [0, 1], "k:", linewidth=1)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return save(fig, report_dir, name)


def image_grid_png(images: Sequence[np.ndarray], captions: Sequence[str], report_dir: str,
                   name: str, columns: int = 8, colours: Optional[Sequence[str]] = None,
                   title: str = "") -> str:
    """uint8 images in a grid, each captioned (e.g. 'true cat / predicted dog')."""
    plt = _pyplot()
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 1.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (image, caption) in enumerate(zip(images, captions)):
        ax = axes.ravel()[i]
        ax.imshow(np.asarray(image, np.uint8), interpolation="nearest")
        ax.set_title(caption, fontsize=7, color=(colours[i] if colours else "black"))
    if title:
        fig.suptitle(title, fontsize=9)
    return save(fig, report_dir, name)


def history_png(history: dict, phase_epochs: dict, report_dir: str, name: str) -> str:
    """One plot per training quantity (loss, each metric, the learning rate), train and
    validation together, a dotted line where each phase after the first starts."""
    plt = _pyplot()
    keys = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    boundaries = np.cumsum(list(phase_epochs.values()))[:-1] if phase_epochs else []
    for ax, key in zip(axes[0], keys):
        for label, values in (("train", history[key]), ("validation", history.get("val_" + key))):
            if values:
                ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
        for epoch in boundaries:
            ax.axvline(epoch + 0.5, color="grey", linestyle=":", label="fine-tuning starts")
        ax.set(title=key.replace("_", " "), xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, report_dir, name)


def bars_png(values: Sequence[tuple], report_dir: str, name: str, title: str,
             xlabel: str) -> str:
    """``values``: (label, value) as horizontal bars, top to bottom in the given order (e.g. a
    metric per robustness condition); values in [0, 1]."""
    plt = _pyplot()
    labels = [str(label) for label, _ in values]
    numbers = [float("nan") if v is None else float(v) for _, v in values]
    fig, ax = plt.subplots(figsize=(5.5, 0.9 + 0.28 * len(values)))
    ax.barh(range(len(values)), numbers, color="#4c78a8")
    for i, value in enumerate(numbers):
        ax.text(min(value, 0.98) if value == value else 0, i, f" {value:.3f}", va="center",
                fontsize=7)
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(title=title, xlabel=xlabel, xlim=(0, 1.08))
    ax.grid(alpha=0.3, axis="x")
    return save(fig, report_dir, name)
