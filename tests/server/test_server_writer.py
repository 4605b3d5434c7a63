"""Group commit: batches of sends and acks against a real SQLite file.

These tests call :meth:`CommitWriter.commit_batch` directly, so each batch
has exactly the requests the test gives it.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config
from server_wire import new_message_id, random_key

from server.handlers import OnlineUsers, Outcome, Request, Services, Session
from server.handlers.base import now_ms
from server.store import DATABASE_FILE_NAME, Store
from server.writer import MAX_ACK_BATCH, CommitWriter, next_batches


@dataclass
class Account:
    session: Session
    device_id: int


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    instance = Store(tmp_path / DATABASE_FILE_NAME)
    yield instance
    instance.close()


@pytest.fixture
def writer(store: Store, tmp_path: Path) -> CommitWriter:
    services = Services(make_config(tmp_path), store, OnlineUsers(), b"")
    return CommitWriter(services, lambda results: None)


def _account(store: Store, name: str) -> Account:
    token_hash = random_key()
    now = now_ms()
    user_id = store.create_user(name, b"hash", random_key(), b"backup", token_hash, now)
    device_id = store.create_device(
        user_id,
        "pc",
        random_key(),
        b"s" * 64,
        (1, random_key(), b"s" * 64),
        [],
        token_hash,
        now,
    )
    return Account(Session(user_id, name, device_id, token_hash), device_id)


@pytest.fixture
def pair(store: Store) -> tuple[Account, Account]:
    alice = _account(store, "alice")
    bob = _account(store, "bob")
    store.add_contact(alice.session.user_id, bob.session.user_id, now_ms())
    return alice, bob


def _send(
    sender: Account,
    recipient: Account,
    message_id: str | None = None,
    payload: bytes = b"ciphertext",
    frame_id: int = 1,
) -> Request:
    fields: dict[str, Any] = {
        "message_id": message_id or new_message_id(),
        "to": recipient.session.username,
        "payload": payload,
        "envelopes": [
            {
                "username": recipient.session.username,
                "device_id": recipient.device_id,
                "body": b"key",
            }
        ],
    }
    return Request(1, "127.0.0.1", "send", frame_id, fields, sender.session)


def _ack(reader: Account, upto: int) -> Request:
    return Request(2, "127.0.0.1", "ack", 9, {"upto": upto}, reader.session)


def _rows(store: Store, query: str) -> list[tuple[Any, ...]]:
    database = sqlite3.connect(store.path)
    try:
        return database.execute(query).fetchall()
    finally:
        database.close()


def test_batch_commits_many_sends_in_order(
    writer: CommitWriter, store: Store, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    requests = [_send(alice, bob, frame_id=index) for index in range(50)]
    outcomes = writer.commit_batch(requests)

    replies = [outcome.reply for outcome in outcomes]
    assert all(reply is not None and reply["type"] == "ok" for reply in replies)
    assert [reply["id"] for reply in replies if reply] == list(range(50))
    server_seqs = [reply["server_seq"] for reply in replies if reply]
    assert server_seqs == sorted(server_seqs)
    assert len(set(server_seqs)) == 50
    pushed = [outcome.queue_pushes[0] for outcome in outcomes]
    assert [device for device, _, _ in pushed] == [bob.device_id] * 50
    assert [seq for _, seq, _ in pushed] == list(range(1, 51))
    assert _rows(store, "SELECT COUNT(*) FROM messages") == [(50,)]
    assert _rows(store, "SELECT seq FROM queue ORDER BY seq") == [
        (seq,) for seq in range(1, 51)
    ]
    assert store.last_seq(bob.device_id) == 50
    assert writer.batches_committed == 1


def test_batch_deduplicates_resend_in_same_batch(
    writer: CommitWriter, store: Store, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    message_id = new_message_id()
    first, second = writer.commit_batch(
        [_send(alice, bob, message_id), _send(alice, bob, message_id)]
    )
    assert first.reply is not None
    assert second.reply is not None
    assert first.reply["duplicate"] is False
    assert second.reply["duplicate"] is True
    assert second.reply["server_seq"] == first.reply["server_seq"]
    assert second.reply["server_time"] == first.reply["server_time"]
    assert len(first.queue_pushes) == 1
    assert second.queue_pushes == []
    assert _rows(store, "SELECT COUNT(*) FROM messages") == [(1,)]
    assert _rows(store, "SELECT COUNT(*) FROM queue") == [(1,)]


def test_batch_rejects_conflicting_id_in_same_batch(
    writer: CommitWriter, store: Store, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    message_id = new_message_id()
    first, second = writer.commit_batch(
        [
            _send(alice, bob, message_id, b"one"),
            _send(alice, bob, message_id, b"two"),
        ]
    )
    assert first.reply is not None
    assert second.reply is not None
    assert first.reply["type"] == "ok"
    assert second.reply["code"] == "message_id_conflict"
    assert _rows(store, "SELECT payload FROM messages") == [(b"one",)]


def test_failing_request_rolls_back_alone(
    writer: CommitWriter,
    store: Store,
    pair: tuple[Account, Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice, bob = pair
    doomed = new_message_id()
    original = Store.store_message

    def store_then_fail(self: Store, *args: Any) -> Any:
        result = original(self, *args)
        if args[2] == doomed:
            raise sqlite3.OperationalError("simulated failure after the inserts")
        return result

    monkeypatch.setattr(Store, "store_message", store_then_fail)
    before = _send(alice, bob, frame_id=1)
    after = _send(alice, bob, frame_id=3)
    outcomes = writer.commit_batch(
        [before, _send(alice, bob, doomed, frame_id=2), after]
    )

    codes = [outcome.reply["type"] for outcome in outcomes if outcome.reply]
    assert codes == ["ok", "error", "ok"]
    failed = outcomes[1].reply
    assert failed is not None
    assert failed["code"] == "internal_error"
    assert outcomes[1].queue_pushes == []
    stored = _rows(store, "SELECT message_id FROM messages ORDER BY server_seq")
    assert stored == [(before.fields["message_id"],), (after.fields["message_id"],)]
    # The failed request's queue row and seq were rolled back with it.
    assert _rows(store, "SELECT seq FROM queue ORDER BY seq") == [(1,), (2,)]
    assert [outcomes[2].queue_pushes[0][1]] == [2]
    assert store.last_seq(bob.device_id) == 2
    assert writer.batches_committed == 1


def test_lost_transaction_acknowledges_nothing(
    writer: CommitWriter,
    store: Store,
    pair: tuple[Account, Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice, bob = pair
    doomed = new_message_id()
    original = Store.store_message

    def end_transaction(self: Store, *args: Any) -> Any:
        if args[2] == doomed:
            # What SQLite does itself after an I/O error or a full disk.
            self.db.execute("ROLLBACK")
            raise sqlite3.OperationalError("simulated disk I/O error")
        return original(self, *args)

    monkeypatch.setattr(Store, "store_message", end_transaction)
    outcomes = writer.commit_batch(
        [_send(alice, bob), _send(alice, bob, doomed), _send(alice, bob)]
    )

    for outcome in outcomes:
        assert outcome.reply is not None
        assert outcome.reply["code"] == "internal_error"
        assert outcome.queue_pushes == []
    assert _rows(store, "SELECT COUNT(*) FROM messages") == [(0,)]
    assert writer.batches_committed == 0

    retried = writer.commit_batch([_send(alice, bob)])
    assert retried[0].reply is not None
    assert retried[0].reply["type"] == "ok"
    assert retried[0].queue_pushes[0][1] == 1


def test_failed_commit_acknowledges_nothing(
    writer: CommitWriter,
    store: Store,
    pair: tuple[Account, Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice, bob = pair

    def fail_commit(db: sqlite3.Connection) -> None:
        db.execute("ROLLBACK")
        raise sqlite3.OperationalError("simulated commit failure")

    monkeypatch.setattr(Store, "_commit", staticmethod(fail_commit))
    outcomes = writer.commit_batch([_send(alice, bob), _send(alice, bob)])
    monkeypatch.undo()

    for outcome in outcomes:
        assert outcome.reply is not None
        assert outcome.reply["code"] == "internal_error"
        assert outcome.queue_pushes == []
    assert _rows(store, "SELECT COUNT(*) FROM messages") == [(0,)]


def test_batch_error_reply_leaves_others(
    writer: CommitWriter, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    stranger = Request(
        1,
        "127.0.0.1",
        "send",
        2,
        dict(_send(alice, bob).fields, to="nobody"),
        alice.session,
    )
    outcomes = writer.commit_batch([_send(alice, bob), stranger, _send(alice, bob)])
    codes = [outcome.reply.get("code") for outcome in outcomes if outcome.reply]
    assert codes == [None, "user_not_found", None]


def test_ack_in_same_batch_as_send(
    writer: CommitWriter, store: Store, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    send = _send(alice, bob)
    sent, acked = writer.commit_batch([send, _ack(bob, 1)])

    assert sent.reply is not None
    assert acked.reply is not None
    assert acked.reply["type"] == "ok"
    assert len(acked.queue_pushes) == 1
    device, seq, _ = acked.queue_pushes[0]
    assert device == alice.device_id
    assert seq == 1
    assert _rows(store, "SELECT device_id, kind FROM queue") == [
        (alice.device_id, "receipt")
    ]
    assert _rows(store, "SELECT COUNT(*) FROM messages WHERE payload IS NULL") == [(1,)]


def test_writer_thread_posts_in_submission_order(
    store: Store, tmp_path: Path, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    posted: queue.SimpleQueue[list[tuple[Request, Outcome]]] = queue.SimpleQueue()
    services = Services(make_config(tmp_path), store, OnlineUsers(), b"")
    writer = CommitWriter(services, posted.put)
    writer.start()
    try:
        # Hold the write lock so that the requests queue up behind the
        # first one and form a second batch.
        with store.write_lock:
            for index in range(20):
                writer.submit(_send(alice, bob, frame_id=index))
            time.sleep(0.2)
        results: list[tuple[Request, Outcome]] = []
        while len(results) < 20:
            results += posted.get(timeout=5)
    finally:
        writer.stop()

    assert [request.frame_id for request, _ in results] == list(range(20))
    seqs = [outcome.queue_pushes[0][1] for _, outcome in results]
    assert seqs == list(range(1, 21))
    assert writer.requests_committed == 20
    assert writer.batches_committed < 20


def test_batch_sees_device_added_by_other_thread(
    writer: CommitWriter, store: Store, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    assert writer.commit_batch([_send(alice, bob)])[0].reply["type"] == "ok"

    def add_device() -> None:
        store.create_device(
            bob.session.user_id,
            "laptop",
            random_key(),
            b"s" * 64,
            (1, random_key(), b"s" * 64),
            [],
            random_key(),
            now_ms(),
        )

    worker = threading.Thread(target=add_device)
    worker.start()
    worker.join()

    reply = writer.commit_batch([_send(alice, bob)])[0].reply
    assert reply is not None
    assert reply["code"] == "device_list_mismatch"
    assert [item["username"] for item in reply["details"]["missing"]] == ["bob"]


def test_batch_sees_device_made_stale_elsewhere(
    writer: CommitWriter, store: Store, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    assert writer.commit_batch([_send(alice, bob)])[0].reply["type"] == "ok"

    database = sqlite3.connect(store.path)
    try:
        database.execute(
            "UPDATE devices SET last_seen = 0 WHERE id = ?", (bob.device_id,)
        )
        database.commit()
    finally:
        database.close()

    reply = writer.commit_batch([_send(alice, bob)])[0].reply
    assert reply is not None
    assert reply["code"] == "device_list_mismatch"
    assert reply["details"]["extra"] == [
        {"username": "bob", "device_id": bob.device_id}
    ]


def test_ack_of_many_messages_queues_every_receipt(
    writer: CommitWriter, store: Store, pair: tuple[Account, Account]
) -> None:
    # More rows than one INSERT or UPDATE statement binds at once.
    alice, bob = pair
    writer.commit_batch([_send(alice, bob) for _ in range(600)])
    (acked,) = writer.commit_batch([_ack(bob, 600)])

    seqs = [seq for device, seq, _ in acked.queue_pushes if device == alice.device_id]
    assert seqs == list(range(1, 601))
    assert store.last_seq(alice.device_id) == 600
    assert _rows(store, "SELECT COUNT(*) FROM queue WHERE kind = 'receipt'") == [(600,)]
    assert _rows(store, "SELECT COUNT(*) FROM queue WHERE kind = 'message'") == [(0,)]
    assert _rows(store, "SELECT COUNT(*) FROM messages WHERE payload IS NULL") == [
        (600,)
    ]


def _writer_with(store: Store, tmp_path: Path, **settings: Any) -> CommitWriter:
    services = Services(make_config(tmp_path, **settings), store, OnlineUsers(), b"")
    return CommitWriter(services, lambda results: None)


def test_message_quota_counts_sends_in_same_batch(
    store: Store, tmp_path: Path, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    writer = _writer_with(store, tmp_path, message_quota=250)
    payload = b"p" * 100
    outcomes = writer.commit_batch(
        [_send(alice, bob, payload=payload) for _ in range(3)]
    )
    codes = [outcome.reply.get("code") for outcome in outcomes if outcome.reply]
    assert codes == [None, None, "quota_exceeded"]
    assert store.queued_payload_bytes(alice.session.user_id) == 200

    # Acknowledged payloads are dropped and free the quota, also for the
    # counter the writer keeps between batches.
    writer.commit_batch([_ack(bob, 2)])
    assert store.queued_payload_bytes(alice.session.user_id) == 0
    again = writer.commit_batch([_send(alice, bob, payload=payload) for _ in range(2)])
    assert [outcome.reply["type"] for outcome in again if outcome.reply] == ["ok", "ok"]


def test_queue_length_limit_counts_same_batch(
    store: Store, tmp_path: Path, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    writer = _writer_with(store, tmp_path, max_queued_items=2)
    outcomes = writer.commit_batch([_send(alice, bob) for _ in range(3)])
    codes = [outcome.reply.get("code") for outcome in outcomes if outcome.reply]
    assert codes == [None, None, "quota_exceeded"]

    writer.commit_batch([_ack(bob, 1)])
    assert store.queue_length(bob.device_id) == 1
    later = writer.commit_batch([_send(alice, bob), _send(alice, bob)])
    codes = [outcome.reply.get("code") for outcome in later if outcome.reply]
    assert codes == [None, "quota_exceeded"]
    assert store.queue_length(bob.device_id) == 2


def test_quota_counters_follow_other_connections(
    store: Store, tmp_path: Path, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    writer = _writer_with(store, tmp_path, message_quota=150)
    payload = b"p" * 100
    assert (
        writer.commit_batch([_send(alice, bob, payload=payload)])[0].reply["type"]
        == "ok"
    )

    # Another connection drops the payload, as removing the device does.
    database = sqlite3.connect(store.path)
    try:
        database.execute("UPDATE messages SET payload = NULL")
        database.commit()
    finally:
        database.close()

    reply = writer.commit_batch([_send(alice, bob, payload=payload)])[0].reply
    assert reply is not None
    assert reply["type"] == "ok"


def test_batch_runs_few_statements_per_send(
    writer: CommitWriter, store: Store, pair: tuple[Account, Account]
) -> None:
    # Every statement hands the GIL to the event loop and back, so a check
    # added to the send path should reuse the batch's cached lookups.
    alice, bob = pair
    writer.commit_batch([_send(alice, bob)])
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    try:
        writer.commit_batch([_send(alice, bob) for _ in range(20)])
    finally:
        store.db.set_trace_callback(None)
    # find_message, INSERT messages and INSERT queue per send, and BEGIN,
    # PRAGMA data_version, the sequence UPDATE and COMMIT per batch.
    assert len(statements) <= 3 * 20 + 4, statements


def _request(conn_id: int, kind: str, frame_id: int) -> Request:
    return Request(conn_id, "127.0.0.1", kind, frame_id, {}, None)


def _ids(batch: list[Request]) -> list[tuple[int, int]]:
    return [(request.conn_id, request.frame_id or 0) for request in batch]


def test_next_batches_puts_sends_before_acks() -> None:
    waiting = deque(
        [
            _request(1, "ack", 1),
            _request(2, "send", 1),
            _request(1, "send", 2),
            _request(3, "ack", 1),
            _request(2, "send", 2),
        ]
    )
    batches = next_batches(waiting)
    # Connection 1's send stays behind its own ack.
    assert [_ids(batch) for batch in batches] == [
        [(2, 1), (2, 2)],
        [(1, 1), (1, 2), (3, 1)],
    ]
    assert not waiting


def test_next_batches_holds_acks_over_the_limit() -> None:
    waiting = deque(_request(index, "ack", 1) for index in range(MAX_ACK_BATCH + 2))
    waiting.append(_request(0, "send", 2))
    waiting.append(_request(MAX_ACK_BATCH, "send", 2))
    waiting.append(_request(99, "send", 1))

    first = next_batches(waiting)
    assert [_ids(batch) for batch in first] == [
        [(99, 1)],
        [(index, 1) for index in range(MAX_ACK_BATCH)] + [(0, 2)],
    ]
    # The held connections keep their order for the next round.
    assert _ids(list(waiting)) == [
        (MAX_ACK_BATCH, 1),
        (MAX_ACK_BATCH + 1, 1),
        (MAX_ACK_BATCH, 2),
    ]
    second = next_batches(waiting)
    assert [_ids(batch) for batch in second] == [
        [(MAX_ACK_BATCH, 1), (MAX_ACK_BATCH + 1, 1), (MAX_ACK_BATCH, 2)]
    ]
