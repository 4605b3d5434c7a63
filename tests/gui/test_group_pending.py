"""Group members who have not redeemed their setup code, in the group window.

A roster import on a real server subprocess makes a staff teacher (msada)
and a class 7B of three pupils, of which only pupil01 sets up here, so
pupil02 and pupil03 stay pending. The window, in this process on Xvfb,
logs in as the teacher and adds the class to a group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from enctalk.client.core import Client
from enctalk.ui.app import App
from enctalk.ui.member_panel import PENDING_MARK
from tests.gui.test_group_classes import (  # noqa: F401  (the log_in fixture)
    DRAW_SECONDS,
    PASSWORD,
    ROSTER,
    TEACHER,
    headless_client,
    log_in,
    open_class_group,
)
from tests.gui.test_group_window import run_until, shown_text
from tests.integration.conftest import ServerProcess
from tests.integration.test_cli_roster import import_roster

SET_UP = (TEACHER, "pupil01")
PENDING_NOTICE = (
    "2 members have not set up their accounts yet. They get only the "
    "messages sent after they do."
)


@pytest.fixture
def teacher_app(log_in: Callable[[str], App]) -> App:  # noqa: F811
    """The window, logged in as the teacher."""
    return log_in(TEACHER)


@pytest.fixture
def accounts(tmp_path: Path, server: ServerProcess) -> Iterator[dict[str, Client]]:
    """The teacher and pupil01, set up. pupil02 and pupil03 stay pending."""
    codes = import_roster(server, tmp_path, ROSTER)
    clients: dict[str, Client] = {}
    try:
        for name in SET_UP:
            client = headless_client(tmp_path / f"{name}-headless", server)
            clients[name] = client
            client.redeem_setup(name, codes[name], PASSWORD)
        yield clients
    finally:
        for client in clients.values():
            client.close()


def test_member_panel_marks_pending_members(teacher_app, desktop):
    app = teacher_app
    view = open_class_group(app)
    panel = view.group_actions.panel
    tree = panel.tree
    assert run_until(app.root, lambda: "not set up" in panel.title.get())
    assert panel.title.get() == "Members (4, 2 not set up)"
    assert tree.item("pupil02", "text") == f"{PENDING_MARK} Pupil Two"
    assert tree.item("pupil03", "text").startswith(PENDING_MARK)
    assert tree.item("pupil02", "tags") == ("pending",)
    assert tree.item("pupil01", "text").startswith("●")
    assert tree.item("pupil01", "tags") == ("online",)
    assert panel.pending_count() == 2
    tooltip = panel.member_tooltip("pupil02")
    assert tooltip == "Pupil Two\nusername pupil02 · waiting for setup"

    tree.selection_set("pupil02")
    app.root.update()
    assert panel.details.get() == "username pupil02 · waiting for setup"
    time.sleep(DRAW_SECONDS)
    app.root.update()
    desktop.screenshot("pending-members")


def test_send_to_pending_members_notices_once(teacher_app, desktop):
    app = teacher_app
    view = open_class_group(app)
    assert run_until(app.root, lambda: view.group_actions.panel.pending_count() == 2)

    view.input.insert("1.0", "Welcome to 7B")
    view.send_message()
    assert run_until(app.root, lambda: PENDING_NOTICE in shown_text(app))
    text = shown_text(app)
    assert text.index("Welcome to 7B") < text.index(PENDING_NOTICE)

    view.input.insert("1.0", "Bring your books tomorrow")
    view.send_message()
    assert run_until(app.root, lambda: "Bring your books" in shown_text(app))
    assert shown_text(app).count("have not set up") == 1
    time.sleep(DRAW_SECONDS)
    app.root.update()
    desktop.screenshot("pending-notice")


def test_send_without_pending_members_no_notice(teacher_app):
    app = teacher_app
    view = open_class_group(app, add_class=False)
    group_id = view.model.current_group().group_id
    client = app.client
    assert client is not None
    done: list[object] = []
    app.worker.submit(lambda: client.group_add(group_id, "pupil01"), done.append)
    panel = view.group_actions.panel
    assert run_until(app.root, lambda: panel.tree.exists("pupil01"))

    view.input.insert("1.0", "Just the two of us")
    view.send_message()
    assert run_until(app.root, lambda: "Just the two of us" in shown_text(app))
    assert "have not set up" not in shown_text(app)
