"""The command line client against a real server subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.integration.conftest import PASSWORD_ALICE, PASSWORD_BOB, ROOT, Cli

NEW_PASSWORD = "saffron harbour seventeen"


def events_of(result, name):
    events = [json.loads(line) for line in result.stdout.splitlines() if line]
    return [event for event in events if event["event"] == name]


def register_pair(server, tmp_path):
    alice = Cli(tmp_path / "alice", server, PASSWORD_ALICE)
    bob = Cli(tmp_path / "bob", server, PASSWORD_BOB)
    assert alice.run("register", "alice").returncode == 0
    assert bob.run("register", "Bob").returncode == 0
    assert alice.run("add-contact", "bob").returncode == 0
    return alice, bob


def test_cli_two_users_exchange_messages(server, tmp_path):
    alice, bob = register_pair(server, tmp_path)

    sent = alice.run("send", "bob", "hello bob")
    assert sent.returncode == 0, sent.stderr
    assert "Sent" in sent.stdout

    heard = bob.run("--timeout", "3", "listen")
    assert heard.returncode == 0, heard.stderr
    received = events_of(heard, "message_received")
    assert [event["body"] for event in received] == ["hello bob"]
    assert received[0]["sender"] == "alice"
    assert received[0]["conversation"] == "alice"

    assert bob.run("send", "alice", "hi alice").returncode == 0
    heard = alice.run("--timeout", "3", "listen")
    assert [e["body"] for e in events_of(heard, "message_received")] == ["hi alice"]
    delivered = [
        e for e in events_of(heard, "delivery_updated") if e["state"] == "delivered"
    ]
    assert [e["message_id"] for e in delivered] == [received[0]["message_id"]]

    history = bob.run("history", "alice", "--json")
    assert history.returncode == 0, history.stderr
    entries = [json.loads(line) for line in history.stdout.splitlines()]
    assert [entry["body"] for entry in entries] == ["hello bob", "hi alice"]
    assert [entry["sender"] for entry in entries] == ["alice", "bob"]

    alice_number = alice.run("safety-number", "bob").stdout.strip()
    bob_number = bob.run("safety-number", "alice").stdout.strip()
    assert alice_number == bob_number
    assert len(alice_number.split()) == 12


def test_cli_second_device_and_password_change(server, tmp_path):
    alice, bob = register_pair(server, tmp_path)
    number_before = bob.run("safety-number", "alice").stdout.strip()

    second = Cli(tmp_path / "alice-laptop", server, PASSWORD_ALICE)
    login = second.run("login", "alice")
    assert login.returncode == 0, login.stderr
    assert second.run("safety-number", "bob").stdout.strip() == number_before
    assert bob.run("safety-number", "alice").stdout.strip() == number_before

    assert bob.run("send", "alice", "for both devices").returncode == 0
    for device in (alice, second):
        heard = device.run("--timeout", "3", "listen")
        bodies = [e["body"] for e in events_of(heard, "message_received")]
        assert bodies == ["for both devices"]

    assert second.run("send", "bob", "from the laptop").returncode == 0
    heard = alice.run("--timeout", "3", "listen")
    copies = events_of(heard, "message_received")
    assert [e["body"] for e in copies] == ["from the laptop"]
    assert copies[0]["conversation"] == "bob"
    assert copies[0]["sender"] == "alice"

    changed = alice.run("passwd", env={"ENCTALK_NEW_PASSWORD": NEW_PASSWORD})
    assert changed.returncode == 0, changed.stderr

    revoked = second.run("contacts")
    assert revoked.returncode == 4
    assert "log in again" in revoked.stderr

    stranger = Cli(tmp_path / "alice-old", server, PASSWORD_ALICE)
    old = stranger.run("login", "alice")
    assert old.returncode == 4
    assert "Wrong username or password" in old.stderr

    assert alice.run("contacts", password=NEW_PASSWORD).returncode == 0
    locked = alice.run("contacts", password=PASSWORD_ALICE)
    assert locked.returncode == 4
    assert "Wrong password" in locked.stderr


def test_cli_outbox_sends_once_after_server_restart(server, tmp_path):
    alice, bob = register_pair(server, tmp_path)
    server.stop()

    queued = alice.run("--timeout", "2", "send", "bob", "written offline")
    assert queued.returncode == 3, queued.stderr
    assert "Queued in the outbox" in queued.stdout
    assert "connection refused" in queued.stdout

    server.start()
    flushed = alice.run("--timeout", "3", "listen")
    sent = [e for e in events_of(flushed, "delivery_updated") if e["state"] == "sent"]
    assert len(sent) == 1

    heard = bob.run("--timeout", "3", "listen")
    assert [e["body"] for e in events_of(heard, "message_received")] == [
        "written offline"
    ]
    again = alice.run("--timeout", "3", "listen")
    assert [
        e for e in events_of(again, "delivery_updated") if e["state"] == "sent"
    ] == []
    history = bob.run("history", "alice", "--json").stdout.splitlines()
    assert [json.loads(line)["body"] for line in history] == ["written offline"]


def test_cli_changed_certificate_is_hard_error(make_server, tmp_path):
    first = make_server("first")
    alice = Cli(tmp_path / "alice", first, PASSWORD_ALICE)
    assert alice.run("register", "alice").returncode == 0
    first.stop()

    second = make_server("second", port=first.port)
    assert second.fingerprint != first.fingerprint
    result = alice.run("contacts")
    assert result.returncode == 6
    assert first.fingerprint in result.stderr
    assert second.fingerprint in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_unknown_server_needs_approval(server, tmp_path):
    alice = Cli(tmp_path / "alice", server, PASSWORD_ALICE)
    rejected = alice.run("register", "alice", accept_new_server=False)
    assert rejected.returncode == 6
    assert server.fingerprint in rejected.stderr
    assert "--accept-new-server" in rejected.stderr

    approved = alice.run(
        "--server-fingerprint",
        server.fingerprint.lower(),
        "register",
        "alice",
        accept_new_server=False,
    )
    assert approved.returncode == 0, approved.stderr


def test_cli_password_from_stdin_and_wrong_password(server, tmp_path):
    alice = Cli(tmp_path / "alice", server, PASSWORD_ALICE)
    registered = alice.run(
        "--password-stdin", "register", "alice", stdin=PASSWORD_ALICE + "\n"
    )
    assert registered.returncode == 0, registered.stderr
    wrong = alice.run("--password-stdin", "contacts", stdin="not my password\n")
    assert wrong.returncode == 4
    assert wrong.stderr.startswith("error: Wrong password")


def test_cli_rejects_common_password(server, tmp_path):
    alice = Cli(tmp_path / "alice", server, "password123")
    result = alice.run("register", "alice")
    assert result.returncode == 4
    assert "commonly used" in result.stderr


def test_cli_unknown_contact_and_unreachable_server(server, tmp_path):
    alice = Cli(tmp_path / "alice", server, PASSWORD_ALICE)
    assert alice.run("register", "alice").returncode == 0
    missing = alice.run("add-contact", "nobody")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ")
    assert len(missing.stderr.splitlines()) == 1

    server.stop()
    offline = alice.run("--timeout", "2", "contacts")
    assert offline.returncode == 5
    assert f"Cannot reach server {server.address}: connection refused" in offline.stderr


def test_cli_without_command_or_display_exits_2(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_client.py"), "--profile", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=environment,
    )
    assert result.returncode == 2
    assert "cannot open the EncTalk window" in result.stderr
    assert "Traceback" not in result.stderr
    usage = subprocess.run(
        [sys.executable, str(ROOT / "run_client.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "exit codes" in usage.stdout
