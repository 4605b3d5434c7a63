"""The local message history: SQLite with every row sealed separately.

The history grows with every message, so it lives outside the vault,
which is rewritten whole on each save. Each row's content is JSON sealed
with ``seal_record`` under the history key, a random 32-byte key stored in
the vault. The associated data is the row's conversation index, so a row
cannot be moved to another conversation unnoticed. Two HMAC-SHA256 values
under keys derived from the history key index the rows: the conversation
(the peer's canonical username) and the message id, so lookups and
deduplication need no plaintext on disk.

Rows are ordered by ``sort_key``. A message the server has stamped gets
twice its ``server_seq``, and a local notice an odd value just after the
newest stamped message. An outgoing message the server has not
acknowledged yet has NULL, so it comes last, in insertion order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enctalk.client.errors import ClientError, profile_damaged, save_failed
from enctalk.crypto.aead import open_record, seal_record
from enctalk.crypto.errors import DecryptionError
from enctalk.crypto.kdf import hkdf

HISTORY_KEY_SIZE = 32
_RECORD_INFO = b"EncTalk_history_record_v1"
_CONVERSATION_INDEX_INFO = b"EncTalk_history_conversation_index_v1"
_MESSAGE_INDEX_INFO = b"EncTalk_history_message_index_v1"
_ZERO_SALT = bytes(32)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    row_id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation BLOB NOT NULL,
    message_index BLOB UNIQUE,
    sort_key INTEGER,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_conversation
    ON history (conversation, sort_key);
"""

