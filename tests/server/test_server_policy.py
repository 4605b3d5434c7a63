"""Lab policy, staff accounts, display names and class lists on a live server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import Clients, make_config
from server_wire import WireClient, new_message_id

from server.app import Server
from server.config import ConfigError, build_config
from server.main import main
from server.policy import may_create_groups, may_message_directly
from server.store import Store, User

PUPIL = User(
    id=1,
    username="pupil",
    auth_hash=b"",
    identity_key=b"",
    backup=b"",
    backup_stale=False,
    disabled=False,
    created=0,
    display_name="Pupil",
    staff=False,
    class_label="7B",
    pending_setup=False,
)
TEACHER = replace(PUPIL, id=2, username="teacher", staff=True, class_label="")


def _admin(data_dir: Path, *args: str) -> int:
    return main(["admin", "--data-dir", str(data_dir), *args])


def _send(client: WireClient, to: str, device_id: int) -> dict:
    return client.request(
        "send",
        message_id=new_message_id(),
        to=to,
        payload=b"ciphertext",
        envelopes=[{"username": to, "device_id": device_id, "body": b"key"}],
    )


@pytest.fixture
def staff_server(data_dir: Path) -> Iterator[Server]:
    instance = Server(make_config(data_dir, direct_messages="staff"))
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def staff_clients(staff_server: Server) -> Iterator[Clients]:
    opened = Clients(staff_server.port)
    yield opened
    opened.close_all()


def test_may_create_groups_follows_group_creators() -> None:
    everyone = build_config(overrides={"group_creators": "everyone"})
    staff = build_config(overrides={"group_creators": "staff"})
    assert may_create_groups(everyone, PUPIL) is True
    assert may_create_groups(everyone, TEACHER) is True
    assert may_create_groups(staff, PUPIL) is False
    assert may_create_groups(staff, TEACHER) is True


def test_may_message_directly_follows_direct_messages() -> None:
    everyone = build_config()
    staff = build_config(overrides={"direct_messages": "staff"})
    other_pupil = replace(PUPIL, id=3, username="other")
    assert may_message_directly(everyone, PUPIL, other_pupil) is True
    assert may_message_directly(staff, PUPIL, other_pupil) is False
    assert may_message_directly(staff, PUPIL, TEACHER) is True
    assert may_message_directly(staff, TEACHER, PUPIL) is True
    assert may_message_directly(staff, TEACHER, replace(TEACHER, id=4)) is True


@pytest.mark.parametrize("name", ["group_creators", "direct_messages"])
def test_policy_settings_reject_unknown_value(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be one of everyone, staff"):
        build_config(overrides={name: "teachers"})
    config_file = tmp_path / "server.toml"
    config_file.write_text(f'{name} = "staff"\nsetup_code_days = 7\n')
    config = build_config(config_file)
    assert getattr(config, name) == "staff"
    assert config.setup_code_days == 7.0


def test_setup_code_days_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="setup_code_days"):
        build_config(overrides={"setup_code_days": 0})


def test_staff_policy_blocks_pupil_to_pupil_contact(
    staff_server: Server, staff_clients: Clients
) -> None:
    staff_clients.with_device("teacher")
    pupil = staff_clients.with_device("pupil")
    staff_clients.with_device("other")
    assert _admin(staff_server.data_dir, "set-staff", "teacher") == 0

    rejected = pupil.request("add_contact", username="other")
    assert rejected["code"] == "not_allowed"
    assert "only teachers" in rejected["message"]

    allowed = pupil.request("add_contact", username="teacher")
    assert allowed["type"] == "ok"


def test_staff_policy_lets_teacher_add_pupil_and_both_send(
    staff_server: Server, staff_clients: Clients
) -> None:
    teacher = staff_clients.with_device("teacher")
    pupil = staff_clients.with_device("pupil")
    assert _admin(staff_server.data_dir, "set-staff", "teacher") == 0

    assert teacher.call("add_contact", username="pupil")["username"] == "pupil"
    pupil.wait_push("contact_added")
    assert _send(teacher, "pupil", pupil.device_id)["type"] == "ok"
    assert pupil.wait_push("message")["from"] == "teacher"
    assert _send(pupil, "teacher", teacher.device_id)["type"] == "ok"
    assert teacher.wait_push("message")["from"] == "pupil"


def test_staff_policy_blocks_send_between_existing_pupil_contacts(
    staff_server: Server, staff_clients: Clients
) -> None:
    pupil = staff_clients.with_device("pupil")
    other = staff_clients.with_device("other")
    # Contacts made before the policy was switched on stay in the list,
    # but messages between the two pupils are rejected.
    store = Store.open_in(staff_server.data_dir)
    try:
        ids = {user.username: user.id for user, _, _ in store.list_users()}
        store.add_contact(ids["pupil"], ids["other"], 0)
    finally:
        store.close()

    rejected = _send(pupil, "other", other.device_id)
    assert rejected["code"] == "not_allowed"
    assert "other is not one" in rejected["message"]
    upload = pupil.request("attachment_create", to="other", size=1000)
    assert upload["code"] == "not_allowed"
    assert [c["username"] for c in pupil.call("list_contacts")["contacts"]] == ["other"]


def test_staff_flag_change_applies_to_running_server(
    staff_server: Server, staff_clients: Clients
) -> None:
    pupil = staff_clients.with_device("pupil")
    helper = staff_clients.with_device("helper")
    assert pupil.request("add_contact", username="helper")["code"] == "not_allowed"
    assert _admin(staff_server.data_dir, "set-staff", "helper") == 0
    assert pupil.call("add_contact", username="helper")["username"] == "helper"
    helper.wait_push("contact_added")
    assert _send(pupil, "helper", helper.device_id)["type"] == "ok"

    assert _admin(staff_server.data_dir, "unset-staff", "helper") == 0
    assert _send(pupil, "helper", helper.device_id)["code"] == "not_allowed"


def test_contact_frames_carry_display_name(server: Server, clients: Clients) -> None:
    alice = clients.register("alice")
    bob = clients.register("bob")
    assert _admin(server.data_dir, "set-display-name", "alice", "Alice Smith") == 0
    assert _admin(server.data_dir, "set-display-name", "bob", "Bob Jones") == 0

    added = alice.call("add_contact", username="bob")
    assert added["display_name"] == "Bob Jones"
    pushed = bob.wait_push("contact_added")
    assert pushed["display_name"] == "Alice Smith"
    listed = bob.call("list_contacts")["contacts"]
    assert listed[0]["username"] == "alice"
    assert listed[0]["display_name"] == "Alice Smith"


def test_class_lists_only_for_staff(
    server: Server,
    clients: Clients,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "username,display_name,group\nzed,Zed Adams,7B\nada,Ada Zhu,7B\ncyd,Cyd,8A\n",
        encoding="utf-8",
    )
    assert _admin(server.data_dir, "import-users", str(roster)) == 0
    teacher = clients.register("teacher")
    pupil = clients.register("pupil")
    assert _admin(server.data_dir, "set-staff", "teacher") == 0

    assert teacher.call("list_classes")["classes"] == ["7B", "8A"]
    members = teacher.call("class_members", group="7B")
    assert members["group"] == "7B"
    assert members["members"] == [
        {"username": "ada", "display_name": "Ada Zhu", "pending": True},
        {"username": "zed", "display_name": "Zed Adams", "pending": True},
    ]
    assert teacher.call("class_members", group="9Z")["members"] == []

    rejected = pupil.request("class_members", group="7B")
    assert rejected["code"] == "not_allowed"
    assert pupil.request("list_classes")["code"] == "not_allowed"
    anonymous = clients.connect().request("list_classes")
    assert anonymous["code"] == "not_authenticated"
