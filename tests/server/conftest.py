"""Fixtures: a real server on 127.0.0.1 with SQLite on disk in tmp_path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The repository root, so that "server" and "enctalk" import without an
# installed package, and this directory for the test helpers.
HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
for path in (REPO_ROOT, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from server_wire import (  # noqa: E402
    DEFAULT_PASSWORD,
    WireClient,
    auth_key,
    device_fields,
    identity_key,
)

from server.app import Server  # noqa: E402
from server.config import ServerConfig  # noqa: E402


def make_config(data_dir: Path, **overrides: Any) -> ServerConfig:
    """Return a config for tests: loopback, bcrypt cost 4, short timeouts."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": data_dir,
        "bcrypt_cost": 4,
        "handshake_timeout": 1.0,
        "idle_timeout": 10.0,
        "worker_threads": 2,
        "revocation_check_interval": 0.3,
    }
    settings.update(overrides)
    return ServerConfig(**settings)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def server(data_dir: Path) -> Iterator[Server]:
    instance = Server(make_config(data_dir))
    instance.start()
    yield instance
    instance.stop()


class Clients:
    """Opens clients to one server and closes them all at the end of a test."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.opened: list[WireClient] = []

    def connect(self, **options: Any) -> WireClient:
        client = WireClient(self.port, **options)
        self.opened.append(client)
        return client

    def register(self, name: str, password: str = DEFAULT_PASSWORD) -> WireClient:
        """Connect and register ``name``; the client is logged in, no device."""
        client = self.connect()
        reply = client.call(
            "register",
            username=name,
            auth_key=auth_key(name, password),
            identity_key=identity_key(),
            backup=b"backup of " + name.encode(),
        )
        client.token = reply["token"]  # type: ignore[attr-defined]
        return client

    def with_device(self, name: str, prekeys: int = 5) -> WireClient:
        """Register ``name`` and a device, then sync; return the logged-in client.

        The sync lets the server push new queue items live.
        """
        client = self.register(name)
        reply = client.call("register_device", **device_fields(prekeys))
        client.device_id = reply["device_id"]  # type: ignore[attr-defined]
        client.call("sync", after=0)
        return client

    def login(
        self, name: str, password: str = DEFAULT_PASSWORD, **fields: Any
    ) -> WireClient:
        client = self.connect()
        reply = client.call(
            "login", username=name, auth_key=auth_key(name, password), **fields
        )
        client.token = reply["token"]  # type: ignore[attr-defined]
        client.device_id = reply["device_id"]  # type: ignore[attr-defined]
        return client

    def close_all(self) -> None:
        for client in self.opened:
            client.close()


@pytest.fixture
def clients(server: Server) -> Iterator[Clients]:
    opened = Clients(server.port)
    yield opened
    opened.close_all()
