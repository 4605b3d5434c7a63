"""Group requests against a real server over TLS: who may do what.

Every test account shares TEST_AIK, so the tests sign group operations
with it; an operation signed with any other key is a forgery.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from server_wire import TEST_AIK, WireClient

from enctalk.crypto.grouplog import (
    ADD,
    CREATE,
    DELETE,
    MUTE,
    READ_ONLY,
    REMOVE,
    GroupOp,
    GroupState,
    message_ref,
    sign_op,
)
from enctalk.crypto.keys import AccountIdentity
from server.main import main

GROUP = "00112233445566778899aabbccddeeff"


class Group:
    """The server's group as the tests track it: the state after each op."""

    def __init__(self, owner: WireClient, owner_name: str) -> None:
        self.state = GroupState.empty(GROUP)
        self.submit(owner, owner_name, CREATE, value="Class 7B")

    def op(
        self,
        actor: str,
        action: str,
        target: str = "",
        value: str = "",
        key: AccountIdentity = TEST_AIK,
    ) -> GroupOp:
        return sign_op(key, self.state.next_op(actor, action, target, value, time=1))

    def request(self, client: WireClient, op: GroupOp) -> dict[str, Any]:
        return client.request("group_op", op=op.to_wire())

    def submit(
        self,
        client: WireClient,
        actor: str,
        action: str,
        target: str = "",
        value: str = "",
    ) -> dict[str, Any]:
        op = self.op(actor, action, target, value)
        reply = self.request(client, op)
        assert reply["type"] == "ok", reply
        self.state = self.state.apply(op)
        return reply

    def send(
        self,
        client: WireClient,
        envelopes: list[dict[str, Any]],
        epoch: int | None = None,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        return client.request(
            "group_send",
            message_id=message_id or str(uuid.uuid4()),
            group_id=GROUP,
            epoch=self.state.epoch if epoch is None else epoch,
            payload=b"sealed payload",
            envelopes=envelopes,
        )


def envelope(name: str, client: WireClient) -> dict[str, Any]:
    return {
        "username": name,
        "device_id": client.device_id,
        "body": b"key for " + name.encode(),
    }


@pytest.fixture
def room(clients):
    ada = clients.with_device("ada")
    sam = clients.with_device("sam")
    kim = clients.with_device("kim")
    group = Group(ada, "ada")
    group.submit(ada, "ada", ADD, "sam")
    group.submit(ada, "ada", ADD, "kim")
    return group, ada, sam, kim


def test_group_op_create_replies_with_epoch_one(clients):
    ada = clients.with_device("ada")
    group = Group.__new__(Group)
    group.state = GroupState.empty(GROUP)
    reply = group.submit(ada, "ada", CREATE, value="Class 7B")
    assert reply["epoch"] == 1
    assert ada.call("list_groups")["groups"] == [
        {"group_id": GROUP, "name": "Class 7B", "epoch": 1}
    ]


def test_group_op_create_twice_is_group_exists(room):
    group, ada, _, _ = room
    again = sign_op(TEST_AIK, GroupState.empty(GROUP).next_op("ada", CREATE, value="x"))
    assert group.request(ada, again)["code"] == "group_exists"


def test_group_op_for_another_actor_is_not_allowed(room):
    group, _, sam, _ = room
    assert group.request(sam, group.op("ada", MUTE, "kim"))["code"] == "not_allowed"


def test_group_op_with_forged_signature_is_refused(room):
    group, ada, _, _ = room
    forged = group.op("ada", REMOVE, "sam", key=AccountIdentity.generate())
    reply = group.request(ada, forged)
    assert reply["code"] == "invalid_signature"


def test_group_op_behind_the_log_is_group_outdated(room):
    group, ada, _, _ = room
    stale = sign_op(TEST_AIK, GroupState.empty(GROUP).next_op("ada", ADD, "x"))
    reply = group.request(ada, stale)
    assert reply["code"] == "group_outdated"
    assert reply["details"] == {"epoch": group.state.epoch}


def test_group_op_by_plain_member_is_invalid(room):
    group, _, sam, _ = room
    reply = group.request(sam, group.op("sam", MUTE, "kim"))
    assert reply["code"] == "invalid_group_op"
    assert "not a moderator" in reply["message"]


def test_group_op_naming_unknown_or_uncanonical_user_is_refused(room):
    group, ada, _, _ = room
    assert (
        group.request(ada, group.op("ada", ADD, "nobody"))["code"] == "user_not_found"
    )
    assert group.request(ada, group.op("ada", ADD, "SAM"))["code"] == "invalid_group_op"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("action", "Add"),
        ("value", "x" * 2000),
        ("index", 0),
        ("prev", base64.urlsafe_b64encode(b"short").decode()),
        ("group_id", "not-a-group"),
    ],
)
def test_group_op_malformed_field_is_invalid_frame(room, field, value):
    group, ada, sam, _ = room
    wire = group.op("ada", ADD, "x").to_wire()
    wire = {
        key: base64.urlsafe_b64encode(item).decode()
        if isinstance(item, bytes)
        else item
        for key, item in wire.items()
    }
    wire[field] = value
    reply = ada.request("group_op", op=wire)
    assert reply["code"] == "invalid_frame"
    ada.expect_closed()
    assert sam.call("ping")["type"] == "ok"
    assert sam.call("group_log", group_id=GROUP, after=0)["epoch"] == group.state.epoch


