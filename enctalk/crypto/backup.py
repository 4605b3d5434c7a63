"""Encrypted backup of the account identity private key, stored on the server.

Construction::

    header       = version (1 byte) || iterations (uint32 BE) || salt (16 random bytes)
    password key = PBKDF2-HMAC-SHA256(NFKC(password), salt, iterations, 32)
    blob         = header || seal_record(password key, AIK private key, AD,
                                         info="EncTalk_backup_v1")
    AD           = "EncTalk_backup_ad_v1" || header || normalized username (UTF-8)

The header is in the associated data, so a changed iteration count or
salt fails authentication like a wrong password. The username is in it
too, so a backup swapped between two accounts does not open. The server
stores only the blob and never gets a key that decrypts it.
"""

import os

from enctalk.crypto import aead
from enctalk.crypto._encoding import check_bytes, uint32
from enctalk.crypto.errors import BackupError, DecryptionError
from enctalk.crypto.kdf import (
    PBKDF2_ITERATIONS,
    PBKDF2_MAX_ITERATIONS,
    PBKDF2_MIN_ITERATIONS,
    derive_password_key,
    normalize_username,
)

BACKUP_INFO = b"EncTalk_backup_v1"
BACKUP_AD_LABEL = b"EncTalk_backup_ad_v1"
BACKUP_VERSION = 1
BACKUP_SALT_SIZE = 16
AIK_PRIVATE_SIZE = 32

_HEADER_SIZE = 1 + 4 + BACKUP_SALT_SIZE
BACKUP_SIZE = _HEADER_SIZE + aead.RECORD_SALT_SIZE + AIK_PRIVATE_SIZE + aead.MAC_SIZE


def _check_iterations(iterations: int) -> None:
    if not PBKDF2_MIN_ITERATIONS <= iterations <= PBKDF2_MAX_ITERATIONS:
        raise ValueError(
            f"iterations must be between {PBKDF2_MIN_ITERATIONS} "
            f"and {PBKDF2_MAX_ITERATIONS}, got {iterations}"
        )


def _associated_data(header: bytes, username: str) -> bytes:
    return BACKUP_AD_LABEL + header + normalize_username(username).encode("utf-8")


def encrypt_backup(
    aik_private: bytes,
    password: str,
    username: str,
    iterations: int = PBKDF2_ITERATIONS,
) -> bytes:
    """Encrypt the 32-byte AIK private key under a key derived from the password."""
    check_bytes(aik_private, AIK_PRIVATE_SIZE, "aik_private")
    _check_iterations(iterations)
    salt = os.urandom(BACKUP_SALT_SIZE)
    header = bytes([BACKUP_VERSION]) + uint32(iterations) + salt
    key = derive_password_key(password, salt, iterations)
    record = aead.seal_record(
        key, aik_private, _associated_data(header, username), BACKUP_INFO
    )
    return header + record


def backup_iterations(blob: bytes) -> int:
    """Return the PBKDF2 iteration count stored in a backup, without decrypting.

    A client that finds it below PBKDF2_ITERATIONS can re-encrypt the backup.
    Raises BackupError if the blob is not a backup of a supported version.
    """
    if not isinstance(blob, bytes) or len(blob) != BACKUP_SIZE:
        raise BackupError("backup has an invalid size")
    if blob[0] != BACKUP_VERSION:
        raise BackupError(f"unsupported backup version {blob[0]}")
    return int.from_bytes(blob[1:5], "big")


def decrypt_backup(blob: bytes, password: str, username: str) -> bytes:
    """Decrypt a backup and return the 32-byte AIK private key.

    Raises BackupError for a wrong password, a wrong username, a corrupt
    blob, an unsupported version or an iteration count outside
    PBKDF2_MIN_ITERATIONS..PBKDF2_MAX_ITERATIONS.
    """
    iterations = backup_iterations(blob)
    try:
        _check_iterations(iterations)
    except ValueError as error:
        raise BackupError(
            f"backup has an unsupported iteration count: {error}"
        ) from None
    header = blob[:_HEADER_SIZE]
    salt = header[5:]
    key = derive_password_key(password, salt, iterations)
    try:
        return aead.open_record(
            key, blob[_HEADER_SIZE:], _associated_data(header, username), BACKUP_INFO
        )
    except DecryptionError:
        raise BackupError("wrong password or corrupt backup") from None
