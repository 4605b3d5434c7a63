"""The LAN announcement datagram, checked as bytes without a network."""

from __future__ import annotations

import json

import pytest

from enctalk.protocol.announcement import (
    MAX_ANNOUNCEMENT_SIZE,
    Announcement,
    InvalidAnnouncement,
    encode_announcement,
    parse_announcement,
)

FINGERPRINT = "SHA256:" + ":".join(f"{index:02X}" for index in range(32))
VALID = {
    "app": "enctalk",
    "version": 1,
    "name": "lab-server",
    "port": 5443,
    "fingerprint": FINGERPRINT,
}


def _datagram(**changes: object) -> bytes:
    body = {**VALID, **changes}
    return json.dumps(body).encode()


def test_announcement_round_trips() -> None:
    announcement = Announcement("lab-server", 5443, FINGERPRINT)
    datagram = encode_announcement(announcement)
    assert parse_announcement(datagram) == announcement
    assert len(datagram) <= MAX_ANNOUNCEMENT_SIZE


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b"not json",
        _datagram(app="other"),
        _datagram(version=2),
        _datagram(version=True),
        _datagram(version="1"),
        _datagram(name=""),
        _datagram(name="x" * 65),
        _datagram(name="bad\nname"),
        _datagram(name=7),
        _datagram(port=0),
        _datagram(port=65536),
        _datagram(port=True),
        _datagram(port="5443"),
        _datagram(fingerprint="SHA256:AB"),
        _datagram(fingerprint=FINGERPRINT.lower()),
        _datagram(fingerprint=None),
        _datagram(extra=1),
        json.dumps({key: VALID[key] for key in VALID if key != "port"}).encode(),
        _datagram(name="n" * 40) + b" " * MAX_ANNOUNCEMENT_SIZE,
    ],
)
def test_parse_announcement_rejects_invalid(datagram: bytes) -> None:
    with pytest.raises(InvalidAnnouncement):
        parse_announcement(datagram)


def test_encode_announcement_rejects_control_character_in_name() -> None:
    with pytest.raises(InvalidAnnouncement):
        encode_announcement(Announcement("lab\x00", 5443, FINGERPRINT))


def test_encode_announcement_fits_longest_name() -> None:
    longest = Announcement("ü" * 64, 65535, FINGERPRINT)
    assert len(encode_announcement(longest)) <= MAX_ANNOUNCEMENT_SIZE
