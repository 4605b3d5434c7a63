"""Tests of safety numbers and certificate fingerprints."""

import hashlib

import pytest

from enctalk.crypto.keys import AccountIdentity
from enctalk.crypto.safety import (
    certificate_fingerprint,
    combine_fingerprints,
    format_safety_number,
    numeric_fingerprint,
    safety_number,
)

# libsignal NumericFingerprintGeneratorTest: 33-byte encoded identity keys,
# phone numbers as stable identifiers, 5,200 iterations.
SIGNAL_ALICE_KEY = bytes.fromhex(
    "0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868"
)
SIGNAL_BOB_KEY = bytes.fromhex(
    "05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b"
)
SIGNAL_DISPLAYABLE = "300354477692869396892869876765458257569162576843440918079131"


def test_numeric_fingerprint_matches_libsignal_vector() -> None:
    alice = numeric_fingerprint(SIGNAL_ALICE_KEY, b"+14152222222")
    bob = numeric_fingerprint(SIGNAL_BOB_KEY, b"+14153333333")
    assert combine_fingerprints(alice, bob) == SIGNAL_DISPLAYABLE
    assert combine_fingerprints(bob, alice) == SIGNAL_DISPLAYABLE


def test_safety_number_is_symmetric() -> None:
    alice, bob = AccountIdentity.generate(), AccountIdentity.generate()
    ours = safety_number("alice", alice.public_bytes(), "bob", bob.public_bytes())
    theirs = safety_number("bob", bob.public_bytes(), "alice", alice.public_bytes())
    assert ours == theirs


def test_safety_number_has_60_digits() -> None:
    alice, bob = AccountIdentity.generate(), AccountIdentity.generate()
    number = safety_number("alice", alice.public_bytes(), "bob", bob.public_bytes())
    assert len(number) == 60
    assert number.isdigit()


def test_safety_number_changes_with_key() -> None:
    alice, bob = AccountIdentity.generate(), AccountIdentity.generate()
    new_bob = AccountIdentity.generate()
    before = safety_number("alice", alice.public_bytes(), "bob", bob.public_bytes())
    after = safety_number("alice", alice.public_bytes(), "bob", new_bob.public_bytes())
    alice_half = numeric_fingerprint(alice.public_bytes(), b"alice")
    assert before != after
    assert alice_half in (before[:30], before[30:])
    assert alice_half in (after[:30], after[30:])


def test_safety_number_changes_with_username() -> None:
    alice, bob = AccountIdentity.generate(), AccountIdentity.generate()
    first = safety_number("alice", alice.public_bytes(), "bob", bob.public_bytes())
    second = safety_number("alice", alice.public_bytes(), "rob", bob.public_bytes())
    assert first != second


def test_safety_number_ignores_username_case() -> None:
    alice, bob = AccountIdentity.generate(), AccountIdentity.generate()
    first = safety_number("Alice", alice.public_bytes(), "bob", bob.public_bytes())
    second = safety_number("alice", alice.public_bytes(), "BOB", bob.public_bytes())
    assert first == second


def test_format_safety_number_groups_of_five() -> None:
    formatted = format_safety_number(SIGNAL_DISPLAYABLE)
    groups = formatted.split(" ")
    assert len(groups) == 12
    assert all(len(group) == 5 for group in groups)
    assert formatted.replace(" ", "") == SIGNAL_DISPLAYABLE
    assert formatted.startswith("30035 44776 92869")


@pytest.mark.parametrize("digits", ["123", "x" * 60, "١" * 60])
def test_format_safety_number_rejects_invalid(digits: str) -> None:
    with pytest.raises(ValueError):
        format_safety_number(digits)


def test_certificate_fingerprint_format() -> None:
    der = b"certificate bytes"
    fingerprint = certificate_fingerprint(der)
    pairs = fingerprint.removeprefix("SHA256:").split(":")
    assert fingerprint.startswith("SHA256:")
    assert len(pairs) == 32
    assert "".join(pairs) == hashlib.sha256(der).hexdigest().upper()
