"""Tests of device sessions, envelopes and payload encryption."""

import json
from dataclasses import dataclass, replace

import pytest

from enctalk.crypto import session as sessions
from enctalk.crypto.errors import DecryptionError, SignatureError
from enctalk.crypto.keys import (
    AccountIdentity,
    DeviceKeys,
    sign_device_key,
    sign_prekey,
)
from enctalk.crypto.session import (
    PREKEY_MESSAGE,
    RATCHET_MESSAGE,
    DecryptedEnvelope,
    DeviceSession,
    Envelope,
    decode_envelope,
    decrypt_envelope,
    encode_envelope,
    encrypt_envelope,
    encrypt_for_device,
    message_associated_data,
    open_payload,
    payload_associated_data,
    seal_payload,
    start_session,
)
from enctalk.crypto.x3dh import PreKeyBundle

NOW = 1_700_000_000
AD = message_associated_data("alice", 1, "bob", 1, "conversation-1", "message-1")


@dataclass
class User:
    aik: AccountIdentity
    device: DeviceKeys

    @classmethod
    def make(cls, one_time_count: int = 3) -> "User":
        aik = AccountIdentity.generate()
        return cls(aik, DeviceKeys.generate(aik, one_time_count, NOW))

    def decrypt(
        self,
        session: DeviceSession | None,
        envelope: bytes,
        associated_data: bytes,
    ) -> DecryptedEnvelope:
        return decrypt_envelope(
            self.device,
            session,
            envelope,
            associated_data,
            own_aik_public=self.aik.public_bytes(),
        )

    def bundle(self, with_one_time_prekey: bool = True) -> PreKeyBundle:
        one_time_id = None
        if with_one_time_prekey:
            one_time_id = min(self.device.one_time_prekeys)
        return PreKeyBundle.from_device(
            self.device, self.aik.public_bytes(), one_time_id
        )


def _start(alice: User, bob: User, with_one_time_prekey: bool = True) -> DeviceSession:
    return start_session(
        alice.device, alice.aik.public_bytes(), bob.bundle(with_one_time_prekey)
    )


