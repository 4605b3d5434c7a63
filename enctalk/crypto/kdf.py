"""Key derivation: PBKDF2-HMAC-SHA256 for passwords, HKDF-SHA256 for keys.

From one password the client derives two independent 32-byte keys:

    auth key     = PBKDF2-HMAC-SHA256(NFKC(password),
                       SHA-256("EncTalk_auth_v1" || 0x00 || normalized username),
                       iterations, 32)
    password key = PBKDF2-HMAC-SHA256(NFKC(password), random salt, iterations, 32)

Only the auth key leaves the device. The password key encrypts the key
backup and wraps the vault key, each under its own random salt. A
derivation at the default 600,000 iterations takes a noticeable fraction
of a second, so callers run it once per login or unlock.
"""

import hashlib
import unicodedata

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

PBKDF2_ITERATIONS = 600_000
# Range accepted from stored records (backup, vault), so that a corrupt or
# hostile record can neither weaken the derivation nor stall the client.
PBKDF2_MIN_ITERATIONS = 100_000
PBKDF2_MAX_ITERATIONS = 10_000_000

DERIVED_KEY_SIZE = 32
MIN_SALT_SIZE = 16
AUTH_SALT_LABEL = b"EncTalk_auth_v1"


def normalize_password(password: str) -> str:
    """Return the NFKC form of a password, so equal-looking input derives equal keys."""
    if not isinstance(password, str):
        raise TypeError("password must be str")
    return unicodedata.normalize("NFKC", password)


def normalize_username(username: str) -> str:
    """Return the canonical username: NFKC, then Unicode case folding."""
    if not isinstance(username, str):
        raise TypeError("username must be str")
    return unicodedata.normalize("NFKC", username).casefold()


def pbkdf2_sha256(password: bytes, salt: bytes, iterations: int, length: int) -> bytes:
    """Derive ``length`` bytes with PBKDF2-HMAC-SHA256 (RFC 8018)."""
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=length, salt=salt, iterations=iterations
    )
    return kdf.derive(password)


def auth_salt(username: str) -> bytes:
    """Return the auth-key salt: SHA-256 of the label, a zero byte and the username."""
    canonical = normalize_username(username).encode("utf-8")
    return hashlib.sha256(AUTH_SALT_LABEL + b"\x00" + canonical).digest()


def derive_auth_key(
    password: str, username: str, iterations: int = PBKDF2_ITERATIONS
) -> bytes:
    """Derive the 32-byte auth key that the client sends to the server at login."""
    secret = normalize_password(password).encode("utf-8")
    return pbkdf2_sha256(secret, auth_salt(username), iterations, DERIVED_KEY_SIZE)


def derive_password_key(
    password: str, salt: bytes, iterations: int = PBKDF2_ITERATIONS
) -> bytes:
    """Derive the 32-byte key that encrypts the key backup or wraps the vault key."""
    if not isinstance(salt, bytes) or len(salt) < MIN_SALT_SIZE:
        raise ValueError(f"salt must be at least {MIN_SALT_SIZE} bytes")
    secret = normalize_password(password).encode("utf-8")
    return pbkdf2_sha256(secret, salt, iterations, DERIVED_KEY_SIZE)


def hkdf(input_key: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """Derive ``length`` bytes with HKDF-SHA256 (RFC 5869), extract then expand."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(
        input_key
    )
