"""impromptu.tls: loopback detection, the self-signed certificate, and user-given certificates."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from impromptu.errors import SignalingError, UsageError
from impromptu.tls import CERT_FILE, KEY_FILE, default_config_dir, is_loopback, server_ssl_context

FINGERPRINT = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){31}$")


def _write_pair(directory: Path, *, days: int = 30, san: bool = True) -> tuple[Path, Path]:
    """A self-signed PEM pair (naming localhost if *san*), valid for *days* (expired if negative)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(days=400), now + dt.timedelta(days=days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if san:
        localhost = x509.SubjectAlternativeName([x509.DNSName("localhost")])
        builder = builder.add_extension(localhost, critical=False)
    cert = builder.sign(key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _pem_fingerprint(path: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(path.read_text())
    return hashlib.sha256(der).digest().hex(":").upper()


def _served_fingerprint(context: ssl.SSLContext) -> str:
    """Fingerprint of the certificate a real TLS handshake with *context* presents on loopback."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

        server = threading.Thread(target=serve, name="tls-test-server")
        server.start()
        client_context = ssl.create_default_context()
        client_context.check_hostname = False
        client_context.verify_mode = ssl.CERT_NONE  # like a browser after "proceed anyway"
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client_context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            tls.sendall(b"x")
        server.join(timeout=10)
    assert der is not None
    return hashlib.sha256(der).digest().hex(":").upper()


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST", "localhost.", "::ffff:127.0.0.1"],
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "[::]", "", "192.168.1.20", "10.0.0.1", "fe80::1", "example.com", "my-laptop"]
)
def test_non_loopback_hosts(host: str) -> None:
    assert not is_loopback(host)


def test_loopback_without_cert_is_plain_http(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        assert server_ssl_context(host, None, None, config_dir=tmp_path) == (None, None)
    assert list(tmp_path.iterdir()) == []


def test_self_signed_generated_once_and_reused(tmp_path: Path) -> None:
    context, fp = server_ssl_context("192.0.2.10", None, None, config_dir=tmp_path)
    assert isinstance(context, ssl.SSLContext)
    assert fp is not None and FINGERPRINT.match(fp)

    tls_dir = tmp_path / "tls"
    cert_path, key_path = tls_dir / CERT_FILE, tls_dir / KEY_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert _pem_fingerprint(cert_path) == fp
    assert _served_fingerprint(context) == fp
    cert_bytes, key_bytes = cert_path.read_bytes(), key_path.read_bytes()

    cert = x509.load_pem_x509_certificate(cert_bytes)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("192.0.2.10") in ips
    assert ipaddress.ip_address("127.0.0.1") in ips
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=360) < lifetime < dt.timedelta(days=370)

    context2, fp2 = server_ssl_context("192.0.2.10", None, None, config_dir=tmp_path)
    assert context2 is not None
    assert fp2 == fp
    assert cert_path.read_bytes() == cert_bytes
    assert key_path.read_bytes() == key_bytes
    # No temporary files left behind by the atomic writes.
    assert sorted(p.name for p in tls_dir.iterdir() if p.name != ".lock") == [CERT_FILE, KEY_FILE]


def test_wildcard_bind_gets_a_certificate(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::"):
        context, fp = server_ssl_context(host, None, None, config_dir=tmp_path)
        assert context is not None and fp is not None and FINGERPRINT.match(fp)


def test_new_host_extends_the_certificate(tmp_path: Path) -> None:
    _, fp1 = server_ssl_context("192.0.2.10", None, None, config_dir=tmp_path)
    _, fp2 = server_ssl_context("198.51.100.7", None, None, config_dir=tmp_path)
    assert fp2 != fp1
    cert = x509.load_pem_x509_certificate((tmp_path / "tls" / CERT_FILE).read_bytes())
    ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)
    assert {ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("198.51.100.7")} <= set(ips)
    # Both hosts are now covered: neither regenerates again.
    assert server_ssl_context("192.0.2.10", None, None, config_dir=tmp_path)[1] == fp2


def test_expired_self_signed_is_regenerated(tmp_path: Path) -> None:
    old_cert, _ = _write_pair(tmp_path / "tls", days=-1)
    old_fp = _pem_fingerprint(old_cert)
    context, fp = server_ssl_context("192.0.2.10", None, None, config_dir=tmp_path)
    assert context is not None
    assert fp != old_fp
    cert = x509.load_pem_x509_certificate(old_cert.read_bytes())
    assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)


def test_stored_certificate_without_san_is_regenerated(tmp_path: Path) -> None:
    old_cert, _ = _write_pair(tmp_path / "tls", san=False)
    old_fp = _pem_fingerprint(old_cert)
    _, fp = server_ssl_context("192.0.2.10", None, None, config_dir=tmp_path)
    assert fp != old_fp and fp == _pem_fingerprint(old_cert)


def test_damaged_self_signed_is_regenerated(tmp_path: Path) -> None:
    server_ssl_context("192.0.2.10", None, None, config_dir=tmp_path)
    (tmp_path / "tls" / KEY_FILE).write_text("not a key\n")
    context, fp = server_ssl_context("192.0.2.10", None, None, config_dir=tmp_path)
    assert context is not None and fp == _pem_fingerprint(tmp_path / "tls" / CERT_FILE)


def test_default_config_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_config_dir() == tmp_path / "impromptu"
    _, fp = server_ssl_context("0.0.0.0", None, None)
    assert fp == _pem_fingerprint(tmp_path / "impromptu" / "tls" / CERT_FILE)

    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/path")  # invalid per the spec: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_config_dir() == tmp_path / "home" / ".config" / "impromptu"


def test_unwritable_config_dir_is_a_signaling_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(SignalingError, match="cannot store the self-signed TLS certificate"):
        server_ssl_context("192.0.2.10", None, None, config_dir=not_a_dir)


def test_given_cert_and_key_are_loaded(tmp_path: Path) -> None:
    cert_path, key_path = _write_pair(tmp_path / "given")
    for host in ("127.0.0.1", "0.0.0.0"):  # a given certificate is served on loopback too
        context, fp = server_ssl_context(host, cert_path, key_path, config_dir=tmp_path / "config")
        assert context is not None
        assert fp == _pem_fingerprint(cert_path)
        assert _served_fingerprint(context) == fp
    assert not (tmp_path / "config").exists()


@pytest.mark.parametrize("which", ["cert", "key"])
def test_half_given_is_a_usage_error(tmp_path: Path, which: str) -> None:
    cert_path, key_path = _write_pair(tmp_path)
    cert, key = (cert_path, None) if which == "cert" else (None, key_path)
    with pytest.raises(UsageError, match="--tls-cert and --tls-key"):
        server_ssl_context("0.0.0.0", cert, key, config_dir=tmp_path)


def test_bad_given_files_are_one_line_signaling_errors(tmp_path: Path) -> None:
    cert_path, key_path = _write_pair(tmp_path / "a")
    other_cert, other_key = _write_pair(tmp_path / "b")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    encrypted = tmp_path / "encrypted.pem"
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    cases = [
        (tmp_path / "missing.pem", key_path, "cannot read TLS certificate"),
        (cert_path, tmp_path / "missing.pem", "cannot read TLS key"),
        (garbage, key_path, "holds no PEM certificate"),
        (cert_path, garbage, "not a PEM private key"),
        (cert_path, encrypted, "encrypted"),
        (cert_path, other_key, "does not belong to certificate"),
        (other_cert, key_path, "does not belong to certificate"),
    ]
    for cert, key_file, message in cases:
        with pytest.raises(SignalingError, match=message) as info:
            server_ssl_context("0.0.0.0", cert, key_file)
        assert "\n" not in str(info.value)
