"""Tests of password normalization and the password-based keys."""

import hashlib

import pytest

from enctalk.crypto import kdf

FAST = 1000  # iterations for tests that do not depend on the cost


def test_normalize_password_applies_nfkc() -> None:
    # U+212B ANGSTROM SIGN and U+FB01 LATIN SMALL LIGATURE FI
    assert kdf.normalize_password("\u212bx\ufb01") == "\u00c5xfi"


def test_normalize_password_keeps_case() -> None:
    assert kdf.normalize_password("PassWord") == "PassWord"


def test_normalize_username_folds_case() -> None:
    assert kdf.normalize_username("Stra\u00dfe") == "strasse"


def test_normalize_username_applies_nfkc_first() -> None:
    # U+FF21 FULLWIDTH LATIN CAPITAL LETTER A
    assert kdf.normalize_username("\uff21lice") == "alice"


def test_auth_salt_is_sha256_of_label_and_username() -> None:
    expected = hashlib.sha256(b"EncTalk_auth_v1\x00alice").digest()
    assert kdf.auth_salt("Alice") == expected


def test_auth_key_matches_pbkdf2_definition() -> None:
    expected = hashlib.pbkdf2_hmac(
        "sha256", b"secret", kdf.auth_salt("alice"), FAST, 32
    )
    assert kdf.derive_auth_key("secret", "alice", FAST) == expected


def test_auth_key_equal_for_equivalent_usernames() -> None:
    first = kdf.derive_auth_key("secret", "Alice", FAST)
    second = kdf.derive_auth_key("secret", "\uff21LICE", FAST)
    assert first == second


def test_auth_key_differs_per_user() -> None:
    first = kdf.derive_auth_key("secret", "alice", FAST)
    second = kdf.derive_auth_key("secret", "bob", FAST)
    assert first != second


def test_password_key_differs_from_auth_key() -> None:
    auth_key = kdf.derive_auth_key("secret", "alice", FAST)
    password_key = kdf.derive_password_key("secret", bytes(16), FAST)
    assert len(password_key) == 32
    assert auth_key != password_key


def test_password_key_normalizes_password() -> None:
    first = kdf.derive_password_key("\u212b", bytes(16), FAST)
    second = kdf.derive_password_key("\u00c5", bytes(16), FAST)
    assert first == second


def test_password_key_rejects_short_salt() -> None:
    with pytest.raises(ValueError):
        kdf.derive_password_key("secret", bytes(8), FAST)


def test_pbkdf2_rejects_zero_iterations() -> None:
    with pytest.raises(ValueError):
        kdf.pbkdf2_sha256(b"secret", bytes(16), 0, 32)
