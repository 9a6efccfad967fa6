"""The evaluation report's query/neighbour grid: which queries are drawn, and the frames that
say whether each neighbour shares the query's identity."""
import io

import numpy as np
from PIL import Image

from visionpipe.tasks.embedding import neighbours


def _png(value):
    buffer = io.BytesIO()
    Image.fromarray(np.full((10, 12, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_queries_take_identities_in_turn_so_a_rare_identity_is_drawn():
    identities = [0] * 20 + [1] * 2 + [2] * 4
    picked = neighbours.pick_queries(identities, 0.5, 4)
    assert [identities[i] for i in picked] == [0, 1, 2, 0]


def test_grid_frames_same_identity_neighbours_green_and_others_red():
    # identities 0, 0, 1: the query 0's nearest is item 1 (same), then item 2 (other)
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], np.float32)
    identities = [0, 0, 1]
    queries = np.array([0])
    nearest = neighbours.neighbour_rows(embeddings, identities, queries, k=2)
    assert nearest.tolist() == [[1, 2]]
    grid = np.asarray(Image.open(io.BytesIO(neighbours.grid_png(
        [_png(0), _png(128), _png(255)], identities, queries, nearest))))
    tile = neighbours.TILE
    assert grid.shape == (tile, 3 * tile, 3)
    assert tuple(grid[0, 0]) == neighbours.QUERY
    assert tuple(grid[0, tile]) == neighbours.SAME
    assert tuple(grid[0, 2 * tile]) == neighbours.DIFFERENT
    assert tuple(grid[tile // 2, 2 * tile + tile // 2]) == (255, 255, 255)  # item 2's pixels
    rows = neighbours.listing(["a", "b", "c"], identities, ["x", "y"], queries, nearest,
                              np.array([[0.99, 0.0]]))
    assert [(n["file"], n["same_identity"]) for n in rows[0]["neighbours"]] == [("b", True), ("c", False)]


def test_report_panels_count_same_identity_neighbours_and_copy_the_grid(tmp_path):
    from visionpipe.core.config import load_config
    from visionpipe.tasks import get_task

    task = get_task(load_config("configs/embedding_digits.yaml"), [str(d) for d in range(10)])
    Image.new("RGB", (30, 10), "green").save(tmp_path / "neighbours.png")
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    query = {"file": "q.png", "identity": "3", "neighbours": [
        {"file": "a.png", "identity": "3", "score": 0.9, "same_identity": True},
        {"file": "b.png", "identity": "5", "score": 0.7, "same_identity": False}]}
    evaluation = {"details": {"neighbours": [query], "k": 2, "neighbours_image": "neighbours.png"}}
    table, grid = task.report_panels(evaluation, str(tmp_path), str(report_dir))
    assert table.rows == [("q.png", "3", 1, 2)]
    assert grid.images == ["embedding_neighbours.png"]
    assert Image.open(report_dir / "embedding_neighbours.png").size == (30, 10)
