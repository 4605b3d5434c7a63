"""Every command that resumes the session flushes the outbox."""

from __future__ import annotations

import json

from tests.integration.test_cli import events_of, register_pair


def test_contacts_command_flushes_outbox(server, tmp_path):
    alice, bob = register_pair(server, tmp_path)
    server.stop()
    for body in ("first offline", "second offline"):
        queued = alice.run("--timeout", "2", "send", "bob", body)
        assert queued.returncode == 3, queued.stderr
    server.start()

    listed = alice.run("contacts")
    assert listed.returncode == 0, listed.stderr
    history = alice.run("history", "bob", "--json")
    states = [json.loads(line)["state"] for line in history.stdout.splitlines()]
    assert states == ["sent", "sent"]

    heard = bob.run("--timeout", "3", "listen")
    bodies = [event["body"] for event in events_of(heard, "message_received")]
    assert bodies == ["first offline", "second offline"]


def test_send_reads_text_from_stdin(server, tmp_path):
    alice, bob = register_pair(server, tmp_path)
    text = "line one\nline two\n"
    sent = alice.run(
        "send", "bob", "-", stdin=text, env={"ENCTALK_PASSWORD": alice.password}
    )
    assert sent.returncode == 0, sent.stderr
    heard = bob.run("--timeout", "3", "listen")
    bodies = [event["body"] for event in events_of(heard, "message_received")]
    assert bodies == ["line one\nline two"]

    too_long = alice.run(
        "send", "bob", "-", stdin="x" * 70000, env={"ENCTALK_PASSWORD": alice.password}
    )
    assert too_long.returncode == 1
    assert "the maximum is 65536 bytes" in too_long.stderr
