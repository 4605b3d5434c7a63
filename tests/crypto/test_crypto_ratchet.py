"""Tests of the Double Ratchet session: ordering, replay, tampering, limits."""

import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from enctalk.crypto import ratchet
from enctalk.crypto.errors import CryptoError, DecryptionError
from enctalk.crypto.keys import x25519_public_bytes
from enctalk.crypto.ratchet import (
    HEADER_SIZE,
    MAX_SKIP,
    MAX_STORED_SKIPPED_KEYS,
    MessageHeader,
    RatchetSession,
)

SESSION_AD = os.urandom(64)
AD = b"caller associated data"


def _pair() -> tuple[RatchetSession, RatchetSession]:
    shared_key = os.urandom(32)
    signed_prekey = X25519PrivateKey.generate()
    alice = RatchetSession.initiator(
        shared_key, x25519_public_bytes(signed_prekey), SESSION_AD
    )
    bob = RatchetSession.responder(shared_key, signed_prekey, SESSION_AD)
    return alice, bob


def _flip_bit(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


def test_ratchet_in_order_one_direction() -> None:
    alice, bob = _pair()
    for i in range(5):
        message = alice.encrypt(f"message {i}".encode(), AD)
        assert bob.decrypt(message, AD) == f"message {i}".encode()


def test_ratchet_both_directions_take_dh_steps() -> None:
    alice, bob = _pair()
    seen_keys = set()
    for turn in range(6):
        sender, receiver = (alice, bob) if turn % 2 == 0 else (bob, alice)
        for i in range(3):
            plaintext = f"turn {turn} message {i}".encode()
            message = sender.encrypt(plaintext, AD)
            seen_keys.add(MessageHeader.decode(message).dh_public)
            assert receiver.decrypt(message, AD) == plaintext
    assert len(seen_keys) == 6


def test_ratchet_copy_is_independent() -> None:
    alice, bob = _pair()
    skipped = alice.encrypt(b"skipped", AD)
    bob.decrypt(alice.encrypt(b"first", AD), AD)
    assert bob.skipped_key_count == 1
    before = bob.to_dict()
    copy = bob.copy()

    assert copy.decrypt(skipped, AD) == b"skipped"
    assert copy.decrypt(alice.encrypt(b"second", AD), AD) == b"second"
    copy.encrypt(b"reply", AD)

    assert bob.to_dict() == before
    assert bob.decrypt(skipped, AD) == b"skipped"


def test_ratchet_responder_cannot_send_first() -> None:
    _, bob = _pair()
    assert not bob.can_send
    with pytest.raises(CryptoError):
        bob.encrypt(b"too early", AD)


def test_ratchet_out_of_order_delivery() -> None:
    alice, bob = _pair()
    messages = [alice.encrypt(f"a{i}".encode(), AD) for i in range(4)]
    assert bob.decrypt(messages[2], AD) == b"a2"
    assert bob.skipped_key_count == 2
    reply = bob.encrypt(b"b0", AD)
    assert alice.decrypt(reply, AD) == b"b0"
    later = alice.encrypt(b"a-next-chain", AD)
    assert bob.decrypt(later, AD) == b"a-next-chain"
    # Message 3 of the old chain is skipped through the header's pn.
    assert bob.decrypt(messages[0], AD) == b"a0"
    assert bob.decrypt(messages[3], AD) == b"a3"
    assert bob.decrypt(messages[1], AD) == b"a1"
    assert bob.skipped_key_count == 0


def test_ratchet_rejects_replay_in_current_chain() -> None:
    alice, bob = _pair()
    message = alice.encrypt(b"once", AD)
    bob.decrypt(message, AD)
    with pytest.raises(DecryptionError):
        bob.decrypt(message, AD)


def test_ratchet_rejects_replay_of_skipped_message() -> None:
    alice, bob = _pair()
    first = alice.encrypt(b"first", AD)
    bob.decrypt(alice.encrypt(b"second", AD), AD)
    bob.decrypt(first, AD)
    with pytest.raises(DecryptionError):
        bob.decrypt(first, AD)


def test_ratchet_rejects_replay_from_older_chain() -> None:
    alice, bob = _pair()
    old = alice.encrypt(b"old chain", AD)
    bob.decrypt(old, AD)
    alice.decrypt(bob.encrypt(b"reply", AD), AD)
    bob.decrypt(alice.encrypt(b"new chain", AD), AD)
    with pytest.raises(DecryptionError):
        bob.decrypt(old, AD)
    assert alice.decrypt(bob.encrypt(b"still works", AD), AD) == b"still works"


def test_ratchet_rejects_tampered_ciphertext() -> None:
    alice, bob = _pair()
    message = alice.encrypt(b"payload key", AD)
    with pytest.raises(DecryptionError):
        bob.decrypt(_flip_bit(message, HEADER_SIZE), AD)
    assert bob.decrypt(message, AD) == b"payload key"


@pytest.mark.parametrize(
    "index",
    [0, 1, HEADER_SIZE - 5, HEADER_SIZE - 1],
    ids=["version", "dh_public", "pn", "n"],
)
def test_ratchet_rejects_tampered_header(index: int) -> None:
    alice, bob = _pair()
    message = alice.encrypt(b"payload key", AD)
    with pytest.raises(DecryptionError):
        bob.decrypt(_flip_bit(message, index), AD)
    assert bob.decrypt(message, AD) == b"payload key"


def test_ratchet_rejects_other_associated_data() -> None:
    alice, bob = _pair()
    message = alice.encrypt(b"payload key", AD)
    with pytest.raises(DecryptionError):
        bob.decrypt(message, b"other conversation")


@pytest.mark.parametrize("size", [0, 1, HEADER_SIZE, HEADER_SIZE + 31])
def test_ratchet_rejects_truncated_message(size: int) -> None:
    alice, bob = _pair()
    message = alice.encrypt(b"payload key", AD)
    with pytest.raises(DecryptionError):
        bob.decrypt(message[:size], AD)


def test_ratchet_failed_decrypt_leaves_state_unchanged() -> None:
    alice, bob = _pair()
    bob.decrypt(alice.encrypt(b"hello", AD), AD)
    before = bob.to_dict()
    forged = alice.encrypt(b"next", AD)
    with pytest.raises(DecryptionError):
        bob.decrypt(_flip_bit(forged, len(forged) - 1), AD)
    assert bob.to_dict() == before


def test_ratchet_rejects_skip_past_max_skip_and_recovers() -> None:
    alice, bob = _pair()
    messages = [alice.encrypt(f"{i}".encode(), AD) for i in range(MAX_SKIP + 2)]
    with pytest.raises(DecryptionError):
        bob.decrypt(messages[MAX_SKIP + 1], AD)
    assert bob.skipped_key_count == 0
    assert bob.decrypt(messages[MAX_SKIP], AD) == f"{MAX_SKIP}".encode()
    assert bob.decrypt(messages[0], AD) == b"0"
    assert alice.decrypt(bob.encrypt(b"reply", AD), AD) == b"reply"


def test_ratchet_rejects_forged_header_with_huge_pn() -> None:
    alice, bob = _pair()
    bob.decrypt(alice.encrypt(b"hello", AD), AD)
    forged_header = MessageHeader(os.urandom(32), MAX_SKIP + 5, 0).encode()
    with pytest.raises(DecryptionError):
        bob.decrypt(forged_header + bytes(40), AD)
    assert bob.decrypt(alice.encrypt(b"again", AD), AD) == b"again"


def test_ratchet_bounds_stored_skipped_keys() -> None:
    alice, bob = _pair()
    bob.decrypt(alice.encrypt(b"start", AD), AD)
    oldest = None
    # Each round skips MAX_SKIP keys of one chain, then changes chains.
    for round_number in range(3):
        for i in range(MAX_SKIP):
            message = alice.encrypt(b"lost", AD)
            if round_number == 0 and i == 0:
                oldest = message
        bob.decrypt(alice.encrypt(b"arrives", AD), AD)
        alice.decrypt(bob.encrypt(b"reply", AD), AD)
    assert bob.skipped_key_count == MAX_STORED_SKIPPED_KEYS
    assert oldest is not None
    with pytest.raises(DecryptionError):
        bob.decrypt(oldest, AD)


def test_ratchet_serialization_round_trip() -> None:
    alice, bob = _pair()
    pending = alice.encrypt(b"skipped", AD)
    bob.decrypt(alice.encrypt(b"delivered", AD), AD)
    alice_copy = RatchetSession.from_dict(json.loads(json.dumps(alice.to_dict())))
    bob_copy = RatchetSession.from_dict(json.loads(json.dumps(bob.to_dict())))
    assert bob_copy.to_dict() == bob.to_dict()
    assert bob_copy.skipped_key_count == 1
    assert bob_copy.decrypt(pending, AD) == b"skipped"
    assert alice_copy.decrypt(bob_copy.encrypt(b"reply", AD), AD) == b"reply"


def test_ratchet_from_dict_rejects_wrong_key_length() -> None:
    alice, _ = _pair()
    state = alice.to_dict()
    state["root_key"] = state["root_key"][:-4]
    with pytest.raises(CryptoError):
        RatchetSession.from_dict(state)


def test_ratchet_message_layout() -> None:
    alice, _ = _pair()
    message = alice.encrypt(b"12345", AD)
    header = MessageHeader.decode(message)
    assert message[0] == ratchet.MESSAGE_VERSION
    assert (header.pn, header.n) == (0, 0)
    assert len(message) == HEADER_SIZE + 5 + 32


def test_ratchet_state_repr_hides_keys() -> None:
    alice, bob = _pair()
    bob.decrypt(alice.encrypt(b"hello", AD), AD)
    state = bob._state
    text = repr(state)
    assert state.send_chain_key is not None
    assert state.recv_chain_key is not None
    assert repr(state.root_key) not in text
    assert repr(state.send_chain_key) not in text
    assert repr(state.recv_chain_key) not in text


def test_ratchet_last_counter_fits_next_header() -> None:
    alice, bob = _pair()
    bob.decrypt(alice.encrypt(b"hello", AD), AD)
    state = alice.to_dict()
    state["send_n"] = ratchet.UINT32_MAX - 1
    alice = RatchetSession.from_dict(state)
    alice.encrypt(b"last of the chain", AD)
    with pytest.raises(CryptoError):
        alice.encrypt(b"past the end", AD)

    alice.decrypt(bob.encrypt(b"reply", AD), AD)
    message = alice.encrypt(b"new chain", AD)
    assert MessageHeader.decode(message).pn == ratchet.UINT32_MAX


def test_ratchet_from_dict_rejects_counter_overflow() -> None:
    alice, _ = _pair()
    for key in ("send_n", "previous_send_n"):
        state = alice.to_dict()
        state[key] = ratchet.UINT32_MAX + 1
        with pytest.raises(CryptoError):
            RatchetSession.from_dict(state)
