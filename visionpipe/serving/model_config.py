"""TF Serving's configuration files: model config, batching parameters, monitoring.

The model config uses ``tensorflow_serving.config.model_server_config_pb2`` directly. The
tensorflow-serving-api wheel does not ship ``session_bundle_config.proto`` (BatchingParameters)
nor ``monitoring_config.proto``, so those two messages are declared here with the same package,
field names, types and numbers as in tensorflow/serving, which keeps the text files we read and
write byte-compatible with the real model server.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Set

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class ConfigFileError(ValueError):
    """A configuration file that cannot be used; the message names the file and field."""


def _declare_messages():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    f = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/visionpipe_declared.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    label_opt = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    label_rep = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    message = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE

    def add_fields(msg, fields):
        for number, (name, kind, type_name, label) in enumerate(fields, start=1):
            field = msg.field.add(name=name, number=number, label=label, type=kind)
            if type_name:
                field.type_name = type_name

    batching = f.message_type.add(name="BatchingParameters")
    int64_value = ".google.protobuf.Int64Value"
    add_fields(batching, [
        ("max_batch_size", message, int64_value, label_opt),
        ("batch_timeout_micros", message, int64_value, label_opt),
        ("max_enqueued_batches", message, int64_value, label_opt),
        ("num_batch_threads", message, int64_value, label_opt),
        ("thread_pool_name", message, ".google.protobuf.StringValue", label_opt),
        ("allowed_batch_sizes", descriptor_pb2.FieldDescriptorProto.TYPE_INT64, None, label_rep),
        ("pad_variable_length_inputs", descriptor_pb2.FieldDescriptorProto.TYPE_BOOL, None, label_opt),
    ])
    prometheus = f.message_type.add(name="PrometheusConfig")
    add_fields(prometheus, [
        ("enable", descriptor_pb2.FieldDescriptorProto.TYPE_BOOL, None, label_opt),
        ("path", descriptor_pb2.FieldDescriptorProto.TYPE_STRING, None, label_opt),
    ])
    monitoring = f.message_type.add(name="MonitoringConfig")
    add_fields(monitoring, [
        ("prometheus_config", message, ".tensorflow.serving.PrometheusConfig", label_opt)])
    pool.Add(f)
    factory = message_factory.MessageFactory(pool)
    return tuple(factory.GetPrototype(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
                 for name in ("BatchingParameters", "MonitoringConfig"))


BatchingParameters, MonitoringConfig = _declare_messages()

# TF Serving's defaults for a BatchingParameters field left unset.
BATCHING_DEFAULTS = {"max_batch_size": 1000, "batch_timeout_micros": 0,
                     "max_enqueued_batches": 10, "num_batch_threads": 4}


def _parse_text(path: str | Path, message, what: str):
    path = Path(path)
    if not path.is_file():
        raise ConfigFileError(f"{what} file not found: {path}")
    try:
        return text_format.Parse(path.read_text(), message)
    except text_format.ParseError as err:
        raise ConfigFileError(f"{path}: not a valid {what} text proto: {err}") from None


def validate_model_name(name: str, where: str) -> None:
    if not _MODEL_NAME.match(name or ""):
        raise ConfigFileError(f"{where}: model name {name!r} must be letters, digits, '_', '-' or '.'")


def validate_model_server_config(config, where: str = "model config"):
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigFileError(f"{where}: only model_config_list is supported")
    seen: Set[str] = set()
    for i, model in enumerate(config.model_config_list.config):
        key = f"{where}: config[{i}]"
        validate_model_name(model.name, f"{key}.name")
        if model.name in seen:
            raise ConfigFileError(f"{key}.name: model {model.name!r} is configured twice")
        seen.add(model.name)
        if not model.base_path:
            raise ConfigFileError(f"{key}.base_path: must be set for model {model.name!r}")
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigFileError(f"{key}.model_platform: only 'tensorflow' is served, "
                                  f"got {model.model_platform!r}")
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "latest" and policy.latest.num_versions < 0:
            raise ConfigFileError(f"{key}.model_version_policy.latest.num_versions: must be >= 0")
        if policy.WhichOneof("policy_choice") == "specific" and not policy.specific.versions:
            raise ConfigFileError(f"{key}.model_version_policy.specific.versions: must list versions")
        for label, version in model.version_labels.items():
            if not label or label[0].isdigit():
                raise ConfigFileError(f"{key}.version_labels: label {label!r} must not start with a digit")
            if version < 0:
                raise ConfigFileError(f"{key}.version_labels.{label}: version must be >= 0")
    return config


def load_model_server_config(path: str | Path):
    config = _parse_text(path, model_server_config_pb2.ModelServerConfig(), "model config")
    return validate_model_server_config(config, str(path))


def single_model_config(name: str, base_path: str):
    """The config TF Serving builds from --model_name/--model_base_path."""
    validate_model_name(name, "--model_name")
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = str(base_path)
    model.model_platform = "tensorflow"
    return config


def load_batching_parameters(path: str | Path):
    params = _parse_text(path, BatchingParameters(), "batching parameters")
    resolved = batching_values(params)
    for key in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
        if resolved[key] < 1:
            raise ConfigFileError(f"{path}: {key} must be >= 1, got {resolved[key]}")
    if resolved["batch_timeout_micros"] < 0:
        raise ConfigFileError(f"{path}: batch_timeout_micros must be >= 0")
    sizes = list(params.allowed_batch_sizes)
    if sizes and (sizes != sorted(set(sizes)) or sizes[-1] != resolved["max_batch_size"]):
        raise ConfigFileError(f"{path}: allowed_batch_sizes must increase and end at max_batch_size")
    return params


def batching_values(params) -> dict:
    """Field values with TF Serving's defaults filled in for unset wrappers."""
    values = {key: getattr(params, key).value if params.HasField(key) else default
              for key, default in BATCHING_DEFAULTS.items()}
    values["allowed_batch_sizes"] = list(params.allowed_batch_sizes)
    return values


