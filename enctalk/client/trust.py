"""Server certificate pinning, trust on first use like SSH's known_hosts.

The profile maps ``host:port`` to the SHA-256 fingerprint and DER bytes of
the server's certificate. On first contact the client fetches the
certificate without verifying it, and pins it if its fingerprint equals
one the user approved in advance, if the caller allows new servers, or
if the user confirms the fingerprint shown to them. Afterwards the pinned
certificate is the only trust anchor of the TLS context, and the peer's
certificate must also have the pinned fingerprint. Any other certificate
is a hard error that names both fingerprints.

With ``use_system_trust`` the operator's CA-signed certificate is checked
the usual way instead: the system's trust store and the host name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from enctalk.client.address import format_server_address
from enctalk.client.errors import (
    CERTIFICATE_CHANGED,
    CERTIFICATE_REJECTED,
    CONNECTION_FAILED,
    ClientError,
    profile_damaged,
)
from enctalk.client.system_ca import load_system_ca

logger = logging.getLogger(__name__)

# Called with (address, fingerprint) for an unknown server; True pins it.
ConfirmServer = Callable[[str, str], bool]


def certificate_fingerprint(der: bytes) -> str:
    """Return ``SHA256:`` and the certificate's SHA-256 as colon-separated hex."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return "SHA256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(text: str) -> str:
    """Return ``text`` in the ``SHA256:AB:CD:...`` form, ignoring case and colons."""
    value = text.strip()
    if value.upper().startswith("SHA256:"):
        value = value[len("SHA256:") :]
    hex_digits = value.replace(":", "").upper()
    if len(hex_digits) != 64 or any(c not in "0123456789ABCDEF" for c in hex_digits):
        raise ValueError(
            f"{text!r} is not a SHA-256 fingerprint (64 hex digits, "
            "optionally after 'SHA256:' and with colons)"
        )
    return "SHA256:" + ":".join(hex_digits[i : i + 2] for i in range(0, 64, 2))


def _pinned_certificate(entry: object) -> bytes | None:
    """Return the DER bytes of a known_servers entry, or None if unreadable."""
    if not isinstance(entry, dict):
        return None
    text = entry.get("certificate")
    if not isinstance(text, str):
        return None
    try:
        der = base64.b64decode(text, altchars=b"-_", validate=True)
    except ValueError:
        return None
    return der or None


def _base_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def fetch_certificate(host: str, port: int, timeout: float) -> bytes:
    """Return the DER certificate that the server presents, without verifying it."""
    context = _base_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise ClientError(
            CONNECTION_FAILED,
            f"The server {format_server_address(host, port)} sent no certificate.",
        )
    return der


