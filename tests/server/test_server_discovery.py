"""Which listen hosts the server announces on, and the discovery settings.

No datagram is sent here; the namespace tests send them.
"""

from __future__ import annotations

import ipaddress

import pytest

from server import discovery
from server.config import ConfigError, ServerConfig, build_config
from server.discovery import broadcast_targets, discovery_enabled


@pytest.mark.parametrize(
    ("mode", "host", "expected"),
    [
        ("auto", "", True),
        ("auto", "0.0.0.0", True),  # noqa: S104 - not a bind
        ("auto", "10.1.2.3", True),
        ("auto", "127.0.0.1", False),
        ("auto", "127.3.4.5", False),
        ("auto", "::1", False),
        ("auto", "fd00::1", False),
        ("auto", "lab-server", False),
        ("on", "lab-server", True),
        ("on", "127.0.0.1", False),
        ("on", "::1", False),
        ("off", "", False),
        ("off", "10.1.2.3", False),
    ],
)
def test_discovery_enabled_by_mode_and_host(mode: str, host: str, expected: bool):
    assert discovery_enabled(mode, host) is expected


def test_broadcast_targets_use_interface_netmask(monkeypatch) -> None:
    networks = [
        ipaddress.IPv4Interface("127.0.0.1/8"),
        ipaddress.IPv4Interface("10.20.30.40/22"),
        ipaddress.IPv4Interface("192.168.5.9/32"),
    ]
    monkeypatch.setattr(discovery, "interface_networks", lambda: networks)
    assert broadcast_targets("10.20.30.40") == [("10.20.30.40", "10.20.31.255")]
    assert broadcast_targets("") == [
        ("10.20.30.40", "10.20.31.255"),
        ("192.168.5.9", "255.255.255.255"),
    ]


def test_broadcast_targets_fall_back_to_limited_broadcast(monkeypatch) -> None:
    monkeypatch.setattr(discovery, "interface_networks", lambda: [])
    assert broadcast_targets("10.9.8.7") == [("10.9.8.7", "255.255.255.255")]


def test_broadcast_targets_empty_for_loopback(monkeypatch) -> None:
    monkeypatch.setattr(discovery, "interface_networks", lambda: [])
    assert broadcast_targets("127.0.0.1") == []
    assert broadcast_targets("::1") == []


def test_interface_networks_include_loopback() -> None:
    loopback = ipaddress.IPv4Interface("127.0.0.1/8")
    assert loopback in discovery.interface_networks()


def test_config_discovery_defaults() -> None:
    config = ServerConfig()
    assert config.discovery == "auto"
    assert config.discovery_port == 5444
    assert config.discovery_interval == 5.0
    assert config.server_name == ""


@pytest.mark.parametrize(
    "overrides",
    [
        {"discovery": "yes"},
        {"discovery_port": 0},
        {"discovery_port": 70000},
        {"discovery_interval": 0.0},
        {"server_name": "x" * 65},
        {"server_name": "tab\there"},
    ],
)
def test_config_rejects_invalid_discovery_setting(overrides) -> None:
    with pytest.raises(ConfigError):
        build_config(None, overrides)
