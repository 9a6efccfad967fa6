"""The model scan: denied ops (tf.io.read_file in a signature) are refused before loading."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.serving.conftest import MODEL, push
from tests.serving.helpers import grpc_predict_version, wait_for, write_read_file_model


@pytest.fixture(scope="module")
def read_file_model(tmp_path_factory):
    return write_read_file_model(tmp_path_factory.mktemp("read_file") / "1")


def rest_status(server):
    response = requests.get(f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}", timeout=10)
    return {int(s["version"]): s for s in response.json().get("model_version_status", [])}


def test_exported_visionpipe_model_passes_the_scan(toy_versions):
    from visionpipe.serving.model_scan import scan_saved_model

    assert scan_saved_model(toy_versions[1]) == []


def test_exported_model_holds_checkpoint_ops_only_in_its_saver(toy_versions):
    """SaveV2/RestoreV2 are in every Keras export; the scan tolerates them there only."""
    from tensorflow.core.protobuf import saved_model_pb2

    from visionpipe.serving.model_scan import CHECKPOINT_OPS

    saved_model = saved_model_pb2.SavedModel.FromString((toy_versions[1] / "saved_model.pb").read_bytes())
    ops = {node.op for mg in saved_model.meta_graphs for f in mg.graph_def.library.function
           for node in f.node_def}
    assert {"SaveV2", "RestoreV2"} <= ops & CHECKPOINT_OPS


def test_read_file_in_a_signature_is_refused_naming_op_and_function(read_file_model):
    from visionpipe.serving.model_scan import RefusedModel, check_saved_model

    with pytest.raises(RefusedModel, match=r"op ReadFile in function __inference_serve_\d+"):
        check_saved_model(read_file_model)
    check_saved_model(read_file_model, allowed_ops=["ReadFile"])  # allowed: no error


def test_checkpoint_op_in_a_signature_is_refused(tmp_path):
    import visionpipe  # noqa: F401
    import tensorflow as tf

    from visionpipe.serving.model_scan import scan_saved_model

    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serve(self, images):
            tf.raw_ops.SaveV2(prefix="/tmp/x", tensor_names=["a"], shape_and_slices=[""],
                              tensors=[images])
            return {"n": tf.size(images)}

    module = Writer()
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.serve})
    findings = [str(f) for f in scan_saved_model(tmp_path / "m")]
    assert any(f.startswith("op SaveV2 in function __inference_serve_") for f in findings), findings
    assert not any("_traced_save" in f or "_traced_restore" in f for f in findings), findings


def test_refused_version_is_reported_and_the_old_version_keeps_serving(
        start_server, model_base, read_file_model, png_bytes):
    from pathlib import Path

    server = start_server(model_base_path=str(model_base))
    push(model_base, 2, Path(read_file_model))
    status = wait_for(lambda: rest_status(server).get(2, {}).get("state") == "END" and rest_status(server)[2],
                      what="version 2 refused")
    assert "op ReadFile in function __inference_serve_" in status["status"]["error_message"]
    assert rest_status(server)[1]["state"] == "AVAILABLE"
    assert grpc_predict_version(server.grpc_port, png_bytes) == 1


def test_allowed_ops_let_a_denied_op_through(start_server, tmp_path, read_file_model):
    from pathlib import Path

    base = tmp_path / MODEL
    base.mkdir()
    push(base, 1, Path(read_file_model))
    server = start_server(model_base_path=str(base), allowed_ops="ReadFile, PrintV2")
    assert server.manager.wait_until_available(30)
    assert rest_status(server)[1]["state"] == "AVAILABLE"


def test_text_saved_model_is_scanned_too(tmp_path, read_file_model):
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    from visionpipe.serving.model_scan import scan_saved_model

    pb = Path(read_file_model) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    (tmp_path / "saved_model.pbtxt").write_text(text_format.MessageToString(saved_model))
    assert [f.op for f in scan_saved_model(tmp_path)] == ["ReadFile"]


def test_serve_with_config_takes_push_allowed_ops():
    from visionpipe.cli.main import build_parser
    from visionpipe.cli.serving_commands import server_options

    config = str(Path(__file__).resolve().parents[2] / "configs" / "classification.yaml")

    args = build_parser().parse_args(["serve", "--config", config,
                                      "push.allowed_ops=[ReadFile]"])
    assert server_options(args).allowed_ops == "ReadFile"
    args = build_parser().parse_args(["serve", "--config", config,
                                      "push.allowed_ops=[ReadFile]", "--allowed_ops", "PrintV2"])
    assert server_options(args).allowed_ops == "PrintV2"  # the flag wins


def test_saver_def_pointing_at_a_signature_does_not_launder_its_checkpoint_ops(toy_versions):
    from tensorflow.core.protobuf import saved_model_pb2

    from visionpipe.serving.model_scan import scan_meta_graph, DENYLIST

    saved_model = saved_model_pb2.SavedModel.FromString((toy_versions[1] / "saved_model.pb").read_bytes())
    meta_graph = saved_model.meta_graphs[0]
    assert scan_meta_graph(meta_graph, DENYLIST) == []
    # Pretend the serving signature is the saver: its functions are then reached both ways.
    serving_node = meta_graph.signature_def["serving_default"].outputs["probabilities"].name
    meta_graph.saver_def.restore_op_name = serving_node.split(":")[0]
    save_node = meta_graph.saver_def.save_tensor_name.split(":")[0]
    meta_graph.signature_def["serving_default"].outputs["sneaky"].name = save_node + ":0"
    findings = [str(f) for f in scan_meta_graph(meta_graph, DENYLIST)]
    assert any(f.startswith("op SaveV2 in function __inference__traced_save") for f in findings), findings
