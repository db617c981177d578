"""HTTPS for the page and signaling server.

WebCodecs exists only in secure contexts. ``http://127.0.0.1`` and ``http://localhost`` qualify, a LAN address
over plain http does not, so any non-loopback bind must serve HTTPS: with the certificate the user gives, or
else with a self-signed one generated once and kept in the user's config folder
(``$XDG_CONFIG_HOME/impromptu/tls/``, by default ``~/.config/impromptu/tls/``). Nobody can vouch for a
self-signed certificate, so the caller prints its SHA-256 fingerprint, formatted the way browsers show it, for
the user to compare with what the browser's warning page displays.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from impromptu.errors import SignalingError, UsageError

__all__ = ["default_config_dir", "fingerprint", "is_loopback", "server_ssl_context"]

log = logging.getLogger(__name__)

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
_VALIDITY = dt.timedelta(days=365)
# Renew a little before expiry so a session started today does not outlive its certificate.
_RENEW_BEFORE = dt.timedelta(days=7)
# Backdate the start a little: a viewer whose clock lags ours must not see "not yet valid".
_BACKDATE = dt.timedelta(hours=1)
_SUBJECT = "impromptu self-signed"
_Network = (ipaddress.IPv4Network, ipaddress.IPv6Network)


def is_loopback(host: str) -> bool:
    """Whether *host* names only this machine: 127.0.0.0/8, ``::1`` or ``localhost``.

    Browsers treat these as secure contexts over plain http. The wildcard binds ``0.0.0.0`` and ``::`` are
    *not* loopback: they accept connections from the whole network. Other host names are not resolved and
    count as non-loopback.
    """
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def default_config_dir() -> Path:
    """impromptu's config folder: ``$XDG_CONFIG_HOME/impromptu``, else ``~/.config/impromptu``."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "impromptu"


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of *cert* as browsers show it: ``AA:BB:…`` (32 upper-case hex pairs)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def server_ssl_context(
    host: str, cert: Path | None, key: Path | None, config_dir: Path | None = None
) -> tuple[ssl.SSLContext | None, str | None]:
    """The TLS server context for a server bound to *host*, and its certificate's SHA-256 fingerprint.

    - *cert* and *key* given: load them (PEM, key unencrypted), on any host; the fingerprint is the given
      certificate's.
    - neither given and *host* is loopback: ``(None, None)``; plain http is a secure context there.
    - neither given otherwise: a self-signed certificate kept in ``config_dir/tls/`` (*config_dir* defaults
      to :func:`default_config_dir`), generated on first use and again only when it expires, is unreadable,
      or does not name *host*.

    Raises :class:`UsageError` when only one of *cert* and *key* is given, and :class:`SignalingError` (one
    line, naming the file) when they cannot be read or do not form a valid pair, or when the self-signed
    certificate cannot be stored.
    """
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together: give both or neither")
    if cert is not None and key is not None:
        return _load_given(cert, key)
    if is_loopback(host):
        return None, None
    tls_dir = (config_dir if config_dir is not None else default_config_dir()) / "tls"
    return _self_signed(host, tls_dir)


def _context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A password callback that fails: with none, OpenSSL would prompt on the terminal for an encrypted key.
    context.load_cert_chain(cert_path, key_path, password=_no_password)
    return context


def _no_password() -> bytes:
    raise SignalingError("the TLS key is encrypted; give an unencrypted PEM key")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SignalingError(f"cannot read TLS {what} {path}: {exc.strerror or exc}") from exc