def _flip_last_bit(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def test_first_envelope_is_prekey_message() -> None:
    alice, bob = User.make(), User.make()
    envelope = encrypt_envelope(_start(alice, bob), b"key material", AD)
    assert envelope[0] == PREKEY_MESSAGE
    assert decode_envelope(envelope).message_type == PREKEY_MESSAGE


def test_prekey_message_creates_session_for_responder() -> None:
    alice, bob = User.make(), User.make()
    envelope = encrypt_envelope(_start(alice, bob), b"key material", AD)

    result = bob.decrypt(None, envelope, AD)

    assert result.plaintext == b"key material"
    assert result.sender_identity_key == alice.device.identity_public()
    assert result.sender_aik_public == alice.aik.public_bytes()
    assert result.session.remote_identity_key == alice.device.identity_public()


def test_conversation_switches_to_ratchet_messages_after_reply() -> None:
    alice, bob = User.make(), User.make()
    alice_session = _start(alice, bob)
    first = encrypt_envelope(alice_session, b"a1", AD)
    second = encrypt_envelope(alice_session, b"a2", AD)
    bob_session = bob.decrypt(None, first, AD).session

    # The second message still carries the X3DH header and opens in the
    # session that the first one created.
    assert second[0] == PREKEY_MESSAGE
    assert bob.decrypt(bob_session, second, AD).plaintext == b"a2"

    reply = encrypt_envelope(bob_session, b"b1", AD)
    assert reply[0] == RATCHET_MESSAGE
    result = alice.decrypt(alice_session, reply, AD)
    assert result.plaintext == b"b1"
    assert result.sender_aik_public == bob.aik.public_bytes()
    assert not alice_session.awaiting_reply
    assert encrypt_envelope(alice_session, b"a3", AD)[0] == RATCHET_MESSAGE


def test_one_time_prekey_consumed_only_after_success() -> None:
    alice, bob = User.make(), User.make()
    bundle = bob.bundle()
    session = start_session(alice.device, alice.aik.public_bytes(), bundle)
    envelope = encrypt_envelope(session, b"key material", AD)

    with pytest.raises(DecryptionError):
        bob.decrypt(None, _flip_last_bit(envelope), AD)
    assert bundle.one_time_prekey_id in bob.device.one_time_prekeys

    bob.decrypt(None, envelope, AD)
    assert bundle.one_time_prekey_id not in bob.device.one_time_prekeys


def test_prekey_message_replay_rejected_without_session() -> None:
    alice, bob = User.make(), User.make()
    envelope = encrypt_envelope(_start(alice, bob), b"key material", AD)
    bob.decrypt(None, envelope, AD)
    with pytest.raises(DecryptionError):
        bob.decrypt(None, envelope, AD)


@pytest.mark.parametrize("with_one_time_prekey", [True, False])
def test_prekey_message_replay_rejected_with_session(
    with_one_time_prekey: bool,
) -> None:
    alice, bob = User.make(), User.make()
    envelope = encrypt_envelope(_start(alice, bob, with_one_time_prekey), b"x", AD)
    bob_session = bob.decrypt(None, envelope, AD).session
    with pytest.raises(DecryptionError):
        bob.decrypt(bob_session, envelope, AD)


def test_replayed_old_handshake_rejected_after_new_one() -> None:
    alice, bob = User.make(), User.make()
    old = encrypt_envelope(_start(alice, bob, False), b"old", AD)
    bob_session = bob.decrypt(None, old, AD).session
    new = encrypt_envelope(_start(alice, bob, False), b"new", AD)
    bob_session = bob.decrypt(bob_session, new, AD).session
    with pytest.raises(DecryptionError):
        bob.decrypt(bob_session, old, AD)


def test_simultaneous_handshakes_converge() -> None:
    alice, bob = User.make(), User.make()
    alice_session = _start(alice, bob)
    bob_session = _start(bob, alice)
    from_alice = encrypt_envelope(alice_session, b"hi bob", AD)
    from_bob = encrypt_envelope(bob_session, b"hi alice", AD)

    alice_session = alice.decrypt(alice_session, from_bob, AD).session
    bob_session = bob.decrypt(bob_session, from_alice, AD).session

    for turn in range(4):
        if turn % 2 == 0:
            envelope = encrypt_envelope(alice_session, b"ping", AD)
            result = bob.decrypt(bob_session, envelope, AD)
            assert result.plaintext == b"ping"
        else:
            envelope = encrypt_envelope(bob_session, b"pong", AD)
            result = alice.decrypt(alice_session, envelope, AD)
            assert result.plaintext == b"pong"


def test_ratchet_message_without_session_rejected() -> None:
    alice, bob = User.make(), User.make()
    alice_session = _start(alice, bob)
    bob_session = bob.decrypt(
        None, encrypt_envelope(alice_session, b"x", AD), AD
    ).session
    reply = encrypt_envelope(bob_session, b"reply", AD)
    with pytest.raises(DecryptionError):
        alice.decrypt(None, reply, AD)


def test_envelope_rejects_other_recipient_device() -> None:
    alice, bob = User.make(), User.make()
    envelope = encrypt_envelope(_start(alice, bob), b"key material", AD)
    other = message_associated_data("alice", 1, "bob", 2, "conversation-1", "message-1")
    with pytest.raises(DecryptionError):
        bob.decrypt(None, envelope, other)


def test_prekey_message_with_forged_aik_raises_signature_error() -> None:
    alice, bob = User.make(), User.make()
    envelope = encrypt_envelope(_start(alice, bob), b"key material", AD)
    decoded = decode_envelope(envelope)
    assert decoded.initial is not None
    mallory = AccountIdentity.generate()
    forged = Envelope(
        replace(decoded.initial, account_identity_key=mallory.public_bytes()),
        decoded.ratchet_message,
    )
    with pytest.raises(SignatureError):
        bob.decrypt(None, encode_envelope(forged), AD)


def _swap_sender_account(envelope: bytes, other: AccountIdentity) -> bytes:
    """Replace the AIK and device signature of a PREKEY_MESSAGE by ones that
    ``other`` made over the same device identity key."""
    decoded = decode_envelope(envelope)
    assert decoded.initial is not None
    swapped = replace(
        decoded.initial,
        account_identity_key=other.public_bytes(),
        device_signature=sign_device_key(other, decoded.initial.identity_key),
    )
    return encode_envelope(Envelope(swapped, decoded.ratchet_message))


@pytest.mark.parametrize("with_session", [False, True])
def test_prekey_message_with_swapped_aik_fails(with_session: bool) -> None:
    alice, bob, mallory = User.make(), User.make(), User.make()
    bob_session = None
    if with_session:
        first = encrypt_envelope(_start(alice, bob), b"first", AD)
        bob_session = bob.decrypt(None, first, AD).session
    envelope = encrypt_envelope(_start(alice, bob), b"key material", AD)
    swapped = _swap_sender_account(envelope, mallory.aik)
    device_before = bob.device.to_dict()
    session_before = None if bob_session is None else bob_session.to_dict()

    with pytest.raises(DecryptionError):
        bob.decrypt(bob_session, swapped, AD)

    assert bob.device.to_dict() == device_before
    if bob_session is not None:
        assert bob_session.to_dict() == session_before
    result = bob.decrypt(bob_session, envelope, AD)
    assert result.sender_aik_public == alice.aik.public_bytes()


def test_bundle_signed_by_other_account_fails() -> None:
    alice, bob, mallory = User.make(), User.make(), User.make()
    # Mallory signs Bob's published device key and signed prekey, so the
    # bundle verifies under Mallory's AIK.
    signed = bob.device.signed_prekey_public()
    bundle = replace(
        bob.bundle(),
        account_identity_key=mallory.aik.public_bytes(),
        device_signature=sign_device_key(mallory.aik, bob.device.identity_public()),
        signed_prekey_signature=sign_prekey(
            mallory.aik, signed["prekey_id"], signed["public_key"]
        ),
    )
    session = start_session(alice.device, alice.aik.public_bytes(), bundle)
    envelope = encrypt_envelope(session, b"key material", AD)

    with pytest.raises(DecryptionError):
        bob.decrypt(None, envelope, AD)
    assert bundle.one_time_prekey_id in bob.device.one_time_prekeys


def test_decrypt_with_wrong_own_aik_fails() -> None:
    alice, bob = User.make(), User.make()
    envelope = encrypt_envelope(_start(alice, bob), b"key material", AD)
    with pytest.raises(DecryptionError):
        decrypt_envelope(
            bob.device,
            None,
            envelope,
            AD,
            own_aik_public=alice.aik.public_bytes(),
        )


def test_device_session_copy_is_independent() -> None:
    alice, bob = User.make(), User.make()
    alice_session = _start(alice, bob)
    first = encrypt_envelope(alice_session, b"first", AD)
    second = encrypt_envelope(alice_session, b"second", AD)
    bob_session = bob.decrypt(None, first, AD).session
    before = bob_session.to_dict()
    copy = bob_session.copy()

    assert bob.decrypt(copy, second, AD).plaintext == b"second"
    encrypt_envelope(copy, b"reply", AD)

    assert bob_session.to_dict() == before
    assert bob.decrypt(bob_session, second, AD).plaintext == b"second"


def test_prekey_message_with_unknown_signed_prekey_rejected() -> None:
    alice, bob = User.make(), User.make()
    decoded = decode_envelope(encrypt_envelope(_start(alice, bob), b"x", AD))
    assert decoded.initial is not None
    forged = Envelope(
        replace(decoded.initial, signed_prekey_id=77), decoded.ratchet_message
    )
    with pytest.raises(DecryptionError):
        bob.decrypt(None, encode_envelope(forged), AD)


def test_failed_decrypt_leaves_session_unchanged() -> None:
    alice, bob = User.make(), User.make()
    alice_session = _start(alice, bob)
    bob_session = bob.decrypt(
        None, encrypt_envelope(alice_session, b"x", AD), AD
    ).session
    before = bob_session.to_dict()
    forged = _flip_last_bit(encrypt_envelope(alice_session, b"y", AD))
    with pytest.raises(DecryptionError):
        bob.decrypt(bob_session, forged, AD)
    assert bob_session.to_dict() == before


def test_new_device_key_gets_separate_session() -> None:
    alice, bob = User.make(), User.make()
    bob_session = bob.decrypt(
        None, encrypt_envelope(_start(alice, bob), b"x", AD), AD
    ).session
    before = bob_session.to_dict()
    reinstalled = User(alice.aik, DeviceKeys.generate(alice.aik, 0, NOW))
    envelope = encrypt_envelope(_start(reinstalled, bob), b"new device", AD)

    result = bob.decrypt(bob_session, envelope, AD)

    assert result.session is not bob_session
    assert result.sender_identity_key == reinstalled.device.identity_public()
    assert bob_session.to_dict() == before


def test_session_keeps_bounded_number_of_states() -> None:
    alice, bob = User.make(one_time_count=0), User.make(one_time_count=0)
    bob_session = None
    for _ in range(sessions.MAX_SESSION_STATES + 3):
        envelope = encrypt_envelope(_start(alice, bob, False), b"x", AD)
        bob_session = bob.decrypt(bob_session, envelope, AD).session
    assert bob_session is not None
    assert len(bob_session.to_dict()["states"]) == sessions.MAX_SESSION_STATES


def test_device_session_round_trips_through_json() -> None:
    alice, bob = User.make(), User.make()
    alice_session = _start(alice, bob)
    first = encrypt_envelope(alice_session, b"first", AD)
    second = encrypt_envelope(alice_session, b"second", AD)
    bob_session = bob.decrypt(None, first, AD).session

    alice_copy = DeviceSession.from_dict(
        json.loads(json.dumps(alice_session.to_dict()))
    )
    bob_copy = DeviceSession.from_dict(json.loads(json.dumps(bob_session.to_dict())))

    assert alice_copy.awaiting_reply
    assert bob.decrypt(bob_copy, second, AD).plaintext == b"second"
    reply = encrypt_envelope(bob_copy, b"reply", AD)
    assert alice.decrypt(alice_copy, reply, AD).plaintext == b"reply"


def test_encrypt_for_device_starts_then_reuses_session() -> None:
    alice, bob = User.make(), User.make()
    first, session = encrypt_for_device(
        alice.device, alice.aik.public_bytes(), None, bob.bundle(), b"one", AD
    )
    second, same = encrypt_for_device(
        alice.device, alice.aik.public_bytes(), session, None, b"two", AD
    )
    assert same is session
    bob_session = bob.decrypt(None, first, AD).session
    assert bob.decrypt(bob_session, second, AD).plaintext == b"two"


def test_encrypt_for_device_needs_bundle_without_session() -> None:
    alice = User.make()
    with pytest.raises(ValueError):
        encrypt_for_device(alice.device, alice.aik.public_bytes(), None, None, b"", AD)


def test_envelope_encoding_round_trip() -> None:
    alice, bob = User.make(), User.make()
    envelope = encrypt_envelope(_start(alice, bob), b"x", AD)
    assert encode_envelope(decode_envelope(envelope)) == envelope


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x03abc", b"\x01" + bytes(168)],
    ids=["empty", "type_zero", "unknown_type", "short_prekey_header"],
)
def test_decode_envelope_rejects_malformed(data: bytes) -> None:
    with pytest.raises(DecryptionError):
        decode_envelope(data)


