"""LAN announcements: the UDP datagram a server broadcasts to be found.

One datagram is one UTF-8 JSON object of at most
:data:`MAX_ANNOUNCEMENT_SIZE` bytes with exactly these keys::

    {"app": "enctalk", "version": 1, "name": "lab-server",
     "port": 5443, "fingerprint": "SHA256:1E:A4:...:50"}

The server's address is not in the datagram: a receiver takes the
datagram's source address. Anyone on the LAN can send such a datagram, so
the fingerprint is only a hint and the client still checks the
certificate at the first connection. :func:`parse_announcement` raises
:class:`InvalidAnnouncement` for anything else, so a receiver can drop
foreign or damaged datagrams without looking at them further.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

ANNOUNCEMENT_APP = "enctalk"
ANNOUNCEMENT_VERSION = 1
DEFAULT_DISCOVERY_PORT = 5444
MAX_ANNOUNCEMENT_SIZE = 512
MAX_SERVER_NAME_LENGTH = 64

_KEYS = frozenset({"app", "version", "name", "port", "fingerprint"})
# A SHA-256 digest as 32 upper-case hex pairs separated by colons.
_FINGERPRINT = re.compile(r"SHA256:[0-9A-F]{2}(:[0-9A-F]{2}){31}")


class InvalidAnnouncement(ValueError):
    """A datagram is not a valid EncTalk announcement; the message states why."""


@dataclass(frozen=True)
class Announcement:
    """The fields of one announcement, as sent by the server."""

    name: str
    port: int
    fingerprint: str


def _name_problem(name: str) -> str | None:
    if not 1 <= len(name) <= MAX_SERVER_NAME_LENGTH:
        return f"name must have 1 to {MAX_SERVER_NAME_LENGTH} characters"
    if not name.isprintable():
        return "name contains a control character"
    return None


def encode_announcement(announcement: Announcement) -> bytes:
    """Return the datagram for ``announcement``; raise InvalidAnnouncement."""
    problem = _name_problem(announcement.name)
    if problem is not None:
        raise InvalidAnnouncement(problem)
    if not 1 <= announcement.port <= 65535:
        raise InvalidAnnouncement(f"port {announcement.port} is out of range")
    if not _FINGERPRINT.fullmatch(announcement.fingerprint):
        raise InvalidAnnouncement("fingerprint is not SHA256: and 32 hex pairs")
    body = {
        "app": ANNOUNCEMENT_APP,
        "version": ANNOUNCEMENT_VERSION,
        "name": announcement.name,
        "port": announcement.port,
        "fingerprint": announcement.fingerprint,
    }
    datagram = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    if len(datagram) > MAX_ANNOUNCEMENT_SIZE:
        raise InvalidAnnouncement(f"announcement is {len(datagram)} bytes long")
    return datagram


def parse_announcement(datagram: bytes) -> Announcement:
    """Check ``datagram`` strictly and return its fields."""
    if len(datagram) > MAX_ANNOUNCEMENT_SIZE:
        raise InvalidAnnouncement(f"datagram is {len(datagram)} bytes long")
    try:
        body = json.loads(datagram.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidAnnouncement(f"datagram is not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict) or set(body) != _KEYS:
        raise InvalidAnnouncement("datagram is not an object with the expected keys")
    if body["app"] != ANNOUNCEMENT_APP:
        raise InvalidAnnouncement("app is not enctalk")
    version = body["version"]
    if type(version) is not int or version != ANNOUNCEMENT_VERSION:
        raise InvalidAnnouncement(f"version {version!r} is not supported")
    name, port, fingerprint = body["name"], body["port"], body["fingerprint"]
    if not isinstance(name, str):
        raise InvalidAnnouncement("name is not a string")
    problem = _name_problem(name)
    if problem is not None:
        raise InvalidAnnouncement(problem)
    if type(port) is not int or not 1 <= port <= 65535:
        raise InvalidAnnouncement(f"port {port!r} is not between 1 and 65535")
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise InvalidAnnouncement("fingerprint is not SHA256: and 32 hex pairs")
    return Announcement(name, port, fingerprint)
