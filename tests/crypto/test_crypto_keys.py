"""Tests of the account identity key, signatures and device keys."""

import json

import pytest

from enctalk.crypto.errors import CryptoError, PrekeyError, SignatureError
from enctalk.crypto.keys import (
    MAX_BASE_KEYS_PER_SIGNED_PREKEY,
    ONE_TIME_PREKEY_COUNT,
    SIGNED_PREKEY_ROTATION_SECONDS,
    AccountIdentity,
    DeviceKeys,
    sign_device_key,
    sign_prekey,
    verify_device_key,
    verify_prekey,
    verify_signature,
    x25519_public_bytes,
)

NOW = 1_700_000_000
DAY = 24 * 3600


def test_account_identity_round_trips_private_bytes() -> None:
    aik = AccountIdentity.generate()
    loaded = AccountIdentity.from_private_bytes(aik.private_bytes())
    assert len(aik.private_bytes()) == 32
    assert len(aik.public_bytes()) == 32
    assert loaded.public_bytes() == aik.public_bytes()


def test_verify_signature_rejects_other_data() -> None:
    aik = AccountIdentity.generate()
    signature = aik.sign(b"data")
    assert len(signature) == 64
    verify_signature(aik.public_bytes(), signature, b"data")
    with pytest.raises(SignatureError):
        verify_signature(aik.public_bytes(), signature, b"other")


def test_verify_signature_rejects_malformed_key() -> None:
    aik = AccountIdentity.generate()
    with pytest.raises(SignatureError):
        verify_signature(b"short", aik.sign(b"data"), b"data")


def test_device_signature_verifies_only_for_signed_key() -> None:
    aik = AccountIdentity.generate()
    device = DeviceKeys.generate(aik, one_time_count=0, now=NOW)
    identity = device.identity_public()
    verify_device_key(aik.public_bytes(), identity, device.device_signature)
    other = DeviceKeys.generate(aik, one_time_count=0, now=NOW).identity_public()
    with pytest.raises(SignatureError):
        verify_device_key(aik.public_bytes(), other, device.device_signature)


def test_device_signature_rejects_other_account() -> None:
    aik = AccountIdentity.generate()
    device = DeviceKeys.generate(aik, one_time_count=0, now=NOW)
    stranger = AccountIdentity.generate()
    with pytest.raises(SignatureError):
        verify_device_key(
            stranger.public_bytes(), device.identity_public(), device.device_signature
        )


def test_prekey_signature_binds_prekey_id() -> None:
    aik = AccountIdentity.generate()
    public = x25519_public_bytes(DeviceKeys.generate(aik, 0, NOW).identity_key)
    signature = sign_prekey(aik, 7, public)
    verify_prekey(aik.public_bytes(), 7, public, signature)
    with pytest.raises(SignatureError):
        verify_prekey(aik.public_bytes(), 8, public, signature)


def test_device_signature_is_not_a_prekey_signature() -> None:
    aik = AccountIdentity.generate()
    public = bytes(range(32))
    signature = sign_device_key(aik, public)
    with pytest.raises(SignatureError):
        verify_prekey(aik.public_bytes(), 0, public, signature)


def test_generate_makes_default_one_time_prekeys() -> None:
    device = DeviceKeys.generate(AccountIdentity.generate(), now=NOW)
    assert len(device.one_time_prekeys) == ONE_TIME_PREKEY_COUNT


def test_signed_prekey_public_is_signed_by_aik() -> None:
    aik = AccountIdentity.generate()
    device = DeviceKeys.generate(aik, one_time_count=0, now=NOW)
    signed = device.signed_prekey_public()
    assert signed["created_at"] == NOW
    verify_prekey(
        aik.public_bytes(),
        signed["prekey_id"],
        signed["public_key"],
        signed["signature"],
    )


def test_rotate_signed_prekey_keeps_previous_for_grace_period() -> None:
    aik = AccountIdentity.generate()
    device = DeviceKeys.generate(aik, one_time_count=0, now=NOW)
    old_id = device.current_signed_prekey_id
    rotated_at = NOW + SIGNED_PREKEY_ROTATION_SECONDS
    assert device.needs_signed_prekey_rotation(rotated_at)

    new = device.rotate_signed_prekey(aik, rotated_at, grace_seconds=2 * DAY)

    assert new["prekey_id"] != old_id
    assert device.current_signed_prekey_id == new["prekey_id"]
    assert not device.needs_signed_prekey_rotation(rotated_at)
    assert device.prune_signed_prekeys(rotated_at + DAY) == []
    device.signed_prekey(old_id)
    assert device.prune_signed_prekeys(rotated_at + 2 * DAY) == [old_id]
    with pytest.raises(PrekeyError):
        device.signed_prekey(old_id)
    device.signed_prekey(new["prekey_id"])


