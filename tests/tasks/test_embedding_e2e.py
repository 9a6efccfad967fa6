"""The embedding task through the whole pipeline: blessed on recall@1, the faiss index pushed
in the same version folder as the SavedModel, nearest neighbours of the right identity from
the in-model ``search`` signature and from the REST ``:search`` route, and a model/index pair
of different versions refused."""
import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from visionpipe.cli import pipeline_commands as commands
from visionpipe.core.config import load_config
from visionpipe.runtime import vector_index

#: the share of queries whose nearest gallery image must have the query's identity
MIN_SAME_IDENTITY = 0.6


def _config(tmp_path, *overrides):
    return load_config("configs/embedding_digits.yaml", [
        "name=emb_e2e", "data.num_images=300", "data.image_size=16", "model.image_size=16",
        "model.width=8", "train.epochs=3", "train.steps_per_epoch=20",
        "evaluate.thresholds={recall_at_1: 0.5}", "embedding.index=ivfpq", "embedding.nlist=4",
        "embedding.nprobe=4", f"runner.output_dir={tmp_path}/runs",
        f"push.serving_root={tmp_path}/serving", *overrides])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("emb")
    result = commands._run(_config(tmp_path))[1]
    from visionpipe.core.examples import records
    from visionpipe.core import features

    eval_files = sorted((tmp_path / "runs").rglob("ImageExampleGen/examples/*/Split-eval/*"))
    queries, identities = [], []
    for record in records([str(p) for p in eval_files]).take(40):
        parsed = features.parse_single(record, [features.ENCODED, features.LABEL])
        queries.append(parsed[features.ENCODED].numpy())
        identities.append(int(parsed[features.LABEL].numpy()[0]))
    return tmp_path, result, queries, identities


@pytest.mark.e2e
def test_embedder_is_blessed_and_its_index_is_pushed_in_the_same_version(run):
    tmp_path, result, _, _ = run
    assert result["evaluation"]["blessed"] is True, result["evaluation"]["failures"]
    assert result["evaluation"]["metrics"]["recall_at_1"] >= 0.5
    assert result["push"]["pushed"] is True
    version = Path(result["push"]["path"])
    index = version / vector_index.INDEX_DIR
    assert (version / "saved_model.pb").exists() and (index / vector_index.INDEX_FILE).exists()
    meta = json.loads((index / vector_index.META_FILE).read_text())
    assert meta["model_fingerprint"] == vector_index.model_fingerprint(str(version))
    report = json.loads((index / vector_index.REPORT_FILE).read_text())
    assert report["size"] == len(json.loads((index / vector_index.IDS_FILE).read_text()))
    assert 0.0 < report["index_recall_at_10"] <= 1.0
    assert report["identity_recall_at_1"] >= MIN_SAME_IDENTITY, report


@pytest.mark.e2e
def test_evaluation_report_draws_queries_with_their_top_k_neighbours(run):
    from PIL import Image

    from visionpipe.tasks.embedding import neighbours

    _, result, _, _ = run
    details = result["evaluation"]["details"]
    shown = details["neighbours"]
    assert len(shown) == 6 and all(len(q["neighbours"]) == details["k"] == 5 for q in shown)
    assert len({q["identity"] for q in shown}) == 6  # identities in turn: 10 digits, 6 rows
    grid = Image.open(Path(result["evaluation"]["report"]).parent / details["neighbours_image"])
    assert grid.size == (6 * neighbours.TILE, 6 * neighbours.TILE)


@pytest.mark.e2e
def test_in_model_search_finds_the_same_identity_for_most_queries(run):
    import visionpipe  # noqa: F401
    import tensorflow as tf

    _, result, queries, identities = run
    loaded = tf.saved_model.load(result["push"]["path"])
    out = loaded.signatures["search"](images=tf.constant(queries))
    nearest = out["ids"].numpy()[:, 0]
    assert np.mean(nearest == np.array(identities)) >= MIN_SAME_IDENTITY


@pytest.mark.e2e
def test_rest_search_finds_the_same_identity_and_refuses_a_mismatched_index(run):
    import requests

    from visionpipe.serving.options import ServerOptions
    from visionpipe.serving.server import ModelServer

    tmp_path, result, queries, identities = run
    pushed = Path(result["push"]["path"])
    served = tmp_path / "served"
    for name in ("good", "mismatched", "unindexed"):
        shutil.copytree(pushed, served / name / "1")
    # the same model with an index that records another model's fingerprint
    meta_path = served / "mismatched" / "1" / vector_index.INDEX_DIR / vector_index.META_FILE
    meta = json.loads(meta_path.read_text())
    meta["model_fingerprint"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    shutil.rmtree(served / "unindexed" / "1" / vector_index.INDEX_DIR)
    config_file = tmp_path / "models.config"
    config_file.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{n}" base_path: "{served / n}" model_platform: "tensorflow" }}\n'
        for n in ("good", "mismatched", "unindexed")) + "}\n")
    options = ServerOptions(port=0, rest_api_port=0, model_config_file=str(config_file),
                            file_system_poll_wait_seconds=0)
    with ModelServer(options) as server:
        url = f"http://127.0.0.1:{server.rest_port}/v1/models"
        body = {"instances": [{"b64": base64.b64encode(q).decode()} for q in queries], "k": 3}
        response = requests.post(f"{url}/good/versions/1:search", json=body, timeout=120)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert len(results) == len(queries) and all(len(r) == 3 for r in results)
        nearest = np.array([r[0]["id"] for r in results])
        assert np.mean(nearest == np.array(identities)) >= MIN_SAME_IDENTITY
        by_vector = requests.post(f"{url}/good:search", timeout=60, json={
            "embeddings": [[1.0] + [0.0] * 63], "k": 2})
        assert by_vector.status_code == 200 and len(by_vector.json()["results"][0]) == 2

        mismatched = requests.post(f"{url}/mismatched:search", json=body, timeout=60)
        assert mismatched.status_code == 400 and "refusing to mix versions" in mismatched.text
        missing = requests.post(f"{url}/unindexed:search", json=body, timeout=60)
        assert missing.status_code == 404 and "no similarity-search index" in missing.text


@pytest.mark.e2e
def test_duplicates_command_lists_a_copied_image_as_the_closest_pair(run, capsys):
    from visionpipe.cli.main import main

    tmp_path, result, queries, _ = run
    folder = tmp_path / "duplicates"
    folder.mkdir()
    (folder / "a.png").write_bytes(queries[0])
    (folder / "a_copy.png").write_bytes(queries[0])
    (folder / "b.png").write_bytes(queries[1])
    rc = main(["duplicates", "--config", "configs/embedding_digits.yaml", "--model",
               result["push"]["path"], "--images", str(folder), "--threshold", "0.99"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and lines[0].endswith("a.png  a_copy.png"), lines
