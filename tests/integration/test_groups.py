"""Group chat against a real server: a teacher and a class of 30 pupils.

Every pupil is a headless Client with its own profile and TLS connection.
The class is registered once per module, because 31 registrations cost
about a second of PBKDF2 each.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from enctalk.client.core import Client
from enctalk.client.errors import ClientError
from enctalk.crypto.grouplog import MUTE, REMOVE, GroupOp, GroupState, sign_op
from enctalk.crypto.keys import AccountIdentity
from tests.integration.conftest import ServerProcess

PUPILS = 30
PASSWORD = "chalk window river"
WAIT = 60.0


def _client(root: Path, server: ServerProcess, name: str) -> Client:
    return Client(
        root / name, server=server.address, accept_new_server=True, timeout=20.0
    )


class Classroom:
    def __init__(self, root: Path, server: ServerProcess) -> None:
        self.root = root
        self.server = server
        self.teacher = _client(root, server, "teacher")
        self.pupils = [_client(root, server, f"pupil{i:02d}") for i in range(PUPILS)]
        self.gid = ""

    @property
    def everyone(self) -> list[Client]:
        return [self.teacher, *self.pupils]

    def reopen(self, index: int) -> Client:
        """Open pupil ``index``'s profile again, as after a restart of the app."""
        client = _client(self.root, self.server, f"pupil{index:02d}")
        client.unlock(PASSWORD)
        client.wait_ready(WAIT)
        self.pupils[index] = client
        return client


def wait_until(check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.1)


def texts(client: Client, gid: str) -> list[tuple[str, str]]:
    return [
        (entry.sender, entry.body)
        for entry in client.history("#" + gid)
        if entry.kind == "text"
    ]


def lines(client: Client, gid: str) -> list[str]:
    return [e.body for e in client.history("#" + gid) if e.kind in ("system", "notice")]


@pytest.fixture(scope="module")
def classroom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Classroom]:
    root = tmp_path_factory.mktemp("classroom")
    config = root / "server.toml"
    # A whole class registers from one address at once.
    config.write_text("bcrypt_cost = 4\nregister_burst = 100\n")
    server = ServerProcess(root / "data", config, root / "server.log")
    server.start()
    room = Classroom(root, server)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(
            pool.map(
                lambda c: c.register(c.profile.directory.name, PASSWORD), room.everyone
            )
        )
    room.gid = room.teacher.create_group("Class 7B")
    for pupil in room.pupils:
        room.teacher.group_add(room.gid, pupil.username or "")
    yield room
    for client in room.everyone:
        client.close()
    server.stop()


def test_group_messages_reach_every_member_once_in_one_order(classroom):
    gid = classroom.gid
    classroom.teacher.send_group_text(gid, "Good morning, class")
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(
            pool.map(
                lambda i: classroom.pupils[i].send_group_text(gid, f"hello from {i}"),
                range(3),
            )
        )
    assert [result.state for result in results] == ["sent"] * 3
    classroom.teacher.send_group_text(gid, "Open your books")

    expected = 5
    for client in classroom.everyone:
        wait_until(lambda c=client: len(texts(c, gid)) >= expected)
    orders = [texts(client, gid) for client in classroom.everyone]
    assert all(order == orders[0] for order in orders)
    assert len(orders[0]) == expected
    assert len(set(orders[0])) == expected
    assert orders[0][0] == ("teacher", "Good morning, class")
    assert orders[0][-1] == ("teacher", "Open your books")


def test_group_members_lists_roles_and_membership_lines(classroom):
    members = classroom.teacher.group_members(classroom.gid)
    assert len(members) == PUPILS + 1
    assert members[0]["username"] == "teacher"
    assert members[0]["role"] == "owner"
    assert all(m["role"] == "member" for m in members[1:])
    assert "teacher added you" in lines(classroom.pupils[7], classroom.gid)
    assert "You added pupil07" in lines(classroom.teacher, classroom.gid)


def test_removed_member_offline_gets_nothing_after_removal(classroom):
    gid = classroom.gid
    classroom.pupils[29].close()
    classroom.teacher.group_remove(gid, "pupil29")
    classroom.teacher.send_group_text(gid, "only for the rest")
    wait_until(
        lambda: ("teacher", "only for the rest") in texts(classroom.pupils[0], gid)
    )

    removed = classroom.reopen(29)
    wait_until(lambda: "teacher removed you" in lines(removed, gid))
    assert ("teacher", "only for the rest") not in texts(removed, gid)
    assert removed.group_info(gid).role is None
    with pytest.raises(ClientError) as refused:
        removed.send_group_text(gid, "can I still post?")
    assert refused.value.code == "not_allowed"


