"""Server options: the subset of tensorflow_model_server's flags this server implements.

Kept free of TensorFlow imports so the CLI can build its parser instantly.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass
class ServerOptions:
    """The subset of tensorflow_model_server's flags this server implements (same names)."""
    port: int = 8500
    rest_api_port: int = 8501
    host: str = "127.0.0.1"
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    enable_model_warmup: bool = True
    rest_api_timeout_in_ms: int = 30000
    rest_api_num_threads: int = 64
    grpc_max_threads: int = 32
    max_request_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    ssl_config_file: str = ""  # tensorflow.serving.SSLConfig text proto: TLS on the gRPC port
    allowed_ops: str = ""  # comma-separated ops the model scan lets through (model_scan.DENYLIST)

    def model_server_config(self):
        from visionpipe.serving import model_config

        if bool(self.model_config_file) == bool(self.model_base_path):
            raise model_config.ConfigFileError(
                "give exactly one of --model_base_path or --model_config_file")
        if self.model_config_file:
            return model_config.load_model_server_config(self.model_config_file)
        return model_config.single_model_config(self.model_name, str(Path(self.model_base_path).resolve()))

    def batching_options(self):
        from visionpipe.serving import model_config
        from visionpipe.serving.batching import BatchingOptions

        if not self.enable_batching:
            return None
        if self.batching_parameters_file:
            return BatchingOptions.from_proto(
                model_config.load_batching_parameters(self.batching_parameters_file))
        return BatchingOptions.from_proto(model_config.BatchingParameters())