def test_decode_envelope_rejects_bad_one_time_flag() -> None:
    alice, bob = User.make(), User.make()
    envelope = bytearray(encrypt_envelope(_start(alice, bob), b"x", AD))
    flag_offset = 1 + 32 + 32 + 4
    envelope[flag_offset] = 2
    with pytest.raises(DecryptionError):
        decode_envelope(bytes(envelope))


def test_decode_envelope_rejects_id_without_flag() -> None:
    alice, bob = User.make(), User.make()
    envelope = bytearray(encrypt_envelope(_start(alice, bob, False), b"x", AD))
    id_offset = 1 + 32 + 32 + 4 + 1
    envelope[id_offset + 3] = 1
    with pytest.raises(DecryptionError):
        decode_envelope(bytes(envelope))


def test_payload_round_trip() -> None:
    ad = payload_associated_data("alice", 1, "conversation-1", "message-1")
    key_material, ciphertext = seal_payload(b'{"kind": "text"}', ad)
    assert len(key_material) == 64
    assert key_material[32:] == ciphertext[-32:]
    assert open_payload(key_material, ciphertext, ad) == b'{"kind": "text"}'


def test_payload_rejects_swapped_ciphertext() -> None:
    ad = payload_associated_data("alice", 1, "conversation-1", "message-1")
    key_material, _ = seal_payload(b"first", ad)
    _, other_ciphertext = seal_payload(b"second", ad)
    with pytest.raises(DecryptionError):
        open_payload(key_material, other_ciphertext, ad)


