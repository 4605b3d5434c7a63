"""admin backup and admin restore, with real server and client processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import (
    PASSWORD_ALICE,
    PASSWORD_BOB,
    ROOT,
    Cli,
    ServerProcess,
)


def _admin(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run_server.py", "--data-dir", str(data_dir), "admin", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_backup_restore_keeps_accounts_queue_and_certificate(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text("bcrypt_cost = 4\n")
    old = ServerProcess(tmp_path / "old-data", config, tmp_path / "old.log")
    old.start()
    try:
        alice = Cli(tmp_path / "alice", old, PASSWORD_ALICE)
        bob = Cli(tmp_path / "bob", old, PASSWORD_BOB)
        assert alice.run("register", "alice").returncode == 0
        assert bob.run("register", "bob").returncode == 0
        assert alice.run("add-contact", "bob").returncode == 0
        sent = alice.run("send", "bob", "queued before the backup")
        assert sent.returncode == 0, sent.stderr

        backup_dir = tmp_path / "backup"
        made = _admin(old.data_dir, "backup", str(backup_dir))
        assert made.returncode == 0, made.stderr
    finally:
        old.stop()

    manifest = json.loads((backup_dir / "backup.json").read_text())
    assert "enctalk.sqlite3" in manifest["files"]
    assert "server-cert.pem" in manifest["files"]
    assert "server-key.pem" in manifest["files"]

    refused = _admin(old.data_dir, "restore", str(backup_dir))
    assert refused.returncode == 1
    assert "not empty" in refused.stderr

    restored_dir = tmp_path / "restored-data"
    restored = _admin(restored_dir, "restore", str(backup_dir))
    assert restored.returncode == 0, restored.stderr

    new = ServerProcess(restored_dir, config, tmp_path / "new.log")
    new.port = old.port
    new.start()
    try:
        assert new.fingerprint == old.fingerprint
        while_running = _admin(restored_dir, "restore", "--force", str(backup_dir))
        assert while_running.returncode == 1
        assert "server is running" in while_running.stderr

        users = _admin(restored_dir, "list-users")
        assert "alice" in users.stdout
        assert "bob" in users.stdout

        bob = Cli(tmp_path / "bob", new, PASSWORD_BOB)
        heard = bob.run("--timeout", "4", "listen", accept_new_server=False)
        assert heard.returncode == 0, heard.stderr
        assert "queued before the backup" in heard.stdout
        assert "fingerprint" not in heard.stderr
    finally:
        new.stop()


def test_restore_force_moves_old_data_aside(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "enctalk.sqlite3").write_bytes(b"")
    backup_dir = tmp_path / "backup"
    empty_db = _admin(source, "backup", str(backup_dir))
    assert empty_db.returncode == 0, empty_db.stderr

    target = tmp_path / "target"
    target.mkdir()
    (target / "old-file").write_text("keep me")
    forced = _admin(target, "restore", "--force", str(backup_dir))
    assert forced.returncode == 0, forced.stderr
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("target.before")]
    assert len(moved) == 1
    assert (moved[0] / "old-file").read_text() == "keep me"
    assert (target / "enctalk.sqlite3").exists()


def test_restore_rejects_damaged_backup(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "enctalk.sqlite3").write_bytes(b"")
    backup_dir = tmp_path / "backup"
    assert _admin(source, "backup", str(backup_dir)).returncode == 0
    with open(backup_dir / "enctalk.sqlite3", "ab") as handle:
        handle.write(b"tampered")
    result = _admin(tmp_path / "target", "restore", str(backup_dir))
    assert result.returncode == 1
    assert "damaged" in result.stderr
    assert not (tmp_path / "target" / "enctalk.sqlite3").exists()
