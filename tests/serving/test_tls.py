"""gRPC over TLS with TF Serving's --ssl_config_file (SSLConfig text proto with PEM contents)."""
from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import grpc
import pytest

from tests.serving.conftest import MODEL

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject_cn: str, key, issuer_cn: str, issuer_key, ca: bool, server: bool = False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False).add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
    from cryptography.hazmat.primitives import serialization

    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict:
    """A throw-away CA, a server certificate (localhost, 127.0.0.1) and a client certificate."""
    out = tmp_path_factory.mktemp("certs")
    ca_key, server_key, client_key = _key(), _key(), _key()
    files = {
        "ca.pem": _cert("visionpipe test CA", ca_key, "visionpipe test CA", ca_key, ca=True),
        "server.key": _pem_key(server_key),
        "server.pem": _cert("localhost", server_key, "visionpipe test CA", ca_key, ca=False, server=True),
        "client.key": _pem_key(client_key),
        "client.pem": _cert("client", client_key, "visionpipe test CA", ca_key, ca=False),
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
    return {name.replace(".", "_"): out / name for name in files}


def write_ssl_config(path: Path, certs: dict, client_verify: bool) -> Path:
    def quoted(p):
        return '"' + Path(p).read_text().replace("\n", "\\n") + '"'

    path.write_text(f"server_key: {quoted(certs['server_key'])}\n"
                    f"server_cert: {quoted(certs['server_pem'])}\n"
                    f"custom_ca: {quoted(certs['ca_pem'])}\n"
                    f"client_verify: {'true' if client_verify else 'false'}\n")
    return path


def _predict(port: int, image: bytes, credentials=None):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    target = f"localhost:{port}"
    channel = (grpc.secure_channel(target, credentials) if credentials is not None
               else grpc.insecure_channel(target))
    with channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs["images"].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)


def _creds(certs, with_client_cert: bool):
    from visionpipe.serving.tls import channel_credentials

    if with_client_cert:
        return channel_credentials(str(certs["ca_pem"]), str(certs["client_pem"]), str(certs["client_key"]))
    return channel_credentials(str(certs["ca_pem"]))


def test_ssl_config_file_parses_as_tf_serving_sslconfig(tmp_path, certs):
    from visionpipe.serving.tls import load_ssl_config

    config = load_ssl_config(write_ssl_config(tmp_path / "ssl.config", certs, client_verify=True))
    assert config.DESCRIPTOR.full_name == "tensorflow.serving.SSLConfig"
    assert [f.name for f in config.DESCRIPTOR.fields] == ["server_key", "server_cert", "custom_ca",
                                                           "client_verify"]
    assert config.client_verify and config.server_cert.startswith("-----BEGIN CERTIFICATE-----")


def test_tls_predict_succeeds_and_plaintext_to_the_tls_port_fails(tmp_path, certs, model_base,
                                                                  start_server, png_bytes):
    from visionpipe.serving.client import predict_images

    ssl_config = write_ssl_config(tmp_path / "ssl.config", certs, client_verify=False)
    server = start_server(model_base_path=str(model_base), ssl_config_file=str(ssl_config))
    assert _predict(server.grpc_port, png_bytes, _creds(certs, False)).model_spec.version.value == 1
    with pytest.raises(grpc.RpcError) as err:
        _predict(server.grpc_port, png_bytes)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes)
    rows = predict_images(f"localhost:{server.grpc_port}", MODEL, [image], protocol="grpc",
                          ca_cert=str(certs["ca_pem"]))
    assert rows[0]["model_version"] == 1


def test_client_verify_refuses_a_client_without_certificate_and_admits_a_signed_one(
        tmp_path, certs, model_base, start_server, png_bytes):
    ssl_config = write_ssl_config(tmp_path / "ssl.config", certs, client_verify=True)
    server = start_server(model_base_path=str(model_base), ssl_config_file=str(ssl_config))
    with pytest.raises(grpc.RpcError) as err:
        _predict(server.grpc_port, png_bytes, _creds(certs, with_client_cert=False))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    response = _predict(server.grpc_port, png_bytes, _creds(certs, with_client_cert=True))
    assert response.model_spec.version.value == 1
    from visionpipe.serving.client import health_check

    assert health_check(f"localhost:{server.grpc_port}", MODEL, 10,
                        _creds(certs, with_client_cert=True)) == "SERVING"


def test_missing_ssl_config_file_is_a_one_line_error_with_exit_status_2(tmp_path, model_base, capsys):
    from visionpipe.cli.main import main

    missing = tmp_path / "nope.config"
    assert main(["serve", "--model_name", MODEL, "--model_base_path", str(model_base),
                 "--port", "0", "--rest_api_port", "0", "--ssl_config_file", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err


def test_unreadable_or_invalid_ssl_config_and_missing_client_files_are_user_errors(tmp_path, certs):
    from visionpipe.core.errors import UserError
    from visionpipe.serving.tls import channel_credentials, load_ssl_config

    bad = tmp_path / "bad.config"
    bad.write_text("server_key: /etc/key.pem\n")
    with pytest.raises(UserError, match="bad.config"):
        load_ssl_config(bad)
    paths = tmp_path / "paths.config"
    paths.write_text('server_key: "/etc/key.pem"\nserver_cert: "/etc/cert.pem"\n')
    with pytest.raises(UserError, match="not PEM text"):
        load_ssl_config(paths)
    with pytest.raises(UserError, match="nope.pem"):
        channel_credentials(str(tmp_path / "nope.pem"))
    with pytest.raises(UserError, match="go together"):
        channel_credentials(str(certs["ca_pem"]), client_cert=str(certs["client_pem"]))


def test_predict_server_with_missing_ca_cert_exits_2_naming_the_file(tmp_path, png_bytes, capsys):
    from visionpipe.cli.main import main

    image = tmp_path / "a.png"
    image.write_bytes(png_bytes)
    missing = tmp_path / "ca-missing.pem"
    assert main(["predict", str(image), "--server", "127.0.0.1:1", "--model_name", MODEL,
                 "--protocol", "grpc", "--ca_cert", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err


def test_bad_pem_and_mismatched_key_are_named_before_binding(tmp_path, certs):
    from visionpipe.core.errors import UserError
    from visionpipe.serving.tls import load_ssl_config

    bad_key = tmp_path / "bad.key"
    bad_key.write_text("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n")
    garbage = write_ssl_config(tmp_path / "garbage.config", dict(certs, server_key=bad_key),
                               client_verify=False)
    with pytest.raises(UserError, match="server_key is not a valid PEM"):
        load_ssl_config(garbage)
    mismatched = write_ssl_config(tmp_path / "mismatch.config", dict(certs, server_key=certs["client_key"]),
                                  client_verify=False)
    with pytest.raises(UserError, match="server_key does not match server_cert"):
        load_ssl_config(mismatched)