def _load_given(cert_path: Path, key_path: Path) -> tuple[ssl.SSLContext, str]:
    # Parse with cryptography first: OpenSSL's own errors ("PEM lib") do not say what is wrong.
    cert_pem = _read(cert_path, "certificate")
    key_pem = _read(key_path, "key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise SignalingError(f"TLS certificate {cert_path} holds no PEM certificate") from exc
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:  # raised for an encrypted key when no password is given
        raise SignalingError(f"TLS key {key_path} is encrypted; give an unencrypted PEM key") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignalingError(f"TLS key {key_path} is not a PEM private key impromptu can use") from exc
    leaf = chain[0]
    if leaf.public_key() != private_key.public_key():
        raise SignalingError(f"TLS key {key_path} does not belong to certificate {cert_path}")
    if leaf.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        log.warning(
            "TLS certificate %s expired on %s; browsers will refuse it",
            cert_path,
            leaf.not_valid_after_utc.date(),
        )
    try:
        context = _context(cert_path, key_path)
    except OSError as exc:  # ssl.SSLError is an OSError
        raise SignalingError(f"cannot load TLS certificate {cert_path} with key {key_path}: {exc}") from exc
    return context, fingerprint(leaf)


def _host_names(host: str) -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """DNS names and IP addresses a certificate for a server bound to *host* should name."""
    names = {"localhost"}
    addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = {ipaddress.ip_address("127.0.0.1")}
    bare = host.strip().removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        name = bare.rstrip(".").lower()
        if name and name.isascii():
            names.add(name)
        return names, addresses
    if address.is_unspecified:
        # A wildcard bind is reached through the machine's own addresses; its name is the one stable choice.
        hostname = socket.gethostname().lower()
        if hostname and hostname.isascii():
            names.add(hostname)
    else:
        addresses.add(address)
    return names, addresses


def _san(cert: x509.Certificate) -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """The DNS names and IP addresses *cert* names (empty without a subjectAltName)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    names = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    addresses = {a for a in san.get_values_for_type(x509.IPAddress) if not isinstance(a, _Network)}
    return names, addresses


@contextlib.contextmanager
def _locked(tls_dir: Path) -> Iterator[None]:
    """Serialise generation between impromptu processes starting at the same time."""
    with open(tls_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _self_signed(host: str, tls_dir: Path) -> tuple[ssl.SSLContext, str]:
    cert_path, key_path = tls_dir / CERT_FILE, tls_dir / KEY_FILE
    names, addresses = _host_names(host)
    try:
        tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(tls_dir):
            existing = _load_stored(cert_path, key_path)
            if existing is not None:
                context, cert = existing
                fresh = cert.not_valid_after_utc - _RENEW_BEFORE > dt.datetime.now(dt.UTC)
                if fresh:
                    have_names, have_addresses = _san(cert)
                    if names <= have_names and addresses <= have_addresses:
                        return context, fingerprint(cert)
                    # Keep the names it had, so a second bind address does not undo the first.
                    names |= have_names
                    addresses |= have_addresses
            cert = _generate(cert_path, key_path, names, addresses)
            log.info("generated a self-signed TLS certificate in %s", tls_dir)
            return _context(cert_path, key_path), fingerprint(cert)
    except OSError as exc:
        raise SignalingError(
            f"cannot store the self-signed TLS certificate in {tls_dir}: {exc.strerror or exc}"
            " (fix the folder's permissions, or give --tls-cert and --tls-key)"
        ) from exc


def _load_stored(cert_path: Path, key_path: Path) -> tuple[ssl.SSLContext, x509.Certificate] | None:
    """The stored pair, or None when missing or damaged (a crash between the two writes, an edited file)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        return _context(cert_path, key_path), cert
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ssl.SSLError, SignalingError) as exc:
        log.warning("replacing the unusable stored TLS certificate in %s: %s", cert_path.parent, exc)
        return None


def _generate(
    cert_path: Path,
    key_path: Path,
    names: set[str],
    addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> x509.Certificate:
    private_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _SUBJECT)])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(names)]
    alt_names += [x509.IPAddress(a) for a in sorted(addresses, key=lambda a: (a.version, int(a)))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(private_key, hashes.SHA256())
    )
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Key first: if we die in between, the stored pair mismatches and is regenerated next time.
    _write_atomic(key_path, key_pem, 0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write *data* to *path* so that readers see the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created with mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
