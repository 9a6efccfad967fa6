"""Robustness of a Keras model: its metric under occlusion, illumination (brightness, contrast,
a left-to-right illumination gradient) and white-box L-infinity attacks (FGSM, PGD), with
epsilons in pixel units of the model input ([0, 255]).

Task-agnostic: a task hands ``loss(targets, outputs)`` (what the attacks increase; the task's
training loss) and ``score(outputs, targets) -> float`` (its metric on numpy arrays). Written
on ``tf.GradientTape`` (a few lines each): the attack libraries the issue names
(adversarial-robustness-toolbox, cleverhans) are not in the lock (``constraints/py310.txt``).

Condition names (the keys of ``evaluate``'s result and of ``evaluate.robustness.thresholds``):
``clean``, ``occlusion_<fraction>``, ``brightness_<factor>``, ``contrast_<factor>``,
``gradient_<strength>``, ``fgsm_<eps>``, ``pgd_<eps>``; numbers as the config gives them
(``condition_names``).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

PIXEL_MAX = 255.0
GREY = 127.5


def condition_names(cfg) -> List[str]:
    """The conditions a ``RobustnessConfig`` evaluates, in order (``clean`` first)."""
    return cfg.condition_names()


# --- corruptions (numpy, float32 [B, H, W, 3] in [0, 255]) -----------------------------------

def occlude(images: np.ndarray, fraction: float, rng: np.random.Generator,
            fill: float = GREY) -> np.ndarray:
    """A grey square covering ``fraction`` of each image's area at a random place."""
    out = np.array(images, np.float32, copy=True)
    _, height, width, _ = out.shape
    side_h = int(round(height * np.sqrt(fraction)))
    side_w = int(round(width * np.sqrt(fraction)))
    for image in out:
        y = rng.integers(0, height - side_h + 1)
        x = rng.integers(0, width - side_w + 1)
        image[y:y + side_h, x:x + side_w] = fill
    return out


def brightness(images: np.ndarray, factor: float) -> np.ndarray:
    """Every pixel times ``factor`` (darker below 1), clipped to [0, 255]."""
    return np.clip(np.asarray(images, np.float32) * factor, 0, PIXEL_MAX)


def contrast(images: np.ndarray, factor: float) -> np.ndarray:
    """Each image's deviation from its mean times ``factor``, clipped."""
    images = np.asarray(images, np.float32)
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip(mean + (images - mean) * factor, 0, PIXEL_MAX)


def illumination_gradient(images: np.ndarray, strength: float) -> np.ndarray:
    """Light falling off across the image: a gain from ``1 - strength`` at the left edge to
    ``1 + strength`` at the right, clipped."""
    images = np.asarray(images, np.float32)
    gain = np.linspace(1 - strength, 1 + strength, images.shape[2], dtype=np.float32)
    return np.clip(images * gain[None, None, :, None], 0, PIXEL_MAX)


# --- attacks (white-box, L-infinity, pixel units) ---------------------------------------------

Loss = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _loss_gradient(model: tf.keras.Model, loss: Loss, images: tf.Tensor, targets) -> tf.Tensor:
    with tf.GradientTape() as tape:
        tape.watch(images)
        value = loss(targets, model(images, training=False))
    return tape.gradient(value, images)


