"""The server's TLS certificate: first-start generation, loading, fingerprint.

On first start the server makes a self-signed ECDSA P-256 certificate
valid for about ten years, with a SAN listing its host names and
addresses, basicConstraints CA=false (critical), keyUsage
digitalSignature (critical), extendedKeyUsage serverAuth, and subject and
authority key identifiers. Clients pin it on first use by its SHA-256
fingerprint, so the files are kept across restarts and never replaced
silently. Both files are written atomically (temporary file, fsync,
rename); the key file has mode 0600.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

CERT_FILE_NAME = "server-cert.pem"
KEY_FILE_NAME = "server-key.pem"
VALIDITY_DAYS = 3650
# Backdating covers client clocks that run a little slow.
BACKDATE = datetime.timedelta(days=1)


class CertificateError(Exception):
    """The certificate or key files are missing, unreadable or do not match."""


def fingerprint(cert_der: bytes) -> str:
    """Return ``SHA256:`` and the uppercase hex pairs of the DER's SHA-256."""
    digest = hashlib.sha256(cert_der).hexdigest().upper()
    pairs = [digest[index : index + 2] for index in range(0, len(digest), 2)]
    return "SHA256:" + ":".join(pairs)


def certificate_fingerprint(cert_file: Path) -> str:
    """Return the fingerprint of the first certificate in a PEM file."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot read certificate {cert_file}: {exc}") from exc
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    # NOTE: on Windows the mode bits have no effect; the key file is then
    # protected only by the ACL of the data directory.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _subject_alternative_names(bind_host: str) -> list[x509.GeneralName]:
    dns_names = {socket.gethostname().lower(), "localhost"}
    addresses = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    if bind_host and bind_host not in ("0.0.0.0", "::"):  # noqa: S104
        try:
            addresses.add(ipaddress.ip_address(bind_host))
        except ValueError:
            dns_names.add(bind_host.lower())
    try:
        dns_names.add(socket.getfqdn().lower())
    except OSError:
        pass
    names: list[x509.GeneralName] = [
        x509.DNSName(name) for name in sorted(dns_names) if name
    ]
    names.extend(x509.IPAddress(address) for address in sorted(addresses, key=str))
    return names


def generate_certificate(bind_host: str) -> tuple[bytes, bytes]:
    """Make a self-signed P-256 certificate; return ``(cert_pem, key_pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = f"EncTalk server {socket.gethostname()}"[:64]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(_subject_alternative_names(bind_host)),
            critical=False,
        )
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
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def ensure_certificate(data_dir: Path, bind_host: str) -> tuple[Path, Path]:
    """Return the generated certificate and key paths, making them if absent.

    The key is written before the certificate, so a certificate on disk
    always has its key. A key without a certificate is left over from an
    interrupted first start and is replaced. A certificate without its key
    raises :class:`CertificateError`, because clients may have pinned it.
    """
    cert_path = data_dir / CERT_FILE_NAME
    key_path = data_dir / KEY_FILE_NAME
    if cert_path.exists():
        if not key_path.exists():
            raise CertificateError(
                f"certificate {cert_path} exists but its key {key_path} is missing; "
                "restore the key, or delete the certificate to make a new one "
                "(clients will then see a certificate change)"
            )
        return cert_path, key_path
    cert_pem, key_pem = generate_certificate(bind_host)
    _write_atomically(key_path, key_pem, 0o600)
    _write_atomically(cert_path, cert_pem, 0o644)
    logger.info("generated a self-signed certificate in %s", cert_path)
    return cert_path, key_path


def make_tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Build the server's TLS 1.3-only context from PEM files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # Clients reconnect with a login token, not TLS session resumption.
    context.num_tickets = 0
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise CertificateError(
            f"cannot load certificate {cert_file} with key {key_file}: {exc}"
        ) from exc
    return context
