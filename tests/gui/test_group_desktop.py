"""A group made in the desktop client, a subprocess on Xvfb driven with xdotool.

The other member is a headless client in this process, so the test
checks what reached it through the server. What the window shows is
read from the trace file it writes (message ids, never text), and each
step leaves a screenshot under test-artifacts/gui/<test name>/.
"""

from __future__ import annotations

import queue
import time

from enctalk.client.core import Client
from tests.gui.test_desktop_app import log_in_gui, wait_until
from tests.integration.conftest import PASSWORD_ALICE, PASSWORD_BOB, Cli, wait_for_event

GROUP_NAME = "Science club"
WELCOME = "Welcome to the science club"
REPLY = "Thanks, glad to be here"
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
