"""Attachments against a live server: limits, access, resume and deletion."""

from __future__ import annotations

import base64
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Clients, make_config
from server_wire import WireClient

from server import store as store_module
from server.app import Server
from server.attachments import ATTACHMENT_DIR_NAME
from server.store import DATABASE_FILE_NAME, SCHEMA_VERSION, Store

CHUNK = 64 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _pair(clients: Clients) -> tuple[WireClient, WireClient]:
    alice = clients.with_device("alice")
    bob = clients.with_device("bob")
    alice.call("add_contact", username="bob")
    bob.wait_push("contact_added")
    return alice, bob


def _upload(client: WireClient, data: bytes, to: str = "bob") -> str:
    reply = client.call("attachment_create", to=to, size=len(data))
    attachment_id = str(reply["attachment_id"])
    for offset in range(0, len(data), CHUNK):
        client.call(
            "attachment_upload",
            attachment_id=attachment_id,
            offset=offset,
            data=_b64(data[offset : offset + CHUNK]),
        )
    return attachment_id


def _download(client: WireClient, attachment_id: str, size: int) -> bytes:
    parts = []
    for offset in range(0, size, CHUNK):
        reply = client.call(
            "attachment_download",
            attachment_id=attachment_id,
            offset=offset,
            length=CHUNK,
        )
        parts.append(base64.urlsafe_b64decode(reply["data"]))
    return b"".join(parts)


def _attachment_file(data_dir: Path, attachment_id: str) -> Path:
    return data_dir / ATTACHMENT_DIR_NAME / f"{attachment_id}.bin"


@pytest.fixture
def limited_server(data_dir: Path) -> Iterator[Server]:
    config = make_config(
        data_dir, max_attachment_size=300_000, attachment_quota=500_000
    )
    instance = Server(config)
    instance.start()
    yield instance
    instance.stop()


def test_attachment_round_trip_and_delete(clients: Clients, data_dir: Path) -> None:
    alice, bob = _pair(clients)
    data = os.urandom(3 * CHUNK + 123)
    attachment_id = _upload(alice, data)

    status = bob.call("attachment_status", attachment_id=attachment_id)
    assert status["complete"] is True
    assert status["size"] == len(data)
    assert _attachment_file(data_dir, attachment_id).stat().st_size == len(data)

    assert _download(bob, attachment_id, len(data)) == data
    assert not _attachment_file(data_dir, attachment_id).exists()
    gone = bob.request("attachment_status", attachment_id=attachment_id)
    assert gone["code"] == "attachment_not_found"


def test_attachment_kept_until_every_device(clients: Clients, data_dir: Path) -> None:
    alice, bob = _pair(clients)
    bob_laptop = clients.login("bob")
    bob_laptop.call("register_device", **_device_fields(first_id=500))
    data = os.urandom(1000)
    attachment_id = _upload(alice, data)

    assert _download(bob, attachment_id, len(data)) == data
    assert _attachment_file(data_dir, attachment_id).exists()
    assert _download(bob_laptop, attachment_id, len(data)) == data
    assert not _attachment_file(data_dir, attachment_id).exists()


def _device_fields(first_id: int) -> dict[str, object]:
    from server_wire import device_fields

    return device_fields(3, first_id=first_id)


def test_attachment_upload_resumes(clients: Clients, server: Server) -> None:
    alice, bob = _pair(clients)
    data = os.urandom(3 * CHUNK)
    attachment_id = alice.call("attachment_create", to="bob", size=len(data))[
        "attachment_id"
    ]
    alice.call(
        "attachment_upload",
        attachment_id=attachment_id,
        offset=0,
        data=_b64(data[:CHUNK]),
    )
    alice.close()

    again = clients.login("alice", device_id=alice.device_id)  # type: ignore[attr-defined]
    status = again.call("attachment_status", attachment_id=attachment_id)
    assert status["received"] == CHUNK
    assert status["complete"] is False
    wrong = again.request(
        "attachment_upload", attachment_id=attachment_id, offset=0, data=_b64(data[:10])
    )
    assert wrong["code"] == "invalid_offset"
    assert wrong["details"]["received"] == CHUNK
    for offset in range(CHUNK, len(data), CHUNK):
        again.call(
            "attachment_upload",
            attachment_id=attachment_id,
            offset=offset,
            data=_b64(data[offset : offset + CHUNK]),
        )
    assert _download(bob, attachment_id, len(data)) == data