def fgsm(model: tf.keras.Model, loss: Loss, images, targets, epsilon: float) -> np.ndarray:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of ``epsilon`` pixels
    along the sign of the loss gradient, clipped to [0, 255]."""
    images = tf.convert_to_tensor(images, tf.float32)
    step = epsilon * tf.sign(_loss_gradient(model, loss, images, targets))
    return tf.clip_by_value(images + step, 0.0, PIXEL_MAX).numpy()


def pgd(model: tf.keras.Model, loss: Loss, images, targets, epsilon: float, steps: int = 10,
        step_size: float = 0.0, random_start: bool = True, seed: int = 0) -> np.ndarray:
    """Projected gradient descent (Madry et al. 2018), L-infinity ball of ``epsilon`` pixels:
    ``steps`` sign steps of ``step_size`` (default ``2.5 * epsilon / steps``), each projected
    back into the ball and [0, 255]; ``random_start``: from a uniform point in the ball."""
    clean = tf.convert_to_tensor(images, tf.float32)
    step_size = step_size or 2.5 * epsilon / steps
    adversarial = clean
    if random_start:
        noise = tf.random.stateless_uniform(tf.shape(clean), [seed, 0], -epsilon, epsilon)
        adversarial = tf.clip_by_value(clean + noise, 0.0, PIXEL_MAX)
    for _ in range(steps):
        grad = _loss_gradient(model, loss, adversarial, targets)
        adversarial = adversarial + step_size * tf.sign(grad)
        adversarial = tf.clip_by_value(adversarial, clean - epsilon, clean + epsilon)
        adversarial = tf.clip_by_value(adversarial, 0.0, PIXEL_MAX)
    return adversarial.numpy()


# --- the evaluation ---------------------------------------------------------------------------

def perturb(condition: str, model: tf.keras.Model, loss: Loss, images: np.ndarray, targets,
            cfg, rng: np.random.Generator) -> np.ndarray:
    """``images`` under one of ``condition_names(cfg)``."""
    kind, _, value = condition.partition("_")
    if kind == "clean":
        return np.asarray(images, np.float32)
    value = float(value)
    if kind == "occlusion":
        return occlude(images, value, rng)
    if kind == "brightness":
        return brightness(images, value)
    if kind == "contrast":
        return contrast(images, value)
    if kind == "gradient":
        return illumination_gradient(images, value)
    if kind == "fgsm":
        return fgsm(model, loss, images, targets, value)
    if kind == "pgd":
        return pgd(model, loss, images, targets, value, cfg.pgd_steps, cfg.pgd_step_size,
                   cfg.pgd_random_start, cfg.seed)
    raise ValueError(f"unknown robustness condition {condition!r}")


def evaluate(model: tf.keras.Model, batches: Iterable, loss: Loss,
             score: Callable[[np.ndarray, np.ndarray], float], cfg,
             keep_examples: int = 0) -> Dict[str, object]:
    """``score`` of ``model`` on batched (images, targets) pairs under every condition of
    ``cfg`` (``RobustnessConfig``). Returns ``{"metrics": {condition: value}, "examples":
    {condition: (images, outputs)}}`` with the first ``keep_examples`` perturbed images and
    the model's outputs on them (for the report)."""
    names = condition_names(cfg)
    outputs: Dict[str, List[np.ndarray]] = {name: [] for name in names}
    kept: Dict[str, list] = {name: [] for name in names}
    all_targets = []
    rng = np.random.default_rng(cfg.seed)
    for images, targets in batches:
        images = np.asarray(images, np.float32)
        targets_t = tf.convert_to_tensor(targets)
        all_targets.append(np.asarray(targets))
        for name in names:
            perturbed = perturb(name, model, loss, images, targets_t, cfg, rng)
            out = model(perturbed, training=False).numpy()
            outputs[name].append(out)
            have = sum(len(k) for k in kept[name])
            if have < keep_examples:
                kept[name].append(perturbed[:keep_examples - have])
    targets = np.concatenate(all_targets)
    metrics = {name: float(score(np.concatenate(outputs[name]), targets)) for name in names}
    examples = {name: (np.concatenate(kept[name]), np.concatenate(outputs[name])[:keep_examples])
                for name in names if kept[name]}
    return {"metrics": metrics, "examples": examples}


def judge(metrics: Dict[str, float], thresholds: Dict[str, float],
          max_drops: Dict[str, float]) -> Dict[str, list]:
    """Failures and notes of the robustness gate: each ``thresholds`` condition at least its
    bound, each ``max_drops`` condition no more than its drop below ``clean``; a note when
    PGD does better for the model than FGSM at the same epsilon (a sign of gradient masking:
    more attack steps must not help the model)."""
    failures, notes = [], []
    for name, bound in thresholds.items():
        value = metrics.get(name)
        if value is None or not np.isfinite(value):
            failures.append(f"robustness {name}: not computed")
        elif value < bound:
            failures.append(f"robustness {name}: {value:.4f} is below the threshold {bound}")
    clean = metrics.get("clean")
    for name, drop in max_drops.items():
        value = metrics.get(name)
        if value is None or clean is None:
            failures.append(f"robustness {name}: not computed")
        elif value < clean - drop:
            failures.append(f"robustness {name}: {value:.4f} dropped more than {drop} below "
                            f"the clean {clean:.4f}")
    for name, value in metrics.items():
        if name.startswith("pgd_"):
            single = metrics.get("fgsm_" + name[4:])
            if single is not None and value > single + 1e-9:
                notes.append(f"robustness {name}: {value:.4f} is above fgsm_{name[4:]}'s "
                             f"{single:.4f}: PGD should be the stronger attack (gradient masking?)")
    return {"failures": failures, "notes": notes}


def limit_batches(batches: Iterable, max_images: int) -> Iterable:
    """The first ``max_images`` examples of batched (images, targets) pairs (0: all)."""
    seen = 0
    for images, targets in batches:
        images, targets = np.asarray(images), np.asarray(targets)
        if max_images and seen + len(images) > max_images:
            keep = max_images - seen
            images, targets = images[:keep], targets[:keep]
        if len(images) == 0:
            return
        seen += len(images)
        yield images, targets
        if max_images and seen >= max_images:
            return
