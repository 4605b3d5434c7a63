import pytest

from enctalk.client.address import (
    DEFAULT_PORT,
    format_server_address,
    parse_server_address,
)
from enctalk.client.errors import ClientError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lab-server", ("lab-server", DEFAULT_PORT)),
        ("lab-server:6000", ("lab-server", 6000)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("chat.school.example.", ("chat.school.example.", DEFAULT_PORT)),
        ("[::1]", ("::1", DEFAULT_PORT)),
        ("[fd00::1]:65535", ("fd00::1", 65535)),
        ("fd00::1", ("fd00::1", DEFAULT_PORT)),
        ("  host:7  ", ("host", 7)),
    ],
)
def test_parse_server_address_valid(text, expected):
    assert parse_server_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":5443",
        "host:",
        "host:0",
        "host:65536",
        "host:port",
        "host:٣",
        "[::1",
        "[::1]5443",
        "[not-ipv6]:5443",
        "fd00::1:zz",
        "bad_host:5443",
        "-host",
    ],
)
def test_parse_server_address_invalid(text):
    with pytest.raises(ClientError) as info:
        parse_server_address(text)
    assert info.value.code == "invalid_address"
    assert "HOST[:PORT]" in info.value.message


def test_format_server_address_brackets_ipv6():
    assert format_server_address("::1", 5443) == "[::1]:5443"
    assert format_server_address("lab", 5443) == "lab:5443"