def test_payload_rejects_other_conversation() -> None:
    ad = payload_associated_data("alice", 1, "conversation-1", "message-1")
    key_material, ciphertext = seal_payload(b"text", ad)
    other = payload_associated_data("alice", 1, "conversation-2", "message-1")
    with pytest.raises(DecryptionError):
        open_payload(key_material, ciphertext, other)


def test_payload_rejects_short_key_material() -> None:
    ad = payload_associated_data("alice", 1, "conversation-1", "message-1")
    key_material, ciphertext = seal_payload(b"text", ad)
    with pytest.raises(DecryptionError):
        open_payload(key_material[:63], ciphertext, ad)


def test_attachment_round_trip() -> None:
    key_material, ciphertext = sessions.seal_attachment(b"\x89PNG", b"ad")
    assert sessions.open_attachment(key_material, ciphertext, b"ad") == b"\x89PNG"
    with pytest.raises(DecryptionError):
        open_payload(key_material, ciphertext, b"ad")


def test_message_associated_data_is_unambiguous() -> None:
    first = message_associated_data("ab", 1, "c", 2, "conv", "id")
    second = message_associated_data("a", 1, "bc", 2, "conv", "id")
    assert first != second


def test_message_associated_data_binds_every_field() -> None:
    base = ("alice", 1, "bob", 2, "conv", "id")
    variants = [
        ("mallory", 1, "bob", 2, "conv", "id"),
        ("alice", 3, "bob", 2, "conv", "id"),
        ("alice", 1, "carol", 2, "conv", "id"),
        ("alice", 1, "bob", 3, "conv", "id"),
        ("alice", 1, "bob", 2, "other", "id"),
        ("alice", 1, "bob", 2, "conv", "other"),
    ]
    for variant in variants:
        assert message_associated_data(*variant) != message_associated_data(*base)


