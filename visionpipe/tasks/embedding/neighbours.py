"""The evaluation report's picture of retrieval: a few eval queries, each followed by its top-k
gallery neighbours (the eval split, the query's own image out, as the gate scores it), framed
green when a neighbour has the query's identity and red when not."""
from __future__ import annotations

import io
from typing import Dict, List, Sequence

import numpy as np

from visionpipe.tasks.embedding import evaluation

TILE = 64  # pixels per drawn image
BORDER = 4
SAME, DIFFERENT, QUERY = (40, 170, 60), (210, 40, 40), (90, 90, 90)


def pick_queries(identities: Sequence[int], query_fraction: float, count: int) -> np.ndarray:
    """Up to ``count`` of the gate's queries, taking identities in turn so rare ones show."""
    identities = np.asarray(identities)
    queries = evaluation.query_indices(identities, query_fraction)
    by_identity = [list(queries[identities[queries] == i]) for i in np.unique(identities[queries])]
    picked: List[int] = []
    while len(picked) < count and any(by_identity):
        for rows in by_identity:
            if rows and len(picked) < count:
                picked.append(int(rows.pop(0)))
    return np.asarray(picked, np.int64)


def neighbour_rows(embeddings: np.ndarray, identities: Sequence[int], queries: np.ndarray,
                   k: int) -> np.ndarray:
    """[Q, k] eval indices nearest each query by inner product, the query itself left out."""
    embeddings = np.asarray(embeddings, np.float32)
    return evaluation.ranked_gallery(embeddings[queries], embeddings, exclude=queries, depth=k)


def _tile(encoded: bytes, colour) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        pixels = image.convert("RGB").resize((TILE - 2 * BORDER, TILE - 2 * BORDER))
    framed = np.empty((TILE, TILE, 3), np.uint8)
    framed[:] = colour
    framed[BORDER:-BORDER, BORDER:-BORDER] = np.asarray(pixels)
    return framed


def grid_png(encoded: Sequence[bytes], identities: Sequence[int], queries: np.ndarray,
             neighbours: np.ndarray) -> bytes:
    """One row per query: the query (grey frame), then its neighbours (green/red frames)."""
    from PIL import Image

    rows = []
    for query, row in zip(queries, neighbours):
        tiles = [_tile(encoded[query], QUERY)]
        tiles += [_tile(encoded[j], SAME if identities[j] == identities[query] else DIFFERENT)
                  for j in row]
        rows.append(np.concatenate(tiles, axis=1))
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate(rows, axis=0)).save(buffer, format="PNG")
    return buffer.getvalue()


def listing(filenames: Sequence[str], identities: Sequence[int], class_names: Sequence[str],
            queries: np.ndarray, neighbours: np.ndarray, scores: np.ndarray) -> List[Dict]:
    """What the grid shows, for the JSON report: each query and its ranked neighbours."""
    return [{"file": filenames[q], "identity": class_names[identities[q]],
             "neighbours": [{"file": filenames[j], "identity": class_names[identities[j]],
                             "score": float(s), "same_identity": bool(identities[j] == identities[q])}
                            for j, s in zip(row, score_row)]}
            for q, row, score_row in zip(queries, neighbours, scores)]
