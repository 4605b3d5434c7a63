"""The local vault: one JSON document encrypted at rest under the password.

File layout::

    header   = version (1 byte) || iterations (uint32 BE) || salt (16 random bytes)
    wrap key = PBKDF2-HMAC-SHA256(NFKC(password), salt, iterations, 32)
    file     = header
               || seal_record(wrap key, vault key,
                              AD="EncTalk_vault_wrap_ad_v1" || header,
                              info="EncTalk_vault_wrap_v1")            (96 bytes)
               || seal_record(vault key, UTF-8 JSON document,
                              AD="EncTalk_vault_ad_v1", info="EncTalk_vault_v1")

The vault key is 32 random bytes made once by :meth:`Vault.create`. Unlock
costs one PBKDF2 derivation. Saving costs none, because the unlocked
vault keeps the vault key in memory, and a password change rewraps the
vault key without touching the document.

This is the only module of the crypto package that does file I/O. Every
write goes to a temporary file with mode 0o600 in the same folder, which
is flushed with fsync and then moved over the old file with os.replace.
A crash therefore leaves either the old or the new vault.
"""

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from enctalk.crypto import aead
from enctalk.crypto._encoding import uint32
from enctalk.crypto.errors import DecryptionError, VaultCorruptError, VaultError
from enctalk.crypto.kdf import (
    PBKDF2_ITERATIONS,
    PBKDF2_MAX_ITERATIONS,
    PBKDF2_MIN_ITERATIONS,
    derive_password_key,
)

logger = logging.getLogger(__name__)

VAULT_INFO = b"EncTalk_vault_v1"
VAULT_WRAP_INFO = b"EncTalk_vault_wrap_v1"
VAULT_AD_LABEL = b"EncTalk_vault_ad_v1"
VAULT_WRAP_AD_LABEL = b"EncTalk_vault_wrap_ad_v1"
VAULT_VERSION = 1
VAULT_SALT_SIZE = 16
FILE_MODE = 0o600

_HEADER_SIZE = 1 + 4 + VAULT_SALT_SIZE
_WRAPPED_KEY_SIZE = aead.RECORD_SALT_SIZE + aead.KEY_SIZE + aead.MAC_SIZE
_PREFIX_SIZE = _HEADER_SIZE + _WRAPPED_KEY_SIZE


def _make_header(iterations: int) -> bytes:
    if not PBKDF2_MIN_ITERATIONS <= iterations <= PBKDF2_MAX_ITERATIONS:
        raise ValueError(
            f"iterations must be between {PBKDF2_MIN_ITERATIONS} "
            f"and {PBKDF2_MAX_ITERATIONS}, got {iterations}"
        )
    return bytes([VAULT_VERSION]) + uint32(iterations) + os.urandom(VAULT_SALT_SIZE)


def _wrap(vault_key: bytes, password: str, header: bytes) -> bytes:
    iterations = int.from_bytes(header[1:5], "big")
    wrap_key = derive_password_key(password, header[5:], iterations)
    ad = VAULT_WRAP_AD_LABEL + header
    return header + aead.seal_record(wrap_key, vault_key, ad, VAULT_WRAP_INFO)


def _seal_document(vault_key: bytes, document: dict[str, Any]) -> bytes:
    if not isinstance(document, dict):
        raise TypeError("the vault document must be a dict")
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return aead.seal_record(vault_key, text.encode("utf-8"), VAULT_AD_LABEL, VAULT_INFO)


def _fsync_directory(folder: Path) -> None:
    # Makes the rename durable on POSIX. Windows cannot open a directory
    # this way, and NTFS journals the rename itself.
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:
        logger.warning("could not fsync vault folder %s: %s", folder, error)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temporary, flags, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


