"""Tests of the X3DH handshake between two devices."""

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from enctalk.crypto import x3dh
from enctalk.crypto.errors import CryptoError, PrekeyError, SignatureError
from enctalk.crypto.kdf import hkdf
from enctalk.crypto.keys import (
    AccountIdentity,
    DeviceKeys,
    sign_device_key,
    sign_prekey,
    x25519_shared_secret,
)
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
    bob_key, bob_ad = x3dh.respond(
        bob_device,
        initial,
        alice_device.identity_public(),
        own_aik_public=bob_aik.public_bytes(),
    )

    assert len(key) == 32
    assert bob_key == key
    assert bob_ad == ad
    assert initial.one_time_prekey_id == one_time_id
    assert one_time_id not in bob_device.one_time_prekeys


def test_x3dh_without_one_time_prekey_agrees(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes())

    key, ad, initial = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)
    bob_key, bob_ad = x3dh.respond(
        bob_device, initial, own_aik_public=bob_aik.public_bytes()
    )

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


def test_x3dh_ad_binds_both_account_keys(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes())

    _, ad, _ = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)

    expected = (
        b"EncTalk_X3DH_AD_v1"
        + alice_device.identity_public()
        + bob_device.identity_public()
        + alice_aik.public_bytes()
        + bob_aik.public_bytes()
    )
    assert ad == expected
    assert len(ad) == x3dh.ASSOCIATED_DATA_SIZE


def test_x3dh_ad_differs_for_swapped_sender_aik(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes())
    key, ad, initial = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)
    # Mallory's AIK signs Alice's published device key: a valid signature.
    mallory = AccountIdentity.generate()
    swapped = replace(
        initial,
        account_identity_key=mallory.public_bytes(),
        device_signature=sign_device_key(mallory, alice_device.identity_public()),
    )

    bob_key, bob_ad = x3dh.compute_responder_key(
        bob_device, swapped, own_aik_public=bob_aik.public_bytes()
    )

    assert bob_key == key
    assert bob_ad != ad


def test_x3dh_responder_ad_uses_own_aik(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    # Mallory signs Bob's published device key and signed prekey, and the
    # bundle names Mallory's AIK: both signatures verify.
    mallory = AccountIdentity.generate()
    signed = bob_device.signed_prekey_public()
    bundle = replace(
        PreKeyBundle.from_device(bob_device, mallory.public_bytes()),
        signed_prekey_signature=sign_prekey(
            mallory, signed["prekey_id"], signed["public_key"]
        ),
        device_signature=sign_device_key(mallory, bob_device.identity_public()),
    )
    _, ad, initial = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)

    _, bob_ad = x3dh.compute_responder_key(
        bob_device, initial, own_aik_public=bob_aik.public_bytes()
    )

    assert bob_ad != ad


def test_x3dh_one_time_prekey_single_use(alice: Party, bob: Party) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    one_time_id = min(bob_device.one_time_prekeys)
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes(), one_time_id)
    _, _, initial = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)
    x3dh.respond(bob_device, initial, own_aik_public=bob_aik.public_bytes())
    with pytest.raises(PrekeyError):
        x3dh.respond(bob_device, initial, own_aik_public=bob_aik.public_bytes())


def test_x3dh_handshake_without_one_time_prekey_single_use(
    alice: Party, bob: Party
) -> None:
    alice_aik, alice_device = alice
    bob_aik, bob_device = bob
    bundle = PreKeyBundle.from_device(bob_device, bob_aik.public_bytes())
    _, _, initial = x3dh.initiate(alice_device, alice_aik.public_bytes(), bundle)
    x3dh.respond(bob_device, initial, own_aik_public=bob_aik.public_bytes())
    with pytest.raises(PrekeyError):
        x3dh.respond(bob_device, initial, own_aik_public=bob_aik.public_bytes())
    with pytest.raises(PrekeyError):
        x3dh.compute_responder_key(
            bob_device, initial, own_aik_public=bob_aik.public_bytes()
        )


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
            bob_device,
            replace(initial, account_identity_key=mallory.public_bytes()),
            own_aik_public=bob_aik.public_bytes(),
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
        x3dh.respond(
            bob_device,
            replace(initial, signed_prekey_id=999),
            own_aik_public=bob_aik.public_bytes(),
        )
