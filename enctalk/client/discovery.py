"""Find EncTalk servers on the LAN by listening for their UDP announcements.

:func:`listen_for_servers` binds a UDP socket, collects valid
announcements (see :mod:`enctalk.protocol.announcement`) for a few
seconds, and returns one :class:`DiscoveredServer` per (address, port).
The address is the datagram's source address. Anyone on the LAN can send
an announcement, so the fingerprint it carries is only a hint: connecting
still goes through the usual first-connection certificate check.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from enctalk.client.address import format_server_address
from enctalk.protocol.announcement import (
    DEFAULT_DISCOVERY_PORT,
    MAX_ANNOUNCEMENT_SIZE,
    InvalidAnnouncement,
    parse_announcement,
)

logger = logging.getLogger(__name__)

DEFAULT_LISTEN_ADDRESS = "0.0.0.0"  # noqa: S104 - broadcasts reach only a wildcard
DEFAULT_LISTEN_SECONDS = 3.0


@dataclass(frozen=True)
class DiscoveredServer:
    """One server heard on the LAN; ``fingerprint`` is unverified."""

    address: str
    port: int
    name: str
    fingerprint: str

    @property
    def server_address(self) -> str:
        """The ``HOST:PORT`` text to connect to."""
        return format_server_address(self.address, self.port)


def listen_for_servers(
    seconds: float = DEFAULT_LISTEN_SECONDS,
    address: str = DEFAULT_LISTEN_ADDRESS,
    port: int = DEFAULT_DISCOVERY_PORT,
    on_found: Callable[[DiscoveredServer], None] | None = None,
) -> list[DiscoveredServer]:
    """Listen on ``address:port`` for ``seconds``; return the servers heard.

    Blocks for ``seconds``. ``on_found`` is called, on this thread, the
    first time each (address, port) is heard. A later announcement from
    the same (address, port) replaces the name and fingerprint. Raises
    OSError when the socket cannot be bound.

    NOTE: on Linux a socket bound to a unicast address receives no
    broadcasts, so ``address`` other than 0.0.0.0 (or a broadcast
    address) hears only datagrams sent to it directly.
    """
    found: dict[tuple[str, int], DiscoveredServer] = {}
    ignored = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            # Lets the window and a discover command listen at the same time.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((address, port))
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            listener.settimeout(remaining)
            try:
                datagram, (source, _source_port) = listener.recvfrom(
                    MAX_ANNOUNCEMENT_SIZE + 1
                )
            except TimeoutError:
                break
            try:
                announcement = parse_announcement(datagram)
            except InvalidAnnouncement as exc:
                ignored += 1
                logger.debug("ignored a datagram from %s: %s", source, exc)
                continue
            key = (source, announcement.port)
            server = DiscoveredServer(
                source, announcement.port, announcement.name, announcement.fingerprint
            )
            is_new = key not in found
            found[key] = server
            if is_new and on_found is not None:
                on_found(server)
    if ignored:
        logger.info("ignored %d datagrams that were not announcements", ignored)
    return sorted(found.values(), key=lambda item: (item.name, item.address, item.port))
