"""Groups made in the desktop client, a subprocess on Xvfb driven with xdotool.

The other members are headless clients in this process, so the tests
check what reached them through the server. What the window shows is
read from the trace file it writes (message ids, never text), and each
step leaves a screenshot under test-artifacts/gui/<test name>/.
"""

from __future__ import annotations

import queue
import time

from enctalk.client.core import Client
from tests.gui.test_desktop_app import log_in_gui, wait_until
from tests.gui.test_group_classes import PASSWORD as CLASS_PASSWORD
from tests.gui.test_group_classes import PUPILS, TEACHER
from tests.gui.test_group_classes import ROSTER as CLASS_ROSTER
from tests.integration.conftest import PASSWORD_ALICE, PASSWORD_BOB, Cli, wait_for_event
from tests.integration.test_cli_roster import import_roster

GROUP_NAME = "Science club"
WELCOME = "Welcome to the science club"
REPLY = "Thanks, glad to be here"
CLASS_GROUP_NAME = "Class 7B maths"
CLASS_WELCOME = "Welcome to maths, 7B"
# Seconds for the "New group" dialog to create the group and show its second step.
CREATE_WAIT_SECONDS = 2.0


def test_gui_creates_group_and_chats(server, tmp_path, desktop, start_gui):
    alice = Cli(tmp_path / "alice", server, PASSWORD_ALICE)
    assert alice.run("register", "alice").returncode == 0
    bob = Client(
        tmp_path / "bob",
        server=server.address,
        accept_new_server=True,
        events=queue.Queue(),
        timeout=10,
    )
    bob.register("bob", PASSWORD_BOB)
    try:
        gui = start_gui(tmp_path / "alice", server.address)
        log_in_gui(desktop, PASSWORD_ALICE)
        window = desktop.find_window("^EncTalk - alice$")
        desktop.focus(window)
        desktop.key("ctrl+g")
        dialog = desktop.find_window("^New group$")
        desktop.focus(dialog)
        desktop.type(GROUP_NAME)
        desktop.screenshot("new-group-name")
        desktop.key("Return")
        time.sleep(CREATE_WAIT_SECONDS)
        desktop.screenshot("new-group-members")
        desktop.focus(dialog)
        desktop.type("bob")
        desktop.key("Return")

        added = wait_for_event(
            bob.events,
            lambda e: e.name == "group_updated" and e.data["target"] == "bob",
        )
        group_id = added.data["group_id"]
        assert added.data["member"] is True
        assert bob.group_info(group_id).name == GROUP_NAME

        system_line = f"group-op:{group_id}:2"
        assert wait_until(lambda: system_line in gui.shown_message_ids())

        desktop.focus(window)
        desktop.key("ctrl+l")
        desktop.type(WELCOME)
        desktop.key("Return")
        received = wait_for_event(
            bob.events,
            lambda e: e.name == "message_received" and e.data.get("group") == group_id,
        )
        assert received.data["sender"] == "alice"
        assert received.data["body"] == WELCOME

        reply = bob.send_group_text(group_id, REPLY, 10)
        assert wait_until(lambda: reply.message_id in gui.shown_message_ids())
        time.sleep(0.5)
        desktop.screenshot("group-conversation")

        shown = gui.shown_message_ids()
        assert shown.index(system_line) < shown.index(reply.message_id)
        assert "Traceback" not in gui.stderr_text()
    finally:
        bob.close()


def test_gui_teacher_adds_class_by_keyboard(server, tmp_path, desktop, start_gui):
    codes = import_roster(server, tmp_path, CLASS_ROSTER)
    teacher = Client(
        tmp_path / TEACHER, server=server.address, accept_new_server=True, timeout=10
    )
    teacher.redeem_setup(TEACHER, codes[TEACHER], CLASS_PASSWORD)
    teacher.close()
    pupils = {}
    try:
        for name in PUPILS:
            pupil = Client(
                tmp_path / name,
                server=server.address,
                accept_new_server=True,
                events=queue.Queue(),
                timeout=10,
            )
            pupils[name] = pupil
            pupil.redeem_setup(name, codes[name], CLASS_PASSWORD)

        gui = start_gui(tmp_path / TEACHER, server.address)
        log_in_gui(desktop, CLASS_PASSWORD)
        window = desktop.find_window(f"^EncTalk - {TEACHER}$")
        desktop.focus(window)
        desktop.key("ctrl+g")
        dialog = desktop.find_window("^New group$")
        desktop.focus(dialog)
        desktop.type(CLASS_GROUP_NAME)
        desktop.key("Return")
        time.sleep(CREATE_WAIT_SECONDS)
        # The server has one class, which the dialog chose already: from the
        # username field back to "Add class", and press it.
        desktop.key("shift+Tab")
        time.sleep(0.3)
        desktop.screenshot("class-chosen")
        desktop.key("space")

        for name, pupil in pupils.items():
            added = wait_for_event(
                pupil.events,
                lambda e, name=name: (
                    e.name == "group_updated" and e.data["target"] == name
                ),
            )
            assert added.data["member"] is True
        group_id = added.data["group_id"]
        assert pupils["pupil01"].group_info(group_id).name == CLASS_GROUP_NAME
        time.sleep(0.5)
        desktop.screenshot("class-added")

        desktop.focus(dialog)
        desktop.key("Escape")
        desktop.focus(window)
        desktop.key("ctrl+l")
        desktop.type(CLASS_WELCOME)
        desktop.key("Return")
        received = wait_for_event(
            pupils["pupil03"].events,
            lambda e: e.name == "message_received" and e.data.get("group") == group_id,
        )
        assert received.data["sender"] == TEACHER
        assert received.data["body"] == CLASS_WELCOME
        time.sleep(0.5)
        desktop.screenshot("class-group")
        assert "Traceback" not in gui.stderr_text()
    finally:
        for pupil in pupils.values():
            pupil.close()
