"""Roster classes and display names in the group window, on Xvfb.

A roster import on a real server subprocess makes a staff teacher
(msada, "Ms Ada") and a class 7B of three pupils, and every account sets
up with its setup code through a headless Client. The window, in this
process, logs in as the teacher or as a pupil, who is not staff. The
other accounts stay headless clients here, and the tests check what
they receive through the server.
"""

from __future__ import annotations

import queue
import time
import tkinter as tk
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from enctalk.client.core import Client
from enctalk.ui import group_actions, theme
from enctalk.ui.app import App
from enctalk.ui.class_picker import NOT_STAFF_TEXT
from enctalk.ui.group_dialogs import AddMembersDialog, NewGroupDialog
from enctalk.ui.login import LOGIN, LoginForm
from enctalk.ui.main_window import MainWindow
from tests.gui.test_group_window import run_until, shown_text, window
from tests.integration.conftest import ServerProcess, wait_for_event
from tests.integration.test_cli_roster import import_roster

PASSWORD = "chalk window river"
TEACHER = "msada"
PUPILS = {"pupil01": "Pupil One", "pupil02": "Pupil Two", "pupil03": "Pupil Three"}
ROSTER = "username,display_name,group,role\n" + "msada,Ms Ada,,staff\n"
ROSTER += "".join(f"{name},{shown},7B,pupil\n" for name, shown in PUPILS.items())
# Seconds a screenshot waits for Tk to draw the last change.
DRAW_SECONDS = 0.3


def headless_client(profile: Path, server: ServerProcess) -> Client:
    return Client(
        profile,
        server=server.address,
        accept_new_server=True,
        events=queue.Queue(),
        timeout=10,
    )


@pytest.fixture
def accounts(tmp_path: Path, server: ServerProcess) -> Iterator[dict[str, Client]]:
    """Every roster account, set up; the clients stay open (online)."""
    codes = import_roster(server, tmp_path, ROSTER)
    clients: dict[str, Client] = {}
    try:
        for name in (TEACHER, *PUPILS):
            client = headless_client(tmp_path / f"{name}-headless", server)
            clients[name] = client
            client.redeem_setup(name, codes[name], PASSWORD)
        yield clients
    finally:
        for client in clients.values():
            client.close()


@pytest.fixture
def log_in(
    display: str,
    tmp_path: Path,
    server: ServerProcess,
    accounts: dict[str, Client],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[str], App]]:
    """Open the window, logged in as a roster account on a new device."""
    monkeypatch.setenv("DISPLAY", display)
    opened: list[App] = []

    def open_window(username: str) -> App:
        profile = tmp_path / f"{username}-window"
        # The first login on this profile pins the server certificate.
        first = headless_client(profile, server)
        first.login(username, PASSWORD)
        first.close()
        root = tk.Tk()
        theme.apply_theme(root)
        root.geometry("1040x680+0+0")
        application = App(root, str(profile), server.address)
        opened.append(application)
        application.login(LoginForm(server.address, username, PASSWORD, LOGIN))
        assert run_until(root, lambda: isinstance(application.view, MainWindow), 30)
        return application

    yield open_window
    for application in opened:
        application.close()


def run_on_worker(app: App, call: Callable[[Client], object]) -> object:
    """Run ``call(app.client)`` on the window's worker and return its result."""
    client = app.client
    assert client is not None
    results: list[object] = []
    app.worker.submit(lambda: call(client), results.append, results.append)
    assert run_until(app.root, lambda: results)
    assert not isinstance(results[0], BaseException), results[0]
    return results[0]


def open_dialog(view: MainWindow) -> AddMembersDialog:
    """Open "Add members" for the open group and return the dialog."""
    view.group_actions.add_members()
    dialogs = [w for w in view.winfo_children() if isinstance(w, AddMembersDialog)]
    assert len(dialogs) == 1
    return dialogs[0]


def open_class_group(app: App, add_class: bool = True) -> MainWindow:
    """Create "Class 7B" as this account, add the class, open it in the window."""
    group_id = str(run_on_worker(app, lambda client: client.create_group("Class 7B")))
    if add_class:
        run_on_worker(app, lambda client: client.group_add_class(group_id, "7B"))
    view = window(app)
    conversation = "#" + group_id
    assert run_until(app.root, lambda: conversation in view.model.groups)
    view.select(conversation)
    members = 4 if add_class else 1
    panel = view.group_actions.panel
    assert run_until(app.root, lambda: len(panel.tree.get_children()) == members)
    return view


def group_message(group_id: str) -> Callable[[object], bool]:
    return lambda e: e.name == "message_received" and e.data.get("group") == group_id


