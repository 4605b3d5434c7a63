"""SQLite storage of accounts, devices, contacts and message queues.

Connections: each thread (the commit writer, each worker, and the admin
command) opens its own ``sqlite3`` connection to the same file. WAL mode
lets readers run while one writer commits. Every transaction that may
write starts with ``BEGIN IMMEDIATE``, so it takes the write lock up
front. A deferred transaction would instead fail with ``SQLITE_BUSY`` when
its read snapshot cannot be upgraded to a write. Inside this process a
``threading.Lock`` serializes the writers before they reach SQLite. SQLite's
own busy handler (``sqliteDefaultBusyCallback`` in its ``main.c``) polls
the lock with sleeps of 1, 2, 5, 10 ... up to 100 ms, so a writer that
finds the lock taken would wait out a whole sleep even after it is free.
Another process (the admin command) still waits through ``busy_timeout``.
bcrypt never runs inside a transaction, so the write lock is held only
for the SQL itself.

Group commit: :meth:`Store.batch` opens one transaction for many
requests. While a batch is open on a thread, :meth:`Store.transaction` on
that thread joins the batch instead of starting its own, so the same
store methods serve both paths.

Durability: ``synchronous=FULL`` makes every commit durable at once, and
handlers reply to a ``send`` only after its commit returns, so an
acknowledged message survives a crash or power loss.

Times are integer milliseconds since the Unix epoch.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from server.lookup_cache import LookupCache

SCHEMA_VERSION = 5
DATABASE_FILE_NAME = "enctalk.sqlite3"
BUSY_TIMEOUT_MS = 10_000
# The server stores at most this many one-time prekeys per device. Extra
# uploaded keys are dropped, and the upload reply returns the stored count.
MAX_HELD_PREKEYS = 1000
# UPDATE ... RETURNING needs SQLite 3.35, newer than some Python 3.10
# builds ship, so older versions read the updated value back instead.
HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
# Values bound in one statement at most; SQLite before 3.32 allows 999.
MAX_BOUND_VALUES = 500

_SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    auth_hash BLOB NOT NULL,
    identity_key BLOB NOT NULL,
    backup BLOB NOT NULL,
    backup_stale INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE TABLE devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    identity_key BLOB NOT NULL,
    signature BLOB NOT NULL,
    signed_prekey_id INTEGER NOT NULL,
    signed_prekey BLOB NOT NULL,
    signed_prekey_signature BLOB NOT NULL,
    created INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    queue_seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX devices_by_user ON devices(user_id);
CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    device_id INTEGER REFERENCES devices(id),
    created INTEGER NOT NULL,
    last_used INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);
CREATE TABLE one_time_prekeys (
    device_id INTEGER NOT NULL REFERENCES devices(id),
    key_id INTEGER NOT NULL,
    key BLOB NOT NULL,
    PRIMARY KEY (device_id, key_id)
) WITHOUT ROWID;
CREATE TABLE contacts (
    user_id INTEGER NOT NULL REFERENCES users(id),
    contact_id INTEGER NOT NULL REFERENCES users(id),
    created INTEGER NOT NULL,
    PRIMARY KEY (user_id, contact_id)
) WITHOUT ROWID;
CREATE TABLE messages (
    server_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sender_user INTEGER NOT NULL REFERENCES users(id),
    sender_device INTEGER NOT NULL REFERENCES devices(id),
    message_id TEXT NOT NULL,
    recipient INTEGER NOT NULL REFERENCES users(id),
    payload BLOB,
    payload_hash BLOB NOT NULL,
    server_time INTEGER NOT NULL,
    UNIQUE (sender_user, message_id)
);
CREATE TABLE queue (
    device_id INTEGER NOT NULL REFERENCES devices(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('message', 'receipt')),
    server_seq INTEGER NOT NULL REFERENCES messages(server_seq),
    envelope BLOB,
    receipt_user TEXT,
    receipt_device INTEGER,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX queue_by_message ON queue(server_seq);
CREATE TABLE login_failures (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    last INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE reset_codes (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    code_hash BLOB NOT NULL,
    expires INTEGER NOT NULL
);
"""
# Version 2 adds encrypted attachments (see server.attachments).
_ATTACHMENT_SCHEMA = """
CREATE TABLE attachments (
    id TEXT PRIMARY KEY,
    owner INTEGER NOT NULL REFERENCES users(id),
    owner_device INTEGER NOT NULL,
    size INTEGER NOT NULL,
    received INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE INDEX attachments_by_owner ON attachments(owner);
CREATE INDEX attachments_by_created ON attachments(created);
CREATE TABLE attachment_recipients (
    attachment_id TEXT NOT NULL REFERENCES attachments(id) ON DELETE CASCADE,
    device_id INTEGER NOT NULL,
    fetched INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (attachment_id, device_id)
) WITHOUT ROWID;
"""
# Version 3 indexes the messages whose payload is still held, so the sum
# that the message quota checks reads only those rows, not every message
# the sender ever sent.
_HELD_INDEX_SCHEMA = """
CREATE INDEX IF NOT EXISTS messages_held ON messages(sender_user)
    WHERE payload IS NOT NULL;
"""
# Version 4 adds accounts created from a class roster. display_name is
# what people see (the username unless the roster or an administrator
# set one), staff marks teachers for the lab policy (server.policy), and
# class_label is the roster's group ("7B", or "" for none). An account
# with pending_setup = 1 has no auth hash, identity key or backup yet,
# and its setup code waits in setup_codes until the pupil redeems it. The
# codes are kept in plain text so that they can be printed again; the
# server.admin docstring explains why that is acceptable.
_ROSTER_SCHEMA = """
ALTER TABLE users ADD COLUMN display_name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN staff INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN class_label TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN pending_setup INTEGER NOT NULL DEFAULT 0;
UPDATE users SET display_name = username WHERE display_name = '';
CREATE INDEX users_by_class ON users(class_label) WHERE class_label != '';
CREATE TABLE setup_codes (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    code TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
"""
# Version 5 adds groups. A group's current state (name, epoch, roles,
# mutes) is kept in tables, so a send checks it with a few lookups. Its
# signed operation log is kept whole for the clients, which verify it.
# A message row's kind is "direct", "group" (recipient is then the
# sender) or "op" (payload is the operation's JSON, queued to members).
_GROUP_SCHEMA = """
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'direct';
ALTER TABLE messages ADD COLUMN group_id TEXT;
CREATE TABLE groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    head BLOB NOT NULL,
    read_only INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE TABLE group_ops (
    group_id TEXT NOT NULL REFERENCES groups(id),
    idx INTEGER NOT NULL,
    server_seq INTEGER NOT NULL,
    server_time INTEGER NOT NULL,
    op TEXT NOT NULL,
    PRIMARY KEY (group_id, idx)
) WITHOUT ROWID;
CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    muted INTEGER NOT NULL DEFAULT 0,
    left_epoch INTEGER,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX group_members_by_user ON group_members(user_id);
"""
# Statements that bring a database from the version in the key to the
# next one; version 0 is a new, empty database.
_UPGRADES = {
    0: _SCHEMA,
    1: _ATTACHMENT_SCHEMA,
    2: _HELD_INDEX_SCHEMA,
    3: _ROSTER_SCHEMA,
    4: _GROUP_SCHEMA,
}


