"""Tests of the X3DH handshake between two devices."""

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from enctalk.crypto import x3dh
from enctalk.crypto.errors import CryptoError, PrekeyError, SignatureError
from enctalk.crypto.kdf import hkdf
from enctalk.crypto.keys import AccountIdentity, DeviceKeys, x25519_shared_secret
from enctalk.crypto.x3dh import PreKeyBundle

NOW = 1_700_000_000
Party = tuple[AccountIdentity, DeviceKeys]


@pytest.fixture
def alice() -> Party:
    aik = AccountIdentity.generate()
    return aik, DeviceKeys.generate(aik, one_time_count=0, now=NOW)


@pytest.fixture
def bob() -> Party:
    aik = AccountIdentity.generate()
    return aik, DeviceKeys.generate(aik, one_time_count=2, now=NOW)


def test_x3dh_with_one_time_prekey_agrees(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    one_time_id = min(bob_device.one_time_prekeys)
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes(), one_time_id)

    key, ad, initial = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)
    bob_key, bob_ad = x3dh.respond(bob_device, initial, alice_device.identity_public())

    assert len(key) == 32
    assert bob_key == key
    assert ad == alice_device.identity_public() + bob_device.identity_public()
    assert bob_ad == ad
    assert initial.one_time_prekey_id == one_time_id
    assert one_time_id not in bob_device.one_time_prekeys


def test_x3dh_without_one_time_prekey_agrees(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes())

    key, ad, initial = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)
    bob_key, bob_ad = x3dh.respond(bob_device, initial)

    assert initial.one_time_prekey_id is None
    assert bob_key == key
    assert bob_ad == ad
    assert len(bob_device.one_time_prekeys) == 2


def test_x3dh_shared_key_matches_specification(
    alice: Party, bob: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    one_time_id = min(bob_device.one_time_prekeys)
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes(), one_time_id)
    ephemeral = X25519PrivateKey.generate()
    monkeypatch.setattr(x3dh, "_generate_ephemeral", lambda: ephemeral)
    key, _, _ = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)

    assert bundle.one_time_prekey is not None
    dh1 = x25519_shared_secret(alice_device.identity_key, bundle.signed_prekey)
    dh2 = x25519_shared_secret(ephemeral, bundle.identity_key)
    dh3 = x25519_shared_secret(ephemeral, bundle.signed_prekey)
    dh4 = x25519_shared_secret(ephemeral, bundle.one_time_prekey)
    ikm = b"\xff" * 32 + dh1 + dh2 + dh3 + dh4
    assert key == hkdf(ikm, bytes(32), b"EncTalk_X3DH_v1", 32)


def test_x3dh_one_time_prekey_single_use(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    one_time_id = min(bob_device.one_time_prekeys)
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes(), one_time_id)
    _, _, initial = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)
    x3dh.respond(bob_device, initial)
    with pytest.raises(PrekeyError):
        x3dh.respond(bob_device, initial)


def test_x3dh_handshake_without_one_time_prekey_single_use(
    alice: Party, bob: Party
) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes())
    _, _, initial = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)
    x3dh.respond(bob_device, initial)
    with pytest.raises(PrekeyError):
        x3dh.respond(bob_device, initial)
    with pytest.raises(PrekeyError):
        x3dh.compute_responder_key(bob_device, initial)


def test_x3dh_rejects_bad_signed_prekey_signature(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes())
    forged = bytearray(bundle.signed_prekey_signature)
    forged[0] ^= 1
    with pytest.raises(SignatureError):
        x3dh.initiate(
            alice_device,
            alice_aik.public_bytes(),
            replace(bundle, signed_prekey_signature=bytes(forged)),
        )


def test_x3dh_rejects_relabelled_signed_prekey(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes())
    with pytest.raises(SignatureError):
        x3dh.initiate(
            alice_device,
            alice_aik.public_bytes(),
            replace(bundle, signed_prekey_id=bundle.signed_prekey_id + 1),
        )


def test_x3dh_rejects_device_key_of_other_account(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    _, bob_device = bob
    mallory = AccountIdentity.generate()
    # The bundle names Mallory's AIK, but Bob's device keys carry Bob's signatures.
    bundle = PreKeyBundle.from_device(bob_device, mallory.public_bytes())
    with pytest.raises(SignatureError):
        x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)


def test_x3dh_responder_rejects_forged_sender_signature(
    alice: Party, bob: Party
) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes())
    _, _, initial = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)
    mallory = AccountIdentity.generate()
    with pytest.raises(SignatureError):
        x3dh.respond(
            bob_device, replace(initial, account_identity_key=mallory.public_bytes())
        )


def test_x3dh_rejects_one_time_id_without_key(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes())
    with pytest.raises(CryptoError):
        x3dh.initiate(
            alice_device,
            alice_aik.public_bytes(),
            replace(bundle, one_time_prekey_id=1),
        )


def test_x3dh_responder_rejects_unknown_signed_prekey(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes())
    _, _, initial = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)
    with pytest.raises(PrekeyError):
        x3dh.respond(bob_device, replace(initial, signed_prekey_id=999))