def test_message_associated_data_normalizes_usernames() -> None:
    first = message_associated_data("Alice", 1, "BOB", 2, "conv", "id")
    second = message_associated_data("alice", 1, "bob", 2, "conv", "id")
    assert first == second


def test_payload_and_message_ad_differ() -> None:
    assert payload_associated_data("a", 1, "c", "m") != message_associated_data(
        "a", 1, "", 0, "c", "m"
    )


def test_prekey_replay_without_one_time_prekey_rejected() -> None:
    alice, bob = User.make(one_time_count=0), User.make(one_time_count=0)
    envelope = encrypt_envelope(_start(alice, bob, False), b"key material", AD)
    bob.decrypt(None, envelope, AD)
    before = bob.device.to_dict()

    with pytest.raises(DecryptionError):
        bob.decrypt(None, envelope, AD)
    assert bob.device.to_dict() == before


def test_prekey_replay_rejected_after_states_evicted() -> None:
    alice, bob = User.make(one_time_count=0), User.make(one_time_count=0)
    first = encrypt_envelope(_start(alice, bob, False), b"first", AD)
    bob_session = bob.decrypt(None, first, AD).session
    for _ in range(sessions.MAX_SESSION_STATES):
        envelope = encrypt_envelope(_start(alice, bob, False), b"later", AD)
        bob_session = bob.decrypt(bob_session, envelope, AD).session

    with pytest.raises(DecryptionError):
        bob.decrypt(bob_session, first, AD)


def test_prekey_replay_cannot_restore_old_device_key() -> None:
    alice, bob = User.make(one_time_count=0), User.make(one_time_count=0)
    old = encrypt_envelope(_start(alice, bob, False), b"old device", AD)
    bob_session = bob.decrypt(None, old, AD).session
    reinstalled = User(alice.aik, DeviceKeys.generate(alice.aik, 0, NOW))
    new = encrypt_envelope(_start(reinstalled, bob, False), b"new device", AD)
    bob_session = bob.decrypt(bob_session, new, AD).session

    with pytest.raises(DecryptionError):
        bob.decrypt(bob_session, old, AD)
    assert bob_session.remote_identity_key == reinstalled.device.identity_public()


def test_failed_prekey_message_records_no_base_key() -> None:
    alice, bob = User.make(one_time_count=0), User.make(one_time_count=0)
    envelope = encrypt_envelope(_start(alice, bob, False), b"key material", AD)
    with pytest.raises(DecryptionError):
        bob.decrypt(None, _flip_last_bit(envelope), AD)
    assert bob.decrypt(None, envelope, AD).plaintext == (b"key material")