class StoreError(Exception):
    """The database cannot be opened or has an unknown schema version."""


class UsernameTaken(Exception):
    """A user with this canonical username exists already."""


class TransactionLost(Exception):
    """SQLite rolled back the whole batch transaction after an error.

    Some errors (a full disk, an I/O error, out of memory) end the
    transaction, not just the statement, so every request of the batch
    lost its writes.
    """


@dataclass(frozen=True)
class User:
    """One account row.

    An account imported from a roster starts with ``pending_setup`` true
    and empty ``auth_hash``, ``identity_key`` and ``backup`` until its
    setup code is redeemed. ``class_label`` is "" for no class.
    """

    id: int
    username: str
    auth_hash: bytes
    identity_key: bytes
    backup: bytes
    backup_stale: bool
    disabled: bool
    created: int
    display_name: str
    staff: bool
    class_label: str
    pending_setup: bool


@dataclass(frozen=True)
class RosterEntry:
    """One account to create or update by a roster import.

    ``code`` is the new setup code, or None to keep the stored one of an
    account that is already pending.
    """

    username: str
    display_name: str
    class_label: str
    staff: bool
    code: str | None


@dataclass(frozen=True)
class SetupCode:
    """The setup code of a pending account, stored until it is redeemed."""

    user: User
    code: str
    created: int
    expires: int


class ContactRow(NamedTuple):
    """One contact of a user, as :meth:`Store.contacts` returns it."""

    user_id: int
    username: str
    identity_key: bytes
    display_name: str


@dataclass(frozen=True)
class DeviceInfo:
    id: int
    name: str
    created: int
    last_seen: int


@dataclass(frozen=True)
class Bundle:
    device_id: int
    identity_key: bytes
    signature: bytes
    signed_prekey_id: int
    signed_prekey: bytes
    signed_prekey_signature: bytes
    one_time_prekey: tuple[int, bytes] | None
    remaining: int


@dataclass(frozen=True)
class QueueItem:
    """One row of a device queue, joined with its message."""

    device_id: int
    seq: int
    kind: str
    message_id: str
    sender: str
    sender_device: int
    recipient: str
    server_seq: int
    server_time: int
    payload: bytes | None
    envelope: bytes | None
    receipt_user: str | None
    receipt_device: int | None
    message_kind: str = "direct"
    group_id: str | None = None


@dataclass(frozen=True)
class GroupRow:
    """A group's current state as the server keeps it.

    ``members`` maps each current member's username to
    ``(user_id, role, muted)``.
    """

    group_id: str
    name: str
    epoch: int
    head: bytes
    read_only: bool
    members: dict[str, tuple[int, str, bool]]


# Interpolated into queries below; a constant, never user input.
_USER_COLUMNS = (
    "id, username, auth_hash, identity_key, backup, backup_stale, disabled, created,"
    " display_name, staff, class_label, pending_setup"
)
_USER_COLUMN_COUNT = 12
# The same columns of a users table joined as "u".
_PREFIXED_USER_COLUMNS = ", ".join(
    "u." + column.strip() for column in _USER_COLUMNS.split(",")
)

_QUEUE_SELECT = """
SELECT q.device_id, q.seq, q.kind, m.message_id, s.username, m.sender_device,
       r.username, m.server_seq, m.server_time, m.payload, q.envelope,
       q.receipt_user, q.receipt_device, m.kind, m.group_id
FROM queue q
JOIN messages m ON m.server_seq = q.server_seq
JOIN users s ON s.id = m.sender_user
JOIN users r ON r.id = m.recipient
"""


def _user(row: Any) -> User | None:
    if row is None:
        return None
    return User(
        id=row[0],
        username=row[1],
        auth_hash=bytes(row[2]),
        identity_key=bytes(row[3]),
        backup=bytes(row[4]),
        backup_stale=bool(row[5]),
        disabled=bool(row[6]),
        created=row[7],
        display_name=row[8] or row[1],
        staff=bool(row[9]),
        class_label=row[10],
        pending_setup=bool(row[11]),
    )


def _queue_item(row: Any) -> QueueItem:
    return QueueItem(
        device_id=row[0],
        seq=row[1],
        kind=row[2],
        message_id=row[3],
        sender=row[4],
        sender_device=row[5],
        recipient=row[6],
        server_seq=row[7],
        server_time=row[8],
        payload=None if row[9] is None else bytes(row[9]),
        envelope=None if row[10] is None else bytes(row[10]),
        receipt_user=row[11],
        receipt_device=row[12],
        message_kind=row[13],
        group_id=row[14],
    )


