"""LAN discovery: broadcast an announcement of this server every few seconds.

:class:`Announcer` runs in its own thread, never in the event loop. Each
round it sends one datagram (see :mod:`enctalk.protocol.announcement`) to
the IPv4 broadcast address of every interface the server listens on:

- a specific IPv4 address: from a socket bound to that address, to the
  subnet broadcast address of its interface (from the netmask, on Linux),
  or to 255.255.255.255 where the netmask is unknown;
- all interfaces: the same for each non-loopback IPv4 interface;
- a loopback address, an IPv6 address or a host name: nothing, ever.

A round costs one ``ioctl`` per interface and one ``sendto`` per
interface it announces on.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import sys
import threading

from enctalk.protocol.announcement import Announcement, encode_announcement

logger = logging.getLogger(__name__)

LIMITED_BROADCAST = "255.255.255.255"
# Linux ioctl numbers from <linux/sockios.h>.
SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
# struct ifreq: a 16-byte interface name, then a struct sockaddr_in whose
# IPv4 address starts 4 bytes in.
_IFREQ_SIZE = 40
_IFNAMSIZ = 16
_ADDRESS_OFFSET = _IFNAMSIZ + 4

ALL_INTERFACES = ("", "0.0.0.0")  # noqa: S104 - a comparison, not a bind


def discovery_enabled(mode: str, host: str) -> bool:
    """Return whether ``mode`` ("auto", "on", "off") announces for ``host``.

    "auto" announces for all interfaces or a specific non-loopback IPv4
    address. "on" does the same and also resolves a host name. Nothing is
    ever announced for a loopback host.
    """
    if mode == "off":
        return False
    if host in ALL_INTERFACES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return mode == "on"
    return address.version == 4 and not address.is_loopback


def _ioctl_ipv4(name: str, request: int) -> str | None:
    """Return the IPv4 address an ``ioctl`` reports for interface ``name``."""
    import fcntl

    encoded = name.encode()[: _IFNAMSIZ - 1]
    request_buffer = struct.pack(f"{_IFREQ_SIZE}s", encoded)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            reply = fcntl.ioctl(probe.fileno(), request, request_buffer)
        except OSError:
            return None  # No IPv4 address, or the interface went away.
    return socket.inet_ntoa(reply[_ADDRESS_OFFSET : _ADDRESS_OFFSET + 4])


def interface_networks() -> list[ipaddress.IPv4Interface]:
    """Return the primary IPv4 address and netmask of every interface (Linux)."""
    if not sys.platform.startswith("linux"):
        return []
    networks = []
    for _index, name in socket.if_nameindex():
        address = _ioctl_ipv4(name, SIOCGIFADDR)
        netmask = _ioctl_ipv4(name, SIOCGIFNETMASK)
        if address is not None and netmask is not None:
            networks.append(ipaddress.IPv4Interface(f"{address}/{netmask}"))
    return networks


def _broadcast_address(network: ipaddress.IPv4Interface) -> str:
    if network.network.prefixlen >= 31:
        return LIMITED_BROADCAST  # A /31 or /32 has no subnet broadcast address.
    return str(network.network.broadcast_address)


def broadcast_targets(host: str) -> list[tuple[str, str]]:
    """Return ``(source address, broadcast address)`` pairs to announce on.

    Raises OSError when ``host`` is a name that does not resolve.
    """
    if host not in ALL_INTERFACES:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = ipaddress.ip_address(socket.gethostbyname(host))
        if address.version != 4 or address.is_loopback:
            return []
        for network in interface_networks():
            if network.ip == address:
                return [(str(address), _broadcast_address(network))]
        return [(str(address), LIMITED_BROADCAST)]
    networks = [item for item in interface_networks() if not item.ip.is_loopback]
    if not networks and not sys.platform.startswith("linux"):
        # NOTE: without the Linux ioctls the interfaces are unknown, so the
        # operating system picks the one interface that gets the datagram.
        return [("0.0.0.0", LIMITED_BROADCAST)]  # noqa: S104 - every interface
    return [(str(item.ip), _broadcast_address(item)) for item in networks]


class Announcer:
    """A daemon thread that broadcasts an announcement every ``interval`` seconds.

    :meth:`start` returns at once. :meth:`stop` blocks until the thread
    ends, at most one ``sendto`` per interface after the request.
    """

    def __init__(
        self,
        host: str,
        announcement: Announcement,
        port: int,
        interval: float,
    ) -> None:
        self.host = host
        self.port = port
        self.interval = interval
        self.datagram = encode_announcement(announcement)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    def start(self) -> None:
        """Start the announcing thread."""
        self._thread = threading.Thread(
            target=self._run, name="enctalk-discovery", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop announcing and wait for the thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        logger.info(
            "announcing the server on UDP port %d every %g s", self.port, self.interval
        )
        while not self._stopping.is_set():
            self.announce_once()
            self._stopping.wait(self.interval)
        logger.info("stopped announcing the server")

    def announce_once(self) -> int:
        """Send one announcement on every target; return how many were sent."""
        try:
            targets = broadcast_targets(self.host)
        except OSError as exc:
            self._log_failure(f"failed, host {self.host!r} not found: {exc}")
            return 0
        sent = 0
        for source, destination in targets:
            try:
                self._send(source, destination)
            except OSError as exc:
                self._log_failure(f"from {source} to {destination} failed: {exc}")
                continue
            sent += 1
        return sent

    def _send(self, source: str, destination: str) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sender.bind((source, 0))
            sender.sendto(self.datagram, (destination, self.port))

    def _log_failure(self, text: str) -> None:
        # Log the first failure and then every 100th, because a missing
        # network would otherwise write a line every interval.
        self._failures += 1
        if self._failures % 100 == 1:
            logger.warning("announcement %s (%d failures so far)", text, self._failures)
