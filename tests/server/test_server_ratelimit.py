"""Per-address limits: registrations, login failures and connections."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import Clients, make_config
from server_wire import WireClient, auth_key, identity_key, random_key

from server.app import Server
from server.config import ConfigError, build_config
from server.main import build_parser
from server.ratelimit import MAX_TRACKED_ADDRESSES, AddressBuckets

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs 127.0.0.2 on loopback"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _register(client: WireClient, name: str) -> dict[str, object]:
    return client.request(
        "register",
        username=name,
        auth_key=auth_key(name),
        identity_key=identity_key(),
        backup=b"backup",
    )


def test_address_buckets_burst_then_rate() -> None:
    clock = FakeClock()
    buckets = AddressBuckets(burst=3, rate=0.5, clock=clock)
    assert [buckets.take("10.0.0.1") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("10.0.0.1") == 2
    assert buckets.take("10.0.0.2") == 0

    clock.now += 1.0
    assert buckets.take("10.0.0.1") == 1
    clock.now += 1.0
    assert buckets.take("10.0.0.1") == 0
    assert buckets.take("10.0.0.1") == 2


def test_address_buckets_forget_full_addresses() -> None:
    clock = FakeClock()
    buckets = AddressBuckets(burst=2, rate=1.0, clock=clock)
    for index in range(MAX_TRACKED_ADDRESSES + 1):
        buckets.take(f"10.{index // 65536}.{index // 256 % 256}.{index % 256}")
    clock.now += 10.0
    buckets.take("192.0.2.1")
    assert len(buckets._buckets) == 1


def test_register_limited_per_address(data_dir: Path) -> None:
    config = make_config(data_dir, register_burst=2, register_rate=60.0)
    with Server(config) as server:
        client = WireClient(server.port)
        assert _register(client, "alice")["type"] == "ok"
        assert _register(client, "bobby")["type"] == "ok"
        limited = _register(client, "carol")
        assert limited["code"] == "rate_limited"
        assert limited["retry_after"] == 1
        assert client.call("ping")["type"] == "ok"
        client.close()


@linux_only
def test_register_limit_spares_other_address(data_dir: Path) -> None:
    config = make_config(data_dir, register_burst=1, register_rate=1.0)
    with Server(config) as server:
        first = WireClient(server.port)
        assert _register(first, "alice")["type"] == "ok"
        assert _register(first, "bobby")["code"] == "rate_limited"
        other = WireClient(server.port, source="127.0.0.2")
        assert _register(other, "carol")["type"] == "ok"
        first.close()
        other.close()


def test_address_throttle_off_for_nat(data_dir: Path) -> None:
    # A lab behind a NAT: one pupil's typos must not lock out the others.
    config = make_config(data_dir, address_free_failures=0, login_free_failures=2)
    with Server(config) as server:
        clients = Clients(server.port)
        try:
            clients.register("alice")
            clients.register("bobby")
            typist = clients.connect()
            for _ in range(2):
                reply = typist.request("login", username="bobby", auth_key=random_key())
                assert reply["code"] == "invalid_credentials"
            locked = typist.request("login", username="bobby", auth_key=random_key())
            assert locked["code"] == "rate_limited"

            for name in ("nobody1", "nobody2", "nobody3", "nobody4"):
                reply = typist.request("login", username=name, auth_key=random_key())
                assert reply["code"] == "invalid_credentials"
            alice = clients.connect()
            assert alice.call("login", username="alice", auth_key=auth_key("alice"))
        finally:
            clients.close_all()


def test_address_free_failures_setting(data_dir: Path) -> None:
    config = make_config(data_dir, address_free_failures=5)
    with Server(config) as server:
        clients = Clients(server.port)
        try:
            clients.register("alice")
            client = clients.connect()
            for index in range(5):
                reply = client.request(
                    "login", username=f"nobody{index}", auth_key=random_key()
                )
                assert reply["code"] == "invalid_credentials"
            limited = client.request(
                "login", username="alice", auth_key=auth_key("alice")
            )
            assert limited["code"] == "rate_limited"
            assert limited["retry_after"] == 1
        finally:
            clients.close_all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("address_free_failures = -1\n", "address_free_failures must be between"),
        ("login_free_failures = 0\n", "login_free_failures must be between"),
        ("register_rate = 0\n", "register_rate must be greater than 0"),
        ("register_burst = 0\n", "register_burst must be between"),
        ("login_max_delay = 0\n", "login_max_delay must be greater than 0"),
    ],
)
def test_limit_settings_are_checked(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_config(path)


def test_help_says_what_to_set_behind_nat() -> None:
    text = build_parser().format_help()
    for flag in (
        "--max-connections-per-address",
        "--register-burst",
        "--address-free-failures",
    ):
        assert flag in text
    assert text.count("NAT") >= 3