class Store:
    """The server database; safe to share between threads.

    Each thread gets its own connection on first use. Every method blocks
    on SQLite I/O and, for writes, on the database write lock, so call
    them from worker threads or the commit writer, never from the event loop.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        # Taken around every write transaction of this process.
        self.write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._migrate()

    @classmethod
    def open_in(cls, data_dir: Path) -> Store:
        """Open (or create) the database file in ``data_dir``."""
        return cls(data_dir / DATABASE_FILE_NAME)

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        return db

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def close(self) -> None:
        """Close every thread's connection; call after the workers stopped."""
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a write transaction: ``BEGIN IMMEDIATE``, then commit or roll back.

        Inside a :meth:`batch` on this thread, join the batch's transaction
        instead, and leave an exception to the batch's owner.
        """
        db = self.db
        if getattr(self._local, "in_batch", False):
            yield db
            return
        with self.write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._commit(db)

    @staticmethod
    def _commit(db: sqlite3.Connection) -> None:
        try:
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    @contextmanager
    def batch(self) -> Iterator[sqlite3.Connection]:
        """Run one write transaction for many requests, committed once at the end.

        Any exception rolls the whole batch back. Inside the batch, queue
        sequence numbers are counted in memory and written to ``devices``
        once, just before the commit.
        """
        db = self.db
        with self.write_lock:
            db.execute("BEGIN IMMEDIATE")
            self._local.in_batch = True
            cache = self._lookup_cache()
            cache.validate(db.execute("PRAGMA data_version").fetchone()[0])
            try:
                yield db
                self._write_seqs(db, cache)
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                cache.clear()
                raise
            else:
                self._commit(db)
            finally:
                self._local.in_batch = False

    def changes(self) -> int:
        """Return a count that grows with every write of this thread's connection.

        Within a batch it also counts reserved queue sequence numbers, which
        are written only at the end, so a caller can tell whether a failed
        request changed anything.
        """
        reserved = 0
        cache: LookupCache | None = getattr(self._local, "lookups", None)
        if cache is not None:
            reserved = cache.reservations
        return self.db.total_changes + reserved

    @staticmethod
    def _write_seqs(db: sqlite3.Connection, cache: LookupCache) -> None:
        dirty = sorted(cache.dirty_seqs)
        # Two bound values per device in the CASE and one in the IN list.
        step = MAX_BOUND_VALUES // 3
        for start in range(0, len(dirty), step):
            chunk = dirty[start : start + step]
            cases = " ".join("WHEN ? THEN ?" for _ in chunk)
            marks = ",".join("?" * len(chunk))
            values: list[int] = []
            for device_id in chunk:
                values += [device_id, cache.seqs[device_id]]
            # Only "?" placeholders are interpolated.
            query = (
                f"UPDATE devices SET queue_seq = CASE id {cases} END"  # noqa: S608
                f" WHERE id IN ({marks})"
            )
            db.execute(query, [*values, *chunk])
        cache.dirty_seqs.clear()

    def _lookup_cache(self) -> LookupCache:
        cache: LookupCache | None = getattr(self._local, "lookups", None)
        if cache is None:
            cache = LookupCache()
            self._local.lookups = cache
        return cache

    def _batch_lookups(self) -> LookupCache | None:
        """Return this thread's lookup cache while it runs a batch, else None."""
        if getattr(self._local, "in_batch", False):
            return self._lookup_cache()
        return None

    def _forget_lookups(self) -> None:
        """Drop this thread's cached lookups; call when changing what they cache."""
        cache: LookupCache | None = getattr(self._local, "lookups", None)
        if cache is not None:
            cache.clear()

    def _migrate(self) -> None:
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version not in _UPGRADES:
                raise StoreError(
                    f"database {self.path} has schema version {version}, but this "
                    f"server knows only version {SCHEMA_VERSION}"
                )
            script = "".join(_UPGRADES[v] for v in range(version, SCHEMA_VERSION))
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # Users

    def user_by_name(self, username: str) -> User | None:
        cache = self._batch_lookups()
        if cache is not None and username in cache.users:
            cached: User | None = cache.users[username]
            return cached
        row = self.db.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?",  # noqa: S608
            (username,),
        ).fetchone()
        user = _user(row)
        if cache is not None:
            cache.users[username] = user
        return user

    def user_by_id(self, user_id: int) -> User | None:
        row = self.db.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?",  # noqa: S608
            (user_id,),
        ).fetchone()
        return _user(row)

    def list_users(self) -> list[tuple[User, int, int]]:
        """Return every user with their counts of active devices and sessions."""
        rows = self.db.execute(
            f"SELECT {_USER_COLUMNS},"  # noqa: S608
            " (SELECT COUNT(*) FROM devices d WHERE d.user_id = users.id"
            "  AND d.removed = 0),"
            " (SELECT COUNT(*) FROM sessions s WHERE s.user_id = users.id)"
            " FROM users ORDER BY username"
        ).fetchall()
        result = []
        for row in rows:
            user = _user(row)
            assert user is not None
            result.append((user, row[_USER_COLUMN_COUNT], row[_USER_COLUMN_COUNT + 1]))
        return result

    def create_user(
        self,
        username: str,
        auth_hash: bytes,
        identity_key: bytes,
        backup: bytes,
        token_hash: bytes,
        now: int,
    ) -> int:
        """Insert a user and its first session; raise :class:`UsernameTaken`."""
        self._forget_lookups()
        with self.transaction() as db:
            try:
                cursor = db.execute(
                    "INSERT INTO users (username, auth_hash, identity_key, backup,"
                    " created, display_name) VALUES (?, ?, ?, ?, ?, ?)",
                    (username, auth_hash, identity_key, backup, now, username),
                )
            except sqlite3.IntegrityError as exc:
                raise UsernameTaken(username) from exc
            user_id = cursor.lastrowid
            assert user_id is not None
            self._insert_session(db, token_hash, user_id, None, now)
        return user_id

    def set_password(
        self,
        user_id: int,
        auth_hash: bytes,
        backup: bytes,
        token_hash: bytes,
        device_id: int | None,
        now: int,
    ) -> None:
        """Replace the auth hash and backup; revoke all sessions but a new one."""
        self._forget_lookups()
        with self.transaction() as db:
            db.execute(
                "UPDATE users SET auth_hash = ?, backup = ?, backup_stale = 0"
                " WHERE id = ?",
                (auth_hash, backup, user_id),
            )
            db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            self._insert_session(db, token_hash, user_id, device_id, now)

    def set_backup(self, user_id: int, backup: bytes) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE users SET backup = ?, backup_stale = 0 WHERE id = ?",
                (backup, user_id),
            )

    def set_disabled(self, username: str, disabled: bool) -> bool:
        """Set the disabled flag; return False if there is no such user."""
        self._forget_lookups()
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE users SET disabled = ? WHERE username = ?",
                (int(disabled), username),
            )
        return cursor.rowcount == 1

    def start_reset(self, username: str, code_hash: bytes, expires: int) -> bool:
        """Store a reset code, invalidate the password and revoke all sessions.

        Returns False if there is no such user.
        """
        self._forget_lookups()
        with self.transaction() as db:
            row = db.execute(
                "SELECT id FROM users WHERE username = ?", (username,)
            ).fetchone()
            if row is None:
                return False
            user_id = row[0]
            # An empty hash matches no auth key, so the old password stops
            # working until the code is redeemed.
            db.execute(
                "UPDATE users SET auth_hash = x'', backup_stale = 1 WHERE id = ?",
                (user_id,),
            )
            db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            db.execute(
                "INSERT OR REPLACE INTO reset_codes (user_id, code_hash, expires)"
                " VALUES (?, ?, ?)",
                (user_id, code_hash, expires),
            )
        return True

    def reset_code(self, user_id: int) -> tuple[bytes, int] | None:
        """Return ``(code_hash, expires)`` of the user's pending reset code."""
        row = self.db.execute(
            "SELECT code_hash, expires FROM reset_codes WHERE user_id = ?",
            (user_id,),
        ).fetchone()
        return None if row is None else (bytes(row[0]), row[1])

    def redeem_reset(
        self,
        user_id: int,
        code_hash: bytes,
        auth_hash: bytes,
        identity_key: bytes,
        backup: bytes,
        token_hash: bytes,
        now: int,
    ) -> tuple[bool, list[int]]:
        """Apply a reset if the code is still pending and unexpired.

        Returns ``(redeemed, removed_device_ids)``; devices are removed when
        the identity key changes, because the old key signed them.
        """
        self._forget_lookups()
        with self.transaction() as db:
            row = db.execute(
                "SELECT code_hash, expires FROM reset_codes WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            if row is None or bytes(row[0]) != code_hash or row[1] < now:
                return False, []
            old_key = db.execute(
                "SELECT identity_key FROM users WHERE id = ?", (user_id,)
            ).fetchone()[0]
            removed: list[int] = []
            if bytes(old_key) != identity_key:
                removed = [
                    device_row[0]
                    for device_row in db.execute(
                        "SELECT id FROM devices WHERE user_id = ? AND removed = 0",
                        (user_id,),
                    )
                ]
                for device_id in removed:
                    self._remove_device(db, device_id)
            db.execute(
                "UPDATE users SET auth_hash = ?, identity_key = ?, backup = ?,"
                " backup_stale = 0 WHERE id = ?",
                (auth_hash, identity_key, backup, user_id),
            )
            db.execute("DELETE FROM reset_codes WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            self._insert_session(db, token_hash, user_id, None, now)
        return True, removed

    # Accounts from a roster

    def users_by_names(self, usernames: Iterable[str]) -> dict[str, User]:
        """Return the existing users among ``usernames``, keyed by username."""
        found: dict[str, User] = {}
        names = sorted(set(usernames))
        for start in range(0, len(names), MAX_BOUND_VALUES):
            chunk = names[start : start + MAX_BOUND_VALUES]
            marks = ",".join("?" * len(chunk))
            # Only the column list and "?" placeholders are interpolated.
            query = (
                f"SELECT {_USER_COLUMNS} FROM users"  # noqa: S608
                f" WHERE username IN ({marks})"
            )
            for row in self.db.execute(query, chunk):
                user = _user(row)
                assert user is not None
                found[user.username] = user
        return found

    def import_users(self, entries: list[RosterEntry], expires: int, now: int) -> None:
        """Create pending accounts and update pending ones, all in one transaction.

        A new account gets no auth hash, identity key or backup, and its
        entry's setup code. An account that is already pending gets the
        entry's display name, class and staff flag, and its setup code is
        replaced only when the entry has one. Raises :class:`UsernameTaken`,
        and changes nothing, when an entry names an account that is not
        pending.
        """
        self._forget_lookups()
        with self.transaction() as db:
            for entry in entries:
                row = db.execute(
                    "SELECT id, pending_setup FROM users WHERE username = ?",
                    (entry.username,),
                ).fetchone()
                if row is not None and not row[1]:
                    raise UsernameTaken(entry.username)
                if row is None:
                    user_id = self._insert_pending_user(db, entry, now)
                else:
                    user_id = row[0]
                    db.execute(
                        "UPDATE users SET display_name = ?, class_label = ?,"
                        " staff = ? WHERE id = ?",
                        (
                            entry.display_name,
                            entry.class_label,
                            int(entry.staff),
                            user_id,
                        ),
                    )
                if entry.code is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO setup_codes"
                        " (user_id, code, created, expires) VALUES (?, ?, ?, ?)",
                        (user_id, entry.code, now, expires),
                    )

    @staticmethod
    def _insert_pending_user(
        db: sqlite3.Connection, entry: RosterEntry, now: int
    ) -> int:
        # Empty auth hash, identity key and backup: no auth key matches the
        # hash, and the handlers treat the account as not set up.
        cursor = db.execute(
            "INSERT INTO users (username, auth_hash, identity_key, backup, created,"
            " display_name, staff, class_label, pending_setup)"
            " VALUES (?, x'', x'', x'', ?, ?, ?, ?, 1)",
            (
                entry.username,
                now,
                entry.display_name,
                int(entry.staff),
                entry.class_label,
            ),
        )
        user_id = cursor.lastrowid
        assert user_id is not None
        return user_id

    def setup_codes(self, class_label: str | None = None) -> list[SetupCode]:
        """Return the setup codes of pending accounts, of one class or of all.

        Sorted by class label, then display name, so a printed sheet
        follows the class lists.
        """
        query = (
            f"SELECT {_PREFIXED_USER_COLUMNS},"  # noqa: S608
            " c.code, c.created, c.expires FROM setup_codes c"
            " JOIN users u ON u.id = c.user_id WHERE u.pending_setup = 1"
        )
        values: tuple[str, ...] = ()
        if class_label is not None:
            query += " AND u.class_label = ?"
            values = (class_label,)
        query += " ORDER BY u.class_label, u.display_name COLLATE NOCASE, u.username"
        result = []
        for row in self.db.execute(query, values):
            user = _user(row)
            assert user is not None
            count = _USER_COLUMN_COUNT
            result.append(SetupCode(user, row[count], row[count + 1], row[count + 2]))
        return result

    def setup_code(self, user_id: int) -> tuple[str, int] | None:
        """Return ``(code, expires)`` of a pending account's setup code."""
        row = self.db.execute(
            "SELECT c.code, c.expires FROM setup_codes c"
            " JOIN users u ON u.id = c.user_id"
            " WHERE c.user_id = ? AND u.pending_setup = 1",
            (user_id,),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def replace_setup_code(
        self, username: str, code: str, expires: int, now: int
    ) -> bool:
        """Give a pending account a new setup code; False if it is not pending."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT id FROM users WHERE username = ? AND pending_setup = 1",
                (username,),
            ).fetchone()
            if row is None:
                return False
            db.execute(
                "INSERT OR REPLACE INTO setup_codes (user_id, code, created, expires)"
                " VALUES (?, ?, ?, ?)",
                (row[0], code, now, expires),
            )
        return True

    def redeem_setup(
        self,
        user_id: int,
        code: str,
        auth_hash: bytes,
        identity_key: bytes,
        backup: bytes,
        token_hash: bytes,
        now: int,
    ) -> bool:
        """Finish a pending account if ``code`` is still its unexpired setup code.

        Sets the auth hash, identity key and backup, deletes the code and
        opens the first session. Returns False, changing nothing, when the
        account is no longer pending or the code was replaced or expired.
        """
        self._forget_lookups()
        with self.transaction() as db:
            row = db.execute(
                "SELECT c.code, c.expires FROM setup_codes c"
                " JOIN users u ON u.id = c.user_id"
                " WHERE c.user_id = ? AND u.pending_setup = 1",
                (user_id,),
            ).fetchone()
            if row is None or row[0] != code or row[1] < now:
                return False
            db.execute(
                "UPDATE users SET auth_hash = ?, identity_key = ?, backup = ?,"
                " backup_stale = 0, pending_setup = 0 WHERE id = ?",
                (auth_hash, identity_key, backup, user_id),
            )
            db.execute("DELETE FROM setup_codes WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM reset_codes WHERE user_id = ?", (user_id,))
            self._insert_session(db, token_hash, user_id, None, now)
        return True

    def set_staff(self, username: str, staff: bool) -> bool:
        """Set the staff flag; return False if there is no such user."""
        self._forget_lookups()
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE users SET staff = ? WHERE username = ?",
                (int(staff), username),
            )
        return cursor.rowcount == 1

    def set_display_name(self, username: str, display_name: str) -> bool:
        """Set the display name; return False if there is no such user."""
        self._forget_lookups()
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE users SET display_name = ? WHERE username = ?",
                (display_name, username),
            )
        return cursor.rowcount == 1

    def class_labels(self) -> list[str]:
        """Return every class label that at least one account has, sorted."""
        rows = self.db.execute(
            "SELECT DISTINCT class_label FROM users WHERE class_label != ''"
            " ORDER BY class_label"
        ).fetchall()
        return [row[0] for row in rows]

    def class_members(self, class_label: str) -> list[User]:
        """Return the accounts of one class, sorted by display name."""
        rows = self.db.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE class_label = ?"  # noqa: S608
            " ORDER BY display_name COLLATE NOCASE, username",
            (class_label,),
        ).fetchall()
        members = []
        for row in rows:
            user = _user(row)
            assert user is not None
            members.append(user)
        return members

    # Login throttling

    def failure_counts(self, keys: Iterable[str], forget_before: int) -> dict[str, Any]:
        """Return ``{key: (count, last)}`` for failures newer than ``forget_before``."""
        result: dict[str, Any] = {}
        for key in keys:
            row = self.db.execute(
                "SELECT count, last FROM login_failures WHERE key = ? AND last >= ?",
                (key, forget_before),
            ).fetchone()
            if row is not None:
                result[key] = (row[0], row[1])
        return result

    def record_failure(self, keys: Iterable[str], now: int, forget_before: int) -> None:
        with self.transaction() as db:
            for key in keys:
                db.execute(
                    "DELETE FROM login_failures WHERE key = ? AND last < ?",
                    (key, forget_before),
                )
                db.execute(
                    "INSERT INTO login_failures (key, count, last) VALUES (?, 1, ?)"
                    " ON CONFLICT (key) DO UPDATE SET count = count + 1, last = ?",
                    (key, now, now),
                )

    def clear_failures(self, keys: Iterable[str]) -> None:
        with self.transaction() as db:
            for key in keys:
                db.execute("DELETE FROM login_failures WHERE key = ?", (key,))

    # Sessions

    @staticmethod
    def _insert_session(
        db: sqlite3.Connection,
        token_hash: bytes,
        user_id: int,
        device_id: int | None,
        now: int,
    ) -> None:
        db.execute(
            "INSERT INTO sessions (token_hash, user_id, device_id, created, last_used)"
            " VALUES (?, ?, ?, ?, ?)",
            (token_hash, user_id, device_id, now, now),
        )

    def create_session(
        self, token_hash: bytes, user_id: int, device_id: int | None, now: int
    ) -> None:
        self._forget_lookups()
        with self.transaction() as db:
            self._insert_session(db, token_hash, user_id, device_id, now)
            if device_id is not None:
                self._touch_device(db, device_id, now)

    def session(self, token_hash: bytes) -> tuple[User, int | None, int] | None:
        """Return ``(user, device_id, last_used)`` of a session, or ``None``."""
        row = self.db.execute(
            "SELECT user_id, device_id, last_used FROM sessions WHERE token_hash = ?",
            (token_hash,),
        ).fetchone()
        if row is None:
            return None
        user = self.user_by_id(row[0])
        if user is None:
            return None
        return user, row[1], row[2]

    def use_session(self, token_hash: bytes, device_id: int | None, now: int) -> None:
        """Bind a session to ``device_id`` and mark session and device as used."""
        self._forget_lookups()
        with self.transaction() as db:
            db.execute(
                "UPDATE sessions SET device_id = ?, last_used = ? WHERE token_hash = ?",
                (device_id, now, token_hash),
            )
            if device_id is not None:
                self._touch_device(db, device_id, now)

    def delete_session(self, token_hash: bytes) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    def revoked_sessions(
        self, token_hashes: list[bytes], expired_before: int
    ) -> dict[bytes, str]:
        """Return the given sessions that are gone, expired or of a disabled user.

        Each value is the reason sent in the ``session_revoked`` push.
        """
        result: dict[bytes, str] = {}
        for start in range(0, len(token_hashes), 500):
            chunk = token_hashes[start : start + 500]
            marks = ",".join("?" * len(chunk))
            # Only "?" placeholders are interpolated.
            query = (
                "SELECT s.token_hash, u.disabled, s.last_used FROM sessions s"  # noqa: S608
                f" JOIN users u ON u.id = s.user_id WHERE s.token_hash IN ({marks})"
            )
            rows = self.db.execute(query, chunk).fetchall()
            found = {bytes(row[0]): row for row in rows}
            for token_hash in chunk:
                row = found.get(token_hash)
                if row is None:
                    result[token_hash] = "The session was revoked."
                elif row[1]:
                    result[token_hash] = "The account was disabled."
                elif row[2] < expired_before:
                    result[token_hash] = "The session expired."
        return result

    # Devices and prekeys

    @staticmethod
    def _touch_device(db: sqlite3.Connection, device_id: int, now: int) -> None:
        db.execute("UPDATE devices SET last_seen = ? WHERE id = ?", (now, device_id))

    def touch_device(self, device_id: int, now: int) -> None:
        self._forget_lookups()
        with self.transaction() as db:
            self._touch_device(db, device_id, now)

    def device_owner(self, device_id: int) -> int | None:
        """Return the user id owning an active (not removed) device."""
        row = self.db.execute(
            "SELECT user_id FROM devices WHERE id = ? AND removed = 0", (device_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def create_device(
        self,
        user_id: int,
        name: str,
        identity_key: bytes,
        signature: bytes,
        signed_prekey: tuple[int, bytes, bytes],
        prekeys: list[tuple[int, bytes]],
        token_hash: bytes,
        now: int,
    ) -> int:
        """Insert a device with its prekeys and bind the session to it."""
        self._forget_lookups()
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO devices (user_id, name, identity_key, signature,"
                " signed_prekey_id, signed_prekey, signed_prekey_signature,"
                " created, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (user_id, name, identity_key, signature, *signed_prekey, now, now),
            )
            device_id = cursor.lastrowid
            assert device_id is not None
            self._add_prekeys(db, device_id, prekeys)
            db.execute(
                "UPDATE sessions SET device_id = ?, last_used = ? WHERE token_hash = ?",
                (device_id, now, token_hash),
            )
        return device_id

    @staticmethod
    def _prekey_count(db: sqlite3.Connection, device_id: int) -> int:
        row = db.execute(
            "SELECT COUNT(*) FROM one_time_prekeys WHERE device_id = ?", (device_id,)
        ).fetchone()
        return int(row[0])

    def _add_prekeys(
        self, db: sqlite3.Connection, device_id: int, prekeys: list[tuple[int, bytes]]
    ) -> int:
        for key_id, key in prekeys:
            if self._prekey_count(db, device_id) >= MAX_HELD_PREKEYS:
                break
            db.execute(
                "INSERT OR REPLACE INTO one_time_prekeys (device_id, key_id, key)"
                " VALUES (?, ?, ?)",
                (device_id, key_id, key),
            )
        return self._prekey_count(db, device_id)

    def upload_prekeys(
        self,
        device_id: int,
        signed_prekey: tuple[int, bytes, bytes] | None,
        prekeys: list[tuple[int, bytes]],
    ) -> int:
        """Store prekeys for a device; return how many one-time prekeys it holds."""
        with self.transaction() as db:
            if signed_prekey is not None:
                db.execute(
                    "UPDATE devices SET signed_prekey_id = ?, signed_prekey = ?,"
                    " signed_prekey_signature = ? WHERE id = ?",
                    (*signed_prekey, device_id),
                )
            return self._add_prekeys(db, device_id, prekeys)

    def prekey_count(self, device_id: int) -> int:
        return self._prekey_count(self.db, device_id)

    def take_bundles(
        self,
        user_id: int,
        exclude_device: int | None,
        active_since: int,
        may_take: Callable[[int], bool] | None = None,
    ) -> list[Bundle]:
        """Return a bundle per active device, consuming one one-time prekey each.

        A device for which ``may_take(device_id)`` is false gets a bundle
        without a one-time prekey, and keeps its prekeys.
        """
        bundles = []
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id, identity_key, signature, signed_prekey_id, signed_prekey,"
                " signed_prekey_signature FROM devices WHERE user_id = ?"
                " AND removed = 0 AND last_seen >= ? ORDER BY id",
                (user_id, active_since),
            ).fetchall()
            for row in rows:
                device_id = row[0]
                if device_id == exclude_device:
                    continue
                prekey_row = None
                if may_take is None or may_take(device_id):
                    prekey_row = self._first_prekey(db, device_id)
                one_time = None
                if prekey_row is not None:
                    one_time = (int(prekey_row[0]), bytes(prekey_row[1]))
                    db.execute(
                        "DELETE FROM one_time_prekeys"
                        " WHERE device_id = ? AND key_id = ?",
                        (device_id, prekey_row[0]),
                    )
                bundles.append(
                    Bundle(
                        device_id=device_id,
                        identity_key=bytes(row[1]),
                        signature=bytes(row[2]),
                        signed_prekey_id=row[3],
                        signed_prekey=bytes(row[4]),
                        signed_prekey_signature=bytes(row[5]),
                        one_time_prekey=one_time,
                        remaining=self._prekey_count(db, device_id),
                    )
                )
        return bundles

    @staticmethod
    def _first_prekey(db: sqlite3.Connection, device_id: int) -> Any:
        return db.execute(
            "SELECT key_id, key FROM one_time_prekeys WHERE device_id = ?"
            " ORDER BY key_id LIMIT 1",
            (device_id,),
        ).fetchone()

    def list_devices(self, user_id: int) -> list[DeviceInfo]:
        rows = self.db.execute(
            "SELECT id, name, created, last_seen FROM devices"
            " WHERE user_id = ? AND removed = 0 ORDER BY id",
            (user_id,),
        ).fetchall()
        return [DeviceInfo(row[0], row[1], row[2], row[3]) for row in rows]

    def active_devices(self, user_id: int, active_since: int) -> list[int]:
        """Return the ids of the user's devices that are neither removed nor stale."""
        cache = self._batch_lookups()
        if cache is None:
            rows = self.db.execute(
                "SELECT id FROM devices WHERE user_id = ? AND removed = 0"
                " AND last_seen >= ? ORDER BY id",
                (user_id, active_since),
            ).fetchall()
            return [row[0] for row in rows]
        devices = cache.devices.get(user_id)
        if devices is None:
            rows = self.db.execute(
                "SELECT id, last_seen FROM devices WHERE user_id = ? AND removed = 0"
                " ORDER BY id",
                (user_id,),
            ).fetchall()
            devices = [(row[0], row[1]) for row in rows]
            cache.devices[user_id] = devices
        return [device for device, last_seen in devices if last_seen >= active_since]

    def _remove_device(self, db: sqlite3.Connection, device_id: int) -> None:
        db.execute("UPDATE devices SET removed = 1 WHERE id = ?", (device_id,))
        db.execute("DELETE FROM one_time_prekeys WHERE device_id = ?", (device_id,))
        queued = db.execute(
            "SELECT DISTINCT server_seq FROM queue WHERE device_id = ?", (device_id,)
        ).fetchall()
        db.execute("DELETE FROM queue WHERE device_id = ?", (device_id,))
        db.execute(
            "UPDATE sessions SET device_id = NULL WHERE device_id = ?", (device_id,)
        )
        self._drop_unreferenced_payloads(db, [row[0] for row in queued])

    def remove_device(self, user_id: int, device_id: int) -> bool:
        """Remove one of the user's devices; return False if it is not theirs."""
        self._forget_lookups()
        with self.transaction() as db:
            row = db.execute(
                "SELECT 1 FROM devices WHERE id = ? AND user_id = ? AND removed = 0",
                (device_id, user_id),
            ).fetchone()
            if row is None:
                return False
            self._remove_device(db, device_id)
        return True

    # Contacts

    def add_contact(self, user_id: int, contact_id: int, now: int) -> bool:
        """Make two users mutual contacts; return False if they were already."""
        self._forget_lookups()
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO contacts (user_id, contact_id, created)"
                " VALUES (?, ?, ?)",
                (user_id, contact_id, now),
            )
            db.execute(
                "INSERT OR IGNORE INTO contacts (user_id, contact_id, created)"
                " VALUES (?, ?, ?)",
                (contact_id, user_id, now),
            )
        return cursor.rowcount == 1

    def contacts(self, user_id: int) -> list[ContactRow]:
        """Return each contact of a user, sorted by username."""
        rows = self.db.execute(
            "SELECT u.id, u.username, u.identity_key, u.display_name FROM contacts c"
            " JOIN users u ON u.id = c.contact_id WHERE c.user_id = ?"
            " ORDER BY u.username",
            (user_id,),
        ).fetchall()
        return [
            ContactRow(row[0], row[1], bytes(row[2]), row[3] or row[1]) for row in rows
        ]

    def is_contact(self, user_id: int, contact_id: int) -> bool:
        cache = self._batch_lookups()
        if cache is not None and (user_id, contact_id) in cache.contacts:
            return cache.contacts[(user_id, contact_id)]
        row = self.db.execute(
            "SELECT 1 FROM contacts WHERE user_id = ? AND contact_id = ?",
            (user_id, contact_id),
        ).fetchone()
        if cache is not None:
            cache.contacts[(user_id, contact_id)] = row is not None
        return row is not None

    # Messages and queues

    def find_message(
        self, sender_user: int, message_id: str
    ) -> tuple[int, int, int, bytes, str | None] | None:
        """Return ``(server_seq, server_time, recipient, payload_hash, group_id)``.

        ``group_id`` is None for a direct message.
        """
        row = self.db.execute(
            "SELECT server_seq, server_time, recipient, payload_hash, group_id"
            " FROM messages WHERE sender_user = ? AND message_id = ?",
            (sender_user, message_id),
        ).fetchone()
        if row is None:
            return None
        return row[0], row[1], row[2], bytes(row[3]), row[4]

    def queued_payload_bytes(self, sender_user: int) -> int:
        """Return the bytes of the sender's payloads not yet delivered everywhere.

        Within a batch the sum is read once and then kept up to date in
        memory as messages are stored and payloads dropped.
        """
        cache = self._batch_lookups()
        if cache is not None and sender_user in cache.held_bytes:
            return cache.held_bytes[sender_user]
        # The partial index messages_held limits this to the held rows.
        row = self.db.execute(
            "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages"
            " WHERE sender_user = ? AND payload IS NOT NULL",
            (sender_user,),
        ).fetchone()
        held = int(row[0])
        if cache is not None:
            cache.held_bytes[sender_user] = held
        return held

    def queue_length(self, device_id: int) -> int:
        """Return the number of items waiting in the device's queue.

        Within a batch the count is read once and then kept in memory.
        """
        cache = self._batch_lookups()
        if cache is not None and device_id in cache.queue_lengths:
            return cache.queue_lengths[device_id]
        row = self.db.execute(
            "SELECT COUNT(*) FROM queue WHERE device_id = ?", (device_id,)
        ).fetchone()
        length = int(row[0])
        if cache is not None:
            cache.queue_lengths[device_id] = length
        return length

    def _count_queued(self, device_ids: Iterable[int], change: int) -> None:
        """Move the cached queue lengths of ``device_ids`` by ``change`` each."""
        cache = self._batch_lookups()
        if cache is None:
            return
        for device_id in device_ids:
            if device_id in cache.queue_lengths:
                cache.queue_lengths[device_id] += change

    def store_message(
        self,
        sender_user: int,
        sender_device: int,
        message_id: str,
        recipient: int,
        payload: bytes,
        payload_hash: bytes,
        envelopes: list[tuple[int, bytes]],
        now: int,
        group_id: str | None = None,
    ) -> tuple[int, list[tuple[int, int]]]:
        """Commit a message and one queue row per ``(device_id, envelope)``.

        A group message names its ``group_id`` and has the sender as its
        ``recipient``. Returns ``(server_seq, [(device_id, seq), ...])``.
        Raises ``sqlite3.IntegrityError`` if the sender already used
        ``message_id``.
        """
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO messages (sender_user, sender_device, message_id,"
                " recipient, payload, payload_hash, server_time, kind, group_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sender_user,
                    sender_device,
                    message_id,
                    recipient,
                    payload,
                    payload_hash,
                    now,
                    "direct" if group_id is None else "group",
                    group_id,
                ),
            )
            server_seq = cursor.lastrowid
            assert server_seq is not None
            queued = self._queue_rows(db, server_seq, envelopes)
            cache = self._batch_lookups()
            if cache is not None and sender_user in cache.held_bytes:
                cache.held_bytes[sender_user] += len(payload)
        return server_seq, queued

    def _queue_rows(
        self,
        db: sqlite3.Connection,
        server_seq: int,
        envelopes: Sequence[tuple[int, bytes | None]],
    ) -> list[tuple[int, int]]:
        """Queue message ``server_seq`` to each ``(device_id, envelope)``.

        Returns ``[(device_id, seq), ...]``.
        """
        queued = []
        rows = []
        for device_id, envelope in envelopes:
            seq = self._take_seqs(db, device_id, 1)
            rows.append((device_id, seq, "message", server_seq, envelope))
            queued.append((device_id, seq))
        self._insert_rows(
            db, "queue (device_id, seq, kind, server_seq, envelope)", rows
        )
        self._count_queued((device_id for device_id, _ in envelopes), 1)
        return queued

    def _take_seqs(self, db: sqlite3.Connection, device_id: int, count: int) -> int:
        """Reserve ``count`` queue sequence numbers of a device; return the first.

        Within a batch the counter lives in memory until the batch commits,
        which saves a statement per queue row. Only the commit writer assigns
        sequence numbers, so no other connection moves the stored counter.
        """
        cache = self._batch_lookups()
        if cache is not None:
            last = cache.seqs.get(device_id)
            if last is None:
                row = db.execute(
                    "SELECT queue_seq FROM devices WHERE id = ?", (device_id,)
                ).fetchone()
                if row is None:
                    raise LookupError(f"device {device_id} does not exist")
                last = int(row[0])
            cache.seqs[device_id] = last + count
            cache.dirty_seqs.add(device_id)
            cache.reservations += count
            return last + 1
        if HAS_RETURNING:
            rows = db.execute(
                "UPDATE devices SET queue_seq = queue_seq + ? WHERE id = ?"
                " RETURNING queue_seq",
                (count, device_id),
            ).fetchall()
        else:
            db.execute(
                "UPDATE devices SET queue_seq = queue_seq + ? WHERE id = ?",
                (count, device_id),
            )
            rows = db.execute(
                "SELECT queue_seq FROM devices WHERE id = ?", (device_id,)
            ).fetchall()
        return int(rows[0][0]) - count + 1

    @staticmethod
    def _insert_rows(
        db: sqlite3.Connection, table: str, rows: list[tuple[Any, ...]]
    ) -> None:
        """Insert ``rows`` into ``table (columns)`` with as few statements as fit.

        A multi-row ``VALUES`` list steps once where ``executemany`` steps
        once per row, and every step releases and retakes the GIL.
        """
        if not rows:
            return
        width = len(rows[0])
        per_statement = max(1, MAX_BOUND_VALUES // width)
        row_marks = "(" + ",".join("?" * width) + ")"
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            values = [value for row in chunk for value in row]
            # Only the constant table text and "?" placeholders are interpolated.
            query = f"INSERT INTO {table} VALUES " + ",".join(  # noqa: S608
                [row_marks] * len(chunk)
            )
            db.execute(query, values)

    def queue_items(self, device_id: int, after: int, limit: int) -> list[QueueItem]:
        rows = self.db.execute(
            _QUEUE_SELECT + " WHERE q.device_id = ? AND q.seq > ? ORDER BY q.seq"
            " LIMIT ?",
            (device_id, after, limit),
        ).fetchall()
        return [_queue_item(row) for row in rows]

    def queue_item(self, device_id: int, seq: int) -> QueueItem | None:
        row = self.db.execute(
            _QUEUE_SELECT + " WHERE q.device_id = ? AND q.seq = ?", (device_id, seq)
        ).fetchone()
        return None if row is None else _queue_item(row)

    def last_seq(self, device_id: int) -> int:
        """Return the highest queue sequence number ever given to the device."""
        row = self.db.execute(
            "SELECT queue_seq FROM devices WHERE id = ?", (device_id,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def acknowledge(
        self,
        device_id: int,
        reader: str,
        upto: int,
        reader_user: int,
        active_since: int,
    ) -> list[tuple[int, int, str]]:
        """Delete queue rows up to ``upto`` and queue receipts for the senders.

        Each acknowledged message from another user gets a ``receipt`` row
        on every active device of its sender. Returns those rows as
        ``(device_id, seq, message_id)``.
        """
        receipts: list[tuple[int, int, str]] = []
        with self.transaction() as db:
            # Group messages and group operations get no receipts: one per
            # member and message would cost more than the message.
            rows = db.execute(
                "SELECT q.server_seq, m.sender_user, m.message_id, m.kind"
                " FROM queue q JOIN messages m ON m.server_seq = q.server_seq"
                " WHERE q.device_id = ? AND q.seq <= ? AND q.kind = 'message'"
                " ORDER BY q.seq",
                (device_id, upto),
            ).fetchall()
            deleted = db.execute(
                "DELETE FROM queue WHERE device_id = ? AND seq <= ?", (device_id, upto)
            ).rowcount
            self._count_queued([device_id], -deleted)
            by_sender: dict[int, list[tuple[int, str]]] = {}
            for server_seq, sender_user, message_id, kind in rows:
                if sender_user != reader_user and kind == "direct":
                    acked = by_sender.setdefault(sender_user, [])
                    acked.append((server_seq, message_id))
            inserts = []
            for sender_user, acked in by_sender.items():
                for target in self.active_devices(sender_user, active_since):
                    first = self._take_seqs(db, target, len(acked))
                    for offset, (server_seq, message_id) in enumerate(acked):
                        seq = first + offset
                        inserts.append(
                            (target, seq, "receipt", server_seq, reader, device_id)
                        )
                        receipts.append((target, seq, message_id))
            self._insert_rows(
                db,
                "queue (device_id, seq, kind, server_seq, receipt_user,"
                " receipt_device)",
                inserts,
            )
            self._count_queued((row[0] for row in inserts), 1)
            self._drop_unreferenced_payloads(db, [row[0] for row in rows])
        return receipts

    def _drop_unreferenced_payloads(
        self, db: sqlite3.Connection, server_seqs: list[int]
    ) -> None:
        # The message row stays so that a resend is still recognized and
        # receipts can name it; only the ciphertext goes.
        # NOTE: message rows without payload are kept forever (about 100
        # bytes each); nothing prunes them yet.
        cache = self._batch_lookups()
        unique = sorted(set(server_seqs))
        for start in range(0, len(unique), MAX_BOUND_VALUES):
            chunk = unique[start : start + MAX_BOUND_VALUES]
            marks = ",".join("?" * len(chunk))
            # Only "?" placeholders are interpolated.
            query = (
                "SELECT server_seq, sender_user, LENGTH(payload) FROM messages"  # noqa: S608
                f" WHERE server_seq IN ({marks}) AND payload IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM queue"
                " WHERE queue.server_seq = messages.server_seq"
                " AND queue.kind = 'message')"
            )
            dropped = db.execute(query, chunk).fetchall()
            if not dropped:
                continue
            marks = ",".join("?" * len(dropped))
            db.execute(
                f"UPDATE messages SET payload = NULL WHERE server_seq IN ({marks})",  # noqa: S608
                [row[0] for row in dropped],
            )
            if cache is None:
                continue
            for _, sender_user, size in dropped:
                if sender_user in cache.held_bytes:
                    cache.held_bytes[sender_user] -= size

    # Groups

    def group(self, group_id: str) -> GroupRow | None:
        """Return the group's current state, or None if there is no such group."""
        row = self.db.execute(
            "SELECT name, epoch, head, read_only FROM groups WHERE id = ?",
            (group_id,),
        ).fetchone()
        if row is None:
            return None
        members = self.db.execute(
            "SELECT u.username, m.user_id, m.role, m.muted FROM group_members m"
            " JOIN users u ON u.id = m.user_id"
            " WHERE m.group_id = ? AND m.left_epoch IS NULL",
            (group_id,),
        ).fetchall()
        return GroupRow(
            group_id=group_id,
            name=row[0],
            epoch=row[1],
            head=bytes(row[2]),
            read_only=bool(row[3]),
            members={
                member[0]: (member[1], member[2], bool(member[3])) for member in members
            },
        )

    def group_access(self, group_id: str, user_id: int) -> int | None:
        """Return the last log index ``user_id`` may read, or None for none.

        A member reads the whole log; a former member reads it up to the
        operation that removed them.
        """
        row = self.db.execute(
            "SELECT m.left_epoch, g.epoch FROM group_members m"
            " JOIN groups g ON g.id = m.group_id"
            " WHERE m.group_id = ? AND m.user_id = ?",
            (group_id, user_id),
        ).fetchone()
        if row is None:
            return None
        return int(row[1] if row[0] is None else row[0])

    def group_peers(self, user_id: int) -> set[int]:
        """Return the users who share at least one group with ``user_id``."""
        rows = self.db.execute(
            "SELECT DISTINCT other.user_id FROM group_members mine"
            " JOIN group_members other ON other.group_id = mine.group_id"
            " WHERE mine.user_id = ? AND mine.left_epoch IS NULL"
            " AND other.left_epoch IS NULL AND other.user_id != ?",
            (user_id, user_id),
        ).fetchall()
        return {row[0] for row in rows}

    def user_groups(self, user_id: int) -> list[tuple[str, str, int]]:
        """Return ``(group_id, name, epoch)`` of every group ``user_id`` is in."""
        rows = self.db.execute(
            "SELECT g.id, g.name, g.epoch FROM group_members m"
            " JOIN groups g ON g.id = m.group_id"
            " WHERE m.user_id = ? AND m.left_epoch IS NULL ORDER BY g.created, g.id",
            (user_id,),
        ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    def group_log(
        self, group_id: str, after: int, upto: int, limit: int
    ) -> list[tuple[str, int, int]]:
        """Return ``(op JSON, server_seq, server_time)`` of ops after..upto."""
        rows = self.db.execute(
            "SELECT op, server_seq, server_time FROM group_ops"
            " WHERE group_id = ? AND idx > ? AND idx <= ? ORDER BY idx LIMIT ?",
            (group_id, after, upto, limit),
        ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    def group_member_devices(
        self, user_ids: Iterable[int], active_since: int
    ) -> list[tuple[int, str, int]]:
        """Return ``(user_id, username, device_id)`` of the users' active devices."""
        ids = sorted(set(user_ids))
        result: list[tuple[int, str, int]] = []
        for start in range(0, len(ids), MAX_BOUND_VALUES):
            chunk = ids[start : start + MAX_BOUND_VALUES]
            marks = ",".join("?" * len(chunk))
            # Only "?" placeholders are interpolated.
            query = (
                "SELECT d.user_id, u.username, d.id FROM devices d"  # noqa: S608
                " JOIN users u ON u.id = d.user_id"
                f" WHERE d.user_id IN ({marks}) AND d.removed = 0"
                " AND d.last_seen >= ? ORDER BY d.user_id, d.id"
            )
            rows = self.db.execute(query, [*chunk, active_since]).fetchall()
            result.extend((row[0], row[1], row[2]) for row in rows)
        return result

    def store_group_op(
        self,
        group: GroupRow,
        op_json: str,
        actor: tuple[int, int],
        user_ids: dict[str, int],
        devices: list[int],
        now: int,
    ) -> tuple[int, list[tuple[int, int]]]:
        """Commit a group operation and its new state, queued to ``devices``.

        ``group`` is the state after the operation, ``actor`` is
        ``(user_id, device_id)`` and ``user_ids`` maps every username in
        the old or new member list to its user id. Returns
        ``(server_seq, [(device_id, seq), ...])``.
        """
        payload = op_json.encode("utf-8")
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO messages (sender_user, sender_device, message_id,"
                " recipient, payload, payload_hash, server_time, kind, group_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'op', ?)",
                (
                    actor[0],
                    actor[1],
                    f"op:{group.group_id}:{group.epoch}",
                    actor[0],
                    payload,
                    hashlib.sha256(payload).digest(),
                    now,
                    group.group_id,
                ),
            )
            server_seq = cursor.lastrowid
            assert server_seq is not None
            db.execute(
                "INSERT INTO groups (id, name, epoch, head, read_only, created)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " name = excluded.name, epoch = excluded.epoch,"
                " head = excluded.head, read_only = excluded.read_only",
                (
                    group.group_id,
                    group.name,
                    group.epoch,
                    group.head,
                    int(group.read_only),
                    now,
                ),
            )
            db.execute(
                "INSERT INTO group_ops (group_id, idx, server_seq, server_time, op)"
                " VALUES (?, ?, ?, ?, ?)",
                (group.group_id, group.epoch, server_seq, now, op_json),
            )
            current = {user_id for user_id, _, _ in group.members.values()}
            for user_id in set(user_ids.values()) - current:
                db.execute(
                    "UPDATE group_members SET left_epoch = ?"
                    " WHERE group_id = ? AND user_id = ? AND left_epoch IS NULL",
                    (group.epoch, group.group_id, user_id),
                )
            for user_id, role, muted in group.members.values():
                db.execute(
                    "INSERT INTO group_members (group_id, user_id, role, muted)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (group_id, user_id) DO UPDATE"
                    " SET role = excluded.role, muted = excluded.muted,"
                    " left_epoch = NULL",
                    (group.group_id, user_id, role, int(muted)),
                )
            queued = self._queue_rows(
                db, server_seq, [(device_id, None) for device_id in devices]
            )
        return server_seq, queued

    def withdraw_group_message(
        self, group_id: str, author: int, message_id: str
    ) -> bool:
        """Drop the stored copies of a group message deleted for everyone.

        The queue rows stay, without ciphertext, so that every device's
        sequence numbers keep no gap; they are pushed as ``dropped``.
        Returns False if the group has no such message.
        """
        with self.transaction() as db:
            row = db.execute(
                "SELECT server_seq, LENGTH(payload) FROM messages"
                " WHERE sender_user = ? AND message_id = ? AND group_id = ?"
                " AND kind = 'group'",
                (author, message_id, group_id),
            ).fetchone()
            if row is None:
                return False
            server_seq, size = row
            db.execute(
                "UPDATE messages SET payload = NULL WHERE server_seq = ?",
                (server_seq,),
            )
            db.execute(
                "UPDATE queue SET envelope = NULL WHERE server_seq = ?", (server_seq,)
            )
            cache = self._batch_lookups()
            if size is not None and cache is not None and author in cache.held_bytes:
                cache.held_bytes[author] -= size
        return True
