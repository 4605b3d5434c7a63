"""Tests of the encrypted AIK backup."""

import pytest

from enctalk.crypto import backup
from enctalk.crypto.errors import BackupError
from enctalk.crypto.kdf import PBKDF2_ITERATIONS, PBKDF2_MIN_ITERATIONS
from enctalk.crypto.keys import AccountIdentity

# The lowest accepted cost keeps the tests fast. One test runs the default.
ITERATIONS = PBKDF2_MIN_ITERATIONS


@pytest.fixture(scope="module")
def aik_private() -> bytes:
    return AccountIdentity.generate().private_bytes()


@pytest.fixture(scope="module")
def blob(aik_private: bytes) -> bytes:
    return backup.encrypt_backup(aik_private, "correct horse", "Alice", ITERATIONS)


def test_backup_round_trip(aik_private: bytes, blob: bytes) -> None:
    assert backup.decrypt_backup(blob, "correct horse", "Alice") == aik_private


def test_backup_round_trip_at_default_iterations(aik_private: bytes) -> None:
    blob = backup.encrypt_backup(aik_private, "pässwörd", "alice")
    assert backup.backup_iterations(blob) == PBKDF2_ITERATIONS
    assert backup.decrypt_backup(blob, "pässwörd", "alice") == aik_private


def test_backup_layout(blob: bytes) -> None:
    assert len(blob) == backup.BACKUP_SIZE
    assert blob[0] == backup.BACKUP_VERSION
    assert backup.backup_iterations(blob) == ITERATIONS


def test_backup_username_is_normalized(aik_private: bytes, blob: bytes) -> None:
    assert backup.decrypt_backup(blob, "correct horse", "ALICE") == aik_private


def test_backup_wrong_password_raises(blob: bytes) -> None:
    with pytest.raises(BackupError):
        backup.decrypt_backup(blob, "wrong horse", "alice")


def test_backup_wrong_username_raises(blob: bytes) -> None:
    with pytest.raises(BackupError):
        backup.decrypt_backup(blob, "correct horse", "bob")


def test_backup_changed_iterations_raise(blob: bytes) -> None:
    changed = blob[:1] + (ITERATIONS + 1).to_bytes(4, "big") + blob[5:]
    with pytest.raises(BackupError):
        backup.decrypt_backup(changed, "correct horse", "alice")


def test_backup_corrupt_record_raises(blob: bytes) -> None:
    corrupt = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(BackupError):
        backup.decrypt_backup(corrupt, "correct horse", "alice")


def test_backup_truncated_raises(blob: bytes) -> None:
    with pytest.raises(BackupError):
        backup.decrypt_backup(blob[:-1], "correct horse", "alice")


def test_backup_unsupported_version_raises(blob: bytes) -> None:
    with pytest.raises(BackupError):
        backup.decrypt_backup(b"\x02" + blob[1:], "correct horse", "alice")


@pytest.mark.parametrize("iterations", [99_999, 10_000_001, 0])
def test_backup_iterations_out_of_range_raise(blob: bytes, iterations: int) -> None:
    changed = blob[:1] + iterations.to_bytes(4, "big") + blob[5:]
    with pytest.raises(BackupError):
        backup.decrypt_backup(changed, "correct horse", "alice")


def test_encrypt_backup_rejects_low_iterations(aik_private: bytes) -> None:
    with pytest.raises(ValueError):
        backup.encrypt_backup(aik_private, "pw", "alice", 1000)
