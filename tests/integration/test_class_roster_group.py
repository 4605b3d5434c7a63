"""A class of 30 set up from a roster, chatting in one group.

The administrator imports the roster, every pupil redeems a setup code
with a headless Client, and the teacher adds the class to a group from
the server's class list.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from enctalk.client.core import Client
from tests.integration.test_cli_roster import import_roster
from tests.integration.test_groups import texts, wait_until

PUPILS = 30
PASSWORD = "chalk window river"


def roster() -> str:
    rows = ["username,display_name,group,role", "ada,Ms Ada,,staff"]
    rows += [f"pupil{i:02d},Pupil {i:02d},7B,pupil" for i in range(PUPILS)]
    return "\n".join(rows) + "\n"


def test_class_from_roster_chats_in_a_group(make_server, tmp_path):
    server = make_server()
    codes = import_roster(server, tmp_path, roster())
    assert len(codes) == PUPILS + 1

    def set_up(name: str) -> Client:
        client = Client(
            tmp_path / name, server=server.address, accept_new_server=True, timeout=20
        )
        client.redeem_setup(name, codes[name], PASSWORD)
        return client

    with ThreadPoolExecutor(max_workers=4) as pool:
        clients = list(
            pool.map(set_up, ["ada"] + [f"pupil{i:02d}" for i in range(PUPILS)])
        )
    teacher, pupils = clients[0], clients[1:]
    try:
        gid = teacher.create_group("Class 7B")
        added = teacher.group_add_class(gid, "7B")
        assert len(added) == PUPILS
        assert teacher.group_add_class(gid, "7B") == []

        assert teacher.send_group_text(gid, "Welcome to 7B").state == "sent"
        for pupil in pupils:
            wait_until(lambda p=pupil: ("ada", "Welcome to 7B") in texts(p, gid))
        lines = [e.body for e in pupils[5].history("#" + gid) if e.kind == "system"]
        assert lines[0] == "Ms Ada created the group \u201cClass 7B\u201d"
        assert "Ms Ada added you" in lines
        assert "Ms Ada added Pupil 04" in lines

        assert pupils[0].send_group_text(gid, "Thank you").state == "sent"
        wait_until(lambda: ("pupil00", "Thank you") in texts(teacher, gid))
        members = teacher.group_members(gid)
        assert members[0]["display_name"] == "Ms Ada"
        assert {m["display_name"] for m in members[1:]} == {
            f"Pupil {i:02d}" for i in range(PUPILS)
        }
    finally:
        for client in clients:
            client.close()


def test_pupils_who_set_up_after_being_added_see_display_names(make_server, tmp_path):
    server = make_server()
    rows = "username,display_name,group,role\nada,Ms Ada,,staff\n"
    rows += "".join(f"pupil{i:02d},Pupil {i:02d},7B,pupil\n" for i in range(3))
    codes = import_roster(server, tmp_path, rows)

    def set_up(name: str) -> Client:
        client = Client(
            tmp_path / name, server=server.address, accept_new_server=True, timeout=20
        )
        client.redeem_setup(name, codes[name], PASSWORD)
        return client

    teacher = set_up("ada")
    clients = [teacher]
    try:
        gid = teacher.create_group("Class 7B")
        assert len(teacher.group_add_class(gid, "7B")) == 3
        pending = [m["username"] for m in teacher.group_members(gid) if m["pending"]]
        assert pending == ["pupil00", "pupil01", "pupil02"]

        pupil = set_up("pupil01")
        clients.append(pupil)
        # Added while it had no device, so it learns of the group when it
        # logs in and reads the group list.
        wait_until(lambda: any(g.group_id == gid for g in pupil.groups()))
        lines = [e.body for e in pupil.history("#" + gid) if e.kind == "system"]
        assert "Ms Ada added Pupil 00" in lines
        assert "Ms Ada added you" in lines
        assert teacher.send_group_text(gid, "Now you are here").state == "sent"
        wait_until(lambda: ("ada", "Now you are here") in texts(pupil, gid))
    finally:
        for client in clients:
            client.close()
