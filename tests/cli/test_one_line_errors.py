"""Input a user can fix is one line on stderr naming the file, flag, port or model, exit 2."""
import io
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionpipe.cli.main import main


def _png(path: Path, size: int = 16) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def files(tmp_path):
    good = _png(tmp_path / "good.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    corrupt = tmp_path / "model" / "1"
    corrupt.mkdir(parents=True)
    (corrupt / "saved_model.pb").write_bytes(b"garbage")
    tflite = tmp_path / "model.tflite"
    tflite.write_bytes(b"not a flatbuffer")
    return {"good": good, "truncated": truncated, "text": text, "corrupt": corrupt, "tflite": tflite}


def _one_error_line(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert all(f in err[0] for f in fragments), err[0]
    return err[0]


def test_corrupt_saved_model_in_a_real_process_exits_2_without_a_traceback(files):
    proc = subprocess.run([sys.executable, "-m", "visionpipe.cli", "predict", "--model",
                           str(files["corrupt"]), str(files["good"])],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("visionpipe predict: error: --model") and str(files["corrupt"]) in last


def test_predict_names_the_image_that_does_not_decode(files, capsys):
    for name in ("text", "truncated"):
        assert main(["predict", "--model", str(files["corrupt"]), str(files[name])]) == 2
        _one_error_line(capsys, f"{files[name]}: not a decodable image")
    assert main(["predict", "--tflite", str(files["tflite"]), str(files["text"])]) == 2
    _one_error_line(capsys, str(files["text"]))


def test_predict_names_a_file_that_is_not_a_tflite_model(files, capsys):
    assert main(["predict", "--tflite", str(files["tflite"]), str(files["good"])]) == 2
    _one_error_line(capsys, f"--tflite {files['tflite']}: not a valid TFLite model")
    assert main(["predict", "--tflite", str(files["tflite"]) + ".missing", str(files["good"])]) == 2
    _one_error_line(capsys, "file not found")


def test_predict_through_a_server_needs_a_model_name_and_a_port(files, capsys):
    assert main(["predict", "--server", "127.0.0.1:1", str(files["good"])]) == 2
    _one_error_line(capsys, "--server needs --model_name")
    assert main(["predict", "--server", "localhost", "--model_name", "m", str(files["good"])]) == 2
    _one_error_line(capsys, "--server localhost", "host:port")
    assert main(["predict", "--server", "127.0.0.1:1", "--model_name", "m", "--protocol", "grpc",
                 "--ca_cert", str(files["text"]), str(files["good"])]) == 2
    _one_error_line(capsys, f"--ca_cert {files['text']}: not a PEM file")


def test_debug_flag_prints_the_traceback_before_the_line(files, capsys):
    assert main(["--debug", "predict", "--model", str(files["corrupt"]), str(files["good"])]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("visionpipe predict: error:")


@pytest.mark.parametrize("taken", ["--port", "--rest_api_port"])
def test_serve_names_the_port_that_is_taken(tmp_path, capfd, taken):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            free = spare.getsockname()[1]
        other = "--rest_api_port" if taken == "--port" else "--port"
        assert main(["serve", "--model_name", "m", "--model_base_path", str(tmp_path),
                     taken, str(busy), other, str(free)]) == 2
    _one_error_line(capfd, f"127.0.0.1:{busy}", "cannot bind", "in use")  # fd 2: gRPC's C logs too


def test_one_class_folder_is_refused_before_ingestion(tmp_path, capsys):
    (tmp_path / "images" / "cat").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        _png(tmp_path / "images" / "cat" / name)
    for command in ("ingest", "run"):
        assert main([command, "--config", "configs/classification.yaml", "data.source=folder",
                     f"data.path={tmp_path / 'images'}", f"runner.output_dir={tmp_path / 'runs'}"]) == 2
        _one_error_line(capsys, f"data.path {tmp_path / 'images'}", "at least 2 classes", "['cat']")
