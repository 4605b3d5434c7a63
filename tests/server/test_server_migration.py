"""Schema upgrades of the server database, from files made by older versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from server import store as store_module
from server.store import DATABASE_FILE_NAME, SCHEMA_VERSION, Store


def _make_version_3(path: Path) -> None:
    """Write a database as a version-3 server left it, with one account."""
    db = sqlite3.connect(path)
    for version in range(3):
        db.executescript(store_module._UPGRADES[version])
    db.execute(
        "INSERT INTO users (username, auth_hash, identity_key, backup, created)"
        " VALUES ('alice', x'01', x'02', x'03', 1000)"
    )
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()


def test_store_upgrades_version_3_to_current(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_FILE_NAME
    _make_version_3(path)

    store = Store(path)
    try:
        version = store.db.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            row[0]
            for row in store.db.execute(
                "SELECT name FROM sqlite_master WHERE type='table'"
            )
        }
        alice = store.user_by_name("alice")
        assert alice is not None
        assert store.class_labels() == []
        assert store.setup_codes() == []
    finally:
        store.close()

    assert SCHEMA_VERSION == 5
    assert version == 5
    assert "setup_codes" in tables
    assert "group_ops" in tables
    assert alice.display_name == "alice"
    assert alice.staff is False
    assert alice.class_label == ""
    assert alice.pending_setup is False
    assert alice.auth_hash == b"\x01"


def test_store_upgraded_database_reopens(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_FILE_NAME
    _make_version_3(path)
    Store(path).close()

    store = Store(path)
    try:
        assert store.set_staff("alice", True) is True
        alice = store.user_by_name("alice")
    finally:
        store.close()
    assert alice is not None
    assert alice.staff is True
