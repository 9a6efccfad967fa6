"""Retrieval metrics and the random-ranking floor on hand-made numbers."""
import numpy as np
import pytest

from visionpipe.core.config import ConfigError, load_config
from visionpipe.tasks.embedding import evaluation


def test_recall_precision_and_map_at_r_of_one_hand_ranked_query():
    query = np.array([[1.0, 0.0]])
    gallery = np.array([[0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [-1.0, 0.0]])
    ids = [1, 0, 0, 1]  # ranking by score: 1, 0, 0, 1 -> relevant [no, yes, yes, no]
    m = evaluation.retrieval_metrics(query, [0], gallery, ids, ks=[1, 2, 5])
    assert m["recall_at_1"] == 0.0 and m["recall_at_2"] == 1.0 and m["recall_at_5"] == 1.0
    assert m["precision_at_1"] == 0.0 and m["precision_at_2"] == 0.5
    assert m["precision_at_5"] == pytest.approx(2 / 5)
    assert m["map_at_r"] == pytest.approx((0 + 1 / 2) / 2)  # R = 2: hits at ranks 2 only in top 2
    assert m["num_queries"] == 1


def test_a_querys_own_image_is_excluded_from_its_ranking():
    e = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    ids = [0, 1, 0]
    m = evaluation.split_metrics(e, ids, ks=[1], query_fraction=1.0)
    # query 0: nearest other is 1 (wrong) -> 0; query 1: identity 1 has no other image (skip);
    # query 2: nearest other is 1 (wrong) -> 0. Without the exclusion each would find itself.
    assert m["num_queries"] == 2 and m["recall_at_1"] == 0.0
    exact = evaluation.split_metrics(np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]]), [0, 0, 1],
                                     ks=[1], query_fraction=1.0)
    assert exact["recall_at_1"] == 1.0 and exact["num_queries"] == 2


def test_queries_are_an_evenly_spaced_share_of_each_identity():
    ids = [0] * 10 + [1] * 4
    q = evaluation.query_indices(ids, 0.5)
    assert q.tolist() == [0, 2, 4, 6, 8, 10, 12]


def test_random_recall_at_k_is_one_minus_the_chance_of_missing_all_relevant():
    assert evaluation.random_recall_at_k(4, 1, 1) == pytest.approx(1 / 4)
    assert evaluation.random_recall_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)
    assert evaluation.random_recall_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    assert evaluation.random_recall_at_k(5, 2, 4) == 1.0  # only 3 non-relevant items


def test_random_map_at_r_is_m_over_n_for_one_relevant_item_and_far_below_it_for_many():
    assert evaluation.random_map_at_r(10, 1) == pytest.approx(0.1)
    assert evaluation.random_map_at_r(5, 2) == pytest.approx((0.4 + 0.4 * 1.25 / 2) / 2)
    m, n = 37, 378  # digits: about (m/n)(m/n + H_m/m) = 0.021, a fifth of m/n
    harmonic = sum(1 / i for i in range(1, m + 1))
    assert evaluation.random_map_at_r(n, m) == pytest.approx((m / n) * (m / n + harmonic / m), rel=0.1)
    assert evaluation.random_map_at_r(n, m) < 0.25 * m / n


def test_the_floor_matches_random_embeddings_on_average():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(4), 6)
    floor = evaluation.random_ranking_metrics(ids, [1, 5], 0.5)
    runs = [evaluation.split_metrics(rng.normal(size=(len(ids), 8)), ids, [1, 5], 0.5)
            for _ in range(300)]
    for name in ("recall_at_1", "recall_at_5", "map_at_r", "precision_at_5"):
        assert np.mean([r[name] for r in runs]) == pytest.approx(floor[name], abs=0.02), name


def test_a_constant_embedding_scores_about_the_floor():
    ids = np.repeat(np.arange(5), 8)
    floor = evaluation.random_ranking_metrics(ids, [1], 1.0)
    constant = evaluation.split_metrics(np.ones((len(ids), 4)), ids, [1], 1.0)
    assert constant["recall_at_1"] == pytest.approx(floor["recall_at_1"], abs=0.12)


def test_embedding_config_errors_name_the_dotted_key():
    with pytest.raises(ConfigError, match="embedding.loss"):
        load_config(overrides=["task=embedding", "embedding.loss=nope"]).validate()
    with pytest.raises(ConfigError, match="embedding.m"):
        load_config(overrides=["task=embedding", "embedding.m=7"]).validate()
    with pytest.raises(ConfigError, match="embedding.images_per_class"):
        load_config(overrides=["task=embedding", "embedding.images_per_class=1"]).validate()
    config = load_config(overrides=["task=embedding"]).validate()
    assert config.evaluate.gate_metric == "recall_at_1" and config.embedding.dim == 64


def test_near_duplicate_pairs_are_listed_above_the_threshold_most_similar_first():
    from visionpipe.cli.duplicates import near_duplicate_pairs

    e = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.96, 0.28]])
    pairs = near_duplicate_pairs(e, 0.95, block=3)
    assert [(i, j) for i, j, _ in pairs] == [(0, 2), (0, 3), (2, 3)]
    assert pairs[0][2] == pytest.approx(1.0) and pairs[1][2] == pytest.approx(0.96)
