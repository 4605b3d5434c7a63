"""``run_server.py --self-test``: check that this server installation can run.

It loads every native library the server uses (OpenSSL through ssl and
cryptography, bcrypt, SQLite), runs the crypto known-answer tests, makes
a throwaway certificate and a TLS context from it, and hashes with bcrypt.
Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TextIO

import bcrypt

from enctalk.selftest import (
    Check,
    SelfTestFailure,
    check_cryptography,
    check_known_answers,
    check_sqlite,
    check_tls,
    run_checks,
)
from server.certs import generate_certificate, make_tls_context

# The lowest cost bcrypt accepts, so the check takes milliseconds.
SELF_TEST_BCRYPT_COST = 4


def check_bcrypt() -> str:
    hashed = bcrypt.hashpw(b"self-test", bcrypt.gensalt(SELF_TEST_BCRYPT_COST))
    if not bcrypt.checkpw(b"self-test", hashed):
        raise SelfTestFailure("bcrypt did not verify its own hash")
    if bcrypt.checkpw(b"other", hashed):
        raise SelfTestFailure("bcrypt accepted a wrong password")
    return f"bcrypt {getattr(bcrypt, '__version__', '(version unknown)')}"


def check_certificate() -> str:
    cert_pem, key_pem = generate_certificate("127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="enctalk-server-selftest-") as folder:
        cert_file = Path(folder) / "cert.pem"
        key_file = Path(folder) / "key.pem"
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        make_tls_context(cert_file, key_file)
    return "made a P-256 certificate and a TLS 1.3 server context"


SERVER_CHECKS: tuple[Check, ...] = (
    ("crypto known-answer tests", check_known_answers),
    ("cryptography", check_cryptography),
    ("TLS 1.3", check_tls),
    ("SQLite", check_sqlite),
    ("bcrypt", check_bcrypt),
    ("certificate", check_certificate),
)


def run_server_self_test(out: TextIO) -> int:
    """Run the server's checks; return the exit status."""
    return run_checks(SERVER_CHECKS, out)
