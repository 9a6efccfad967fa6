"""CLI: ``visionpipe duplicates --config C --threshold T``: near-duplicate image pairs, by the
cosine similarity of a pushed embedding model's embeddings (the embedding task's export)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from visionpipe.cli.args import add_config_arguments, load_config_from_args
from visionpipe.core.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "duplicates", help="list near-duplicate image pairs with an embedding model",
        description="Embed every image of a folder (default: data.path) with a pushed embedding "
                    "model (default: the latest version under push.serving_root/<name>) and "
                    "list the pairs whose cosine similarity is at least --threshold, most "
                    "similar first.")
    add_config_arguments(p)
    p.add_argument("--threshold", type=float, default=0.95,
                   help="cosine similarity in [-1, 1] at or above which a pair is listed")
    p.add_argument("--model", default="", help="a pushed model version directory")
    p.add_argument("--images", default="", help="folder of images (searched recursively)")
    p.add_argument("--limit", type=int, default=100, help="most pairs printed (0: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per pair")
    p.set_defaults(handler=cmd_duplicates)


def near_duplicate_pairs(embeddings: np.ndarray, threshold: float, block: int = 2048
                         ) -> List[Tuple[int, int, float]]:
    """(i, j, similarity) for i < j with ``e_i . e_j >= threshold`` (rows L2-normalised),
    most similar first; computed in row blocks so memory stays O(block * n)."""
    e = np.asarray(embeddings, np.float32)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    pairs = []
    for start in range(0, len(e), block):
        sims = e[start:start + block] @ e.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows, cols):
            i = start + int(r)
            if i < c:
                pairs.append((i, int(c), float(sims[r, c])))
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def latest_version(base: Path) -> Path:
    """The newest complete pushed version under ``base`` (as the server picks versions)."""
    from visionpipe.serving.model_manager import list_versions

    versions = list_versions(base) or {}
    if not versions:
        raise UserError(f"no pushed model version under {base} (run the pipeline, or pass --model)")
    return versions[max(versions)]


def image_files(folder: Path) -> List[Path]:
    if not folder.is_dir():
        raise UserError(f"--images {folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise UserError(f"--images {folder}: {len(files)} images found, need at least 2")
    return files


def embed_files(model_dir: Path, files: Sequence[Path], batch: int = 64) -> np.ndarray:
    import visionpipe  # noqa: F401
    import tensorflow as tf

    from visionpipe.serving.search import QUERY_OUTPUT

    if not (model_dir / "saved_model.pb").exists():
        raise UserError(f"--model {model_dir}: no saved_model.pb there")
    fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    if QUERY_OUTPUT not in fn.structured_outputs:
        raise UserError(f"--model {model_dir}: its serving_default has no {QUERY_OUTPUT!r} output "
                        f"(not an embedding model; outputs {sorted(fn.structured_outputs)})")
    chunks = []
    for start in range(0, len(files), batch):
        images = [p.read_bytes() for p in files[start:start + batch]]
        chunks.append(fn(images=tf.constant(images))[QUERY_OUTPUT].numpy())
    return np.concatenate(chunks)


def cmd_duplicates(args) -> int:
    if not -1.0 <= args.threshold <= 1.0:
        raise UserError(f"--threshold must be in [-1, 1], got {args.threshold}")
    config = load_config_from_args(args)
    model_dir = Path(args.model) if args.model else latest_version(
        Path(config.push.serving_root) / config.model_name)
    folder = Path(args.images or config.data.path)
    files = image_files(folder)
    pairs = near_duplicate_pairs(embed_files(model_dir, files), args.threshold)
    shown = pairs if not args.limit else pairs[:args.limit]
    for i, j, score in shown:
        a, b = str(files[i].relative_to(folder)), str(files[j].relative_to(folder))
        print(json.dumps({"a": a, "b": b, "similarity": round(score, 4)}) if args.json
              else f"{score:.4f}  {a}  {b}")
    print(f"{len(pairs)} pair(s) of {len(files)} images at similarity >= {args.threshold} "
          f"(model {model_dir})")
    return 0
