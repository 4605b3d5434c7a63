"""State the commit writer keeps between batches, to save statements.

A ``send`` looks up the recipient by name (and the sender too, under the
lab policy ``direct_messages = "staff"``), checks the contact pair and
lists both users' active devices. These rows change rarely, and only
through other connections: the workers (registration, devices, logins)
and the admin command. SQLite's ``PRAGMA data_version`` changes whenever
another connection has committed. The writer reads it at the start of
each batch and drops every entry when it has changed. It holds the write
lock by then, so nothing else can commit during the batch. A store
method that changes these rows also drops the cache of its own thread.

The cache also counts each device's queue sequence numbers during a
batch. The counters are written to the database just before the commit,
and dropped with everything else when a batch rolls back. Likewise it
keeps each sender's held payload bytes and each device's queue length,
for the message quota checks, and updates them as the batch writes.

Cost: one small query per batch, and memory proportional to the users,
contact pairs and devices looked up since the last change.
"""

from __future__ import annotations

from typing import Any

# Entries kept at most before the cache starts over, so a long run without
# any other writer cannot grow it without bound.
MAX_ENTRIES = 100_000


class LookupCache:
    """Cached lookups and sequence counters of one connection."""

    def __init__(self) -> None:
        self.data_version: int | None = None
        # canonical username -> User, or None for an unknown name
        self.users: dict[str, Any] = {}
        # (user_id, contact_id) -> whether they are contacts
        self.contacts: dict[tuple[int, int], bool] = {}
        # user_id -> [(device_id, last_seen)] of devices not removed
        self.devices: dict[int, list[tuple[int, int]]] = {}
        # device_id -> last queue sequence number assigned, and the devices
        # whose counter is ahead of the stored one
        self.seqs: dict[int, int] = {}
        self.dirty_seqs: set[int] = set()
        # Sequence numbers reserved so far, for Store.changes()
        self.reservations = 0
        # sender user_id -> bytes of payloads held, and device_id -> queue
        # rows, for the message quota checks
        self.held_bytes: dict[int, int] = {}
        self.queue_lengths: dict[int, int] = {}

    def validate(self, data_version: int) -> None:
        """Drop every entry if another connection committed since the last check."""
        size = (
            len(self.users)
            + len(self.contacts)
            + len(self.devices)
            + len(self.seqs)
            + len(self.held_bytes)
            + len(self.queue_lengths)
        )
        if data_version != self.data_version or size > MAX_ENTRIES:
            self.clear()
        self.data_version = data_version

    def clear(self) -> None:
        self.users.clear()
        self.contacts.clear()
        self.devices.clear()
        self.seqs.clear()
        self.dirty_seqs.clear()
        self.held_bytes.clear()
        self.queue_lengths.clear()