def test_attachment_incomplete_not_downloadable(clients: Clients) -> None:
    alice, bob = _pair(clients)
    attachment_id = alice.call("attachment_create", to="bob", size=100)["attachment_id"]
    reply = bob.request(
        "attachment_download", attachment_id=attachment_id, offset=0, length=100
    )
    assert reply["code"] == "invalid_offset"


def test_attachment_download_unauthorized(clients: Clients) -> None:
    alice, _ = _pair(clients)
    mallory = clients.with_device("mallory")
    attachment_id = _upload(alice, b"secret ciphertext")

    for kind, extra in (
        ("attachment_status", {}),
        ("attachment_download", {"offset": 0, "length": 10}),
    ):
        reply = mallory.request(kind, attachment_id=attachment_id, **extra)
        assert reply["code"] == "attachment_not_found", kind
    upload = mallory.request(
        "attachment_upload", attachment_id=attachment_id, offset=0, data=_b64(b"x")
    )
    assert upload["code"] == "attachment_not_found"


def test_attachment_create_needs_contact(clients: Clients) -> None:
    alice, _ = _pair(clients)
    clients.with_device("carol")
    reply = alice.request("attachment_create", to="carol", size=10)
    assert reply["code"] == "not_a_contact"


def test_attachment_size_limit(clients: Clients, limited_server: Server) -> None:
    limited = Clients(limited_server.port)
    try:
        alice, _ = _pair(limited)
        reply = alice.request("attachment_create", to="bob", size=300_001)
        assert reply["code"] == "attachment_too_large"
        assert reply["details"]["max_attachment_size"] == 300_000
        assert "300000" in reply["message"]
    finally:
        limited.close_all()


def test_attachment_quota(limited_server: Server) -> None:
    limited = Clients(limited_server.port)
    try:
        alice, bob = _pair(limited)
        first = alice.call("attachment_create", to="bob", size=300_000)
        alice.call("attachment_create", to="bob", size=200_000)
        over = alice.request("attachment_create", to="bob", size=1)
        assert over["code"] == "quota_exceeded"
        assert over["details"] == {"used": 500_000, "quota": 500_000}

        # Fetching an attachment frees its share of the quota.
        attachment_id = first["attachment_id"]
        data = os.urandom(300_000)
        for offset in range(0, len(data), CHUNK):
            alice.call(
                "attachment_upload",
                attachment_id=attachment_id,
                offset=offset,
                data=_b64(data[offset : offset + CHUNK]),
            )
        assert _download(bob, attachment_id, len(data)) == data
        alice.call("attachment_create", to="bob", size=1)
    finally:
        limited.close_all()


def test_attachment_retention_expiry(data_dir: Path) -> None:
    # 0.5 s of retention, and no throttling of the expiry check.
    config = make_config(data_dir, attachment_retention_days=0.5 / 86_400)
    instance = Server(config)
    instance.start()
    limited = Clients(instance.port)
    try:
        import server.handlers.attachments as handlers

        handlers.EXPIRY_CHECK_INTERVAL = 0.0
        alice, bob = _pair(limited)
        attachment_id = _upload(alice, b"old ciphertext")
        assert _attachment_file(data_dir, attachment_id).exists()
        time.sleep(0.7)
        reply = bob.request("attachment_status", attachment_id=attachment_id)
        assert reply["code"] == "attachment_not_found"
        assert not _attachment_file(data_dir, attachment_id).exists()
    finally:
        handlers.EXPIRY_CHECK_INTERVAL = 60.0
        limited.close_all()
        instance.stop()


def test_store_upgrades_version_1(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_FILE_NAME
    db = sqlite3.connect(path)
    db.executescript(store_module._UPGRADES[0])
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()

    upgraded = Store(path)
    tables = {
        row[0]
        for row in upgraded.db.execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    version = upgraded.db.execute("PRAGMA user_version").fetchone()[0]
    upgraded.close()
    assert "attachments" in tables
    assert "attachment_recipients" in tables
    assert version == SCHEMA_VERSION
