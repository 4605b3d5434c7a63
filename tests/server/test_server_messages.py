"""Sending, queues, sync, acknowledgements and receipts, against a live server."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

from conftest import Clients, make_config
from server_wire import WireClient, auth_key, device_fields, new_message_id

from enctalk.protocol import encode_frame, make_request
from server.app import Server
from server.store import DATABASE_FILE_NAME


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _pair(clients: Clients) -> tuple[WireClient, WireClient]:
    alice = clients.with_device("alice")
    bob = clients.with_device("bob")
    alice.call("add_contact", username="bob")
    bob.wait_push("contact_added")
    return alice, bob


def _send(
    client: WireClient,
    to: str,
    envelopes: list[tuple[str, int]],
    message_id: str | None = None,
    payload: bytes = b"ciphertext",
) -> dict:
    return client.request(
        "send",
        message_id=message_id or new_message_id(),
        to=to,
        payload=payload,
        envelopes=[
            {"username": name, "device_id": device, "body": b"key for %d" % device}
            for name, device in envelopes
        ],
    )


def test_send_delivers_live_and_acknowledges(clients: Clients) -> None:
    alice, bob = _pair(clients)
    message_id = new_message_id()
    reply = _send(alice, "bob", [("bob", bob.device_id)], message_id)
    assert reply["type"] == "ok"
    assert reply["duplicate"] is False
    assert reply["message_id"] == message_id

    pushed = bob.wait_push("message")
    assert pushed["seq"] == 1
    assert pushed["from"] == "alice"
    assert pushed["from_device"] == alice.device_id
    assert pushed["to"] == "bob"
    assert pushed["server_seq"] == reply["server_seq"]
    assert pushed["payload"] == _b64(b"ciphertext")
    assert pushed["envelope"] == _b64(b"key for %d" % bob.device_id)


def test_send_device_list_mismatch(clients: Clients) -> None:
    alice, bob = _pair(clients)
    laptop = clients.login("alice")
    laptop_device = laptop.call("register_device", **device_fields())["device_id"]
    laptop.call("sync", after=0)

    reply = _send(alice, "bob", [("bob", bob.device_id), ("bob", 999)])
    assert reply["code"] == "device_list_mismatch"
    assert reply["details"]["missing"] == [
        {"username": "alice", "device_id": laptop_device}
    ]
    assert reply["details"]["extra"] == [{"username": "bob", "device_id": 999}]

    ok = _send(alice, "bob", [("bob", bob.device_id), ("alice", laptop_device)])
    assert ok["type"] == "ok"
    own_copy = laptop.wait_push("message")
    assert own_copy["from"] == "alice"
    assert own_copy["to"] == "bob"


def test_send_requires_contact(clients: Clients) -> None:
    alice = clients.with_device("alice")
    carol = clients.with_device("carol")
    reply = _send(alice, "carol", [("carol", carol.device_id)])
    assert reply["code"] == "not_a_contact"
    assert _send(alice, "nobody", [])["code"] == "user_not_found"


def test_send_resend_is_deduplicated(clients: Clients) -> None:
    alice, bob = _pair(clients)
    message_id = new_message_id()
    first = _send(alice, "bob", [("bob", bob.device_id)], message_id)
    second = _send(alice, "bob", [("bob", bob.device_id)], message_id)
    assert second["type"] == "ok"
    assert second["duplicate"] is True
    assert second["server_seq"] == first["server_seq"]
    assert second["server_time"] == first["server_time"]

    conflict = _send(alice, "bob", [("bob", bob.device_id)], message_id, b"other")
    assert conflict["code"] == "message_id_conflict"

    bob.wait_push("message")
    last = bob.call("sync", after=0)["last"]
    assert last == 1


def test_send_is_committed_before_the_reply(clients: Clients, server: Server) -> None:
    alice, bob = _pair(clients)
    reply = _send(alice, "bob", [("bob", bob.device_id)])
    database = sqlite3.connect(server.data_dir / DATABASE_FILE_NAME)
    try:
        rows = database.execute(
            "SELECT server_seq FROM messages WHERE server_seq = ?",
            (reply["server_seq"],),
        ).fetchall()
        queued = database.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
    finally:
        database.close()
    assert rows == [(reply["server_seq"],)]
    assert queued == 1


def test_server_seq_increases(clients: Clients) -> None:
    alice, bob = _pair(clients)
    seqs = [
        _send(alice, "bob", [("bob", bob.device_id)])["server_seq"] for _ in range(5)
    ]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 5


def test_ack_queues_receipt_for_sender(clients: Clients) -> None:
    alice, bob = _pair(clients)
    message_id = new_message_id()
    _send(alice, "bob", [("bob", bob.device_id)], message_id)
    pushed = bob.wait_push("message")
    bob.call("ack", upto=pushed["seq"])

    receipt = alice.wait_push("receipt")
    assert receipt["message_id"] == message_id
    assert receipt["username"] == "bob"
    assert receipt["device_id"] == bob.device_id
    assert bob.call("sync", after=0)["last"] == 1
    assert not [p for p in bob.pushes if p["type"] == "message"]


def test_sync_pushes_queue_in_order_then_replies(clients: Clients) -> None:
    alice, bob = _pair(clients)
    bob.close()
    for _ in range(5):
        _send(alice, "bob", [("bob", clients.opened[1].device_id)])
    again = clients.login("bob", device_id=clients.opened[1].device_id)
    frame_id = again.next_id
    again.next_id += 1
    again.send_frame({"type": "sync", "id": frame_id, "after": 2})
    frames = []
    while True:
        frame = again.read_frame()
        if frame.get("id") == frame_id:
            break
        frames.append(frame)
    messages = [f for f in frames if f["type"] == "message"]
    assert [m["seq"] for m in messages] == [3, 4, 5]
    assert frame["last"] == 5


def test_long_sync_is_split_and_complete(data_dir: Path) -> None:
    config = make_config(data_dir, output_soft_limit=64 * 1024)
    with Server(config) as server:
        clients = Clients(server.port)
        try:
            alice, bob = _pair(clients)
            device = bob.device_id
            bob.close()
            payload = b"p" * 20_000
            for _ in range(30):
                reply = _send(alice, "bob", [("bob", device)], payload=payload)
                assert reply["type"] == "ok"
            again = clients.login("bob", device_id=device)
            reply = again.call("sync", after=0)
            seqs = [p["seq"] for p in again.pushes if p["type"] == "message"]
            assert seqs == list(range(1, 31))
            assert reply["last"] == 30
        finally:
            clients.close_all()


def test_queue_survives_restart(data_dir: Path) -> None:
    server = Server(make_config(data_dir))
    server.start()
    clients = Clients(server.port)
    try:
        alice, bob = _pair(clients)
        device = bob.device_id
        bob.close()
        message_id = new_message_id()
        sent = _send(alice, "bob", [("bob", device)], message_id)
        assert sent["type"] == "ok"
    finally:
        clients.close_all()
        server.stop()

    restarted = Server(make_config(data_dir))
    restarted.start()
    clients = Clients(restarted.port)
    try:
        bob = clients.connect()
        bob.call("login", username="bob", auth_key=auth_key("bob"), device_id=device)
        reply = bob.call("sync", after=0)
        messages = [p for p in bob.pushes if p["type"] == "message"]
        assert [m["message_id"] for m in messages] == [message_id]
        assert messages[0]["server_seq"] == sent["server_seq"]
        assert reply["last"] == 1
        assert restarted.fingerprint == server.fingerprint
    finally:
        clients.close_all()
        restarted.stop()


def test_payload_deleted_after_last_ack(clients: Clients, server: Server) -> None:
    alice, bob = _pair(clients)
    _send(alice, "bob", [("bob", bob.device_id)])
    bob.call("ack", upto=bob.wait_push("message")["seq"])
    database = sqlite3.connect(server.data_dir / DATABASE_FILE_NAME)
    try:
        payloads = database.execute(
            "SELECT COUNT(*) FROM messages WHERE payload IS NOT NULL"
        ).fetchone()[0]
    finally:
        database.close()
    assert payloads == 0


def test_stale_device_is_not_expected(clients: Clients, server: Server) -> None:
    alice, bob = _pair(clients)
    old = clients.login("bob")
    old_device = old.call("register_device", **device_fields())["device_id"]
    old.close()
    database = sqlite3.connect(server.data_dir / DATABASE_FILE_NAME)
    try:
        database.execute("UPDATE devices SET last_seen = 0 WHERE id = ?", (old_device,))
        database.commit()
    finally:
        database.close()
    bundles = alice.call("fetch_bundles", username="bob")["devices"]
    assert [b["device_id"] for b in bundles] == [bob.device_id]
    assert _send(alice, "bob", [("bob", bob.device_id)])["type"] == "ok"
    stale = [d for d in bob.call("list_devices")["devices"] if d["stale"]]
    assert [d["device_id"] for d in stale] == [old_device]


def test_pipelined_sends_answered_in_order(clients: Clients) -> None:
    alice, bob = _pair(clients)
    envelopes = [{"username": "bob", "device_id": bob.device_id, "body": b"key"}]
    frames = []
    for index in range(1, 41):
        if index % 10 == 0:
            frames.append(make_request("list_contacts", index))
        elif index % 7 == 0:
            frames.append(make_request("ping", index))
        else:
            frames.append(
                make_request(
                    "send",
                    index,
                    message_id=new_message_id(),
                    to="bob",
                    payload=b"ciphertext",
                    envelopes=envelopes,
                )
            )
    alice.send_raw(b"".join(encode_frame(frame) for frame in frames))

    replies = [alice.read_frame() for _ in frames]
    assert [reply["id"] for reply in replies] == list(range(1, 41))
    assert {reply["type"] for reply in replies} == {"ok"}
    sends = [frame["id"] for frame in frames if frame["type"] == "send"]
    assert [reply["id"] for reply in replies if "server_seq" in reply] == sends
    server_seqs = [reply["server_seq"] for reply in replies if "server_seq" in reply]
    assert server_seqs == sorted(server_seqs)
    assert len(set(server_seqs)) == len(sends)
    seqs = [bob.wait_push("message")["seq"] for _ in sends]
    assert seqs == list(range(1, len(sends) + 1))


def test_no_live_push_before_sync(clients: Clients) -> None:
    alice, bob = _pair(clients)
    device = bob.device_id
    token = bob.token
    bob.close()
    for _ in range(3):
        assert _send(alice, "bob", [("bob", device)])["type"] == "ok"

    again = clients.connect()
    again.call("resume", token=token, device_id=device)
    # Sent after the resume and before the sync: without a hold, seq 4
    # would reach the device ahead of seq 1 to 3.
    assert _send(alice, "bob", [("bob", device)])["type"] == "ok"
    reply = again.call("sync", after=0)
    seqs = [p["seq"] for p in again.pushes if p["type"] == "message"]
    assert seqs == [1, 2, 3, 4]
    assert reply["last"] == 4

    again.pushes.clear()
    assert _send(alice, "bob", [("bob", device)])["type"] == "ok"
    assert again.wait_push("message")["seq"] == 5


def test_send_over_message_quota_is_rejected(data_dir: Path) -> None:
    with Server(make_config(data_dir, message_quota=10_000)) as server:
        clients = Clients(server.port)
        try:
            alice, bob = _pair(clients)
            device = bob.device_id
            bob.close()
            payload = b"p" * 4_000
            for _ in range(2):
                reply = _send(alice, "bob", [("bob", device)], payload=payload)
                assert reply["type"] == "ok"
            over = _send(alice, "bob", [("bob", device)], payload=payload)
            assert over["type"] == "error"
            assert over["code"] == "quota_exceeded"
            assert "10000" in over["message"]

            again = clients.login("bob", device_id=device)
            synced = again.call("sync", after=0)
            assert synced["last"] == 2
            again.call("ack", upto=2)
            # Delivered payloads no longer count against the sender.
            freed = _send(alice, "bob", [("bob", device)], payload=payload)
            assert freed["type"] == "ok"
        finally:
            clients.close_all()


def test_send_to_full_device_queue_is_rejected(data_dir: Path) -> None:
    with Server(make_config(data_dir, max_queued_items=3)) as server:
        clients = Clients(server.port)
        try:
            alice, bob = _pair(clients)
            device = bob.device_id
            bob.close()
            for _ in range(3):
                assert _send(alice, "bob", [("bob", device)])["type"] == "ok"
            over = _send(alice, "bob", [("bob", device)])
            assert over["type"] == "error"
            assert over["code"] == "quota_exceeded"

            again = clients.login("bob", device_id=device)
            reply = again.call("sync", after=0)
            assert reply["last"] == 3
            seqs = [p["seq"] for p in again.pushes if p["type"] == "message"]
            assert seqs == [1, 2, 3]
        finally:
            clients.close_all()
