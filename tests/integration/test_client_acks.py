"""Acknowledgements of queue items that arrive out of order, on a real server."""

from __future__ import annotations

from enctalk.client import receiving
from tests.integration.conftest import PASSWORD_ALICE, PASSWORD_BOB, wait_for_event
from tests.integration.test_client_core import WAIT, make_client, received


def test_ack_waits_for_missing_older_item(server, tmp_path, monkeypatch):
    alice = make_client(tmp_path, server, "alice")
    bob = make_client(tmp_path, server, "bob")
    try:
        alice.register("alice", PASSWORD_ALICE)
        bob.register("bob", PASSWORD_BOB)
        alice.add_contact("bob")
        wait_for_event(bob.events, lambda e: e.name == "contact_added", WAIT)

        # The first message push is lost on the way, as if the item had been
        # pushed live ahead of the older items that the sync still brings.
        original = receiving.handle_push
        dropped = []

        def lose_first_message(client, kind, fields):
            if client is bob and kind == "message" and not dropped:
                dropped.append(fields["seq"])
                return
            original(client, kind, fields)

        monkeypatch.setattr(receiving, "handle_push", lose_first_message)
        assert alice.send_text("bob", "first").state == "sent"
        assert alice.send_text("bob", "second").state == "sent"
        received(bob, "second", [])
        bob.contacts()  # a round trip, so that any ack has reached the server
        assert bob._state["last_seq"] < dropped[0]
        bob.close()
        monkeypatch.setattr(receiving, "handle_push", original)

        again = make_client(tmp_path, server, "bob")
        try:
            again.unlock(PASSWORD_BOB)
            again.start()
            received(again, "first", [])
            bodies = [entry.body for entry in again.history("alice")]
            assert bodies == ["first", "second"]
        finally:
            again.close()
    finally:
        alice.close()
        bob.close()
