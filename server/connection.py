"""Per-connection state, owned and changed only by the event loop thread.

A connection starts in :data:`HANDSHAKE`, moves to :data:`OPEN` when TLS is
up, and is dropped from the loop when closed. Memory per idle connection
is kept small: the frame decoder is made only after the handshake, and the
output buffer is replaced by an empty ``bytearray`` whenever it drains.
"""

from __future__ import annotations

import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any

from enctalk.protocol import FrameDecoder
from server.handlers import Request, Session

HANDSHAKE = "handshake"
OPEN = "open"


@dataclass(frozen=True)
class PendingRequest:
    """A validated request waiting for its turn on its connection."""

    kind: str
    frame_id: int | None
    fields: dict[str, Any]


class Connection:
    """One client connection: TLS socket, buffers, session and counters."""

    __slots__ = (
        "address",
        "close_deadline",
        "closed",
        "closing_reason",
        "continuation",
        "decoder",
        "deferred",
        "deferred_bytes",
        "events",
        "handshake_deadline",
        "handshake_events",
        "hello_done",
        "id",
        "in_flight",
        "in_flight_batched",
        "last_frame",
        "outbuf",
        "paused",
        "pending",
        "read_wants_write",
        "refilled",
        "session",
        "sock",
        "state",
        "strikes",
        "sync_seq",
        "synced",
        "syncing",
        "tokens",
        "write_attempt",
        "write_wants_read",
    )

    def __init__(
        self,
        conn_id: int,
        sock: ssl.SSLSocket,
        address: str,
        now: float,
        handshake_timeout: float,
        burst: int,
    ) -> None:
        self.id = conn_id
        self.sock = sock
        self.address = address
        self.state = HANDSHAKE
        self.handshake_deadline = now + handshake_timeout
        self.handshake_events = 0
        self.last_frame = now
        self.decoder: FrameDecoder | None = None
        self.outbuf = bytearray()
        # Length of the last SSL write that raised SSLWantWrite/ReadError;
        # OpenSSL requires the retry to pass the same bytes.
        self.write_attempt = 0
        self.read_wants_write = False
        self.write_wants_read = False
        self.events = 0
        self.paused = False
        self.pending: deque[PendingRequest | bytes] = deque()
        # Requests handed to a worker or the commit writer whose replies
        # have not been sent yet. Several may be in flight only when all of
        # them went to the commit writer, which returns a connection's
        # outcomes in the order it got the requests.
        self.in_flight = 0
        self.in_flight_batched = False
        self.continuation: Request | None = None
        self.session: Session | None = None
        self.hello_done = False
        self.tokens = float(burst)
        self.refilled = now
        self.strikes = 0
        # Whether the client has sent sync since its device was bound. Live
        # queue items go only to a synced connection, because an item pushed
        # ahead of older queued ones could be acknowledged past them.
        self.synced = False
        self.syncing = False
        self.sync_seq = 0
        self.deferred: list[tuple[int, bytes]] = []
        self.deferred_bytes = 0
        self.closing_reason: str | None = None
        self.close_deadline = 0.0
        self.closed = False

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.address} {self.state}>"
