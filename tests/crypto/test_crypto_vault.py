"""Tests of the on-disk vault, using real files under tmp_path."""

import os
import stat
from pathlib import Path

import pytest

from enctalk.crypto.errors import VaultCorruptError, VaultError
from enctalk.crypto.kdf import PBKDF2_MIN_ITERATIONS
from enctalk.crypto.vault import Vault

ITERATIONS = PBKDF2_MIN_ITERATIONS
DOCUMENT = {"device": {"id": 3}, "sessions": [], "name": "Zoë"}


def test_vault_round_trip_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "vault.bin"
    vault = Vault.create(path, "password", ITERATIONS)
    assert vault.load() == {}
    vault.save(DOCUMENT)
    assert Vault.unlock(path, "password").load() == DOCUMENT


def test_vault_file_contains_no_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "vault.bin"
    Vault.create(path, "password", ITERATIONS).save({"secret": "plaintext-marker"})
    data = path.read_bytes()
    assert b"plaintext-marker" not in data
    assert b"secret" not in data


def test_vault_wrong_password_raises(tmp_path: Path) -> None:
    path = tmp_path / "vault.bin"
    Vault.create(path, "password", ITERATIONS)
    with pytest.raises(VaultError):
        Vault.unlock(path, "Password")


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_vault_file_mode_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "vault.bin"
    vault = Vault.create(path, "password", ITERATIONS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    vault.save(DOCUMENT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_vault_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "vault.bin"
    vault = Vault.create(path, "password", ITERATIONS)
    vault.save(DOCUMENT)
    vault.save(DOCUMENT)
    assert [p.name for p in tmp_path.iterdir()] == ["vault.bin"]


def test_vault_failed_save_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "vault.bin"
    vault = Vault.create(path, "password", ITERATIONS)
    vault.save(DOCUMENT)
    with pytest.raises(TypeError):
        vault.save({"not json": object()})
    assert Vault.unlock(path, "password").load() == DOCUMENT
    assert [p.name for p in tmp_path.iterdir()] == ["vault.bin"]


def test_vault_rewrap_changes_password(tmp_path: Path) -> None:
    path = tmp_path / "vault.bin"
    vault = Vault.create(path, "old password", ITERATIONS)
    vault.save(DOCUMENT)
    vault.rewrap("new password", ITERATIONS)
    with pytest.raises(VaultError):
        Vault.unlock(path, "old password")
    reopened = Vault.unlock(path, "new password")
    assert reopened.load() == DOCUMENT
    vault.save({"after": "rewrap"})
    assert Vault.unlock(path, "new password").load() == {"after": "rewrap"}


def test_vault_create_refuses_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "vault.bin"
    Vault.create(path, "password", ITERATIONS).save(DOCUMENT)
    with pytest.raises(FileExistsError):
        Vault.create(path, "password", ITERATIONS)
    assert Vault.unlock(path, "password").load() == DOCUMENT


def test_vault_corrupt_document_raises(tmp_path: Path) -> None:
    path = tmp_path / "vault.bin"
    vault = Vault.create(path, "password", ITERATIONS)
    vault.save(DOCUMENT)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(VaultError):
        vault.load()


def test_vault_unlock_rejects_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "vault.bin"
    path.write_bytes(b"not a vault")
    with pytest.raises(VaultError):
        Vault.unlock(path, "password")


def test_vault_unlock_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Vault.unlock(tmp_path / "missing.bin", "password")


@pytest.mark.parametrize("size", [0, 1, 20, 116])
def test_vault_unlock_truncated_file_raises_corrupt(tmp_path: Path, size: int) -> None:
    path = tmp_path / "vault.bin"
    Vault.create(path, "password", ITERATIONS)
    path.write_bytes(path.read_bytes()[:size])
    with pytest.raises(VaultCorruptError) as caught:
        Vault.unlock(path, "password")
    assert caught.value.reason == f"truncated to {size} bytes"


def test_vault_damaged_document_raises_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "vault.bin"
    vault = Vault.create(path, "password", ITERATIONS)
    vault.save(DOCUMENT)
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x10
    path.write_bytes(bytes(data))
    opened = Vault.unlock(path, "password")
    with pytest.raises(VaultCorruptError):
        opened.load()


def test_vault_wrong_password_is_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "vault.bin"
    Vault.create(path, "password", ITERATIONS)
    with pytest.raises(VaultError) as caught:
        Vault.unlock(path, "other password")
    assert not isinstance(caught.value, VaultCorruptError)
