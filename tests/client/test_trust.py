import base64

import pytest

from enctalk.client.errors import ClientError
from enctalk.client.trust import (
    ServerTrust,
    certificate_fingerprint,
    normalize_fingerprint,
)
from enctalk.crypto.safety import certificate_fingerprint as crypto_fingerprint

DER = b"not really a certificate, but hashed all the same"


def pin_entry(der):
    return {
        "fingerprint": certificate_fingerprint(der),
        "certificate": base64.urlsafe_b64encode(der).decode(),
    }


def test_certificate_fingerprint_matches_crypto_format():
    assert certificate_fingerprint(DER) == crypto_fingerprint(DER)


def test_normalize_fingerprint_accepts_case_and_missing_colons():
    expected = certificate_fingerprint(DER)
    bare = expected.removeprefix("SHA256:").replace(":", "").lower()
    assert normalize_fingerprint(bare) == expected
    assert normalize_fingerprint(expected.lower()) == expected


@pytest.mark.parametrize("text", ["", "SHA256:AB", "xyz" * 30, "SHA1:" + "A" * 64])
def test_normalize_fingerprint_rejects_invalid(text):
    with pytest.raises(ValueError):
        normalize_fingerprint(text)


def test_server_trust_without_pin_has_no_context():
    trust = ServerTrust({})
    assert trust.pinned("lab", 5443) is None
    with pytest.raises(ClientError) as info:
        trust.context("lab", 5443)
    assert info.value.code == "certificate_rejected"


def test_server_trust_check_peer_names_both_fingerprints():
    trust = ServerTrust({"lab:5443": pin_entry(DER)})
    with pytest.raises(ClientError) as info:
        trust.check_peer("lab", 5443, b"another certificate")
    assert info.value.code == "certificate_changed"
    assert certificate_fingerprint(DER) in info.value.message
    assert certificate_fingerprint(b"another certificate") in info.value.message


@pytest.mark.parametrize(
    "entry",
    [
        "not an object",
        {},
        {"fingerprint": certificate_fingerprint(DER)},
        {"fingerprint": certificate_fingerprint(DER), "certificate": "!!not base64"},
        {"fingerprint": certificate_fingerprint(DER), "certificate": ""},
        {**pin_entry(DER), "fingerprint": certificate_fingerprint(b"other")},
        {**pin_entry(DER), "certificate": pin_entry(b"other")["certificate"]},
    ],
)
def test_server_trust_damaged_pin_raises(entry):
    trust = ServerTrust(
        {"lab:5443": entry}, accept_new_server=True, settings_path="/p/settings.json"
    )
    with pytest.raises(ClientError) as info:
        trust.pinned("lab", 5443)
    assert info.value.code == "profile_invalid"
    assert "lab:5443" in info.value.message
    assert "/p/settings.json" in info.value.message


def test_server_trust_damaged_pin_is_not_replaced():
    known = {"lab:5443": {"certificate": "!!"}}
    trust = ServerTrust(known, accept_new_server=True)
    with pytest.raises(ClientError) as info:
        trust.ensure_pinned("lab", 5443, 1.0)
    assert info.value.code == "profile_invalid"
    assert known == {"lab:5443": {"certificate": "!!"}}


def test_server_trust_valid_pin_round_trips():
    trust = ServerTrust({"lab:5443": pin_entry(DER)})
    assert trust.pinned("lab", 5443) == (certificate_fingerprint(DER), DER)