def test_server_refuses_envelopes_for_a_removed_member(classroom):
    gid = classroom.gid
    wait_until(lambda: classroom.teacher.group_info(gid).members == PUPILS)
    removed = classroom.pupils[29]
    with pytest.raises(ClientError) as refused:
        classroom.teacher._request(
            "group_send",
            message_id=str(uuid.uuid4()),
            group_id=gid,
            epoch=classroom.teacher.group_info(gid).epoch,
            payload=b"x" * 64,
            envelopes=[
                {"username": "pupil29", "device_id": removed.device_id, "body": b"y"}
            ],
        )
    assert refused.value.code == "device_list_mismatch"
    extra = refused.value.details["extra"]
    assert {"username": "pupil29", "device_id": removed.device_id} in extra


def test_muted_member_offline_learns_mute_and_server_refuses_sends(
    classroom, monkeypatch
):
    gid = classroom.gid
    classroom.pupils[28].close()
    classroom.teacher.group_mute(gid, "pupil28")
    muted = classroom.reopen(28)
    wait_until(lambda: muted.group_info(gid).muted)
    with pytest.raises(ClientError) as refused:
        muted.send_group_text(gid, "let me talk")
    assert refused.value.code == "not_allowed"

    # A client that skips its own check still meets the server's.
    monkeypatch.setattr(GroupState, "post_refusal", lambda self, name: None)
    result = muted.send_group_text(gid, "let me talk anyway")
    monkeypatch.undo()
    assert result.state == "failed"
    assert "muted" in (result.error or "")

    classroom.teacher.group_mute(gid, "pupil28", muted=False)
    wait_until(lambda: not muted.group_info(gid).muted)
    assert muted.send_group_text(gid, "thank you").state == "sent"


def test_read_only_group_lets_only_moderators_post(classroom):
    gid = classroom.gid
    pupil = classroom.pupils[3]
    classroom.teacher.group_read_only(gid, True)
    wait_until(lambda: pupil.group_info(gid).read_only)
    with pytest.raises(ClientError) as refused:
        pupil.send_group_text(gid, "question")
    assert "read-only" in refused.value.message
    assert classroom.teacher.send_group_text(gid, "quiet please").state == "sent"

    classroom.teacher.group_set_role(gid, "pupil03", "moderator")
    wait_until(lambda: pupil.group_info(gid).role == "moderator")
    assert pupil.send_group_text(gid, "as moderator").state == "sent"
    classroom.teacher.group_read_only(gid, False)
    wait_until(lambda: not classroom.pupils[4].group_info(gid).read_only)
    assert classroom.pupils[4].send_group_text(gid, "back again").state == "sent"


def test_delete_for_everyone_also_reaches_an_offline_member(classroom):
    gid = classroom.gid
    author, online = classroom.pupils[1], classroom.pupils[2]
    classroom.pupils[27].close()
    result = author.send_group_text(gid, "a rude word")
    wait_until(lambda: ("pupil01", "a rude word") in texts(online, gid))

    classroom.teacher.group_delete_message(gid, result.message_id)
    wait_until(lambda: ("pupil01", "a rude word") not in texts(online, gid))
    assert "teacher deleted a message from pupil01" in lines(online, gid)

    offline = classroom.reopen(27)
    wait_until(lambda: "teacher deleted a message from pupil01" in lines(offline, gid))
    assert ("pupil01", "a rude word") not in texts(offline, gid)
    assert ("pupil01", "a rude word") not in texts(author, gid)


def test_member_added_later_gets_no_earlier_messages(classroom):
    gid = classroom.gid
    newcomer = classroom.pupils[29]
    classroom.teacher.send_group_text(gid, "before you came back")
    classroom.teacher.group_add(gid, "pupil29")
    wait_until(lambda: newcomer.group_info(gid).role == "member")
    classroom.teacher.send_group_text(gid, "welcome back")
    wait_until(lambda: ("teacher", "welcome back") in texts(newcomer, gid))
    assert ("teacher", "before you came back") not in texts(newcomer, gid)


