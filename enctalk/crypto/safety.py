"""Safety numbers and certificate fingerprints.

Safety numbers follow Signal's numeric fingerprint (libsignal
NumericFingerprintGenerator). For each side::

    hash = 0x0000 || public key || stable identifier
    repeat 5,200 times: hash = SHA-512(hash || public key)
    30 digits = first 30 bytes in six 5-byte chunks,
                each chunk as big-endian integer mod 100000, zero-padded to 5 digits

The safety number is the two 30-digit halves, smaller first, so both
sides compute the same 60 digits. Here the public key is the raw 32-byte
Ed25519 account identity key (Signal uses its 33-byte encoded identity
key) and the stable identifier is the normalized username in UTF-8. The
number therefore stays the same when a user changes devices and changes
when either account's identity key changes.

Certificate fingerprints are SHA-256 over the DER certificate, written
``SHA256:AB:CD:...`` with uppercase hex pairs.
"""

import hashlib

from enctalk.crypto._encoding import check_bytes
from enctalk.crypto.kdf import normalize_username

FINGERPRINT_ITERATIONS = 5200
FINGERPRINT_VERSION = b"\x00\x00"
SAFETY_NUMBER_DIGITS = 60
_CHUNK_SIZE = 5
_CHUNKS = 6
_GROUP_SIZE = 5


def numeric_fingerprint(
    public_key: bytes,
    stable_identifier: bytes,
    iterations: int = FINGERPRINT_ITERATIONS,
) -> str:
    """Return one side's 30-digit half of a safety number."""
    digest = FINGERPRINT_VERSION + public_key + stable_identifier
    for _ in range(iterations):
        digest = hashlib.sha512(digest + public_key).digest()
    chunks = []
    for index in range(_CHUNKS):
        chunk = digest[index * _CHUNK_SIZE : (index + 1) * _CHUNK_SIZE]
        chunks.append(f"{int.from_bytes(chunk, 'big') % 100000:05d}")
    return "".join(chunks)


def combine_fingerprints(local: str, remote: str) -> str:
    """Join two 30-digit halves, smaller first, so both sides get the same string."""
    return local + remote if local <= remote else remote + local


def safety_number(
    local_username: str, local_aik: bytes, remote_username: str, remote_aik: bytes
) -> str:
    """Return the 60-digit safety number of two accounts' identity keys."""
    check_bytes(local_aik, 32, "local_aik")
    check_bytes(remote_aik, 32, "remote_aik")
    local = numeric_fingerprint(
        local_aik, normalize_username(local_username).encode("utf-8")
    )
    remote = numeric_fingerprint(
        remote_aik, normalize_username(remote_username).encode("utf-8")
    )
    return combine_fingerprints(local, remote)


def format_safety_number(digits: str) -> str:
    """Format 60 digits as 12 space-separated groups of 5."""
    if (
        len(digits) != SAFETY_NUMBER_DIGITS
        or not digits.isascii()
        or not digits.isdigit()
    ):
        raise ValueError(f"a safety number has {SAFETY_NUMBER_DIGITS} digits")
    groups = [
        digits[start : start + _GROUP_SIZE]
        for start in range(0, SAFETY_NUMBER_DIGITS, _GROUP_SIZE)
    ]
    return " ".join(groups)


def certificate_fingerprint(der: bytes) -> str:
    """Return ``SHA256:`` and the DER certificate's SHA-256 as uppercase hex pairs."""
    digest = hashlib.sha256(der).hexdigest().upper()
    pairs = [digest[i : i + 2] for i in range(0, len(digest), 2)]
    return "SHA256:" + ":".join(pairs)
