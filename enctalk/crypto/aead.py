"""Authenticated encryption: AES-256-CFB and HMAC-SHA256, encrypt-then-MAC.

Construction, for a 32-byte key used for one message only::

    enc_key || mac_key || iv = HKDF-SHA256(key, salt=32 zero bytes, info, L=80)
    ciphertext = AES-256-CFB128(enc_key, iv, plaintext)
    tag = HMAC-SHA256(mac_key, uint64_be(len(ad)) || ad || ciphertext)
    output = ciphertext || tag                      (tag is MAC_SIZE bytes)

This is the AEAD that Signal's Double Ratchet specification recommends,
with CFB in place of CBC (so no padding) and one deviation: the MAC input
starts with the 8-byte big-endian length of the associated data. Plain
``ad || ciphertext`` can be split in more than one way, so a different
(ad, ciphertext) pair could give the same MAC input.

The IV is derived from the key, which is safe only because a key encrypts
exactly one message. Long-lived keys go through :func:`seal_record`: every
record gets its own key ``HKDF-SHA256(long_lived_key, salt, info, L=32)``
from a fresh random 32-byte salt, and the output is ``salt || encrypt(...)``.

Each call costs one HKDF, one AES pass and one HMAC pass over the data.
"""

import hashlib
import hmac
import importlib
import os
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.modes import ModeWithInitializationVector

from enctalk.crypto._encoding import check_bytes
from enctalk.crypto.errors import DecryptionError
from enctalk.crypto.kdf import hkdf

KEY_SIZE = 32
MAC_SIZE = 32
IV_SIZE = 16
RECORD_SALT_SIZE = 32

try:
    _modes = importlib.import_module("cryptography.hazmat.decrepit.ciphers.modes")
except ImportError:  # cryptography releases before 47 keep CFB in primitives
    _modes = importlib.import_module("cryptography.hazmat.primitives.ciphers.modes")
_CFB: Callable[[bytes], ModeWithInitializationVector] = _modes.CFB

_ZERO_SALT = bytes(32)
_DERIVED_SIZE = 2 * KEY_SIZE + IV_SIZE


def _derive(key: bytes, info: bytes) -> tuple[bytes, bytes, bytes]:
    check_bytes(key, KEY_SIZE, "key")
    if not isinstance(info, bytes) or not info:
        raise ValueError("info must be a non-empty byte string label")
    derived = hkdf(key, _ZERO_SALT, info, _DERIVED_SIZE)
    return derived[:KEY_SIZE], derived[KEY_SIZE : 2 * KEY_SIZE], derived[2 * KEY_SIZE :]


def _tag(mac_key: bytes, associated_data: bytes, ciphertext: bytes) -> bytes:
    mac = hmac.new(mac_key, len(associated_data).to_bytes(8, "big"), hashlib.sha256)
    mac.update(associated_data)
    mac.update(ciphertext)
    return mac.digest()


def encrypt(key: bytes, plaintext: bytes, associated_data: bytes, info: bytes) -> bytes:
    """Encrypt and authenticate plaintext, returning ``ciphertext || tag``.

    ``key`` must be 32 bytes that encrypt nothing else, and ``info`` is the
    domain-separation label of the caller's use.
    """
    enc_key, mac_key, iv = _derive(key, info)
    encryptor = Cipher(algorithms.AES(enc_key), _CFB(iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext + _tag(mac_key, associated_data, ciphertext)


def decrypt(key: bytes, data: bytes, associated_data: bytes, info: bytes) -> bytes:
    """Verify the tag in constant time, then decrypt.

    Raises DecryptionError if ``data`` is too short to carry a tag or the
    tag does not match the key, the associated data and the ciphertext.
    """
    enc_key, mac_key, iv = _derive(key, info)
    if not isinstance(data, bytes) or len(data) < MAC_SIZE:
        raise DecryptionError
    ciphertext, tag = data[:-MAC_SIZE], data[-MAC_SIZE:]
    if not hmac.compare_digest(tag, _tag(mac_key, associated_data, ciphertext)):
        raise DecryptionError
    decryptor = Cipher(algorithms.AES(enc_key), _CFB(iv)).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


def _record_key(long_lived_key: bytes, salt: bytes, info: bytes) -> bytes:
    check_bytes(long_lived_key, KEY_SIZE, "long_lived_key")
    return hkdf(long_lived_key, salt, info, KEY_SIZE)


def seal_record(
    long_lived_key: bytes, plaintext: bytes, associated_data: bytes, info: bytes
) -> bytes:
    """Encrypt one record under a long-lived key.

    Returns ``salt || ciphertext || tag``, with a fresh random salt.
    """
    salt = os.urandom(RECORD_SALT_SIZE)
    record_key = _record_key(long_lived_key, salt, info)
    return salt + encrypt(record_key, plaintext, associated_data, info)


def open_record(
    long_lived_key: bytes, data: bytes, associated_data: bytes, info: bytes
) -> bytes:
    """Decrypt a record made by :func:`seal_record` or raise DecryptionError."""
    if not isinstance(data, bytes) or len(data) < RECORD_SALT_SIZE + MAC_SIZE:
        raise DecryptionError
    salt = data[:RECORD_SALT_SIZE]
    record_key = _record_key(long_lived_key, salt, info)
    return decrypt(record_key, data[RECORD_SALT_SIZE:], associated_data, info)
