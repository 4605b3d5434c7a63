"""Tests of the AEAD (AES-256-CFB + HMAC-SHA256) and its record layer."""

import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from enctalk.crypto import aead, kdf
from enctalk.crypto.errors import DecryptionError

INFO = b"EncTalk_test_v1"
AD = b"associated data"


def _flip_bit(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000])
def test_aead_round_trip(size: int) -> None:
    key = os.urandom(aead.KEY_SIZE)
    plaintext = os.urandom(size)
    data = aead.encrypt(key, plaintext, AD, INFO)
    assert len(data) == size + aead.MAC_SIZE
    assert aead.decrypt(key, data, AD, INFO) == plaintext


def test_aead_matches_construction() -> None:
    key = bytes(range(32))
    plaintext = b"hello, lab"
    derived = kdf.hkdf(key, bytes(32), INFO, 80)
    enc_key, mac_key, iv = derived[:32], derived[32:64], derived[64:]
    cipher = Cipher(algorithms.AES(enc_key), aead._CFB(iv)).encryptor()
    ciphertext = cipher.update(plaintext) + cipher.finalize()
    mac_input = len(AD).to_bytes(8, "big") + AD + ciphertext
    tag = hmac.new(mac_key, mac_input, hashlib.sha256).digest()
    assert aead.encrypt(key, plaintext, AD, INFO) == ciphertext + tag


def test_aead_rejects_flipped_ciphertext_bit() -> None:
    key = os.urandom(32)
    data = aead.encrypt(key, b"attack at dawn", AD, INFO)
    with pytest.raises(DecryptionError):
        aead.decrypt(key, _flip_bit(data, 0), AD, INFO)


def test_aead_rejects_flipped_tag_bit() -> None:
    key = os.urandom(32)
    data = aead.encrypt(key, b"attack at dawn", AD, INFO)
    with pytest.raises(DecryptionError):
        aead.decrypt(key, _flip_bit(data, len(data) - 1), AD, INFO)


def test_aead_rejects_changed_associated_data() -> None:
    key = os.urandom(32)
    data = aead.encrypt(key, b"attack at dawn", AD, INFO)
    with pytest.raises(DecryptionError):
        aead.decrypt(key, data, AD + b"x", INFO)


def test_aead_rejects_moved_boundary_between_ad_and_ciphertext() -> None:
    key = os.urandom(32)
    data = aead.encrypt(key, b"attack at dawn", b"ab", INFO)
    # Moving one byte of ciphertext into the associated data keeps the
    # plain concatenation the same, but the length prefix changes the MAC.
    with pytest.raises(DecryptionError):
        aead.decrypt(key, data[1:], b"ab" + data[:1], INFO)


def test_aead_rejects_other_info_label() -> None:
    key = os.urandom(32)
    data = aead.encrypt(key, b"attack at dawn", AD, INFO)
    with pytest.raises(DecryptionError):
        aead.decrypt(key, data, AD, b"EncTalk_other_v1")


@pytest.mark.parametrize("keep", [0, 1, aead.MAC_SIZE - 1, aead.MAC_SIZE])
def test_aead_rejects_truncation(keep: int) -> None:
    key = os.urandom(32)
    data = aead.encrypt(key, b"attack at dawn", AD, INFO)
    with pytest.raises(DecryptionError):
        aead.decrypt(key, data[:keep], AD, INFO)


def test_aead_rejects_dropped_last_ciphertext_byte() -> None:
    key = os.urandom(32)
    data = aead.encrypt(key, b"attack at dawn", AD, INFO)
    truncated = data[: -aead.MAC_SIZE - 1] + data[-aead.MAC_SIZE :]
    with pytest.raises(DecryptionError):
        aead.decrypt(key, truncated, AD, INFO)


def test_aead_rejects_wrong_key() -> None:
    data = aead.encrypt(os.urandom(32), b"attack at dawn", AD, INFO)
    with pytest.raises(DecryptionError):
        aead.decrypt(os.urandom(32), data, AD, INFO)


def test_aead_rejects_short_key() -> None:
    with pytest.raises(ValueError):
        aead.encrypt(os.urandom(16), b"x", AD, INFO)


def test_decryption_error_message_has_no_detail() -> None:
    key = os.urandom(32)
    with pytest.raises(DecryptionError) as short:
        aead.decrypt(key, b"", AD, INFO)
    with pytest.raises(DecryptionError) as forged:
        aead.decrypt(key, bytes(64), AD, INFO)
    assert str(short.value) == str(forged.value) == "decryption failed"


def test_record_round_trip() -> None:
    key = os.urandom(32)
    record = aead.seal_record(key, b"vault contents", AD, INFO)
    assert len(record) == aead.RECORD_SALT_SIZE + len(b"vault contents") + 32
    assert aead.open_record(key, record, AD, INFO) == b"vault contents"


def test_record_salt_is_fresh_each_time() -> None:
    key = os.urandom(32)
    first = aead.seal_record(key, b"same", AD, INFO)
    second = aead.seal_record(key, b"same", AD, INFO)
    assert first[: aead.RECORD_SALT_SIZE] != second[: aead.RECORD_SALT_SIZE]
    assert first[aead.RECORD_SALT_SIZE :] != second[aead.RECORD_SALT_SIZE :]


def test_record_rejects_changed_salt() -> None:
    key = os.urandom(32)
    record = aead.seal_record(key, b"vault contents", AD, INFO)
    with pytest.raises(DecryptionError):
        aead.open_record(key, _flip_bit(record, 0), AD, INFO)


def test_record_rejects_short_input() -> None:
    with pytest.raises(DecryptionError):
        aead.open_record(os.urandom(32), bytes(63), AD, INFO)