# Delivery states of an outgoing message, in the order they are reached,
# except that "failed" can follow "sending".
SENDING = "sending"
SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a conversation, as the front ends show it.

    ``kind`` is ``"text"`` or ``"audio"`` for a message and ``"notice"``
    for a line the client wrote itself (a key change, a message that could
    not be decrypted). ``direction`` is ``"in"`` or ``"out"``; ``sender`` is the
    author's username. Times are milliseconds since the epoch; ``sent_at``
    is the author's clock and ``server_time`` the server's. ``state`` is
    the delivery state of an outgoing message, else ``None``.
    ``attachment`` is the reference of an audio message, key included
    (see ``enctalk.client.attachments``), else ``None``.
    """

    conversation: str
    kind: str
    direction: str
    sender: str
    body: str
    message_id: str | None
    server_seq: int | None
    server_time: int | None
    sent_at: int | None
    state: str | None
    attachment: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation": self.conversation,
            "kind": self.kind,
            "direction": self.direction,
            "sender": self.sender,
            "body": self.body,
            "message_id": self.message_id,
            "server_seq": self.server_seq,
            "server_time": self.server_time,
            "sent_at": self.sent_at,
            "state": self.state,
            "attachment": self.attachment,
        }


def _entry_from_dict(data: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        conversation=str(data["conversation"]),
        kind=str(data["kind"]),
        direction=str(data["direction"]),
        sender=str(data["sender"]),
        body=str(data["body"]),
        message_id=data.get("message_id"),
        server_seq=data.get("server_seq"),
        server_time=data.get("server_time"),
        sent_at=data.get("sent_at"),
        state=data.get("state"),
        attachment=data.get("attachment"),
    )


class HistoryStore:
    """Sealed, indexed message history in one SQLite file.

    Methods are safe to call from any thread; a lock serializes them on
    one connection. Every write commits before it returns, and a write
    that fails raises ClientError ``save_failed`` with nothing changed.
    Any call on a damaged file raises ClientError ``profile_invalid``.
    """

    def __init__(self, path: Path, history_key: bytes) -> None:
        if len(history_key) != HISTORY_KEY_SIZE:
            raise ValueError(f"history_key must be {HISTORY_KEY_SIZE} bytes")
        self._key = history_key
        self._conversation_key = hkdf(
            history_key, _ZERO_SALT, _CONVERSATION_INDEX_INFO, 32
        )
        self._message_key = hkdf(history_key, _ZERO_SALT, _MESSAGE_INDEX_INFO, 32)
        self._path = path
        self._lock = threading.Lock()
        new_file = not path.exists()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        if new_file and os.name == "posix":
            os.chmod(path, 0o600)
        try:
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.executescript(_SCHEMA)
            self._db.commit()
        except sqlite3.Error as exc:
            self._db.close()
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> ClientError:
        """Return the ClientError for a failed SQLite call on the history file.

        SQLite raises the base DatabaseError, not a subclass, for a file
        that is not a database or whose pages are malformed.
        """
        if type(exc) is sqlite3.DatabaseError:
            return profile_damaged(
                "history file",
                self._path,
                str(exc),
                "Move it away to start with an empty history, or restore it "
                "from a backup.",
            )
        return save_failed(self._path, exc)

    def _fetch(self, query: str, params: tuple[Any, ...]) -> list[Any]:
        """Run a read query; the caller holds the lock."""
        try:
            return self._db.execute(query, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _conversation_index(self, conversation: str) -> bytes:
        return hmac.new(
            self._conversation_key, conversation.encode("utf-8"), hashlib.sha256
        ).digest()

    def _message_index(self, message_id: str) -> bytes:
        return hmac.new(
            self._message_key, message_id.encode("utf-8"), hashlib.sha256
        ).digest()

    def _seal(self, conversation_index: bytes, entry: HistoryEntry) -> bytes:
        plaintext = json.dumps(entry.to_dict(), separators=(",", ":")).encode()
        return seal_record(self._key, plaintext, conversation_index, _RECORD_INFO)

    def _open(self, conversation_index: bytes, record: bytes) -> HistoryEntry | None:
        try:
            plaintext = open_record(self._key, record, conversation_index, _RECORD_INFO)
        except DecryptionError:
            return None
        return _entry_from_dict(json.loads(plaintext))

    @staticmethod
    def _sort_key(entry: HistoryEntry) -> int | None:
        return None if entry.server_seq is None else 2 * entry.server_seq

    def add(self, entry: HistoryEntry) -> bool:
        """Store ``entry``; return False if its message id is already stored."""
        conversation = self._conversation_index(entry.conversation)
        message_index = (
            None if entry.message_id is None else self._message_index(entry.message_id)
        )
        with self._lock:
            sort_key: int | None
            if entry.kind == "notice":
                sort_key = self._notice_sort_key(conversation)
            else:
                sort_key = self._sort_key(entry)
            try:
                self._db.execute(
                    "INSERT INTO history (conversation, message_index, sort_key,"
                    " record) VALUES (?, ?, ?, ?)",
                    (
                        conversation,
                        message_index,
                        sort_key,
                        self._seal(conversation, entry),
                    ),
                )
            except sqlite3.IntegrityError:
                return False
            except sqlite3.Error as exc:
                self._db.rollback()
                raise self._error(exc) from exc
            self._commit()
        return True

    def _commit(self) -> None:
        try:
            self._db.commit()
        except sqlite3.Error as exc:
            self._db.rollback()
            raise self._error(exc) from exc

    def _notice_sort_key(self, conversation: bytes) -> int:
        rows = self._fetch(
            "SELECT MAX(sort_key) FROM history WHERE conversation = ?",
            (conversation,),
        )
        newest = rows[0][0] if rows and rows[0][0] is not None else 0
        return newest + 1 if newest % 2 == 0 else newest

    def contains(self, message_id: str) -> bool:
        with self._lock:
            rows = self._fetch(
                "SELECT 1 FROM history WHERE message_index = ?",
                (self._message_index(message_id),),
            )
        return bool(rows)

    def find(self, message_id: str) -> HistoryEntry | None:
        with self._lock:
            rows = self._fetch(
                "SELECT conversation, record FROM history WHERE message_index = ?",
                (self._message_index(message_id),),
            )
        if not rows:
            return None
        return self._open(rows[0][0], rows[0][1])

    def update(self, message_id: str, **changes: Any) -> HistoryEntry | None:
        """Change fields of the entry with ``message_id``; return the new entry.

        Setting ``server_seq`` also moves the entry to its place in the
        conversation. Returns ``None`` when no such entry is stored.
        """
        index = self._message_index(message_id)
        with self._lock:
            rows = self._fetch(
                "SELECT conversation, record FROM history WHERE message_index = ?",
                (index,),
            )
            if not rows:
                return None
            row = rows[0]
            old = self._open(row[0], row[1])
            if old is None:
                return None
            data = old.to_dict()
            data.update(changes)
            entry = _entry_from_dict(data)
            try:
                self._db.execute(
                    "UPDATE history SET sort_key = ?, record = ? "
                    "WHERE message_index = ?",
                    (self._sort_key(entry), self._seal(row[0], entry), index),
                )
            except sqlite3.Error as exc:
                self._db.rollback()
                raise self._error(exc) from exc
            self._commit()
        return entry

    def remove(self, message_id: str) -> bool:
        """Delete the entry with ``message_id``; return False if none is stored."""
        with self._lock:
            try:
                cursor = self._db.execute(
                    "DELETE FROM history WHERE message_index = ?",
                    (self._message_index(message_id),),
                )
            except sqlite3.Error as exc:
                self._db.rollback()
                raise self._error(exc) from exc
            self._commit()
        return cursor.rowcount > 0

    def conversation(
        self, peer: str, limit: int | None = None, before_seq: int | None = None
    ) -> list[HistoryEntry]:
        """Return the conversation with ``peer``, oldest first.

        ``limit`` keeps only the newest entries. ``before_seq`` keeps only
        the entries that sort before the message with that server_seq,
        which pages back through a long conversation; unstamped entries
        never match it. A row that fails authentication (a damaged file)
        is left out.
        """
        conversation = self._conversation_index(peer)
        query = "SELECT record FROM history WHERE conversation = ?"
        params: tuple[Any, ...] = (conversation,)
        if before_seq is not None:
            query += " AND sort_key < ?"
            params += (2 * before_seq,)
        query += " ORDER BY sort_key IS NULL DESC, sort_key DESC, row_id DESC"
        if limit is not None:
            query += " LIMIT ?"
            params += (limit,)
        with self._lock:
            rows = self._fetch(query, params)
        entries = [self._open(conversation, row[0]) for row in reversed(rows)]
        return [entry for entry in entries if entry is not None]