def load_monitoring_config(path: Optional[str | Path]):
    """None means the default: Prometheus enabled at TF Serving's path."""
    if path is None:
        config = MonitoringConfig()
        config.prometheus_config.enable = True
    else:
        config = _parse_text(path, MonitoringConfig(), "monitoring config")
    if config.prometheus_config.enable and not config.prometheus_config.path:
        config.prometheus_config.path = DEFAULT_PROMETHEUS_PATH
    path_value = config.prometheus_config.path
    if config.prometheus_config.enable and not path_value.startswith("/"):
        raise ConfigFileError(f"{path}: prometheus_config.path must start with '/', got {path_value!r}")
    return config


def select_versions(model_config, available: Iterable[int]) -> Set[int]:
    """The versions a model's version policy aspires to among those on disk."""
    available = sorted(set(available))
    policy = model_config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(available)
    if choice == "specific":
        return set(policy.specific.versions) & set(available)
    count = policy.latest.num_versions if choice == "latest" else 1
    return set(available[-max(count, 1):]) if available else set()


def render_model_server_config(models: Sequence[tuple], num_versions: int = 1,
                               labels: Optional[dict] = None) -> str:
    """Text proto for [(name, base_path), ...] with a latest-N policy."""
    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models:
        validate_model_name(name, "model name")
        model = config.model_config_list.config.add(name=name, base_path=base_path,
                                                    model_platform="tensorflow")
        model.model_version_policy.latest.num_versions = num_versions
        for label, version in (labels or {}).get(name, {}).items():
            model.version_labels[label] = version
    return text_format.MessageToString(config)


def render_batching_parameters(max_batch_size: int, batch_timeout_micros: int,
                               max_enqueued_batches: int, num_batch_threads: int,
                               allowed_batch_sizes: List[int] = ()) -> str:
    params = BatchingParameters()
    params.max_batch_size.value = max_batch_size
    params.batch_timeout_micros.value = batch_timeout_micros
    params.max_enqueued_batches.value = max_enqueued_batches
    params.num_batch_threads.value = num_batch_threads
    params.allowed_batch_sizes.extend(allowed_batch_sizes)
    return text_format.MessageToString(params)


def render_monitoring_config(path: str = DEFAULT_PROMETHEUS_PATH) -> str:
    config = MonitoringConfig()
    config.prometheus_config.enable = True
    config.prometheus_config.path = path
    return text_format.MessageToString(config)
