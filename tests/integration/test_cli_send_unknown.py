"""Sending to users who are not contacts leaves nothing in the history."""

from __future__ import annotations

import base64

from enctalk.client.core import Client
from tests.integration.conftest import PASSWORD_ALICE, PASSWORD_BOB, Cli
from tests.integration.test_cli import register_pair

CAROL_PASSWORD = "amber thistle quarry"


def test_cli_send_to_non_contact_stores_nothing(server, tmp_path):
    alice, _ = register_pair(server, tmp_path)
    carol = Cli(tmp_path / "carol", server, CAROL_PASSWORD)
    assert carol.run("register", "carol").returncode == 0

    for name in ("nobody", "carol"):
        sent = alice.run("send", name, "hi")
        assert sent.returncode == 1, sent.stderr
        assert f"{name} is not a contact" in sent.stderr
        assert "hi" not in alice.run("history", name).stdout
        assert alice.run("history", name).stdout == ""

    assert alice.run("send", "bob", "hi bob").returncode == 0
    assert "hi bob (sent)" in alice.run("history", "bob").stdout


def test_send_rejected_by_server_drops_history_entry(server, tmp_path):
    bob = Client(tmp_path / "bob", server=server.address, accept_new_server=True)
    alice = Client(tmp_path / "alice", server=server.address, accept_new_server=True)
    try:
        bob.register("bob", PASSWORD_BOB)
        alice.register("alice", PASSWORD_ALICE)
        # A stale local entry: bob is pinned locally but the server has
        # no contact relation between the two accounts.
        alice._require_state()["contacts"]["bob"] = {
            "identity_key": base64.urlsafe_b64encode(bob._aik.public_bytes()).decode(),
            "verified": False,
        }

        result = alice.send_text("bob", "never stored", 10)

        assert result.state == "failed"
        assert alice.history("bob") == []
        assert alice.outbox() == []
    finally:
        alice.close()
        bob.close()
