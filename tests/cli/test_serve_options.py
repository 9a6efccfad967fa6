"""`visionpipe serve --config`: the config's serve: and push: sections drive the server; flags win."""
import os

import pytest

from visionpipe.cli.main import build_parser
from visionpipe.cli.serving_commands import server_options
from visionpipe.core.errors import UserError


def _options(*argv):
    return server_options(build_parser().parse_args(["serve", *argv]))


def test_serve_takes_host_ports_and_model_from_the_config():
    options = _options("--config", "configs/classification.yaml", "serve.port=9100",
                       "serve.rest_api_port=9101", "push.serving_root=/srv/models")
    assert (options.host, options.port, options.rest_api_port) == ("127.0.0.1", 9100, 9101)
    assert options.model_name == "shapes"
    assert options.model_base_path == os.path.join("/srv/models", "shapes")


def test_flags_win_over_the_config_and_defaults_apply_without_one():
    options = _options("--config", "configs/classification.yaml", "serve.port=9100", "--port=9200",
                       "--model_name=other")
    assert options.port == 9200 and options.model_name == "other"
    plain = _options("--model_base_path=/m")
    assert (plain.port, plain.rest_api_port, plain.model_name) == (8500, 8501, "default")


def test_a_model_config_file_is_not_mixed_with_the_configs_model():
    options = _options("--config", "configs/classification.yaml", "--model_config_file=/m.config")
    assert options.model_config_file == "/m.config" and options.model_base_path == ""


def test_overrides_without_a_config_are_refused():
    with pytest.raises(UserError, match="need --config"):
        _options("serve.port=1")