def test_group_send_reaches_each_member_device_with_the_group(room):
    group, ada, sam, kim = room
    reply = group.send(ada, [envelope("sam", sam), envelope("kim", kim)])
    assert reply["type"] == "ok"
    push = sam.wait_push("message")
    assert push["group"] == GROUP
    assert push["to"] == "#" + GROUP
    assert push["from"] == "ada"


def test_group_send_with_envelope_for_non_member_is_mismatch(room, clients):
    group, ada, sam, kim = room
    eve = clients.with_device("eve")
    reply = group.send(
        ada, [envelope("sam", sam), envelope("kim", kim), envelope("eve", eve)]
    )
    assert reply["code"] == "device_list_mismatch"
    assert reply["details"]["extra"] == [
        {"username": "eve", "device_id": eve.device_id}
    ]


def test_group_send_from_non_member_is_group_not_found(room, clients):
    group, _, sam, _ = room
    eve = clients.with_device("eve")
    assert group.send(eve, [envelope("sam", sam)])["code"] == "group_not_found"


def test_group_send_at_an_old_epoch_is_group_outdated(room):
    group, ada, sam, kim = room
    reply = group.send(ada, [envelope("sam", sam), envelope("kim", kim)], epoch=1)
    assert reply["code"] == "group_outdated"


def test_group_send_by_muted_member_is_refused(room):
    group, ada, sam, kim = room
    group.submit(ada, "ada", MUTE, "sam")
    reply = group.send(sam, [envelope("ada", ada), envelope("kim", kim)])
    assert reply["code"] == "muted"


def test_group_send_by_member_of_read_only_group_is_refused(room):
    group, ada, sam, kim = room
    group.submit(ada, "ada", READ_ONLY, value="on")
    reply = group.send(kim, [envelope("ada", ada), envelope("sam", sam)])
    assert reply["code"] == "read_only"
    assert group.send(ada, [envelope("sam", sam), envelope("kim", kim)])["type"] == "ok"


def test_removed_member_reads_the_log_only_up_to_the_removal(room):
    group, ada, sam, _ = room
    group.submit(ada, "ada", REMOVE, "sam")
    removal = group.state.epoch
    group.submit(ada, "ada", READ_ONLY, value="on")
    reply = sam.call("group_log", group_id=GROUP, after=0)
    assert reply["epoch"] == removal
    assert [item["op"]["index"] for item in reply["ops"]] == list(range(1, removal + 1))
    assert sam.call("list_groups")["groups"] == []
    assert sam.request("group_members", group_id=GROUP)["code"] == "group_not_found"


def test_group_log_of_stranger_is_group_not_found(room, clients):
    eve = clients.with_device("eve")
    assert (
        eve.request("group_log", group_id=GROUP, after=0)["code"] == "group_not_found"
    )


