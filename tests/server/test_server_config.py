"""Settings, the generated certificate and TLS pinning."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
import stat
from pathlib import Path

import pytest
from conftest import make_config
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from server_wire import HOST, WireClient, client_context

from server.app import Server
from server.certs import CertificateError, ensure_certificate, fingerprint
from server.config import ConfigError, ServerConfig, build_config, default_data_dir


def test_config_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('port = 6000\nidle_timeout = 30\ndata_dir = "state"\n')
    config = build_config(path, {"port": 7000, "host": None})
    assert config.port == 7000
    assert config.idle_timeout == 30.0
    assert config.data_dir == tmp_path / "state"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n", "unknown setting 'colour'"),
        ('port = "80"\n', "port must be an integer"),
        ("bcrypt_cost = 3\n", "bcrypt_cost must be between 4 and 31"),
        ("port = [\n", "not valid TOML"),
        ("output_hard_limit = 1000\n", "output_hard_limit must be at least"),
    ],
)
def test_config_file_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_config(path)


def test_default_data_dir_follows_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "enctalk-server"
    monkeypatch.setattr("sys.platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path))
    assert default_data_dir() == tmp_path / "EncTalk" / "Server"


def test_generated_certificate_extensions(tmp_path: Path) -> None:
    cert_path, key_path = ensure_certificate(tmp_path, "127.0.0.1")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"

    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign
    extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(extended) == [ExtendedKeyUsageOID.SERVER_AUTH]
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    addresses = names.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in addresses
    assert ipaddress.ip_address("::1") in addresses
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days >= 3650


def test_certificate_is_kept_across_starts(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path, "")
    data = first[0].read_bytes()
    second = ensure_certificate(tmp_path, "")
    assert second == first
    assert first[0].read_bytes() == data


def test_certificate_without_key_is_an_error(tmp_path: Path) -> None:
    _, key_path = ensure_certificate(tmp_path, "")
    key_path.unlink()
    with pytest.raises(CertificateError, match="key"):
        ensure_certificate(tmp_path, "")


def test_fingerprint_format() -> None:
    text = fingerprint(b"abc")
    digest = hashlib.sha256(b"abc").hexdigest().upper()
    assert text == "SHA256:" + ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def test_pinned_certificate_verifies_for_localhost_and_ip(data_dir: Path) -> None:
    with Server(make_config(data_dir)) as server:
        assert server.cert_file is not None
        for name in ("localhost", "127.0.0.1"):
            context = client_context(str(server.cert_file))
            raw = socket.create_connection((HOST, server.port), timeout=5)
            with context.wrap_socket(raw, server_hostname=name) as tls:
                assert tls.version() == "TLSv1.3"
                der = tls.getpeercert(binary_form=True)
                assert der is not None
                assert fingerprint(der) == server.fingerprint
        client = WireClient(server.port, cafile=str(server.cert_file))
        assert client.call("ping")["type"] == "ok"
        client.close()


def test_tls12_client_is_rejected(data_dir: Path) -> None:
    with Server(make_config(data_dir)) as server:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        raw = socket.create_connection((HOST, server.port), timeout=5)
        with pytest.raises((ssl.SSLError, OSError)):
            context.wrap_socket(raw, server_hostname="localhost")
        raw.close()


def test_operator_certificate_is_used(tmp_path: Path) -> None:
    (tmp_path / "own").mkdir()
    cert_path, key_path = ensure_certificate(tmp_path / "own", "")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    expected = fingerprint(cert.public_bytes(serialization.Encoding.DER))
    config = make_config(tmp_path / "data", cert_file=cert_path, key_file=key_path)
    with Server(config) as server:
        assert server.fingerprint == expected
        assert not (tmp_path / "data" / "server-cert.pem").exists()


def test_config_rejects_lone_cert_file(tmp_path: Path) -> None:
    config = ServerConfig(cert_file=tmp_path / "c.pem")
    with pytest.raises(ConfigError, match="together"):
        config.validate()
