"""Group commit: one thread stores every ``send`` and ``ack``.

The event loop hands these requests to :class:`CommitWriter`. Its thread
takes every request waiting in its queue (up to :data:`MAX_BATCH`), runs
their handlers inside one SQLite transaction, and commits once. It posts
the outcomes to the loop only after the commit has returned, so no
acknowledgement or push leaves before the data it reports is durable, and
one fsync covers the whole batch. A batch forms while the previous one
commits, so a lightly loaded server commits each request at once instead
of waiting for more to arrive.

Ordering: each round the writer commits up to two batches. The first
contains the sends that no earlier acknowledgement of their own
connection precedes, and the second the acknowledgements, at most :data:`MAX_ACK_BATCH`,
with any later requests of their connections. Acknowledgements cost the
most (deletes, receipts) and arrive in bursts when many clients catch
up at once, and no one waits on their replies, so message delivery goes
first. Each connection's requests still run, commit and get their
replies in the order it sent them, because the second batch commits
after the first and takes a connection's requests only from its first
acknowledgement on. Per-device ``seq`` and the global ``server_seq``
increase in commit order. A resend within the same batch finds the first
copy through the open transaction and gets the duplicate reply.

Failures: a request whose handler raises before writing anything just
gets its error reply. One that raises after writing is undone by rolling
back the whole batch and running the other requests again without it, so
the others commit and only the failed one gets its error. The replay
costs more than a savepoint per request would, but only on a failure,
and it saves two statements on every request, each of which hands the
GIL to the event loop and back. If SQLite ends the whole transaction (a
full disk, an I/O error) or the commit fails, every request of the batch
gets ``internal_error`` and none is acknowledged. Clients then resend,
which deduplication by message id makes safe.

bcrypt never runs here: only the request types in :data:`BATCHED_REQUESTS`
come to this thread, and none of them hashes a password.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable

from server.handlers import (
    Outcome,
    Request,
    Services,
    failure_outcome,
    internal_error_outcome,
    run_handler,
)
from server.store import TransactionLost

logger = logging.getLogger(__name__)

# Request types the commit writer runs: the ones that write on nearly
# every call, and none of them hashes a password.
BATCHED_REQUESTS = frozenset({"send", "ack", "group_send", "group_op"})
# Requests committed in one transaction at most, which bounds how long a
# batch holds the write lock and delays the replies of its first request.
MAX_BATCH = 256
# Acknowledgements committed in one round at most, so that sends arriving
# during a burst of them wait for a few, not for all.
MAX_ACK_BATCH = 16
STOP_TIMEOUT_SECONDS = 30.0

PostBatch = Callable[[list[tuple[Request, Outcome]]], None]


class CommitWriter:
    """The thread that runs and commits batched requests.

    :meth:`submit` never blocks and is meant for the event loop thread.
    ``post`` is called from the writer thread with each committed batch's
    ``(request, outcome)`` pairs, in commit order, which keeps the
    submission order of each connection's requests. :meth:`commit_batch`
    blocks on SQLite; the writer thread calls it, and tests may too.
    """

    def __init__(self, services: Services, post: PostBatch) -> None:
        self.services = services
        self._post = post
        self._queue: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches_committed = 0
        self.requests_committed = 0

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name="enctalk-writer", daemon=True
        )
        self._thread.start()

    def submit(self, request: Request) -> None:
        """Queue a request for the next batch."""
        self._queue.put(request)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Commit the requests already queued, then end the thread; blocks."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("commit writer did not stop within %.0f s", timeout)
        self._thread = None

    def _run(self) -> None:
        logger.info("commit writer started")
        waiting: deque[Request] = deque()
        stopping = False
        while not (stopping and not waiting):
            if not waiting and not stopping:
                first = self._queue.get()
                if first is None:
                    break
                waiting.append(first)
            while len(waiting) < MAX_BATCH and not stopping:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    waiting.append(item)
            for batch in next_batches(waiting):
                self._commit_and_post(batch)
        logger.info("commit writer stopped")

    def _commit_and_post(self, batch: list[Request]) -> None:
        try:
            outcomes = self.commit_batch(batch)
        except Exception:
            logger.exception("commit writer failed on a batch of %d", len(batch))
            outcomes = [internal_error_outcome(request) for request in batch]
        self._post(list(zip(batch, outcomes, strict=True)))

    def commit_batch(self, requests: list[Request]) -> list[Outcome]:
        """Run ``requests`` in one transaction and commit it; return their outcomes.

        The outcomes are in the order of ``requests``. When the batch cannot
        be committed, every outcome is ``internal_error``.
        """
        failed: dict[int, Outcome] = {}
        while True:
            try:
                outcomes = self._attempt(requests, failed)
            except _RequestFailed as exc:
                # Its writes went with the rollback. Run the others again.
                failed[exc.index] = exc.outcome
                continue
            except (sqlite3.Error, TransactionLost) as exc:
                logger.error(
                    "commit of a batch of %d requests failed, none acknowledged: %s",
                    len(requests),
                    exc,
                )
                return [internal_error_outcome(request) for request in requests]
            self.batches_committed += 1
            self.requests_committed += len(requests)
            return outcomes

    def _attempt(
        self, requests: list[Request], failed: dict[int, Outcome]
    ) -> list[Outcome]:
        outcomes = []
        with self.services.store.batch():
            for index, request in enumerate(requests):
                if index in failed:
                    outcomes.append(failed[index])
                else:
                    outcomes.append(self._run_request(index, request))
        return outcomes

    def _run_request(self, index: int, request: Request) -> Outcome:
        store = self.services.store
        before = store.changes()
        try:
            return run_handler(self.services, request)
        except Exception as exc:
            outcome = failure_outcome(request, exc)
            if not store.db.in_transaction:
                raise TransactionLost(str(exc)) from exc
            if store.changes() != before:
                raise _RequestFailed(index, outcome) from exc
            return outcome


class _RequestFailed(Exception):
    """A request raised after writing; the batch must roll back without it."""

    def __init__(self, index: int, outcome: Outcome) -> None:
        super().__init__(index)
        self.index = index
        self.outcome = outcome


def next_batches(waiting: deque[Request]) -> list[list[Request]]:
    """Take this round's batches from ``waiting``: sends first, then acks.

    Returns the non-empty batches in commit order and leaves the requests
    of later rounds in ``waiting``, in their order.
    """
    sends: list[Request] = []
    acks: list[Request] = []
    later: deque[Request] = deque()
    # Connections whose requests from an acknowledgement on go to ``acks``,
    # and connections with a request left for a later round.
    behind_ack: set[int] = set()
    held: set[int] = set()
    ack_count = 0
    for request in waiting:
        conn_id = request.conn_id
        if conn_id in held:
            later.append(request)
            continue
        if request.kind == "ack" or conn_id in behind_ack:
            full = len(acks) >= MAX_BATCH or (
                request.kind == "ack" and ack_count >= MAX_ACK_BATCH
            )
            if full:
                held.add(conn_id)
                later.append(request)
                continue
            acks.append(request)
            behind_ack.add(conn_id)
            if request.kind == "ack":
                ack_count += 1
        elif len(sends) < MAX_BATCH:
            sends.append(request)
        else:
            held.add(conn_id)
            later.append(request)
    waiting.clear()
    waiting.extend(later)
    return [batch for batch in (sends, acks) if batch]