def test_new_group_dialog_adds_class(log_in, accounts, desktop):
    app = log_in(TEACHER)
    view = window(app)
    dialog = NewGroupDialog(
        view, app, [], view._group_created, view.group_actions.load_members
    )
    dialog.name.set("Class 7B science")
    dialog.create()
    assert run_until(app.root, lambda: hasattr(dialog, "classes"))
    classes = dialog.classes
    assert run_until(app.root, classes.shown)
    assert classes.combobox.winfo_ismapped()
    assert classes.combobox.cget("values") == ("7B",)
    # The only class is chosen already.
    assert classes.chosen() == "7B"
    assert classes.add_button.instate(["!disabled"])
    time.sleep(DRAW_SECONDS)
    app.root.update()
    desktop.screenshot("add-class")
    classes.add_button.invoke()
    assert run_until(app.root, lambda: dialog.result.get().startswith("Added"))
    assert dialog.result.get() == "Added 3 members from class 7B."
    assert dialog.error.get() == ""
    assert classes.add_button.instate(["!disabled"])
    time.sleep(DRAW_SECONDS)
    app.root.update()
    desktop.screenshot("add-class-result")

    panel = view.group_actions.panel
    assert run_until(app.root, lambda: panel.title.get() == "Members (4)")
    for name in PUPILS:
        assert panel.tree.exists(name)

    classes.add_button.invoke()
    assert run_until(app.root, lambda: "already" in dialog.result.get())
    assert dialog.result.get() == "Everyone in class 7B is in the group already."
    dialog.finish()

    group_id = dialog.group_id
    view.input.insert("1.0", "Welcome to science, 7B")
    view.send_message()
    pupil = accounts["pupil02"]
    received = wait_for_event(pupil.events, group_message(group_id))
    assert received.data["sender"] == TEACHER
    assert received.data["body"] == "Welcome to science, 7B"


def test_add_members_dialog_adds_rest_of_class(log_in, accounts):
    app = log_in(TEACHER)
    view = open_class_group(app, add_class=False)
    group_id = view.model.current_group().group_id
    run_on_worker(app, lambda client: client.group_add(group_id, "pupil01"))
    panel = view.group_actions.panel
    assert run_until(app.root, lambda: panel.tree.exists("pupil01"))

    dialog = open_dialog(view)
    assert run_until(app.root, dialog.classes.shown)
    dialog.classes.choose("7B")
    dialog.classes.submit()
    assert run_until(app.root, lambda: dialog.result.get().startswith("Added"))
    assert dialog.result.get() == "Added 2 members from class 7B."
    assert run_until(app.root, lambda: panel.title.get() == "Members (4)")
    event = wait_for_event(
        accounts["pupil03"].events,
        lambda e: e.name == "group_updated" and e.data["target"] == "pupil03",
    )
    assert event.data["member"] is True


def test_class_add_failure_shows_sentence(log_in, accounts):
    app = log_in(TEACHER)
    view = open_class_group(app, add_class=False)
    dialog = open_dialog(view)
    assert run_until(app.root, dialog.classes.shown)
    dialog.add_class("9Z")
    assert run_until(app.root, lambda: dialog.error.get() != "")
    error = dialog.error.get()
    assert error.startswith("Adding class 9Z failed: The server has no class '9Z'.")
    assert "Traceback" not in error
    assert "unknown_contact" not in error
    assert dialog.result.get() == ""
    assert dialog.add_button.instate(["!disabled"])


def test_non_staff_sees_no_class_choice(log_in, accounts, desktop):
    app = log_in("pupil01")
    view = open_class_group(app, add_class=False)
    dialog = open_dialog(view)
    classes = dialog.classes
    assert run_until(app.root, lambda: classes.note.get() == NOT_STAFF_TEXT)
    app.root.update()
    assert not classes.shown()
    assert not classes.combobox.winfo_ismapped()
    assert not classes.add_button.winfo_ismapped()
    # Adding one member by name still works.
    assert dialog.picker.entry.winfo_ismapped()
    time.sleep(DRAW_SECONDS)
    app.root.update()
    desktop.screenshot("add-members-not-staff")


