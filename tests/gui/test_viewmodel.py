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
    model.contact("bob")
    model.apply(Event("presence_changed", {"username": "bob", "online": True}))
    assert model.contacts["bob"].online
    model.apply(Event("presence_changed", {"username": "alice", "online": True}))
    assert "alice" not in model.contacts


def test_presence_of_group_peer_adds_no_contact():
    model = ChatModel("sam")
    effects = model.apply(
        Event("presence_changed", {"username": "kim", "online": False})
    )
    assert "kim" not in model.contacts
    assert [effect.kind for effect in effects] == [viewmodel.PRESENCE]
    assert effects[0].data == {"username": "kim", "online": False}


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


GROUP_ID = "0123456789abcdef0123456789abcdef"
GROUP = "#" + GROUP_ID


def group_update(epoch, action="add", actor="teacher", target="sam", member=True):
    return Event(
        "group_updated",
        {
            "group_id": GROUP_ID,
            "conversation": GROUP,
            "epoch": epoch,
            "action": action,
            "actor": actor,
            "target": target,
            "text": f"{actor} {action} {target}",
            "member": member,
        },
    )


def test_group_message_counts_unread_on_group_row():
    model = ChatModel("sam")
    model.group(GROUP)
    effects = model.apply(message("teacher", GROUP, 4))
    assert model.groups[GROUP].unread == 1
    assert "teacher" not in model.contacts
    assert GROUP not in model.contacts
    assert viewmodel.BELL in kinds(effects)
    assert model.title() == "(1) EncTalk - sam"


def test_group_message_for_unknown_group_requests_state():
    model = ChatModel("sam")
    effects = model.apply(message("teacher", GROUP, 4))
    assert viewmodel.GROUP in kinds(effects)
    assert GROUP in model.groups


def test_group_update_in_open_group_appends_system_line():
    model = ChatModel("sam")
    model.open(GROUP)
    effects = model.apply(group_update(2))
    assert kinds(effects)[0] == viewmodel.APPEND
    line = effects[0].data["entry"]
    assert line.kind == "system"
    assert line.message_id == f"group-op:{GROUP_ID}:2"
    assert line.body == "teacher add sam"
    assert viewmodel.GROUP in kinds(effects)


def test_group_update_elsewhere_only_refreshes():
    model = ChatModel("sam")
    model.open("bob")
    effects = model.apply(group_update(2, target="kim"))
    assert viewmodel.APPEND not in kinds(effects)
    assert viewmodel.GROUP in kinds(effects)
    assert model.groups[GROUP].unread == 0


def test_group_removal_ends_membership_with_reason():
    model = ChatModel("sam")
    row = model.group(GROUP)
    row.role = "member"
    row.muted = True
    model.apply(group_update(5, action="remove", member=False))
    assert row.role is None
    assert not row.muted
    assert row.left_reason == "teacher removed you from this group."


def test_group_leave_reason_names_this_account():
    model = ChatModel("sam")
    model.group(GROUP).role = "member"
    model.apply(group_update(5, action="leave", actor="sam", member=False))
    assert model.groups[GROUP].left_reason == "You left this group."


def test_message_deleted_only_in_open_conversation():
    model = ChatModel("sam")
    model.open(GROUP)
    deleted = Event("message_deleted", {"conversation": GROUP, "message_id": "m1"})
    effects = model.apply(deleted)
    assert effects == [viewmodel.Effect(viewmodel.DELETED, {"message_id": "m1"})]
    model.open("bob")
    assert model.apply(deleted) == []


def test_presence_change_reaches_member_list():
    model = ChatModel("sam")
    effects = model.apply(
        Event("presence_changed", {"username": "kim", "online": True})
    )
    presence = [e for e in effects if e.kind == viewmodel.PRESENCE]
    assert presence[0].data == {"username": "kim", "online": True}


def test_groups_sort_members_first_then_activity():
    model = ChatModel("sam")
    old = model.group("#" + "a" * 32)
    old.role, old.last_activity = "member", 10
    new = model.group("#" + "b" * 32)
    new.role, new.last_activity = "member", 20
    left = model.group("#" + "c" * 32)
    left.role, left.last_activity = None, 30
    order = [row.group_id for row in model.sorted_groups()]
    assert order == ["b" * 32, "a" * 32, "c" * 32]


def test_opening_group_clears_its_unread():
    model = ChatModel("sam")
    model.apply(message("teacher", GROUP, 1))
    model.apply(message("teacher", GROUP, 2))
    model.open(GROUP)
    assert model.groups[GROUP].unread == 0
    assert model.current_group() is model.groups[GROUP]


def test_being_added_to_group_counts_unread():
    model = ChatModel("sam")
    model.open("bob")
    effects = model.apply(group_update(2, action="add", target="sam"))
    assert model.groups[GROUP].unread == 1
    assert viewmodel.BELL in kinds(effects)
    others = model.apply(group_update(3, action="add", target="kim"))
    assert model.groups[GROUP].unread == 1
    assert viewmodel.BELL not in kinds(others)