def test_rotate_signed_prekey_prunes_expired_ones() -> None:
    aik = AccountIdentity.generate()
    device = DeviceKeys.generate(aik, one_time_count=0, now=NOW)
    first_id = device.current_signed_prekey_id
    device.rotate_signed_prekey(aik, NOW + 7 * DAY, grace_seconds=DAY)
    device.rotate_signed_prekey(aik, NOW + 14 * DAY, grace_seconds=DAY)
    assert first_id not in device.signed_prekeys
    assert len(device.signed_prekeys) == 2


def test_new_one_time_prekeys_have_fresh_ids() -> None:
    device = DeviceKeys.generate(AccountIdentity.generate(), 3, NOW)
    created = device.new_one_time_prekeys(2)
    ids = [prekey_id for prekey_id, _ in created]
    assert len(set(ids)) == 2
    assert not set(ids) & {1, 2, 3}
    assert all(len(public) == 32 for _, public in created)
    assert len(device.one_time_prekeys) == 5


def test_take_one_time_prekey_works_once() -> None:
    device = DeviceKeys.generate(AccountIdentity.generate(), 1, NOW)
    (prekey_id,) = device.one_time_prekeys
    device.take_one_time_prekey(prekey_id)
    with pytest.raises(PrekeyError):
        device.take_one_time_prekey(prekey_id)


def test_device_keys_round_trip_through_json() -> None:
    aik = AccountIdentity.generate()
    device = DeviceKeys.generate(aik, one_time_count=3, now=NOW)
    device.rotate_signed_prekey(aik, NOW + 7 * DAY)
    loaded = DeviceKeys.from_dict(json.loads(json.dumps(device.to_dict())))
    assert loaded.to_dict() == device.to_dict()
    assert loaded.identity_public() == device.identity_public()
    assert loaded.new_one_time_prekeys(1)[0][0] == 4


def test_device_keys_copy_is_independent() -> None:
    aik = AccountIdentity.generate()
    device = DeviceKeys.generate(aik, one_time_count=2, now=NOW)
    before = device.to_dict()
    copy = device.copy()

    copy.take_one_time_prekey(min(copy.one_time_prekeys))
    copy.record_base_key(copy.current_signed_prekey_id, bytes(range(32)))
    copy.new_one_time_prekeys(1)
    copy.rotate_signed_prekey(aik, NOW + 8 * DAY)

    assert device.to_dict() == before
    assert copy.identity_public() == device.identity_public()
    assert len(copy.one_time_prekeys) == 2
    assert copy.base_key_used(1, bytes(range(32)))


def test_base_key_record_survives_round_trip() -> None:
    device = DeviceKeys.generate(AccountIdentity.generate(), 0, NOW)
    base_key = bytes(range(32))
    device.record_base_key(1, base_key)
    loaded = DeviceKeys.from_dict(json.loads(json.dumps(device.to_dict())))
    assert loaded.base_key_used(1, base_key)
    assert not loaded.base_key_used(1, bytes(32))


def test_device_keys_load_state_without_base_keys() -> None:
    device = DeviceKeys.generate(AccountIdentity.generate(), 0, NOW)
    state = device.to_dict()
    for record in state["signed_prekeys"]:
        del record["base_keys"]
    loaded = DeviceKeys.from_dict(state)
    assert not loaded.base_key_used(1, bytes(32))


def test_record_base_key_evicts_oldest_past_limit() -> None:
    device = DeviceKeys.generate(AccountIdentity.generate(), 0, NOW)
    keys = [i.to_bytes(32, "big") for i in range(MAX_BASE_KEYS_PER_SIGNED_PREKEY + 1)]
    for key in keys:
        device.record_base_key(1, key)
    assert not device.base_key_used(1, keys[0])
    assert device.base_key_used(1, keys[1])
    assert device.base_key_used(1, keys[-1])


def test_record_base_key_rejects_unknown_signed_prekey() -> None:
    device = DeviceKeys.generate(AccountIdentity.generate(), 0, NOW)
    with pytest.raises(PrekeyError):
        device.record_base_key(99, bytes(32))


def test_device_keys_from_dict_rejects_bad_base64() -> None:
    state = DeviceKeys.generate(AccountIdentity.generate(), 1, NOW).to_dict()
    state["identity_key"] = "not base64!"
    with pytest.raises(CryptoError):
        DeviceKeys.from_dict(state)


def test_device_keys_from_dict_rejects_unknown_format() -> None:
    state = DeviceKeys.generate(AccountIdentity.generate(), 1, NOW).to_dict()
    state["format"] = 99
    with pytest.raises(CryptoError):
        DeviceKeys.from_dict(state)


def test_resign_moves_device_to_new_aik() -> None:
    old_aik = AccountIdentity.generate()
    device = DeviceKeys.generate(old_aik, one_time_count=0, now=NOW)
    new_aik = AccountIdentity.generate()
    device.resign(new_aik)
    verify_device_key(
        new_aik.public_bytes(), device.identity_public(), device.device_signature
    )
    signed = device.signed_prekey_public()
    verify_prekey(
        new_aik.public_bytes(),
        signed["prekey_id"],
        signed["public_key"],
        signed["signature"],
    )