class ServerTrust:
    """The pinning rules for server addresses, and the TLS context of each.

    ``known_servers`` is the profile's mapping and is changed in place when
    a certificate is pinned; the caller saves the profile.
    """

    def __init__(
        self,
        known_servers: dict[str, Any],
        *,
        accept_new_server: bool = False,
        server_fingerprint: str | None = None,
        confirm_server: ConfirmServer | None = None,
        use_system_trust: bool = False,
        settings_path: object = "the profile's settings file",
    ) -> None:
        self.known_servers = known_servers
        # Named in the error for a damaged pin.
        self.settings_path = settings_path
        self.accept_new_server = accept_new_server
        self.server_fingerprint = (
            normalize_fingerprint(server_fingerprint) if server_fingerprint else None
        )
        self.confirm_server = confirm_server
        self.use_system_trust = use_system_trust

    def pinned(self, host: str, port: int) -> tuple[str, bytes] | None:
        """Return the pinned ``(fingerprint, der)`` for the address, if any.

        Raises ClientError ``profile_invalid`` for a damaged entry, because
        treating it as missing would pin whatever certificate comes next.
        """
        address = format_server_address(host, port)
        entry = self.known_servers.get(address)
        if entry is None:
            return None
        der = _pinned_certificate(entry)
        if der is None or entry.get("fingerprint") != certificate_fingerprint(der):
            raise profile_damaged(
                "pinned certificate of",
                address,
                f"its entry in {self.settings_path} is unreadable or does not "
                "match its fingerprint",
                f"Restore {self.settings_path} from a backup. Only if your "
                "teacher confirms the server's fingerprint, run "
                "'run_client.py forget-server' and connect again to pin it anew.",
            )
        return certificate_fingerprint(der), der

    def ensure_pinned(self, host: str, port: int, timeout: float) -> bool:
        """Pin the server's certificate on first contact; return True if newly pinned.

        Raises ClientError ``certificate_rejected`` when the certificate is
        unknown and neither approved in advance, allowed, nor confirmed,
        and ``certificate_changed`` when an approved fingerprint differs.
        """
        if self.use_system_trust or self.pinned(host, port) is not None:
            return False
        address = format_server_address(host, port)
        try:
            der = fetch_certificate(host, port, timeout)
        except (OSError, ssl.SSLError) as exc:
            raise connection_error(host, port, exc) from exc
        fingerprint = certificate_fingerprint(der)

        if self.server_fingerprint is not None:
            if not hmac.compare_digest(fingerprint, self.server_fingerprint):
                raise ClientError(
                    CERTIFICATE_CHANGED,
                    f"The server {address} presented certificate {fingerprint}, "
                    f"but the expected fingerprint is {self.server_fingerprint}.",
                )
        elif not self.accept_new_server:
            confirmed = self.confirm_server is not None and self.confirm_server(
                address, fingerprint
            )
            if not confirmed:
                raise ClientError(
                    CERTIFICATE_REJECTED,
                    f"The certificate of the new server {address} ({fingerprint}) "
                    "was not accepted.",
                )
        self.known_servers[address] = {
            "fingerprint": fingerprint,
            "certificate": base64.urlsafe_b64encode(der).decode("ascii"),
        }
        logger.info("pinned the certificate of %s: %s", address, fingerprint)
        return True

    def context(self, host: str, port: int) -> ssl.SSLContext:
        """Return the TLS 1.3 client context for the address."""
        if self.use_system_trust:
            context = _base_context()
            load_system_ca(context)
            return context
        pin = self.pinned(host, port)
        if pin is None:
            raise ClientError(
                CERTIFICATE_REJECTED,
                f"No certificate is pinned for {format_server_address(host, port)}.",
            )
        context = _base_context()
        # The pin replaces host name checks: the certificate itself is the
        # trust anchor, whichever name or address reaches the server.
        context.check_hostname = False
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.load_verify_locations(cadata=pin[1])
        return context

    def check_peer(self, host: str, port: int, der: bytes | None) -> None:
        """Raise ``certificate_changed`` unless ``der`` is the pinned certificate."""
        if self.use_system_trust:
            return
        pin = self.pinned(host, port)
        presented = certificate_fingerprint(der) if der else "no certificate"
        if pin is None or not hmac.compare_digest(pin[0], presented):
            raise self.changed_error(host, port, presented)

    def changed_error(self, host: str, port: int, presented: str) -> ClientError:
        pin = self.pinned(host, port)
        pinned = pin[0] if pin else "none"
        return ClientError(
            CERTIFICATE_CHANGED,
            f"The certificate of {format_server_address(host, port)} changed: "
            f"pinned {pinned}, server presented {presented}. Someone may be "
            "intercepting the connection. Ask your teacher whether the server "
            "was reinstalled; only then run 'run_client.py forget-server' and "
            "connect again to pin the new certificate.",
        )

    def diagnose_verify_failure(
        self, host: str, port: int, timeout: float
    ) -> ClientError:
        """Build the error for a failed verification, naming the peer certificate."""
        try:
            presented = certificate_fingerprint(fetch_certificate(host, port, timeout))
        except (OSError, ssl.SSLError, ClientError):
            presented = "unknown (could not fetch it)"
        if self.use_system_trust:
            return ClientError(
                CERTIFICATE_CHANGED,
                f"The certificate of {format_server_address(host, port)} "
                f"({presented}) failed verification against the system's "
                "trusted certificate authorities.",
            )
        return self.changed_error(host, port, presented)


def connection_error(host: str, port: int, exc: BaseException) -> ClientError:
    """Return a one-line ClientError for a failed connection attempt."""
    address = format_server_address(host, port)
    if isinstance(exc, ClientError):
        return exc
    if isinstance(exc, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(exc, (socket.timeout, TimeoutError)):
        reason = "timed out"
    elif isinstance(exc, socket.gaierror):
        reason = f"cannot resolve the host name ({exc.strerror or exc})"
    elif isinstance(exc, ssl.SSLEOFError) or (
        isinstance(exc, ssl.SSLError) and exc.reason == "UNEXPECTED_EOF_WHILE_READING"
    ):
        reason = (
            "the server closed the connection during the TLS handshake; it may "
            "be busy or limiting connections from this computer, so try again "
            "in a minute"
        )
    elif isinstance(exc, ssl.SSLError):
        reason = f"TLS handshake failed ({exc.reason or exc})"
    elif isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
    else:
        reason = str(exc) or type(exc).__name__
    return ClientError(CONNECTION_FAILED, f"Cannot reach server {address}: {reason}.")
