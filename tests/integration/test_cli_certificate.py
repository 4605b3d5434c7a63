"""send and forget-server when the server's certificate changed."""

from __future__ import annotations

import json

from tests.integration.test_cli import register_pair


def test_send_with_changed_certificate_exits_6(make_server, tmp_path):
    first = make_server("first")
    alice, _bob = register_pair(first, tmp_path)
    first.stop()
    second = make_server("second", port=first.port)
    alice.server = second

    sent = alice.run("send", "bob", "kept in the outbox", accept_new_server=False)
    assert sent.returncode == 6
    assert "Queued" not in sent.stdout
    assert sent.stderr.count(first.fingerprint) == 1
    assert sent.stderr.count(second.fingerprint) == 1
    assert "forget-server" in sent.stderr
    assert "ERROR" not in sent.stderr
    history = alice.run("history", "bob", "--json", accept_new_server=False)
    states = [json.loads(line)["state"] for line in history.stdout.splitlines()]
    assert states == ["sending"]

    forgot = alice.run("forget-server", accept_new_server=False)
    assert forgot.returncode == 0, forgot.stderr
    settings = json.loads((alice.profile / "settings.json").read_text())
    assert settings["known_servers"] == {}
