"""The Client object against a real server subprocess: delivery guarantees
across a server crash, what reaches the server's disk, and tampering."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from enctalk.client import core, receiving
from enctalk.client.core import Client
from enctalk.client.errors import ClientError
from enctalk.crypto import session as e2e
from enctalk.crypto.keys import AccountIdentity, sign_device_key
from tests.integration.conftest import (
    PASSWORD_ALICE,
    PASSWORD_BOB,
    ROOT,
    wait_for_event,
)

WAIT = 30.0


def make_client(tmp_path, server, name):
    return Client(
        tmp_path / name, server=server.address, accept_new_server=True, timeout=10.0
    )


@pytest.fixture
def pair(server, tmp_path):
    alice = make_client(tmp_path, server, "alice")
    bob = make_client(tmp_path, server, "bob")
    alice.register("alice", PASSWORD_ALICE)
    bob.register("bob", PASSWORD_BOB)
    alice.add_contact("bob")
    yield alice, bob
    alice.close()
    bob.close()


def received(client, body, seen):
    return wait_for_event(
        client.events,
        lambda e: e.name == "message_received" and e.data["body"] == body,
        WAIT,
        seen,
    )


def secrets_of(client, password):
    """Return byte strings that must never reach the server: the password and
    every private key this client holds."""
    values = [password.encode("utf-8"), client._aik.private_bytes()]
    device_state = client._device.to_dict()
    stack = [device_state]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and len(item) == 44:
            raw = base64.urlsafe_b64decode(item)
            if raw not in (client._device.identity_public(),):
                values.append(raw)
    return values


def encodings(secret):
    return [
        secret,
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
        base64.b64encode(secret).rstrip(b"="),
        secret.hex().encode(),
    ]


def test_messages_survive_server_crash_exactly_once_and_stay_secret(
    server, pair, tmp_path
):
    alice, bob = pair
    alice_seen, bob_seen = [], []

    for index in range(3):
        assert alice.send_text("bob", f"alice says {index}").state == "sent"
        received(bob, f"alice says {index}", bob_seen)
        assert bob.send_text("alice", f"bob says {index}").state == "sent"
        received(alice, f"bob says {index}", alice_seen)

    # The server dies right after a send starts; the message is in flight,
    # committed or not. Further messages go into the outbox meanwhile.
    in_flight = alice.send_text("bob", "in flight", timeout=0)
    server.stop(kill=True)
    queued = [alice.send_text("bob", f"while down {i}", timeout=0) for i in range(2)]
    reply = bob.send_text("alice", "bob while down", timeout=0)
    server.start()

    for body in ("in flight", "while down 0", "while down 1"):
        received(bob, body, bob_seen)
    received(alice, "bob while down", alice_seen)
    assert alice.send_text("bob", "after restart").state == "sent"
    received(bob, "after restart", bob_seen)

    expected = [f"alice says {i}" for i in range(3)]
    expected += ["in flight", "while down 0", "while down 1", "after restart"]
    messages = [e.data for e in bob_seen if e.name == "message_received"]
    assert [m["body"] for m in messages] == expected
    assert len({m["message_id"] for m in messages}) == len(expected)
    seqs = [m["server_seq"] for m in messages]
    assert seqs == sorted(seqs)
    sent_ids = {in_flight.message_id, reply.message_id}
    sent_ids |= {item.message_id for item in queued}
    assert {m["message_id"] for m in messages} >= sent_ids - {reply.message_id}
    assert [e for e in bob_seen if e.name == "decrypt_failed"] == []

    history = [entry.body for entry in bob.history("alice")]
    bob_expected = [f"bob says {i}" for i in range(3)] + ["bob while down"]
    assert [b for b in history if b.startswith("alice")] == expected[:3]
    assert len(history) == len(expected) + len(bob_expected)
    assert sorted(history) == sorted(expected + bob_expected)
    assert alice.outbox() == []
    assert bob.outbox() == []

    secrets = secrets_of(alice, PASSWORD_ALICE) + secrets_of(bob, PASSWORD_BOB)
    plaintexts = [body.encode() for body in expected + bob_expected]
    # Keep the WAL: a crash leaves it as a live server would.
    server.stop(kill=True)
    files = [path for path in server.data_dir.rglob("*") if path.is_file()]
    assert any(path.name.endswith(".sqlite3-wal") for path in files)
    files.append(server.log_path)
    # The scan reads the right files: the public identity key is stored.
    public_key = alice._aik.public_bytes()
    assert any(
        encoded in path.read_bytes()
        for path in files
        for encoded in encodings(public_key)
    )
    for path in files:
        raw = path.read_bytes()
        for secret in secrets + plaintexts:
            for encoded in encodings(secret):
                assert encoded not in raw, f"{path.name} contains a secret"


def test_tampered_envelope_reports_and_next_message_decrypts(pair, monkeypatch):
    alice, bob = pair
    bob_seen = []
    assert alice.send_text("bob", "before").state == "sent"
    received(bob, "before", bob_seen)

    original = core.e2e.encrypt_for_device
    tamper = threading.Event()

    def encrypt_and_maybe_tamper(*args, **kwargs):
        envelope, session = original(*args, **kwargs)
        if tamper.is_set():
            envelope = envelope[:-1] + bytes([envelope[-1] ^ 0x01])
        return envelope, session

    monkeypatch.setattr(core.e2e, "encrypt_for_device", encrypt_and_maybe_tamper)
    tamper.set()
    assert alice.send_text("bob", "tampered").state == "sent"
    tamper.clear()
    failed = wait_for_event(
        bob.events, lambda e: e.name == "decrypt_failed", WAIT, bob_seen
    )
    assert failed.data["sender"] == "alice"

    assert alice.send_text("bob", "after").state == "sent"
    received(bob, "after", bob_seen)
    bodies = [entry.body for entry in bob.history("alice")]
    assert bodies == ["before", "could not decrypt a message from alice", "after"]
    assert "tampered" not in bodies


def test_tampered_first_message_does_not_break_the_session(pair, monkeypatch):
    alice, bob = pair
    bob_seen = []
    original = core.e2e.encrypt_for_device
    calls = []

    def tamper_first(*args, **kwargs):
        envelope, session = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            envelope = envelope[:-1] + bytes([envelope[-1] ^ 0x01])
        return envelope, session

    monkeypatch.setattr(core.e2e, "encrypt_for_device", tamper_first)
    assert alice.send_text("bob", "first").state == "sent"
    wait_for_event(bob.events, lambda e: e.name == "decrypt_failed", WAIT, bob_seen)
    assert alice.send_text("bob", "second").state == "sent"
    received(bob, "second", bob_seen)
    assert bob.send_text("alice", "reply").state == "sent"
    received(alice, "reply", [])


def test_prekey_message_with_swapped_aik_rejected(server, pair, tmp_path, monkeypatch):
    alice, bob = pair
    mallory = make_client(tmp_path, server, "mallory")
    mallory.register("mallory", "amber signal harbor")
    before = bob.safety_number("alice")
    bob_seen = []
    original = core.e2e.encrypt_for_device
    swap = threading.Event()

    def encrypt_and_swap_account(*args, **kwargs):
        # What a server colluding with Mallory could do: replace the AIK and
        # device signature by ones that Mallory made over Alice's device key.
        envelope, session = original(*args, **kwargs)
        decoded = e2e.decode_envelope(envelope)
        if swap.is_set() and decoded.initial is not None:
            swapped = replace(
                decoded.initial,
                account_identity_key=mallory._aik.public_bytes(),
                device_signature=sign_device_key(
                    mallory._aik, decoded.initial.identity_key
                ),
            )
            envelope = e2e.encode_envelope(
                e2e.Envelope(swapped, decoded.ratchet_message)
            )
        return envelope, session

    monkeypatch.setattr(core.e2e, "encrypt_for_device", encrypt_and_swap_account)
    try:
        swap.set()
        assert alice.send_text("bob", "swapped").state == "sent"
        swap.clear()
        failed = wait_for_event(
            bob.events, lambda e: e.name == "decrypt_failed", WAIT, bob_seen
        )
        assert failed.data["sender"] == "alice"
        assert alice.send_text("bob", "after").state == "sent"
        received(bob, "after", bob_seen)
    finally:
        mallory.close()

    assert not any(e.name == "identity_changed" for e in bob_seen)
    assert bob.safety_number("alice") == before
    bodies = [entry.body for entry in bob.history("alice")]
    assert bodies == ["could not decrypt a message from alice", "after"]


def test_identity_change_after_reset_warns_contact(server, pair, tmp_path):
    alice, bob = pair
    before = bob.safety_number("alice")
    alice.close()
    output = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_server.py"),
            "admin",
            "--data-dir",
            str(server.data_dir),
            "--config",
            str(server.config),
            "reset-password",
            "alice",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert output.returncode == 0, output.stderr
    code = re.search(r"reset code for alice: (\S+)", output.stdout).group(1)

    fresh = make_client(tmp_path, server, "alice-new")
    kept = fresh.redeem_reset("alice", code, "marble orchard sunrise")
    assert kept is False
    try:
        assert fresh.send_text("bob", "new key").state == "sent"
        seen = []
        received(bob, "new key", seen)
        assert any(e.name == "identity_changed" for e in seen)
        assert bob.safety_number("alice") != before
        assert any(
            "identity key of alice changed" in e.body for e in bob.history("alice")
        )
        assert bob.send_text("alice", "welcome back").state == "sent"
        received(fresh, "welcome back", [])
        assert fresh.send_text("bob", "still here").state == "sent"
        received(bob, "still here", [])
    finally:
        fresh.close()


def reset_code(server, username):
    output = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_server.py"),
            "admin",
            "--data-dir",
            str(server.data_dir),
            "--config",
            str(server.config),
            "reset-password",
            username,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert output.returncode == 0, output.stderr
    return re.search(rf"reset code for {username}: (\S+)", output.stdout).group(1)


def test_reset_on_unlocked_client_keeps_identity(server, pair):
    alice, bob = pair
    before = bob.safety_number("alice")
    code = reset_code(server, "alice")

    assert alice.redeem_reset("alice", code, "marble orchard sunrise") is True
    assert alice.send_text("bob", "same key").state == "sent"
    seen = []
    received(bob, "same key", seen)
    assert not any(e.name == "identity_changed" for e in seen)
    assert bob.safety_number("alice") == before


def test_prekeys_low_triggers_top_up(server, pair):
    import sqlite3

    alice, bob = pair
    # One account may take only a few of a device's one-time prekeys a day,
    # so the test leaves alice's device 15 of them in the database itself.
    database = sqlite3.connect(server.data_dir / "enctalk.sqlite3")
    with database:
        database.execute(
            "DELETE FROM one_time_prekeys WHERE device_id = ? AND key_id NOT IN"
            " (SELECT key_id FROM one_time_prekeys WHERE device_id = ?"
            " ORDER BY key_id LIMIT 15)",
            (alice.device_id, alice.device_id),
        )
    database.close()
    with bob._lock:
        bob._request("fetch_bundles", username="alice")
    low = wait_for_event(alice.events, lambda e: e.name == "prekeys_low", WAIT)
    assert low.data["remaining"] < 20
    uploaded = wait_for_event(
        alice.events, lambda e: e.name == "prekeys_uploaded", WAIT
    )
    assert uploaded.data["count"] >= 20


def test_reopened_client_calls_methods_without_waiting(server, pair, tmp_path):
    alice, bob = pair
    alice.close()

    again = make_client(tmp_path, server, "alice")
    try:
        again.unlock(PASSWORD_ALICE)
        started = time.monotonic()
        contacts = again.contacts()
        assert time.monotonic() - started < 5
        assert [contact.username for contact in contacts] == ["bob"]
        assert again.send_text("bob", "from a reopened client").state == "sent"
        received(bob, "from a reopened client", [])
    finally:
        again.close()


def forget_pin(client, name):
    """Delete the AIK that ``client`` pinned for ``name`` from its contact_added
    push, once that push has been handled."""
    deadline = time.monotonic() + WAIT
    while True:
        with client._lock:
            if name in client._state["contacts"]:
                del client._state["contacts"][name]
                return
        assert time.monotonic() < deadline, f"{name} was never pinned"
        time.sleep(0.05)


def switch_to_unlisted_aik(client):
    """Give ``client`` a new AIK that the server does not list for its account,
    and drop its sessions so that its next message starts a new handshake."""
    other = AccountIdentity.generate()
    with client._lock:
        client._aik = other
        client._device.resign(other)
        client._sessions.clear()
        client._bundles.clear()


def test_message_with_unlisted_aik_is_rejected(pair):
    alice, bob = pair
    bob_seen = []
    assert alice.send_text("bob", "before").state == "sent"
    received(bob, "before", bob_seen)
    before = bob.safety_number("alice")
    session_key = f"alice/{alice.device_id}"
    with bob._lock:
        session_before = bob._sessions[session_key].to_dict()
        prekeys_before = bob._device.to_dict()

    switch_to_unlisted_aik(alice)
    assert alice.send_text("bob", "unlisted key").state == "sent"
    failed = wait_for_event(
        bob.events, lambda e: e.name == "decrypt_failed", WAIT, bob_seen
    )

    assert failed.data["sender"] == "alice"
    assert not any(e.name == "identity_changed" for e in bob_seen)
    assert bob.safety_number("alice") == before
    with bob._lock:
        assert bob._sessions[session_key].to_dict() == session_before
        assert bob._device.to_dict() == prekeys_before
    bodies = [entry.body for entry in bob.history("alice")]
    assert bodies[0] == "before"
    assert "identity key is not the one the server lists" in bodies[1]
    assert "unlisted key" not in bodies


def test_first_unlisted_aik_is_not_pinned(pair):
    alice, bob = pair
    bob_seen = []
    assert alice.send_text("bob", "before").state == "sent"
    received(bob, "before", bob_seen)
    forget_pin(bob, "alice")

    switch_to_unlisted_aik(alice)
    assert alice.send_text("bob", "unlisted key").state == "sent"
    wait_for_event(bob.events, lambda e: e.name == "decrypt_failed", WAIT, bob_seen)

    with bob._lock:
        assert bob._pinned_identity("alice") is None
    assert not any(e.name == "identity_changed" for e in bob_seen)


def test_identity_lookup_failure_holds_messages(pair, monkeypatch):
    alice, bob = pair
    bob_seen = []
    forget_pin(bob, "alice")
    original = bob._request
    lookups = []

    def fail_first_lookup(kind, **fields):
        if kind == "lookup_identities":
            lookups.append(kind)
            if len(lookups) == 1:
                raise ClientError("timeout", "The server did not answer in time.")
        return original(kind, **fields)

    monkeypatch.setattr(bob, "_request", fail_first_lookup)
    assert alice.send_text("bob", "first").state == "sent"
    assert alice.send_text("bob", "second").state == "sent"
    received(bob, "second", bob_seen)

    bodies = [e.data["body"] for e in bob_seen if e.name == "message_received"]
    assert bodies == ["first", "second"]
    assert len(lookups) == 2
    assert not any(e.name == "decrypt_failed" for e in bob_seen)
    assert not any(e.name == "identity_changed" for e in bob_seen)
    with bob._lock:
        assert bob._pinned_identity("alice") == alice._aik.public_bytes()
    assert [entry.body for entry in bob.history("alice")] == ["first", "second"]


def test_key_change_waits_for_authentic_message(server, pair, tmp_path, monkeypatch):
    alice, bob = pair
    before = bob.safety_number("alice")
    alice.close()
    code = reset_code(server, "alice")
    fresh = make_client(tmp_path, server, "alice-new")
    assert fresh.redeem_reset("alice", code, "marble orchard sunrise") is False

    original = core.e2e.seal_payload
    tamper = threading.Event()

    def seal_and_maybe_tamper(*args, **kwargs):
        key_material, sealed = original(*args, **kwargs)
        if tamper.is_set():
            sealed = sealed[:-1] + bytes([sealed[-1] ^ 0x01])
        return key_material, sealed

    monkeypatch.setattr(core.e2e, "seal_payload", seal_and_maybe_tamper)
    bob_seen = []
    try:
        tamper.set()
        assert fresh.send_text("bob", "tampered payload").state == "sent"
        tamper.clear()
        wait_for_event(bob.events, lambda e: e.name == "decrypt_failed", WAIT, bob_seen)
        assert not any(e.name == "identity_changed" for e in bob_seen)
        assert bob.safety_number("alice") == before

        assert fresh.send_text("bob", "new key").state == "sent"
        received(bob, "new key", bob_seen)
    finally:
        fresh.close()

    changed = [e for e in bob_seen if e.name == "identity_changed"]
    assert len(changed) == 1
    assert bob.safety_number("alice") != before


def test_identity_lookup_gives_up_after_retries(pair, monkeypatch):
    alice, bob = pair
    bob_seen = []
    forget_pin(bob, "alice")
    monkeypatch.setattr(core, "RETRY_DELAY", 0.1)
    original = bob._request
    lookups = []
    failing = threading.Event()
    failing.set()

    def fail_lookups(kind, **fields):
        if kind == "lookup_identities":
            lookups.append(kind)
            if failing.is_set():
                raise ClientError("internal_error", "The server failed.")
        return original(kind, **fields)

    monkeypatch.setattr(bob, "_request", fail_lookups)
    assert alice.send_text("bob", "unchecked").state == "sent"
    failed = wait_for_event(
        bob.events, lambda e: e.name == "decrypt_failed", WAIT, bob_seen
    )
    failing.clear()

    assert failed.data["sender"] == "alice"
    assert len(lookups) == receiving.MAX_IDENTITY_LOOKUPS
    with bob._lock:
        assert bob._pinned_identity("alice") is None
    assert alice.send_text("bob", "checked").state == "sent"
    received(bob, "checked", bob_seen)
    bodies = [entry.body for entry in bob.history("alice")]
    assert "could not be checked with the server" in bodies[0]
    assert bodies[1] == "checked"


def test_resend_after_lost_send_reply_is_acknowledged_as_stored(pair, monkeypatch):
    alice, bob = pair
    bob_seen = []
    original = alice._request
    lost = []

    def lose_first_send_reply(kind, **fields):
        reply = original(kind, **fields)
        if kind == "send" and not lost:
            lost.append(reply)
            raise ClientError("timeout", "The server did not answer in time.")
        return reply

    monkeypatch.setattr(core, "RETRY_DELAY", 0.2)
    monkeypatch.setattr(alice, "_request", lose_first_send_reply)
    result = alice.send_text("bob", "stored once", timeout=WAIT)
    received(bob, "stored once", bob_seen)

    assert lost
    assert result.state == "sent"
    assert result.server_seq == lost[0]["server_seq"]
    assert [e.body for e in alice.history("bob")] == ["stored once"]
    assert [e.body for e in bob.history("alice")] == ["stored once"]


def test_client_connection_disables_nagle(pair):
    import socket

    alice, _ = pair
    tls, _ = alice._connection._connect()
    try:
        assert tls.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        tls.close()
