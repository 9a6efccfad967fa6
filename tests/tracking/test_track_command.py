"""`visionpipe track` end to end on a generated occlusion sequence: over a MOT det.txt (the
tracker alone), through a real detector SavedModel (``--model``) and the same export served
over REST (``--server``), scored against the sequence's gt.txt; bad input is one line, exit 2."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.colour_detector import export_colour_detector
from tests.support.tracking_detections import detections_from_frames
from visionpipe.cli.main import main
from visionpipe.datasets import shapes
from visionpipe.tracking import TRACKER_FILE, TrackerConfig, mot

FRAMES = 24
CLASSES = ["circle", "triangle", "square"]


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    """A generated sequence in MOT layout with noisy detections from its ground truth."""
    frames = list(shapes.render_occlusion_sequence(FRAMES, 96, seed=1))
    folder = shapes.write_mot_sequence(tmp_path_factory.mktemp("seq") / "occl", frames)
    det, _ = detections_from_frames(frames, seed=1)
    (folder / "det").mkdir()
    mot.write_mot_results(folder / "det" / "det.txt", det)
    return folder, frames


@pytest.fixture(scope="module")
def detector(tmp_path_factory, sequence):
    """A pushed-layout version folder of a colour detector for the sequence."""
    _, frames = sequence
    return export_colour_detector(tmp_path_factory.mktemp("model") / "1", frames[0], CLASSES)


def _metrics(out, name="occl"):
    return json.loads((out / f"{name}.metrics.json").read_text())


def _one_error_line(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert all(f in err[0] for f in fragments), err[0]


def _video_frames(path):
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_track_over_det_txt_writes_mot_results_a_video_and_scores_them(sequence, tmp_path, capsys):
    folder, _ = sequence
    out = tmp_path / "out"
    assert main(["track", "--detections", str(folder / "det" / "det.txt"), "--gt",
                 str(folder / "gt" / "gt.txt"), "--output_dir", str(out), str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "with bytetrack" in printed and "MOTA" in printed
    rows = mot.read_mot_file(out / "occl.mot.txt")
    assert rows.shape[1] == 10 and set(rows[:, 0].astype(int)) <= set(range(1, FRAMES + 1))
    gt = mot.read_mot_file(folder / "gt" / "gt.txt")
    # the metrics file holds the written rows' scores (MOTP differs in the 5th digit: the
    # file's boxes are rounded to 0.01 px)
    metrics = _metrics(out)
    assert metrics == pytest.approx(mot.mot_metrics({"s": (gt, rows)})["overall"], abs=1e-3)
    assert metrics["mota"] > 0.75 and metrics["num_switches"] <= 1, metrics
    assert _video_frames(out / "occl.tracks.mp4") == FRAMES


def test_track_over_det_txt_without_frames_tracks_and_refuses_deepsort(sequence, tmp_path, capsys):
    folder, _ = sequence
    det = str(folder / "det" / "det.txt")
    out = tmp_path / "out"
    assert main(["track", "--detections", det, "--tracker", "sort", "--max_frames", "10",
                 "--output_dir", str(out)]) == 0
    rows = mot.read_mot_file(out / "det.mot.txt")
    assert len(rows) and rows[:, 0].max() <= 10
    assert not (out / "det.tracks.mp4").exists()
    assert main(["track", "--detections", det, "--tracker", "deepsort"]) == 2
    _one_error_line(capsys, "deepsort", "frames")


def test_track_through_a_detector_savedmodel_keeps_ids_and_reads_the_pushed_tracker_config(
        sequence, detector, tmp_path, capsys):
    folder, _ = sequence
    gt = str(folder / "gt" / "gt.txt")
    out = tmp_path / "deepsort"
    assert main(["track", "--model", str(detector), "--tracker", "deepsort", "--gt", gt,
                 "--output_dir", str(out), "--no_video", str(folder / "img1")]) == 0
    metrics = _metrics(out, "img1")
    # the colour detector boxes only the visible part of a half-hidden shape; measured
    # MOTA 0.91, 0 switches (seed 0)
    assert metrics["mota"] > 0.8 and metrics["num_switches"] == 0, metrics
    assert not (out / "img1.tracks.mp4").exists()
    # a tracker config in the version's assets.extra is used (here: SORT, births at once)
    (detector / "assets.extra").mkdir(exist_ok=True)
    TrackerConfig(tracker="sort", min_hits=1).write(detector / "assets.extra" / TRACKER_FILE)
    try:
        capsys.readouterr()
        assert main(["track", "--model", str(detector), "--output_dir", str(tmp_path / "sort"),
                     "--no_video", str(folder)]) == 0
        assert f"with sort (config: {detector / 'assets.extra' / TRACKER_FILE}" in capsys.readouterr().out
        first = mot.read_mot_file(tmp_path / "sort" / "occl.mot.txt")
        assert sorted(first[first[:, 0] == 2][:, 1].astype(int)) == [1, 2, 3]
    finally:
        (detector / "assets.extra" / TRACKER_FILE).unlink()


def test_track_through_a_served_detector_matches_the_savedmodel(sequence, detector, tmp_path):
    from visionpipe.serving.options import ServerOptions
    from visionpipe.serving.server import ModelServer

    folder, _ = sequence
    local = tmp_path / "local"
    assert main(["track", "--model", str(detector), "--output_dir", str(local), "--no_video",
                 "--max_frames", "12", str(folder)]) == 0
    options = ServerOptions(port=0, rest_api_port=0, model_name="colours",
                            model_base_path=str(detector.parent), file_system_poll_wait_seconds=0)
    with ModelServer(options) as server:
        served = tmp_path / "served"
        assert main(["track", "--server", f"127.0.0.1:{server.rest_port}", "--model_name",
                     "colours", "--output_dir", str(served), "--no_video", "--max_frames", "12",
                     str(folder)]) == 0
    a = mot.read_mot_file(local / "occl.mot.txt")
    b = mot.read_mot_file(served / "occl.mot.txt")
    assert len(a) > 12 and a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=0.02)


@pytest.mark.parametrize("argv, fragments", [
    (["--detections", "{folder}/det/det.txt", "--tracker", "botsort", "{folder}"],
     ["--tracker", "botsort", "bytetrack"]),
    (["--detections", "{folder}/missing.txt", "{folder}"], ["--detections", "missing.txt"]),
    (["--detections", "{folder}/det/det.txt", "{folder}/nowhere"], ["nowhere"]),
    (["--detections", "{folder}/det/det.txt", "--gt", "{folder}/gt/none.txt", "{folder}"],
     ["--gt", "none.txt"]),
    (["--detections", "{folder}/gt/gt.txt", "--tracker_config", "{folder}/t.json", "{folder}"],
     ["--tracker_config", "t.json"]),
    (["--model", "{folder}", "{folder}"], ["--model", "saved_model.pb"]),
    (["--server", "127.0.0.1:1", "{folder}"], ["--model_name"]),
    (["--detections", "{folder}/det/det.txt", "{folder}/gt/gt.txt"], ["gt.txt", "not a video"]),
])
def test_bad_track_input_is_one_line_exit_2(sequence, tmp_path, capsys, argv, fragments):
    folder, _ = sequence
    argv = [a.format(folder=folder) for a in argv]
    assert main(["track", "--output_dir", str(tmp_path / "out")] + argv) == 2
    _one_error_line(capsys, *fragments)


def test_a_bad_det_txt_row_names_the_file_and_line(sequence, tmp_path, capsys):
    folder, _ = sequence
    bad = tmp_path / "det.txt"
    bad.write_text("1,-1,10,10,5,5,0.9\n2,-1,ten,10,5,5,0.9\n")
    assert main(["track", "--detections", str(bad), str(folder)]) == 2
    _one_error_line(capsys, "det.txt:2")


def test_deepsort_with_an_embedder_savedmodel(sequence, tmp_path, capsys):
    """An embedder export's serving_tensor (here: a fixed colour-histogram-like feature in TF)
    gives DeepSORT its appearance; a wrong output key is one line, exit 2."""
    import tensorflow as tf

    class Embedder(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32, name="pixels")])
        def serving_tensor(self, pixels):
            centre = pixels[:, 4:12, 4:12] / 255.0
            q = tf.cast(tf.minimum(centre * 4.0, 3.0), tf.int32)
            index = tf.reshape((q[..., 0] * 4 + q[..., 1]) * 4 + q[..., 2], [tf.shape(pixels)[0], -1])
            hist = tf.reduce_sum(tf.one_hot(index, 64), 1)
            return {"embedding": tf.math.l2_normalize(tf.sqrt(hist), -1)}

    module = Embedder()
    path = tmp_path / "embedder"
    tf.saved_model.save(module, str(path), signatures={"serving_tensor": module.serving_tensor})
    folder, _ = sequence
    out = tmp_path / "out"
    assert main(["track", "--detections", str(folder / "det" / "det.txt"), "--tracker",
                 "deepsort", "--embedder", str(path), "--gt", str(folder / "gt" / "gt.txt"),
                 "--no_video", "--output_dir", str(out), str(folder)]) == 0
    assert f"appearance: embedder {path}" in capsys.readouterr().out
    metrics = _metrics(out)
    assert metrics["mota"] > 0.75 and metrics["num_switches"] == 0, metrics
    assert main(["track", "--detections", str(folder / "det" / "det.txt"), "--tracker",
                 "deepsort", "--embedder", str(path), "--embedding_output", "features",
                 str(folder)]) == 2
    _one_error_line(capsys, "--embedding_output", "features", "embedding")
