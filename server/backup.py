"""``admin backup DEST`` and ``admin restore SRC`` of a server's data directory.

A backup is a folder. It contains a consistent copy of the SQLite
database, made online with ``sqlite3.Connection.backup`` while the server
may run, the server's certificate and private key, and every attachment
file. ``backup.json`` lists each file with its size and SHA-256. Restoring
the certificate and key keeps the fingerprint, so clients that pinned
the old server connect to the restored one without a warning.

Restore checks every listed file against the manifest first, takes the
data directory's lock (so it fails while a server runs there) and writes
only into an empty or missing data directory. With ``force`` the old
directory is moved aside to ``<data dir>.before-restore-<time>``, never
deleted.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from server.attachments import ATTACHMENT_DIR_NAME
from server.certs import CERT_FILE_NAME, KEY_FILE_NAME
from server.lockfile import LOCK_FILE_NAME, DataDirLock
from server.store import DATABASE_FILE_NAME

MANIFEST_FILE_NAME = "backup.json"
MANIFEST_FORMAT = 1
HASH_CHUNK_BYTES = 1024 * 1024
# Pages copied per step of the online backup; between steps the server
# may write, and SQLite restarts the copy of pages that changed.
BACKUP_PAGES_PER_STEP = 1024


class BackupError(Exception):
    """A backup or restore failed; ``str()`` is the reason and the fix."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _is_empty(directory: Path) -> bool:
    """Return True for a missing directory or one with only a lock file."""
    if not directory.exists():
        return True
    return all(item.name == LOCK_FILE_NAME for item in directory.iterdir())


def _copy_database(source: Path, target: Path) -> None:
    # A read-only URI connection never creates or changes the source.
    source_db = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    target_db = sqlite3.connect(target)
    try:
        source_db.backup(target_db, pages=BACKUP_PAGES_PER_STEP)
        (result,) = target_db.execute("PRAGMA integrity_check").fetchone()
    finally:
        target_db.close()
        source_db.close()
    if result != "ok":
        raise BackupError(f"the copied database failed its integrity check: {result}")


def create_backup(data_dir: Path, destination: Path) -> dict[str, Any]:
    """Copy the data directory's database, certificate, key and attachments.

    ``destination`` must be missing or empty. Returns the manifest.
    """
    database = data_dir / DATABASE_FILE_NAME
    if not database.exists():
        raise BackupError(
            f"no EncTalk database in {data_dir}; pass the server's --data-dir"
        )
    if not _is_empty(destination):
        raise BackupError(f"{destination} is not empty; choose a new folder")
    destination.mkdir(parents=True, exist_ok=True, mode=0o700)
    _copy_database(database, destination / DATABASE_FILE_NAME)

    names = [DATABASE_FILE_NAME]
    for name in (CERT_FILE_NAME, KEY_FILE_NAME):
        if (data_dir / name).exists():
            shutil.copy2(data_dir / name, destination / name)
            os.chmod(destination / name, 0o600)
            names.append(name)
    # NOTE: attachments are copied after the database snapshot, so an
    # upload that finishes in between is in the files but not the database
    # (the server expires it later), and one deleted in between is missing.
    attachments = data_dir / ATTACHMENT_DIR_NAME
    if attachments.is_dir():
        (destination / ATTACHMENT_DIR_NAME).mkdir(mode=0o700, exist_ok=True)
        for item in sorted(attachments.iterdir()):
            if item.is_file():
                relative = f"{ATTACHMENT_DIR_NAME}/{item.name}"
                shutil.copy2(item, destination / relative)
                names.append(relative)

    created = datetime.datetime.now(datetime.timezone.utc)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": {
            name: {
                "size": (destination / name).stat().st_size,
                "sha256": _sha256(destination / name),
            }
            for name in names
        },
    }
    manifest_path = destination / MANIFEST_FILE_NAME
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(source: Path) -> dict[str, Any]:
    """Read ``backup.json`` and check every file it lists; raise BackupError."""
    try:
        manifest = json.loads((source / MANIFEST_FILE_NAME).read_text("utf-8"))
    except FileNotFoundError as exc:
        raise BackupError(
            f"{source} is not an EncTalk backup: {MANIFEST_FILE_NAME} is missing"
        ) from exc
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {source / MANIFEST_FILE_NAME}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BackupError(f"{source / MANIFEST_FILE_NAME} has an unknown format")
    checked: dict[str, Any] = manifest
    files = checked.get("files")
    if checked.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
        raise BackupError(f"{source / MANIFEST_FILE_NAME} has an unknown format")
    if DATABASE_FILE_NAME not in files:
        raise BackupError(f"the backup in {source} has no database")
    for name, entry in files.items():
        path = source / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BackupError(f"the backup lists an unsafe path: {name!r}")
        if not path.is_file():
            raise BackupError(f"the backup is incomplete: {name} is missing")
        if _sha256(path) != entry.get("sha256"):
            raise BackupError(f"the backup is damaged: {name} does not match")
    return checked


def restore_backup(source: Path, data_dir: Path, force: bool) -> Path | None:
    """Restore a backup into ``data_dir``; return where old data was moved, if any.

    Raises BackupError for a damaged backup or a non-empty data directory
    without ``force``, and DataDirLocked while a server runs on it.
    """
    manifest = read_manifest(source)
    moved_to: Path | None = None
    if data_dir.exists():
        lock = DataDirLock(data_dir)
        lock.acquire()
        lock.release()
        if not _is_empty(data_dir):
            if not force:
                raise BackupError(
                    f"{data_dir} is not empty; restore into a new --data-dir, or "
                    "pass --force to move the current data aside"
                )
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            moved_to = data_dir.with_name(f"{data_dir.name}.before-restore-{stamp}")
            data_dir.rename(moved_to)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = DataDirLock(data_dir)
    lock.acquire()
    try:
        for name in manifest["files"]:
            target = data_dir / name
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copy2(source / name, target)
            os.chmod(target, 0o600)
    finally:
        lock.release()
    return moved_to