def _forge(server: ServerProcess, gid: str, op: GroupOp, devices: list[int]) -> None:
    """Queue ``op`` to ``devices`` by writing the stopped server's database."""
    wire = {
        key: base64.urlsafe_b64encode(value).decode()
        if isinstance(value, bytes)
        else value
        for key, value in op.to_wire().items()
    }
    payload = json.dumps(wire).encode()
    db = sqlite3.connect(server.data_dir / "enctalk.sqlite3")
    with db:
        sender = db.execute(
            "SELECT id FROM users WHERE username = 'teacher'"
        ).fetchone()[0]
        device = db.execute(
            "SELECT id FROM devices WHERE user_id = ?", (sender,)
        ).fetchone()[0]
        cursor = db.execute(
            "INSERT INTO messages (sender_user, sender_device, message_id, recipient,"
            " payload, payload_hash, server_time, kind, group_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'op', ?)",
            (
                sender,
                device,
                f"forged:{uuid.uuid4()}",
                sender,
                payload,
                hashlib.sha256(payload).digest(),
                int(time.time() * 1000),
                gid,
            ),
        )
        for device_id in devices:
            seq = db.execute(
                "UPDATE devices SET queue_seq = queue_seq + 1 WHERE id = ?"
                " RETURNING queue_seq",
                (device_id,),
            ).fetchone()[0]
            db.execute(
                "INSERT INTO queue (device_id, seq, kind, server_seq)"
                " VALUES (?, ?, 'message', ?)",
                (device_id, seq, cursor.lastrowid),
            )
    db.close()


def test_forged_moderation_from_the_server_is_rejected(classroom):
    gid = classroom.gid
    pupil = classroom.pupils[10]
    with pupil._lock:
        current = GroupState.from_json(pupil._state["groups"][gid]["state"])
    wrong_key = sign_op(
        AccountIdentity.generate(),
        current.next_op("teacher", REMOVE, "pupil11", time=1),
    )
    wrong_role = sign_op(
        classroom.pupils[12]._aik,
        current.next_op("pupil12", MUTE, "pupil11", time=1),
    )
    classroom.server.stop()
    _forge(classroom.server, gid, wrong_key, [pupil.device_id])
    _forge(classroom.server, gid, wrong_role, [pupil.device_id])
    classroom.server.start()

    wait_until(lambda: sum("was rejected" in line for line in lines(pupil, gid)) >= 2)
    rejected = [line for line in lines(pupil, gid) if "was rejected" in line]
    assert "not signed by the identity key of teacher" in rejected[0]
    assert "pupil12 is not a moderator" in rejected[1]
    info = pupil.group_info(gid)
    assert info.epoch == current.epoch
    assert pupil.group_info(gid).members == current_members(pupil, gid)
    assert pupil.send_group_text(gid, "still here").state == "sent"


def current_members(client: Client, gid: str) -> int:
    with client._lock:
        state = GroupState.from_json(client._state["groups"][gid]["state"])
    assert "pupil11" in state.roles
    assert "pupil11" not in state.muted
    return len(state.roles)


def test_owner_key_change_after_reset_is_accepted_with_a_warning(server, tmp_path):
    from tests.integration.test_client_core import reset_code

    owner = _client(tmp_path, server, "owner")
    member = _client(tmp_path, server, "member")
    owner.register("owner", PASSWORD)
    member.register("member", PASSWORD)
    gid = owner.create_group("Chess club")
    owner.group_add(gid, "member")
    wait_until(lambda: member.group_info(gid).role == "member")
    owner.close()

    fresh = _client(tmp_path, server, "owner-new")
    code = reset_code(server, "owner")
    assert fresh.redeem_reset("owner", code, "pebble tower orchard") is False
    wait_until(lambda: fresh.groups() != [])
    fresh.group_mute(gid, "member")

    wait_until(lambda: member.group_info(gid).muted)
    notices = member_notices(member)
    assert any("identity key of owner changed" in line for line in notices)
    own_history = lines(fresh, gid)
    assert any("earlier identity key of owner" in line for line in own_history)
    member.close()
    fresh.close()


def member_notices(client: Client) -> list[str]:
    return [entry.body for entry in client.history("owner") if entry.kind == "notice"]
