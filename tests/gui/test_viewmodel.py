"""Reducing core events to contact rows, unread counts and view effects."""

from __future__ import annotations

from enctalk.client.events import Event
from enctalk.ui import viewmodel
from enctalk.ui.viewmodel import ChatModel


def message(sender, conversation, seq, body="hi"):
    return Event(
        "message_received",
        {
            "conversation": conversation,
            "sender": sender,
            "sender_device": 1,
            "body": body,
            "message_id": f"00000000-0000-4000-8000-{seq:012d}",
            "server_seq": seq,
            "server_time": 1_000_000 + seq,
            "sent_at": 999_000 + seq,
        },
    )


def kinds(effects):
    return [effect.kind for effect in effects]


def test_message_in_other_conversation_counts_unread_and_rings():
    model = ChatModel("alice")
    model.open("bob")
    effects = model.apply(message("carol", "carol", 1))
    assert model.contacts["carol"].unread == 1
    assert viewmodel.BELL in kinds(effects)
    assert viewmodel.APPEND not in kinds(effects)


def test_message_in_open_conversation_appends_without_unread():
    model = ChatModel("alice")
    model.open("bob")
    effects = model.apply(message("bob", "bob", 1))
    assert model.contacts["bob"].unread == 0
    assert kinds(effects)[0] == viewmodel.APPEND
    assert viewmodel.BELL not in kinds(effects)


def test_opening_conversation_clears_unread():
    model = ChatModel("alice")
    model.apply(message("bob", "bob", 1))
    model.apply(message("bob", "bob", 2))
    assert model.total_unread() == 2
    model.open("bob")
    assert model.total_unread() == 0


def test_title_shows_total_unread():
    model = ChatModel("alice")
    assert model.title() == "EncTalk - alice"
    model.apply(message("bob", "bob", 1))
    model.apply(message("carol", "carol", 2))
    assert model.title() == "(2) EncTalk - alice"


def test_contacts_sort_by_latest_activity():
    model = ChatModel("alice")
    for name in ("bob", "carol", "dave"):
        model.contact(name)
    model.apply(message("carol", "carol", 5))
    model.apply(message("dave", "dave", 9))
    order = [row.username for row in model.sorted_contacts()]
    assert order == ["dave", "carol", "bob"]


def test_own_device_copy_not_unread():
    model = ChatModel("alice")
    effects = model.apply(message("alice", "bob", 3))
    assert model.contacts["bob"].unread == 0
    assert viewmodel.BELL not in kinds(effects)
    entry = model.entry_from_message(message("alice", "bob", 3).data)
    assert entry.direction == "out"


def test_delivery_update_records_state():
    model = ChatModel("alice")
    effects = model.apply(
        Event(
            "delivery_updated",
            {
                "message_id": "m1",
                "conversation": "bob",
                "state": "failed",
                "error": "not a contact",
            },
        )
    )
    assert model.states["m1"] == "failed"
    assert effects[0].kind == viewmodel.STATE
    assert effects[0].data["state"] == "failed"


def test_presence_change_updates_row():
    model = ChatModel("alice")
    model.apply(Event("presence_changed", {"username": "bob", "online": True}))
    assert model.contacts["bob"].online
    model.apply(Event("presence_changed", {"username": "alice", "online": True}))
    assert "alice" not in model.contacts


def test_identity_change_unverifies_and_warns():
    model = ChatModel("alice")
    model.contact("bob").verified = True
    effects = model.apply(
        Event(
            "identity_changed",
            {"username": "bob", "old_fingerprint": "AA", "new_fingerprint": "BB"},
        )
    )
    assert not model.contacts["bob"].verified
    assert model.contacts["bob"].key_changed
    warning = [e for e in effects if e.kind == viewmodel.KEY_CHANGED]
    assert warning[0].data == {"username": "bob", "old": "AA", "new": "BB"}


def test_connection_state_becomes_status_effect():
    model = ChatModel("alice")
    effects = model.apply(
        Event("connection_state", {"state": "reconnecting", "retry_in": 3.0})
    )
    assert effects[0].kind == viewmodel.STATUS
    assert effects[0].data == {"state": "reconnecting", "data": {"retry_in": 3.0}}


def test_unknown_event_is_ignored():
    assert ChatModel("alice").apply(Event("prekeys_uploaded", {"count": 5})) == []
