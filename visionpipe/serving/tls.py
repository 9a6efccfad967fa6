"""TLS for the gRPC port, configured like tensorflow_model_server's ``--ssl_config_file``.

The file is a ``tensorflow.serving.SSLConfig`` text proto (tensorflow_serving/config/
ssl_config.proto) holding the PEM *contents*, not paths, so one file works for both servers::

    server_key: "-----BEGIN PRIVATE KEY-----\\n..."
    server_cert: "-----BEGIN CERTIFICATE-----\\n..."
    custom_ca: "-----BEGIN CERTIFICATE-----\\n..."   # CA that signs client certificates
    client_verify: true                              # require a client certificate

tensorflow-serving-api does not ship ssl_config_pb2, so the message is built here with the same
package, name, field names and numbers when the import fails. REST stays plain HTTP, as in TF
Serving: put a TLS proxy or a service mesh in front of it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from visionpipe.core.errors import UserError


def _ssl_config_class():
    try:
        from tensorflow_serving.config import ssl_config_pb2  # newer packages may ship it

        return ssl_config_pb2.SSLConfig
    except ImportError:
        pass
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.Default()
    try:
        descriptor = pool.FindMessageTypeByName("tensorflow.serving.SSLConfig")
    except KeyError:
        file_proto = descriptor_pb2.FileDescriptorProto(
            name="tensorflow_serving/config/ssl_config.proto", package="tensorflow.serving",
            syntax="proto3")
        message = file_proto.message_type.add(name="SSLConfig")
        for number, (name, kind) in enumerate([
                ("server_key", descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
                ("server_cert", descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
                ("custom_ca", descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
                ("client_verify", descriptor_pb2.FieldDescriptorProto.TYPE_BOOL)], start=1):
            message.field.add(name=name, number=number, type=kind,
                              label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
        pool.Add(file_proto)
        descriptor = pool.FindMessageTypeByName("tensorflow.serving.SSLConfig")
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


SSLConfig = _ssl_config_class()


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"{what} {path}: cannot read: {err.strerror or err}") from None


def load_ssl_config(path: str | Path):
    """Parse an SSLConfig text proto; a missing, unreadable or invalid file is a UserError."""
    from google.protobuf import text_format

    text = _read(path, "--ssl_config_file").decode("utf-8", "replace")
    config = SSLConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as err:
        raise UserError(f"--ssl_config_file {path}: not a tensorflow.serving.SSLConfig text "
                        f"proto: {err}") from None
    for field in ("server_key", "server_cert"):
        if not getattr(config, field):
            raise UserError(f"--ssl_config_file {path}: {field} is empty")
    for field in ("server_key", "server_cert", "custom_ca"):
        value = getattr(config, field)
        if value and "-----BEGIN" not in value:
            raise UserError(f"--ssl_config_file {path}: {field} is not PEM text (SSLConfig holds "
                            f"the PEM contents, not a file name)")
    if config.client_verify and not config.custom_ca:
        raise UserError(f"--ssl_config_file {path}: client_verify needs custom_ca (the CA that "
                        f"signs client certificates)")
    _check_pems(config, path)
    return config


def _check_pems(config, path) -> None:
    """Bad PEM or a key that does not match the certificate: a clear error now, not gRPC's
    "Failed to bind" later."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    def load(field, loader):
        try:
            return loader(getattr(config, field).encode())
        except (ValueError, TypeError) as err:
            raise UserError(f"--ssl_config_file {path}: {field} is not a valid PEM: {err}") from None

    key = load("server_key", lambda data: serialization.load_pem_private_key(data, password=None))
    cert = load("server_cert", x509.load_pem_x509_certificate)
    if config.custom_ca:
        load("custom_ca", x509.load_pem_x509_certificates)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, public)
            != cert.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise UserError(f"--ssl_config_file {path}: server_key does not match server_cert")


def server_credentials(config):
    """grpc.ServerCredentials for an SSLConfig (require_client_auth = client_verify)."""
    import grpc

    return grpc.ssl_server_credentials(
        [(config.server_key.encode(), config.server_cert.encode())],
        root_certificates=config.custom_ca.encode() or None,
        require_client_auth=bool(config.client_verify))


def channel_credentials(ca_cert: Optional[str] = None, client_cert: Optional[str] = None,
                        client_key: Optional[str] = None):
    """grpc.ChannelCredentials from PEM files; None when no option is given (plaintext)."""
    import grpc

    if not (ca_cert or client_cert or client_key):
        return None
    if bool(client_cert) != bool(client_key):
        raise UserError("--client_cert and --client_key go together")
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(ca_cert, "--ca_cert") if ca_cert else None,
        private_key=_read_pem(client_key, "--client_key") if client_key else None,
        certificate_chain=_read_pem(client_cert, "--client_cert") if client_cert else None)


def _read_pem(path: str | Path, what: str) -> bytes:
    """gRPC takes any bytes here and only fails at the first call, with C-level log lines and
    an 'empty address list'; a file that is not PEM at all is named now instead."""
    data = _read(path, what)
    if b"-----BEGIN " not in data:
        raise UserError(f"{what} {path}: not a PEM file (no '-----BEGIN' line)")
    return data