class Vault:
    """An unlocked vault file.

    Methods block on file I/O and raise OSError for I/O failures. Only one
    Vault object should be open on a file at a time.

    NOTE: save() writes the wrap record that this object read at unlock,
    so a rewrap by a second Vault object on the same file is undone by the
    next save() of the first.
    """

    def __init__(self, path: Path, vault_key: bytes, prefix: bytes) -> None:
        self._path = path
        self._vault_key = vault_key
        self._prefix = prefix  # header || wrapped vault key

    @property
    def path(self) -> Path:
        """The vault file."""
        return self._path

    @classmethod
    def create(
        cls, path: Path, password: str, iterations: int = PBKDF2_ITERATIONS
    ) -> "Vault":
        """Create a vault file holding an empty document.

        Raises FileExistsError if ``path`` exists, so an existing vault is
        never overwritten by accident.
        """
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"vault file already exists: {path}")
        vault_key = os.urandom(aead.KEY_SIZE)
        prefix = _wrap(vault_key, password, _make_header(iterations))
        vault = cls(path, vault_key, prefix)
        vault.save({})
        logger.info("created vault %s", path)
        return vault

    @classmethod
    def unlock(cls, path: Path, password: str) -> "Vault":
        """Open a vault file with the password.

        Raises VaultCorruptError for a truncated file or an unsupported
        version or iteration count, and OSError if the file cannot be read.
        Raises plain VaultError when the wrapped vault key fails
        authentication, because AEAD cannot tell a wrong password from a
        damaged wrap record.
        """
        path = Path(path)
        data = path.read_bytes()
        if len(data) < _PREFIX_SIZE:
            raise VaultCorruptError(f"truncated to {len(data)} bytes", path)
        if data[0] != VAULT_VERSION:
            raise VaultCorruptError(f"unsupported version {data[0]}", path)
        header = data[:_HEADER_SIZE]
        iterations = int.from_bytes(header[1:5], "big")
        if not PBKDF2_MIN_ITERATIONS <= iterations <= PBKDF2_MAX_ITERATIONS:
            raise VaultCorruptError(f"unsupported iteration count {iterations}", path)
        wrap_key = derive_password_key(password, header[5:], iterations)
        try:
            vault_key = aead.open_record(
                wrap_key,
                data[_HEADER_SIZE:_PREFIX_SIZE],
                VAULT_WRAP_AD_LABEL + header,
                VAULT_WRAP_INFO,
            )
        except DecryptionError:
            raise VaultError("wrong password or corrupt vault file") from None
        return cls(path, vault_key, data[:_PREFIX_SIZE])

    def load(self) -> dict[str, Any]:
        """Read and decrypt the document; raise VaultCorruptError if it is damaged."""
        data = self._path.read_bytes()
        try:
            plaintext = aead.open_record(
                self._vault_key, data[_PREFIX_SIZE:], VAULT_AD_LABEL, VAULT_INFO
            )
        except DecryptionError:
            raise VaultCorruptError(
                "document failed authentication", self._path
            ) from None
        try:
            document = json.loads(plaintext.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise VaultCorruptError("document is not JSON", self._path) from None
        if not isinstance(document, dict):
            raise VaultCorruptError("document is not a JSON object", self._path)
        return document

    def save(self, document: dict[str, Any]) -> None:
        """Encrypt the document and replace the vault file atomically.

        Raises TypeError or ValueError if the document is not JSON-serializable.
        """
        _write_atomically(
            self._path, self._prefix + _seal_document(self._vault_key, document)
        )

    def rewrap(self, new_password: str, iterations: int = PBKDF2_ITERATIONS) -> None:
        """Wrap the vault key under a new password, with a new salt.

        The document is copied unchanged, because it stays encrypted under
        the same vault key.
        """
        data = self._path.read_bytes()
        prefix = _wrap(self._vault_key, new_password, _make_header(iterations))
        _write_atomically(self._path, prefix + data[_PREFIX_SIZE:])
        self._prefix = prefix
        logger.info("rewrapped vault %s under a new password", self._path)