def test_group_delete_drops_the_copy_of_an_offline_device(room, clients):
    group, ada, sam, kim = room
    message_id = str(uuid.uuid4())
    kim.close()
    assert (
        group.send(
            sam, [envelope("ada", ada), envelope("kim", kim)], message_id=message_id
        )["type"]
        == "ok"
    )
    group.submit(ada, "ada", DELETE, value=message_ref("sam", message_id))

    again = clients.login("kim", device_id=kim.device_id)
    again.call("sync", after=0)
    kinds = [frame["type"] for frame in again.pushes]
    assert "dropped" in kinds
    assert not any(
        frame["type"] == "message" and frame["message_id"] == message_id
        for frame in again.pushes
    )
    assert kinds[-1] == "group_op"


def test_group_delete_of_unknown_message_is_invalid(room):
    group, ada, _, _ = room
    op = group.op("ada", DELETE, value=message_ref("sam", str(uuid.uuid4())))
    assert group.request(ada, op)["code"] == "invalid_group_op"


def test_group_members_lists_roles_mutes_and_presence(room):
    group, ada, sam, _ = room
    group.submit(ada, "ada", MUTE, "kim")
    members = {
        m["username"]: m for m in sam.call("group_members", group_id=GROUP)["members"]
    }
    assert members["ada"]["role"] == "owner"
    assert members["kim"]["muted"] is True
    assert members["sam"]["online"] is True


def test_lookup_identities_lists_known_users_only(room):
    _, ada, _, _ = room
    users = ada.call("lookup_identities", usernames=["sam", "nobody"])["users"]
    assert [user["username"] for user in users] == ["sam"]


def test_group_add_shares_presence_with_the_new_member(room, clients):
    group, ada, sam, _ = room
    eve = clients.with_device("eve")
    group.submit(ada, "ada", ADD, "eve")
    sam.pushes.clear()
    eve.close()
    push = sam.wait_push("presence")
    assert push["username"] == "eve"
    assert push["online"] is False


def test_group_peers_see_presence_after_login(room, clients):
    _, _, sam, kim = room
    kim.close()
    assert sam.wait_push("presence")["online"] is False
    clients.login("kim", device_id=kim.device_id)
    push = sam.wait_push("presence")
    assert push["username"] == "kim"
    assert push["online"] is True


def test_group_create_at_index_two_is_invalid_not_exists(clients):
    ada = clients.with_device("ada")
    op = GroupState.empty(GROUP).next_op("ada", CREATE, value="x")
    forged = sign_op(TEST_AIK, GroupOp(**{**op.__dict__, "index": 2}))
    reply = ada.request("group_op", op=forged.to_wire())
    assert reply["code"] == "invalid_group_op"


def send_json(client: WireClient, frame: dict[str, Any]) -> dict[str, Any]:
    """Send ``frame`` as ASCII JSON, which writes a lone surrogate as an escape."""
    raw = json.dumps(frame).encode("ascii")
    client.send_raw(len(raw).to_bytes(4, "big") + raw)
    return client.reply_to(frame["id"])


def test_lone_surrogate_in_a_text_field_is_invalid_frame(clients):
    ada = clients.with_device("ada")
    eve = clients.with_device("eve")
    op = GroupState.empty(GROUP).next_op("ada", CREATE, value="x")
    wire = {
        key: base64.urlsafe_b64encode(value).decode()
        if isinstance(value, bytes)
        else value
        for key, value in sign_op(TEST_AIK, op).to_wire().items()
    }
    wire["value"] = "Class \ud800"
    reply = send_json(ada, {"type": "group_op", "id": 77, "op": wire})
    assert reply["code"] == "invalid_frame"
    assert "surrogate" in reply["message"]
    upload = {"type": "attachment_create", "id": 78, "to": "#\ud800", "size": 5}
    assert send_json(eve, upload)["code"] == "invalid_frame"
    other = clients.with_device("sam")
    assert other.call("ping")["type"] == "ok"


def test_group_members_marks_accounts_waiting_for_setup(room, data_dir, tmp_path):
    group, ada, sam, _ = room
    roster = tmp_path / "roster.csv"
    roster.write_text("username,display_name,group,role\nzoe,Zoe Li,7B,\n")
    assert (
        main(["admin", "--data-dir", str(data_dir), "import-users", str(roster)]) == 0
    )
    group.submit(ada, "ada", ADD, "zoe")

    listed = sam.call("group_members", group_id=GROUP)["members"]
    members = {member["username"]: member for member in listed}
    assert members["zoe"]["pending"] is True
    assert members["zoe"]["display_name"] == "Zoe Li"
    assert members["sam"]["pending"] is False
