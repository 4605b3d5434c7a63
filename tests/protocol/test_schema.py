"""Frame schemas: every request, reply and push type, valid and invalid."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from enctalk.protocol import (
    InvalidUsername,
    ProtocolError,
    b64,
    canonical_username,
    errors,
    make_error,
    make_push,
    make_reply,
    make_request,
    request_id,
    validate_error,
    validate_push,
    validate_reply,
    validate_request,
)
from enctalk.protocol.schema import REPLIES, REQUESTS

KEY = bytes(range(32))
UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def good_send() -> dict[str, Any]:
    return make_request(
        "send",
        5,
        message_id=UUID,
        to="bob",
        payload=b"ciphertext",
        envelopes=[{"username": "bob", "device_id": 1, "body": b"key"}],
    )


def test_validate_request_decodes_binary_fields() -> None:
    kind, frame_id, fields = validate_request(good_send())
    assert kind == "send"
    assert frame_id == 5
    assert fields["payload"] == b"ciphertext"
    assert fields["envelopes"][0]["body"] == b"key"


def test_validate_request_fills_missing_optional_with_none() -> None:
    _, _, fields = validate_request(
        make_request("login", 1, username="a", auth_key=KEY)
    )
    assert fields["device_id"] is None


def test_every_request_type_has_reply_schema() -> None:
    assert set(REQUESTS) == set(REPLIES)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"to": 7}, "must be a string"),
        ({"message_id": "not-a-uuid"}, "exactly 36 characters"),
        ({"message_id": UUID.upper()}, "invalid format"),
        ({"payload": "no padding"}, "base64"),
        ({"payload": base64.b64encode(b"\xfb\xff").decode()}, "base64"),
        ({"payload": "Zg"}, "base64"),
        ({"payload": ""}, "bytes"),
        ({"envelopes": {}}, "must be a list"),
        (
            {"envelopes": [{"username": "bob", "device_id": 0, "body": "AA=="}]},
            "between",
        ),
        (
            {"envelopes": [{"username": "bob", "device_id": True, "body": "AA=="}]},
            "integer",
        ),
        ({"extra": 1}, "not expected"),
    ],
)
def test_validate_request_rejects_bad_fields(
    change: dict[str, Any], problem: str
) -> None:
    frame = good_send()
    frame.update(change)
    with pytest.raises(ProtocolError) as caught:
        validate_request(frame)
    assert caught.value.code == errors.INVALID_FRAME
    assert problem in caught.value.message


def test_validate_request_rejects_missing_field() -> None:
    frame = good_send()
    del frame["payload"]
    with pytest.raises(ProtocolError, match="'payload' is missing"):
        validate_request(frame)


def test_validate_request_rejects_unknown_type() -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_request({"type": "launch_missiles"})
    assert caught.value.code == errors.UNKNOWN_TYPE


@pytest.mark.parametrize("frame", [{}, {"type": 5}, {"type": None}])
def test_validate_request_rejects_missing_type(frame: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_request(frame)
    assert caught.value.code == errors.INVALID_FRAME


@pytest.mark.parametrize("bad_id", [-1, 2**53, "7", 1.5, True])
def test_validate_request_rejects_bad_id(bad_id: Any) -> None:
    with pytest.raises(ProtocolError):
        validate_request({"type": "ping", "id": bad_id})
    assert request_id({"type": "ping", "id": bad_id}) is None


def test_binary_field_rejects_oversized_value_before_decoding() -> None:
    frame = make_request("register", 1, username="abc", auth_key=KEY, identity_key=KEY)
    frame["backup"] = "A" * 10_000_000
    with pytest.raises(ProtocolError, match="at most"):
        validate_request(frame)


def test_binary_field_rejects_wrong_key_size() -> None:
    frame = make_request("login", 1, username="abc", auth_key=KEY[:31])
    with pytest.raises(ProtocolError, match="exactly 32"):
        validate_request(frame)


def test_validate_reply_checks_reply_fields() -> None:
    reply = make_reply(
        4, message_id=UUID, server_seq=10, server_time=1, duplicate=False
    )
    assert validate_reply("send", reply)["server_seq"] == 10
    del reply["duplicate"]
    with pytest.raises(ProtocolError):
        validate_reply("send", reply)


def test_validate_push_round_trip_with_from_field() -> None:
    push = make_push(
        "message",
        seq=1,
        message_id=UUID,
        from_="alice",
        from_device=2,
        to="bob",
        server_seq=9,
        server_time=1000,
        payload=b"p",
        envelope=b"e",
    )
    assert "from" in push
    assert "id" not in push
    kind, fields = validate_push(push)
    assert kind == "message"
    assert fields["from"] == "alice"
    assert fields["envelope"] == b"e"


def test_validate_error_accepts_details_and_retry_after() -> None:
    frame = make_error(3, errors.RATE_LIMITED, "Too many tries.", retry_after=4)
    fields = validate_error(frame)
    assert fields["code"] == "rate_limited"
    assert fields["retry_after"] == 4
    assert fields["details"] is None


def test_b64_produces_urlsafe_padded_text() -> None:
    assert b64(b"\xfb\xff") == "-_8="


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Alice", "alice"),
        ("ＡＬＩＣＥ", "alice"),
        ("bob.smith_2-b", "bob.smith_2-b"),
        ("x" * 32, "x" * 32),
    ],
)
def test_canonical_username_accepts(raw: str, canonical: str) -> None:
    assert canonical_username(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    ["ab", "x" * 33, "bob smith", "bob\x07", "bob\n", "аlice", "bob@home", ""],
)
def test_canonical_username_rejects(raw: str) -> None:
    with pytest.raises(InvalidUsername):
        canonical_username(raw)


def test_text_field_rejects_control_character() -> None:
    with pytest.raises(ProtocolError, match="control character"):
        validate_request(make_request("hello", 1, version=1, client="enctalk\x00"))


def test_username_field_passes_control_character_to_handler() -> None:
    _, _, fields = validate_request(make_request("add_contact", 1, username="bo\x07b"))
    assert fields["username"] == "bo\x07b"