def test_member_panel_shows_display_names(log_in, accounts, desktop):
    app = log_in(TEACHER)
    view = open_class_group(app)
    panel = view.group_actions.panel
    tree = panel.tree
    # By role, then by display name: One, Three, Two.
    assert tree.get_children() == ("msada", "pupil01", "pupil03", "pupil02")
    assert tree.item("msada", "text") == "● Ms Ada (you)"
    assert "Pupil One" in tree.item("pupil01", "text")
    assert "pupil01" not in tree.item("pupil01", "text")
    assert tree.set("msada", "role") == "owner"
    assert panel.member_tooltip("pupil01") == "Pupil One\nusername pupil01 · online"

    tree.selection_set("pupil03")
    app.root.update()
    assert panel.details.get() == "username pupil03 · online"
    assert panel.details_label.winfo_ismapped()

    box = tree.bbox("pupil03")
    assert box
    panel.tooltip.show("pupil03", tree.winfo_rootx() + 20, tree.winfo_rooty() + box[1])
    app.root.update()
    tip = panel.tooltip.tip
    assert tip is not None
    assert tip.winfo_ismapped()
    time.sleep(DRAW_SECONDS)
    app.root.update()
    # A new member list (after the class's group_updated events) keeps the tip.
    assert panel.tooltip.tip is tip
    desktop.screenshot("member-panel-display-names")
    panel.tooltip.hide()
    assert panel.tooltip.tip is None

    panel._post_menu("pupil03", tree.winfo_rootx(), tree.winfo_rooty())
    labels = [
        str(panel.menu.entrycget(index, "label"))
        for index in range(int(panel.menu.index("end")) + 1)
        if panel.menu.type(index) == "command"
    ]
    panel.menu.unpost()
    assert "Mute Pupil Three" in labels


def test_group_lines_show_sender_display_name(log_in, accounts):
    app = log_in(TEACHER)
    view = open_class_group(app)
    group_id = view.model.current_group().group_id
    posted = accounts["pupil02"].send_group_text(group_id, "Is it page 12?", 10)
    assert run_until(app.root, lambda: posted.message_id in view.conversation.entries)
    view.input.insert("1.0", "Yes, page 12")
    view.send_message()
    assert run_until(app.root, lambda: "Yes, page 12" in shown_text(app))
    text = shown_text(app)
    assert "Pupil Two  " in text
    assert "pupil02  " not in text
    assert "Ms Ada  " in text
    assert "You added Pupil Two" in text
    # The history stores the username; only the view shows the display name.
    assert view.conversation.entries[posted.message_id].sender == "pupil02"


def test_sender_names_replace_usernames_shown(log_in, accounts):
    app = log_in(TEACHER)
    view = open_class_group(app)
    group_id = view.model.current_group().group_id
    posted = accounts["pupil01"].send_group_text(group_id, "Hello class", 10)
    assert run_until(app.root, lambda: posted.message_id in view.conversation.entries)
    conversation = view.conversation
    conversation.forget_sender_names()
    assert "pupil01  " in shown_text(app)
    conversation.add_sender_names({"pupil01": "Pupil One"})
    text = shown_text(app)
    assert "Pupil One  " in text
    assert "pupil01  " not in text
    start = conversation.text.search("Pupil One  ", "1.0")
    assert "sender_in" in conversation.text.tag_names(start)


def test_member_presence_updates_without_refresh(
    log_in, accounts, tmp_path, server, monkeypatch
):
    # No periodic fetch during the test: only the events can change the panel.
    monkeypatch.setattr(group_actions, "MEMBER_REFRESH_MS", 3_600_000)
    app = log_in(TEACHER)
    view = open_class_group(app)
    tree = view.group_actions.panel.tree
    assert tree.item("pupil03", "text").startswith("●")

    accounts.pop("pupil03").close()
    assert run_until(app.root, lambda: tree.item("pupil03", "text").startswith("○"))
    assert "offline" in tree.item("pupil03", "tags")
    assert "pupil03" not in view.model.contacts
    assert not view.tree.exists("pupil03")

    again = headless_client(tmp_path / "pupil03-again", server)
    accounts["pupil03"] = again
    again.login("pupil03", PASSWORD)
    assert run_until(app.root, lambda: tree.item("pupil03", "text").startswith("●"))
    assert "online" in tree.item("pupil03", "tags")


# The member rows the panel shows at the window's default size, at least.
MIN_VISIBLE_MEMBER_ROWS = 6


def test_member_panel_rows_at_default_size(log_in, accounts, desktop):
    app = log_in(TEACHER)
    view = open_class_group(app)
    tree = view.group_actions.panel.tree
    app.root.update()
    assert app.root.winfo_width() == 980
    row_height = int(
        str(tree.tk.call("ttk::style", "lookup", "Treeview", "-rowheight"))
    )
    assert tree.winfo_height() >= MIN_VISIBLE_MEMBER_ROWS * row_height
    for name in tree.get_children():
        assert tree.bbox(name), name
    time.sleep(DRAW_SECONDS)
    app.root.update()
    desktop.screenshot("member-panel-default-size")


def test_class_picker_leaves_several_unchosen(log_in, accounts, server, tmp_path):
    import_roster(
        server, tmp_path, "username,display_name,group,role\npupil04,Pupil Four,8A,\n"
    )
    app = log_in(TEACHER)
    view = open_class_group(app, add_class=False)
    dialog = open_dialog(view)
    classes = dialog.classes
    assert run_until(app.root, classes.shown)
    assert classes.combobox.cget("values") == ("7B", "8A")
    assert classes.chosen() is None
    assert classes.add_button.instate(["disabled"])
