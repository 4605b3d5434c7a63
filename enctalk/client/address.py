"""Server addresses: ``HOST[:PORT]``, with an IPv6 literal in brackets.

``parse_server_address("[::1]:6000")`` returns ``("::1", 6000)``; the port
defaults to :data:`DEFAULT_PORT`. A bare IPv6 literal without brackets is
accepted only when the whole text is one, because otherwise its last
group could not be distinguished from a port.
"""

from __future__ import annotations

import ipaddress
import re

from enctalk.client.errors import INVALID_ADDRESS, ClientError

DEFAULT_PORT = 5443

# RFC 1123 host names: labels of letters, digits and hyphens.
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _invalid(text: str, problem: str) -> ClientError:
    return ClientError(
        INVALID_ADDRESS,
        f"Invalid server address {text!r}: {problem}. Expected HOST[:PORT], "
        "for example lab-server:5443 or [fd00::1]:5443.",
    )


def _parse_port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not port_text.isascii():
        raise _invalid(text, f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise _invalid(text, f"port {port} is not between 1 and 65535")
    return port


def parse_server_address(text: str) -> tuple[str, int]:
    """Parse ``HOST[:PORT]`` into ``(host, port)``; raise ClientError if invalid."""
    value = text.strip()
    if not value:
        raise _invalid(text, "it is empty")

    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise _invalid(text, "the '[' has no matching ']'")
        host = value[1:end]
        rest = value[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _invalid(text, f"{host!r} is not an IPv6 address") from None
        if not rest:
            return host, DEFAULT_PORT
        if not rest.startswith(":"):
            raise _invalid(text, "expected ':' and a port after ']'")
        return host, _parse_port(text, rest[1:])

    if value.count(":") > 1:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise _invalid(text, "put an IPv6 address in brackets") from None
        return value, DEFAULT_PORT

    host, colon, port_text = value.partition(":")
    if not host:
        raise _invalid(text, "the host is missing")
    if not _HOST_NAME.fullmatch(host):
        raise _invalid(text, f"{host!r} is not a valid host name")
    if not colon:
        return host, DEFAULT_PORT
    return host, _parse_port(text, port_text)


def format_server_address(host: str, port: int) -> str:
    """Return ``host:port``, with an IPv6 literal in brackets."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"
