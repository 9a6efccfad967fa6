"""The ``embedding:`` config section (contributed to the config by the embedding task)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from visionpipe.core.config import require as _require

LOSSES = ("triplet_semihard", "triplet_hard", "contrastive", "multi_similarity", "arcface")
INDEXES = ("flat", "ivfpq", "hnsw")


@dataclass
class EmbeddingConfig:
    dim: int = 64  # the embedding's size (L2-normalised)
    loss: str = "triplet_semihard"  # one of LOSSES
    # triplet/contrastive: the distance margin; multi_similarity: the mining margin epsilon;
    # arcface: the additive angular margin (radians)
    margin: float = 0.2
    scale: float = 16.0  # arcface: the logit scale s
    # class-balanced training batches of P identities x K images (train.batch_size applies
    # to evaluation batches only)
    classes_per_batch: int = 8
    images_per_class: int = 4
    # share of each identity's eval images used as queries; every eval image is in the gallery
    # (a query's own image excluded from its ranking)
    query_fraction: float = 0.5
    recall_ks: List[int] = field(default_factory=lambda: [1, 5, 10])
    # the in-model `search` signature bakes in the training split's embeddings up to this many
    max_in_model_gallery: int = 20000
    # the IndexBuilder stage's faiss index
    index: str = "flat"  # flat (exact inner product) | ivfpq | hnsw
    nlist: int = 16  # ivfpq: inverted lists (coarse centroids)
    m: int = 8  # ivfpq: PQ sub-quantizers (must divide dim)
    nprobe: int = 4  # ivfpq: lists searched per query
    hnsw_m: int = 16  # hnsw: neighbours per node

    def validate(self) -> None:
        _require(self.dim >= 2, "embedding.dim", f"must be >= 2, got {self.dim}")
        _require(self.loss in LOSSES, "embedding.loss",
                 f"must be one of {list(LOSSES)}, got {self.loss!r}")
        _require(self.margin >= 0, "embedding.margin", f"must be >= 0, got {self.margin}")
        _require(self.scale > 0, "embedding.scale", f"must be > 0, got {self.scale}")
        _require(self.classes_per_batch >= 2, "embedding.classes_per_batch",
                 f"must be >= 2 (a batch needs negatives), got {self.classes_per_batch}")
        _require(self.images_per_class >= 2, "embedding.images_per_class",
                 f"must be >= 2 (a batch needs positives), got {self.images_per_class}")
        _require(0.0 < self.query_fraction <= 1.0, "embedding.query_fraction",
                 f"must be in (0, 1], got {self.query_fraction}")
        ks = list(self.recall_ks or [])
        _require(bool(ks) and all(isinstance(k, int) and k >= 1 for k in ks)
                 and len(set(ks)) == len(ks), "embedding.recall_ks",
                 f"must be distinct integers >= 1, got {self.recall_ks}")
        self.recall_ks = sorted(ks)
        _require(self.max_in_model_gallery >= 0, "embedding.max_in_model_gallery", "must be >= 0")
        _require(self.index in INDEXES, "embedding.index",
                 f"must be one of {list(INDEXES)}, got {self.index!r}")
        _require(self.nlist >= 1, "embedding.nlist", "must be >= 1")
        _require(self.m >= 1 and self.dim % self.m == 0, "embedding.m",
                 f"must be >= 1 and divide embedding.dim={self.dim}, got {self.m}")
        _require(1 <= self.nprobe <= self.nlist, "embedding.nprobe",
                 f"must be in [1, embedding.nlist={self.nlist}], got {self.nprobe}")
        _require(self.hnsw_m >= 2, "embedding.hnsw_m", "must be >= 2")
