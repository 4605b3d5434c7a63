"""Types shared by the request handlers and the event loop.

A handler runs in a worker thread. It gets a :class:`Request` (a snapshot
of the connection's session plus the validated fields) and returns an
:class:`Outcome`: the reply, and what the event loop must do afterwards
(change the session, push frames to other connections, revoke sessions).
Handlers never touch sockets or connection state themselves, so the loop
thread stays the only owner of both.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from enctalk.protocol import encode_frame, errors, make_error
from server.attachments import AttachmentStore
from server.config import ServerConfig
from server.ratelimit import AddressBuckets
from server.store import Store

MS_PER_DAY = 86_400_000
# One-time prekeys of one device that one account may take per day. A new
# session needs one, so more than a few a day look like an attempt to use
# them up. Further bundles come without one, and the session then starts
# from the signed prekey alone, which X3DH allows.
ONE_TIME_PREKEYS_PER_ACCOUNT_DAY = 5


class HandlerError(Exception):
    """A request failed for a reason sent to the client as an error frame."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after


@dataclass(frozen=True)
class Session:
    """The account (and maybe device) a connection is logged in as."""

    user_id: int
    username: str
    device_id: int | None
    token_hash: bytes


@dataclass(frozen=True)
class Request:
    """One validated request, with the state of its connection when it ran."""

    conn_id: int
    address: str
    kind: str
    frame_id: int | None
    fields: dict[str, Any]
    session: Session | None


@dataclass(frozen=True)
class Revocation:
    """End every live session of ``user_id`` except ``keep_token_hash``."""

    user_id: int
    keep_token_hash: bytes | None
    reason: str


@dataclass
class Outcome:
    """The result of one request, applied by the event loop thread.

    ``before`` frames go to the requesting connection ahead of ``reply``,
    and ``after`` frames follow it. ``queue_pushes`` are queue items
    ``(device_id, seq, frame)`` for live delivery, ``device_frames`` and
    ``user_frames`` other pushes to every connection of a device or user.
    A ``continuation`` is the next part of a long ``sync``: the loop runs
    it once the connection's output buffer has drained below the soft
    limit, and sends no reply until the last part.
    """

    reply: dict[str, Any] | None = None
    before: list[bytes] = field(default_factory=list)
    after: list[bytes] = field(default_factory=list)
    session_changed: bool = False
    session: Session | None = None
    contact_ids: frozenset[int] = frozenset()
    queue_pushes: list[tuple[int, int, bytes]] = field(default_factory=list)
    device_frames: list[tuple[int, bytes]] = field(default_factory=list)
    user_frames: list[tuple[int, bytes]] = field(default_factory=list)
    # Pairs of users who now see each other's presence.
    new_contacts: list[tuple[int, int]] = field(default_factory=list)
    revocation: Revocation | None = None
    removed_devices: list[int] = field(default_factory=list)
    continuation: Request | None = None
    highest_seq: int = 0


class OnlineUsers:
    """The ids of users with at least one logged-in connection.

    Written only by the event loop, read by handlers filling in ``online``
    fields; the lock makes each read see a consistent set.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[int] = set()

    def set_online(self, user_id: int, online: bool) -> None:
        with self._lock:
            if online:
                self._ids.add(user_id)
            else:
                self._ids.discard(user_id)

    def is_online(self, user_id: int) -> bool:
        with self._lock:
            return user_id in self._ids


@dataclass
class Services:
    """Shared handler dependencies: settings, database, presence, dummy hash."""

    config: ServerConfig
    store: Store
    online: OnlineUsers
    # bcrypt hash of a random key, checked for unknown users so that a
    # wrong username takes as long as a wrong key.
    dummy_hash: bytes
    # Opened on first use by server.handlers.attachments.
    attachments: AttachmentStore | None = None
    # Registrations per client address, refilled per register_rate.
    register_buckets: AddressBuckets = field(init=False)
    # One-time prekeys taken per "account:device" pair; kept in memory, so
    # a restart gives every pair its daily allowance again.
    prekey_buckets: AddressBuckets = field(init=False)

    def __post_init__(self) -> None:
        self.register_buckets = AddressBuckets(
            self.config.register_burst, self.config.register_rate / 60.0
        )
        self.prekey_buckets = AddressBuckets(
            ONE_TIME_PREKEYS_PER_ACCOUNT_DAY,
            ONE_TIME_PREKEYS_PER_ACCOUNT_DAY / (MS_PER_DAY / 1000),
        )

    def may_take_prekey(self, requester: int, device_id: int) -> bool:
        """Return True if ``requester`` may take a one-time prekey of the device."""
        return self.prekey_buckets.take(f"{requester}:{device_id}") == 0

    @property
    def active_since(self) -> int:
        """Return the ``last_seen`` time before which a device is stale."""
        return now_ms() - int(self.config.stale_device_days * MS_PER_DAY)

    def encode(self, frame: dict[str, Any]) -> bytes:
        return encode_frame(frame, self.config.max_frame_size)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def error_reply(request: Request, error: HandlerError) -> dict[str, Any]:
    return make_error(
        request.frame_id,
        error.code,
        error.message,
        details=error.details,
        retry_after=error.retry_after,
    )


def require_session(request: Request) -> Session:
    if request.session is None:
        raise HandlerError(errors.NOT_AUTHENTICATED, "Log in first.")
    return request.session


def require_device(request: Request) -> tuple[Session, int]:
    session = require_session(request)
    if session.device_id is None:
        raise HandlerError(
            errors.NO_DEVICE,
            "This session has no device; register a device or log in with one.",
        )
    return session, session.device_id
