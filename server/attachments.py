"""Encrypted attachments on disk: one file per attachment, one table row each.

The server stores attachment ciphertext only; the key travels inside the
end-to-end message payload. An attachment is created with its final size
and the set of devices that may download it, then uploaded in chunks at
increasing offsets. Each chunk is written to ``<id>.bin`` under the
attachments directory and flushed to disk before the row's ``received``
count moves, so after a crash or a dropped connection the uploader
resumes at ``received`` and never sends a byte twice. Reads and writes
touch only the requested chunk, so a transfer never needs the whole file
in memory.

An attachment is deleted once every recipient device has downloaded its
last chunk, or when it is older than the retention period. Its size counts
against the owner's quota from the moment it is created until then.

Every method blocks on file and SQLite I/O: call it from worker threads.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from server.store import Store

logger = logging.getLogger(__name__)

ATTACHMENT_DIR_NAME = "attachments"
FILE_SUFFIX = ".bin"
ID_BYTES = 16


class QuotaExceeded(Exception):
    """A new attachment would take the owner past the quota; ``used`` bytes."""

    def __init__(self, used: int) -> None:
        super().__init__(used)
        self.used = used


class OffsetMismatch(Exception):
    """A chunk does not start at the attachment's ``received`` count."""

    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


@dataclass(frozen=True)
class Attachment:
    """One stored attachment: owner, final ``size`` and bytes ``received``."""

    attachment_id: str
    owner: int
    owner_device: int
    size: int
    received: int
    created: int

    @property
    def complete(self) -> bool:
        return self.received == self.size


class AttachmentStore:
    """The attachments table plus the directory of ciphertext files."""

    def __init__(self, store: Store, directory: Path) -> None:
        self.store = store
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._locks_guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @classmethod
    def open_in(cls, store: Store, data_dir: Path) -> AttachmentStore:
        return cls(store, data_dir / ATTACHMENT_DIR_NAME)

    def path(self, attachment_id: str) -> Path:
        return self.directory / (attachment_id + FILE_SUFFIX)

    def _lock(self, attachment_id: str) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(attachment_id)
            if lock is None:
                lock = self._locks[attachment_id] = threading.Lock()
            return lock

    def stored_bytes(self, owner: int) -> int:
        """Return the total size of ``owner``'s stored attachments."""
        row = self.store.db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM attachments WHERE owner = ?",
            (owner,),
        ).fetchone()
        return int(row[0])

    def create(
        self,
        owner: int,
        owner_device: int,
        size: int,
        recipients: Iterable[int],
        now: int,
        quota: int,
    ) -> str:
        """Reserve an attachment of ``size`` bytes; return its random id.

        Raises :class:`QuotaExceeded` when the owner's stored attachments
        plus ``size`` would exceed ``quota`` bytes.
        """
        attachment_id = secrets.token_hex(ID_BYTES)
        with self.store.transaction() as db:
            used = int(
                db.execute(
                    "SELECT COALESCE(SUM(size), 0) FROM attachments WHERE owner = ?",
                    (owner,),
                ).fetchone()[0]
            )
            if used + size > quota:
                raise QuotaExceeded(used)
            db.execute(
                "INSERT INTO attachments (id, owner, owner_device, size, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (attachment_id, owner, owner_device, size, now),
            )
            db.executemany(
                "INSERT OR IGNORE INTO attachment_recipients (attachment_id, device_id)"
                " VALUES (?, ?)",
                [(attachment_id, device_id) for device_id in recipients],
            )
        self.path(attachment_id).touch(mode=0o600)
        return attachment_id

    def get(self, attachment_id: str) -> Attachment | None:
        row = self.store.db.execute(
            "SELECT id, owner, owner_device, size, received, created"
            " FROM attachments WHERE id = ?",
            (attachment_id,),
        ).fetchone()
        return None if row is None else Attachment(*row)

    def is_recipient(self, attachment_id: str, device_id: int) -> bool:
        row = self.store.db.execute(
            "SELECT 1 FROM attachment_recipients"
            " WHERE attachment_id = ? AND device_id = ?",
            (attachment_id, device_id),
        ).fetchone()
        return row is not None

    def write_chunk(self, attachment_id: str, offset: int, data: bytes) -> int:
        """Store ``data`` at ``offset``; return the new ``received`` count.

        Raises :class:`OffsetMismatch` unless ``offset`` equals the bytes
        received so far, KeyError for an unknown attachment and ValueError
        for data past the attachment's size.
        """
        with self._lock(attachment_id):
            attachment = self.get(attachment_id)
            if attachment is None:
                raise KeyError(attachment_id)
            if offset != attachment.received:
                raise OffsetMismatch(attachment.received)
            end = offset + len(data)
            if end > attachment.size:
                raise ValueError(
                    f"chunk ends at {end}, past the size of {attachment.size} bytes"
                )
            with open(self.path(attachment_id), "r+b") as handle:
                handle.seek(offset)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            with self.store.transaction() as db:
                db.execute(
                    "UPDATE attachments SET received = ? WHERE id = ?",
                    (end, attachment_id),
                )
            return end

    def read_chunk(self, attachment_id: str, offset: int, length: int) -> bytes:
        """Return up to ``length`` bytes from ``offset``; raise OSError if gone."""
        with open(self.path(attachment_id), "rb") as handle:
            handle.seek(offset)
            return handle.read(length)

    def mark_fetched(self, attachment_id: str, device_id: int) -> bool:
        """Record a full download by ``device_id``; delete the attachment
        when it was the last recipient. Return True if it was deleted."""
        with self.store.transaction() as db:
            db.execute(
                "UPDATE attachment_recipients SET fetched = 1"
                " WHERE attachment_id = ? AND device_id = ?",
                (attachment_id, device_id),
            )
            waiting = db.execute(
                "SELECT COUNT(*) FROM attachment_recipients"
                " WHERE attachment_id = ? AND fetched = 0",
                (attachment_id,),
            ).fetchone()[0]
            if waiting:
                return False
            db.execute("DELETE FROM attachments WHERE id = ?", (attachment_id,))
        self._remove_file(attachment_id)
        logger.info("attachment %s fetched by every recipient, deleted", attachment_id)
        return True

    def expire(self, created_before: int) -> int:
        """Delete every attachment created before ``created_before`` (ms)."""
        with self.store.transaction() as db:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM attachments WHERE created < ?", (created_before,)
                )
            ]
            db.executemany(
                "DELETE FROM attachments WHERE id = ?", [(item,) for item in ids]
            )
        for attachment_id in ids:
            self._remove_file(attachment_id)
        if ids:
            logger.info("deleted %d attachments past the retention period", len(ids))
        return len(ids)

    def _remove_file(self, attachment_id: str) -> None:
        with self._locks_guard:
            self._locks.pop(attachment_id, None)
        try:
            self.path(attachment_id).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.error("cannot delete attachment file %s: %s", attachment_id, exc)
