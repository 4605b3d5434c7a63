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
    trust = ServerTrust(
        {"lab:5443": {"certificate": base64.urlsafe_b64encode(DER).decode()}}
    )
    with pytest.raises(ClientError) as info:
        trust.check_peer("lab", 5443, b"another certificate")
    assert info.value.code == "certificate_changed"
    assert certificate_fingerprint(DER) in info.value.message
    assert certificate_fingerprint(b"another certificate") in info.value.message
