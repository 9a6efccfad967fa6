"""Retrieval metrics of query embeddings against a gallery by exact inner-product search,
and the floor a random ranking gives (the trivial predictor's: see ``random_ranking_metrics``).

The eval split is divided once (``query_indices``): a ``query_fraction`` of each identity's
images, evenly spaced in file order, are the queries; the gallery is the whole split, and a
query's own image is excluded from its ranking. A query whose identity has no other image in
the gallery has nothing to retrieve and is not counted.

Metrics (per counted query, averaged): ``recall_at_k`` (some same-identity item in the top k),
``precision_at_k`` (share of the top k with the query's identity) and ``map_at_r``
(MAP@R, Musgrave et al. 2020: with R the query's same-identity items in the gallery,
``1/R sum_{i<=R} P(i) rel(i)``). Ties (a constant embedding) are broken by a fixed
pseudo-random order of the gallery, so a constant embedding scores like a random ranking.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np

TIE_SEED = 20240


def query_indices(identities: Sequence[int], query_fraction: float) -> np.ndarray:
    """Indices of the queries: per identity, ``round(fraction * n)`` (at least 1) of its items,
    evenly spaced in order."""
    identities = np.asarray(identities)
    chosen = []
    for identity in np.unique(identities):
        rows = np.flatnonzero(identities == identity)
        n = max(1, int(round(query_fraction * len(rows))))
        picks = np.unique(np.floor(np.arange(n) * len(rows) / n).astype(int))
        chosen.extend(rows[picks].tolist())
    return np.sort(np.asarray(chosen, dtype=np.int64))


def metric_names(ks: Sequence[int]):
    return (*[f"recall_at_{k}" for k in ks], "map_at_r", *[f"precision_at_{k}" for k in ks])


def ranked_gallery(queries: np.ndarray, gallery: np.ndarray,
                   exclude: Optional[np.ndarray] = None, depth: Optional[int] = None) -> np.ndarray:
    """[Q, depth] gallery indices by descending inner product (exact search); ``exclude[i]``
    (a gallery index or -1) is left out of query i's ranking."""
    scores = np.asarray(queries, np.float64) @ np.asarray(gallery, np.float64).T
    n = scores.shape[1]
    if exclude is not None:
        for i, j in enumerate(exclude):
            if j >= 0:
                scores[i, j] = -np.inf
    tie_break = np.random.default_rng(TIE_SEED).permutation(n)
    depth = n if depth is None else min(depth, n)
    # primary key: score (descending); secondary: the fixed random order
    order = np.lexsort((np.broadcast_to(tie_break, scores.shape), -scores), axis=1)
    return order[:, :depth]


def retrieval_metrics(queries: np.ndarray, query_ids: Sequence[int], gallery: np.ndarray,
                      gallery_ids: Sequence[int], ks: Sequence[int],
                      exclude: Optional[np.ndarray] = None) -> Dict[str, float]:
    query_ids, gallery_ids = np.asarray(query_ids), np.asarray(gallery_ids)
    ranking = ranked_gallery(queries, gallery, exclude)
    sums = {name: 0.0 for name in metric_names(ks)}
    counted = 0
    for i, row in enumerate(ranking):
        if exclude is not None and exclude[i] >= 0:
            row = row[row != exclude[i]]
        relevant = gallery_ids[row] == query_ids[i]
        r = int(relevant.sum())
        if r == 0:
            continue
        counted += 1
        for k in ks:
            sums[f"recall_at_{k}"] += float(relevant[:k].any())
            sums[f"precision_at_{k}"] += float(relevant[:k].sum()) / k
        hits = relevant[:r]
        sums["map_at_r"] += float(np.sum(np.cumsum(hits) / np.arange(1, r + 1) * hits)) / r
    result = {name: (value / counted if counted else float("nan")) for name, value in sums.items()}
    result["num_queries"] = counted
    return result


def split_metrics(embeddings: np.ndarray, identities: Sequence[int], ks: Sequence[int],
                  query_fraction: float) -> Dict[str, float]:
    """The metrics of one split's embeddings: its queries against all of it (own image out)."""
    embeddings = np.asarray(embeddings, np.float32)
    identities = np.asarray(identities)
    queries = query_indices(identities, query_fraction)
    return retrieval_metrics(embeddings[queries], identities[queries], embeddings, identities,
                             ks, exclude=queries)


def random_recall_at_k(n: int, m: int, k: int) -> float:
    """Expected recall@k of a uniformly random ranking of ``n`` items, ``m`` relevant:
    ``1 - C(n - m, k) / C(n, k)``."""
    if m <= 0:
        return 0.0
    if k >= n or n - m < k:
        return 1.0
    return 1.0 - math.comb(n - m, k) / math.comb(n, k)


def random_map_at_r(n: int, m: int) -> float:
    """Expected MAP@R of a random ranking: ``E[P(i) rel(i)] = (m/n)(1 + (i-1)(m-1)/(n-1))/i``,
    averaged over i = 1..R (R = m): about ``(m/n) (m/n + H_R / R)`` (H_R the R-th harmonic
    number), not ``m/n``: MAP@R weighs each precision by the relevance at that rank, so for
    R > 1 it is far below precision@R (= m/n); ``m/n`` only for R = 1."""
    if m <= 0:
        return 0.0
    if n <= 1:
        return 1.0
    total = sum((m / n) * (1.0 + (i - 1) * (m - 1) / (n - 1)) / i for i in range(1, m + 1))
    return total / m


def random_ranking_metrics(identities: Sequence[int], ks: Sequence[int],
                           query_fraction: float) -> Dict[str, float]:
    """The trivial predictor's metrics: what a ranking that ignores the image (a random one,
    or a constant embedding, whose ties are broken at random) achieves on average, per query
    with ``n`` gallery items (its own image out) of which ``m`` share its identity:
    recall@k ``1 - C(n-m, k)/C(n, k)``, precision@k ``m/n``, MAP@R ``random_map_at_r``."""
    identities = np.asarray(identities)
    queries = query_indices(identities, query_fraction)
    n = len(identities) - 1
    sums = {name: 0.0 for name in metric_names(ks)}
    counted = 0
    for q in queries:
        m = int(np.sum(identities == identities[q])) - 1
        if m <= 0:
            continue
        counted += 1
        for k in ks:
            sums[f"recall_at_{k}"] += random_recall_at_k(n, m, k)
            sums[f"precision_at_{k}"] += m / n
        sums["map_at_r"] += random_map_at_r(n, m)
    result = {name: (value / counted if counted else float("nan")) for name, value in sums.items()}
    result["num_queries"] = counted
    return result
