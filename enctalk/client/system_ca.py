"""Find the system's CA certificates for ``--system-trust``.

``ssl.SSLContext.load_default_certs`` reads the CA file and folder that
the OpenSSL library was built with. A PyInstaller executable carries the
build machine's OpenSSL, whose built-in paths may not exist on another
distribution (Debian uses /etc/ssl/certs, Fedora /etc/pki/tls). When the
built-in paths hold nothing, the well-known locations below are tried.
SSL_CERT_FILE and SSL_CERT_DIR still take precedence, as in OpenSSL.
Windows and macOS read their own system stores through Python's ssl
module, so the search applies to other platforms only.
"""

from __future__ import annotations

import logging
import os
import ssl
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

# Well-known CA bundle locations of common distributions.
CA_FILES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Gentoo, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL 6
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/pki/tls/cacert.pem",  # OpenELEC
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # CentOS, RHEL 7
    "/etc/ssl/cert.pem",  # Alpine, FreeBSD, macOS
)
CA_DIRECTORIES = ("/etc/ssl/certs", "/etc/pki/tls/certs")


def _has_files(directory: str) -> bool:
    try:
        return any(Path(directory).iterdir())
    except OSError:
        return False


def find_system_ca() -> str | None:
    """Return the CA file or folder that --system-trust will use, or None."""
    if sys.platform in ("win32", "darwin"):
        return "the system certificate store"
    for variable in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        value = os.environ.get(variable)
        if value and os.path.exists(value):
            return value
    paths = ssl.get_default_verify_paths()
    if paths.cafile is not None:
        return paths.cafile
    if paths.capath is not None and _has_files(paths.capath):
        return paths.capath
    for candidate in CA_FILES:
        if os.path.isfile(candidate):
            return candidate
    for candidate in CA_DIRECTORIES:
        if _has_files(candidate):
            return candidate
    return None


def load_system_ca(context: ssl.SSLContext) -> None:
    """Load the system's CA certificates into ``context``."""
    context.load_default_certs()
    location = find_system_ca()
    if location is None or sys.platform in ("win32", "darwin"):
        return
    paths = ssl.get_default_verify_paths()
    if location in (paths.cafile, paths.capath):
        return
    logger.info("OpenSSL's built-in CA paths are empty; using %s", location)
    if os.path.isdir(location):
        context.load_verify_locations(capath=location)
    else:
        context.load_verify_locations(cafile=location)
