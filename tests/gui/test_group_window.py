"""Groups in the real App and MainWindow, in this process, on Xvfb.

The window logs in with a real client core to a real server subprocess
on 127.0.0.1, and the other group members are headless clients made
here. Each test checks the widgets (list, conversation text, banner,
composer, member panel) and what the headless clients receive. The
tests replace ``GroupActions.confirm``, which asks before a destructive
action, because they cannot click a Tk message box.
"""

from __future__ import annotations

import queue
import time
import tkinter as tk
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from enctalk.client import audio
from enctalk.client.audio import INT16_FULL_SCALE
from enctalk.client.core import Client
from enctalk.client.errors import ClientError
from enctalk.client.events import Event
from enctalk.client.history import HistoryEntry
from enctalk.ui import theme
from enctalk.ui.app import App
from enctalk.ui.group_dialogs import NewGroupDialog, RenameGroupDialog
from enctalk.ui.login import LOGIN, LoginForm
from enctalk.ui.main_window import DELETE_LABEL, GROUPS_SECTION, MainWindow
from tests.integration.conftest import ServerProcess, wait_for_event

PASSWORDS = {
    "sam": "violet lantern meadow",
    "teacher": "copper kettle horizon",
    "kim": "amber falcon seashell",
}
TIMEOUT = 20.0


def run_until(root: tk.Tk, predicate: Callable[[], object], timeout=TIMEOUT) -> bool:
    """Run the Tk loop until ``predicate`` holds; False after ``timeout`` s.

    A TclError counts as not yet: the row or widget asked about may not
    exist until the event that makes it has been handled.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        root.update()
        if _holds(predicate):
            return True
        time.sleep(0.01)
    root.update()
    return _holds(predicate)


def _holds(predicate: Callable[[], object]) -> bool:
    try:
        return bool(predicate())
    except tk.TclError:
        return False


def headless(tmp_path: Path, server: ServerProcess, name: str) -> Client:
    client = Client(
        tmp_path / name,
        server=server.address,
        accept_new_server=True,
        events=queue.Queue(),
        timeout=10,
    )
    client.register(name, PASSWORDS[name])
    return client


@pytest.fixture
def others(tmp_path: Path, server: ServerProcess) -> Iterator[dict[str, Client]]:
    clients = {name: headless(tmp_path, server, name) for name in ("teacher", "kim")}
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def app(
    display: str,
    tmp_path: Path,
    server: ServerProcess,
    others: dict[str, Client],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[App]:
    """The window, logged in as sam, whose profile already trusts the server."""
    monkeypatch.setenv("DISPLAY", display)
    headless(tmp_path, server, "sam").close()
    root = tk.Tk()
    theme.apply_theme(root)
    root.geometry("1040x680+0+0")
    application = App(root, str(tmp_path / "sam"), server.address)
    application.login(LoginForm(server.address, "sam", PASSWORDS["sam"], LOGIN))
    assert run_until(root, lambda: isinstance(application.view, MainWindow), 30)
    yield application
    application.close()


def window(app: App) -> MainWindow:
    view = app.view
    assert isinstance(view, MainWindow)
    return view


def shown_text(app: App) -> str:
    return window(app).conversation.text_content()


def disabled(widget: tk.Misc) -> bool:
    return str(widget.cget("state")) == "disabled"


def teacher_group_with_sam(others: dict[str, Client]) -> str:
    teacher = others["teacher"]
    group_id = teacher.create_group("Class 7b")
    teacher.group_add(group_id, "sam")
    teacher.group_add(group_id, "kim")
    return group_id


def open_group(app: App, group_id: str) -> MainWindow:
    view = window(app)
    conversation = "#" + group_id
    assert run_until(app.root, lambda: conversation in view.model.groups)
    view.select(conversation)
    assert run_until(app.root, lambda: "teacher added you" in shown_text(app))
    assert run_until(
        app.root, lambda: len(view.group_actions.panel.tree.get_children()) == 3
    )
    return view


def test_added_group_listed_with_name(app, others):
    group_id = teacher_group_with_sam(others)
    view = window(app)
    conversation = "#" + group_id
    assert run_until(app.root, lambda: view.tree.exists(conversation))
    assert run_until(
        app.root, lambda: "Class 7b" in view.tree.item(conversation, "text")
    )
    assert view.tree.parent(conversation) == GROUPS_SECTION


def test_group_message_unread_then_shown(app, others):
    group_id = teacher_group_with_sam(others)
    view = window(app)
    conversation = "#" + group_id
    # Being added counts as the first unread line.
    assert run_until(app.root, lambda: view.tree.set(conversation, "unread") == "1")
    others["teacher"].send_group_text(group_id, "Homework is page 12", 10)
    assert run_until(app.root, lambda: view.tree.set(conversation, "unread") == "2")
    assert app.root.title().startswith("(2)")

    view.select(conversation)
    assert run_until(app.root, lambda: "Homework is page 12" in shown_text(app))
    text = shown_text(app)
    assert "teacher  " in text
    assert text.index("teacher added you") < text.index("Homework is page 12")
    assert view.tree.set(conversation, "unread") == ""


def test_group_system_line_centred_italic(app, others):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    text = view.conversation.text
    start = text.search("teacher added you", "1.0")
    assert start
    assert "system" in text.tag_names(start)
    assert text.tag_cget("system", "justify") == "center"
    assert "italic" in str(view.conversation.system_font.actual("slant"))


def test_member_panel_lists_roles(app, others):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    panel = view.group_actions.panel
    assert panel.winfo_ismapped()
    assert panel.title.get() == "Members (3)"
    assert panel.tree.set("teacher", "role") == "owner"
    assert panel.tree.set("kim", "role") == ""
    assert "(you)" in panel.tree.item("sam", "text")
    assert "●" in panel.tree.item("teacher", "text")
    # An ordinary member gets no moderation controls, but may leave.
    assert not panel.add_button.winfo_ismapped()
    assert not panel.remove_button.winfo_ismapped()
    assert panel.leave_button.winfo_ismapped()

    view.toggle_members()
    app.root.update()
    assert not panel.winfo_ismapped()
    view.toggle_members()
    app.root.update()
    assert panel.winfo_ismapped()


def test_muted_member_composer_disabled(app, others, desktop):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    others["teacher"].send_group_text(group_id, "Quiet please, test time.", 10)
    assert run_until(app.root, lambda: "Quiet please" in shown_text(app))
    assert not disabled(view.input)

    others["teacher"].group_mute(group_id, "sam")
    assert run_until(app.root, lambda: view.warning_label.winfo_ismapped())
    assert run_until(app.root, lambda: "teacher muted you" in shown_text(app))
    assert "A moderator has muted you in this group" in view.warning.get()
    assert disabled(view.input)
    assert view.send_button.instate(["disabled"])
    assert view.audio.record_bar.record_button.instate(["disabled"])
    assert "muted you" in view.compose_hint.get()
    assert run_until(
        app.root, lambda: view.group_actions.panel.tree.set("sam", "role") == "muted"
    )
    time.sleep(0.3)
    app.root.update()
    desktop.screenshot("group-muted")

    others["teacher"].group_mute(group_id, "sam", muted=False)
    assert run_until(app.root, lambda: not view.warning_label.winfo_ismapped())
    assert not disabled(view.input)
    assert view.send_button.instate(["!disabled"])


def test_read_only_disables_member_composer(app, others, desktop):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    teacher = others["teacher"]

    teacher.group_read_only(group_id, True)
    assert run_until(app.root, lambda: disabled(view.input))
    assert run_until(app.root, lambda: "read-only" in view.warning.get())
    assert view.warning_label.winfo_ismapped()
    assert "read-only" in view.subtitle.get()
    time.sleep(0.3)
    app.root.update()
    desktop.screenshot("group-read-only")

    # A moderator posts in a read-only group.
    teacher.group_set_role(group_id, "sam", "moderator")
    assert run_until(app.root, lambda: not disabled(view.input))
    assert not view.warning_label.winfo_ismapped()
    panel = view.group_actions.panel
    assert run_until(app.root, lambda: panel.add_button.winfo_ismapped())
    assert view.group_actions.read_only.get()


def test_removed_member_keeps_history(app, others):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    others["teacher"].send_group_text(group_id, "See you next term", 10)
    assert run_until(app.root, lambda: "See you next term" in shown_text(app))

    others["teacher"].group_remove(group_id, "sam")
    assert run_until(app.root, lambda: "teacher removed you" in view.warning.get())
    assert disabled(view.input)
    assert "See you next term" in shown_text(app)
    assert "(left)" in view.tree.item("#" + group_id, "text")
    leave_button = view.group_actions.panel.leave_button
    assert run_until(app.root, lambda: not leave_button.winfo_ismapped())


def test_deleted_message_leaves_view(app, others):
    group_id = teacher_group_with_sam(others)
    open_group(app, group_id)
    teacher = others["teacher"]
    result = teacher.send_group_text(group_id, "Wrong link, ignore", 10)
    assert run_until(app.root, lambda: "Wrong link" in shown_text(app))

    teacher.group_delete_message(group_id, result.message_id)
    assert run_until(app.root, lambda: "Wrong link" not in shown_text(app))
    assert run_until(app.root, lambda: "teacher deleted a message" in shown_text(app))


def test_group_send_reaches_member(app, others):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    view.input.insert("1.0", "I finished question 4")
    view.send_message()
    kim = others["kim"]
    event = wait_for_event(
        kim.events,
        lambda e: e.name == "message_received" and e.data.get("group") == group_id,
    )
    assert event.data["sender"] == "sam"
    assert event.data["body"] == "I finished question 4"
    assert run_until(app.root, lambda: "sent" in shown_text(app))


def group_events(group_id: str) -> Callable[[Event], bool]:
    return lambda e: e.name == "group_updated" and e.data["group_id"] == group_id


def test_owner_creates_and_moderates_group(app, others, desktop):
    view = window(app)
    kim = others["kim"]
    # kim is picked from the contacts; a typed name that has no account fails.
    dialog = NewGroupDialog(
        view,
        app,
        ["teacher", "kim"],
        view._group_created,
        view.group_actions.load_members,
    )
    dialog.name.set("Art club")
    dialog.create()
    assert run_until(app.root, lambda: dialog.group_id != "")
    group_id = dialog.group_id
    assert run_until(app.root, lambda: hasattr(dialog, "picker"))
    listbox = dialog.picker.listbox
    assert listbox is not None
    assert listbox.get(0, "end") == ("kim", "teacher")
    listbox.selection_set(0)
    dialog.picker.typed.set("nobody-here")
    app.root.update()
    desktop.screenshot("add-members")
    dialog.submit()
    assert run_until(app.root, lambda: "Not added nobody-here" in dialog.result.get())
    assert "Added kim." in dialog.result.get()
    assert dialog.picker.typed.get() == "nobody-here"
    assert listbox.curselection() == ()
    assert listbox.get(0, "end") == ("teacher",)
    app.root.update()
    desktop.screenshot("add-members-result")
    dialog.destroy()
    wait_for_event(kim.events, group_events(group_id))

    panel = view.group_actions.panel
    assert view.model.current == "#" + group_id
    assert run_until(app.root, lambda: panel.tree.exists("kim"))
    assert panel.add_button.winfo_ismapped()
    assert panel.role_button.winfo_ismapped()
    assert "you are the owner" in view.subtitle.get()

    # Mute: kim cannot post any more.
    view.group_actions.mute_member("kim", True)
    assert run_until(app.root, lambda: panel.tree.set("kim", "role") == "muted")
    deadline = time.monotonic() + TIMEOUT
    while kim.group_info(group_id).muted is False and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(ClientError) as refused:
        kim.send_group_text(group_id, "can I still talk?", 5)
    assert refused.value.code == "not_allowed"
    view.group_actions.mute_member("kim", False)
    assert run_until(app.root, lambda: panel.tree.set("kim", "role") == "")

    # Delete kim's message for everyone, after confirming.
    deadline = time.monotonic() + TIMEOUT
    while kim.group_info(group_id).muted and time.monotonic() < deadline:
        time.sleep(0.1)
    posted = kim.send_group_text(group_id, "oops, wrong group", 10)
    assert run_until(app.root, lambda: "oops, wrong group" in shown_text(app))
    entry = view.conversation.entries[posted.message_id]
    confirmed_titles: list[str] = []

    def confirm(title: str, _question: str) -> bool:
        confirmed_titles.append(title)
        return True

    view.group_actions.confirm = confirm
    time.sleep(0.3)
    app.root.update()
    desktop.screenshot("group-owner")
    view.group_actions.delete_message(entry)
    deleted = wait_for_event(kim.events, lambda e: e.name == "message_deleted")
    assert deleted.data["message_id"] == posted.message_id
    assert run_until(app.root, lambda: "oops, wrong group" not in shown_text(app))
    assert confirmed_titles == ["Delete message"]

    # Make kim a moderator, then remove kim after confirming.
    view.group_actions.set_role("kim", "moderator")
    assert run_until(app.root, lambda: panel.tree.set("kim", "role") == "moderator")
    view.group_actions.remove_member("kim")
    assert run_until(app.root, lambda: not panel.tree.exists("kim"))
    assert confirmed_titles == ["Delete message", "Remove member"]
    deadline = time.monotonic() + TIMEOUT
    while kim.group_info(group_id).role is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kim.group_info(group_id).role is None


def test_declined_confirmation_keeps_member(app, others):
    view = window(app)
    client = app.client
    assert client is not None
    done: list[str] = []
    app.worker.submit(lambda: client.create_group("Chess"), done.append)
    assert run_until(app.root, lambda: done)
    group_id = done[0]
    app.worker.submit(lambda: client.group_add(group_id, "kim"), done.append)
    assert run_until(app.root, lambda: len(done) == 2)
    view.select("#" + group_id)
    panel = view.group_actions.panel
    assert run_until(app.root, lambda: panel.tree.exists("kim"))

    view.group_actions.confirm = lambda _title, _question: False
    view.group_actions.remove_member("kim")
    time.sleep(1.0)
    app.root.update()
    assert panel.tree.exists("kim")
    assert client.group_info(group_id).members == 2


def test_failed_action_shows_sentence(app, others):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    # sam is an ordinary member: the core rejects a mute.
    view.group_actions.mute_member("kim", True)
    panel = view.group_actions.panel
    assert run_until(app.root, lambda: "failed" in panel.message.get())
    message = panel.message.get()
    assert message.startswith("Muting kim failed: ")
    assert "Traceback" not in message
    assert "not a moderator" in message


def test_voice_message_sent_into_group(app, others, tmp_path):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    tone = np.sin(np.linspace(0, 2 * np.pi * 440, 8000)) * 0.3 * INT16_FULL_SCALE
    clip = audio.write_wav(tmp_path / "clip.wav", tone.astype(np.int16), 8000)
    # The record bar hands a finished recording to this callback.
    view.audio.record_bar.on_send(clip)
    kim = others["kim"]
    event = wait_for_event(
        kim.events,
        lambda e: e.name == "message_received" and e.data.get("kind") == "audio",
    )
    assert event.data["group"] == group_id
    assert event.data["sender"] == "sam"
    assert run_until(app.root, lambda: "▶ Open" in shown_text(app))


def test_muted_member_cannot_start_recording(app, others):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    others["teacher"].group_mute(group_id, "sam")
    assert run_until(app.root, lambda: view.post_refusal is not None)
    bar = view.audio.record_bar
    assert bar.refusal == "A moderator has muted you in this group."
    view.toggle_recording()
    assert bar.recorder is None


def test_member_leaves_after_confirming(app, others):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    view.group_actions.confirm = lambda _title, _question: True
    view.group_actions.leave()
    assert run_until(app.root, lambda: "You left this group." in view.warning.get())
    assert disabled(view.input)
    assert run_until(app.root, lambda: "You left the group" in shown_text(app))
    teacher = others["teacher"]
    event = wait_for_event(
        teacher.events,
        lambda e: e.name == "group_updated" and e.data["action"] == "leave",
    )
    assert event.data["actor"] == "sam"


def test_owner_renames_and_sets_read_only(app, others):
    view = window(app)
    client = app.client
    assert client is not None
    done: list[str] = []
    app.worker.submit(lambda: client.create_group("Chess"), done.append)
    assert run_until(app.root, lambda: done)
    group_id = done[0]
    app.worker.submit(lambda: client.group_add(group_id, "kim"), done.append)
    assert run_until(app.root, lambda: len(done) == 2)
    view.select("#" + group_id)

    dialog = RenameGroupDialog(view, app, group_id, "Chess", lambda: None)
    dialog.name.set("Chess club")
    dialog.submit()
    assert run_until(app.root, lambda: view.header.get() == "Chess club")
    assert "Chess club" in view.tree.item("#" + group_id, "text")
    assert not dialog.alive()

    view.group_actions.set_read_only(True)
    assert run_until(app.root, lambda: "read-only" in view.subtitle.get())
    assert not disabled(view.input)
    kim = others["kim"]
    deadline = time.monotonic() + TIMEOUT
    while not kim.group_info(group_id).read_only and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(ClientError) as refused:
        kim.send_group_text(group_id, "may I post?", 5)
    assert refused.value.code == "not_allowed"
    assert view.group_actions.read_only.get()


def test_member_deletes_own_message(app, others):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    view.input.insert("1.0", "typo in here")
    view.send_message()
    assert run_until(app.root, lambda: "typo in here" in shown_text(app))
    kim = others["kim"]
    received = wait_for_event(
        kim.events,
        lambda e: e.name == "message_received" and e.data["body"] == "typo in here",
    )
    message_id = received.data["message_id"]
    assert run_until(app.root, lambda: view.model.states.get(message_id) == "sent")
    entry = next(
        item
        for item in view.conversation.entries.values()
        if item.body == "typo in here"
    )
    view.group_actions.confirm = lambda _title, _question: True
    view.group_actions.delete_message(entry)
    deleted = wait_for_event(kim.events, lambda e: e.name == "message_deleted")
    assert deleted.data["message_id"] == message_id
    assert run_until(app.root, lambda: "typo in here" not in shown_text(app))


def menu_labels(menu: tk.Menu) -> list[str]:
    last = menu.index("end")
    if last is None:
        return []
    return [
        str(menu.entrycget(index, "label"))
        for index in range(last + 1)
        if menu.type(index) == "command"
    ]


def test_message_menu_offers_delete_by_role(app, others):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    teacher = others["teacher"]
    posted = teacher.send_group_text(group_id, "Bring a pencil", 10)
    assert run_until(app.root, lambda: posted.message_id in view.conversation.entries)
    from_teacher = view.conversation.entries[posted.message_id]

    view.fill_message_menu(from_teacher)
    assert menu_labels(view.message_menu) == ["Copy text"]

    teacher.group_set_role(group_id, "sam", "moderator")
    assert run_until(
        app.root, lambda: view.model.groups["#" + group_id].role == "moderator"
    )
    view.fill_message_menu(from_teacher)
    assert menu_labels(view.message_menu) == ["Copy text", DELETE_LABEL]

    line = view.conversation.entry_at(view.conversation.text.search("added", "1.0"))
    assert line is not None
    assert line.kind == "system"
    view.fill_message_menu(line)
    assert menu_labels(view.message_menu) == ["Copy text"]


def test_menu_key_opens_entry_menu_at_cursor(app, others):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    opened: list[HistoryEntry] = []
    view.conversation.on_menu = lambda entry, _x, _y: opened.append(entry)
    text = view.conversation.text
    text.mark_set("insert", text.search("teacher added you", "1.0"))
    text.see("insert")
    text.focus_force()
    app.root.update()
    text.event_generate("<Shift-F10>")
    app.root.update()
    assert len(opened) == 1
    assert opened[0].kind == "system"
    assert opened[0].body == "teacher added you"


def at_end(view: MainWindow) -> bool:
    """Return whether the conversation shows its last line."""
    return float(view.conversation.text.yview()[1]) >= 1.0


def line_visible(view: MainWindow, needle: str) -> bool:
    text = view.conversation.text
    start = text.search(needle, "1.0", backwards=False)
    return bool(start) and text.bbox(start) is not None


def fill_conversation(app: App, teacher: Client, group_id: str, count: int) -> None:
    """Send ``count`` lines from the teacher, more than the pane shows at once."""
    for number in range(count):
        teacher.send_group_text(group_id, f"Line {number:02d} of the lesson", 10)
    last = f"Line {count - 1:02d} of the lesson"
    assert run_until(app.root, lambda: last in shown_text(app))


def test_conversation_stays_at_end_after_mute_notice(app, others, desktop):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    teacher = others["teacher"]
    fill_conversation(app, teacher, group_id, 30)
    assert run_until(app.root, lambda: at_end(view))

    teacher.group_mute(group_id, "sam")
    assert run_until(app.root, lambda: view.warning_label.winfo_ismapped())
    assert run_until(app.root, lambda: "teacher muted you" in shown_text(app))
    assert run_until(app.root, lambda: at_end(view), timeout=2)
    assert line_visible(view, "teacher muted you")

    teacher.send_group_text(group_id, "Pens down, everyone", 10)
    assert run_until(app.root, lambda: "Pens down" in shown_text(app))
    assert run_until(app.root, lambda: at_end(view), timeout=2)
    assert line_visible(view, "Pens down")
    time.sleep(0.3)
    app.root.update()
    desktop.screenshot("muted-at-end")


def test_conversation_stays_at_end_after_resize(app, others):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    fill_conversation(app, others["teacher"], group_id, 30)
    assert run_until(app.root, lambda: at_end(view))

    app.root.geometry("800x520")
    assert run_until(app.root, lambda: view.winfo_height() < 560)
    assert run_until(app.root, lambda: at_end(view), timeout=2)
    assert line_visible(view, "Line 29")


def test_conversation_keeps_place_when_scrolled_up(app, others, desktop):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    teacher = others["teacher"]
    fill_conversation(app, teacher, group_id, 30)
    text = view.conversation.text
    text.yview_moveto(0.3)
    app.root.update()
    top = text.index("@0,0")

    teacher.group_mute(group_id, "sam")
    assert run_until(app.root, lambda: "teacher muted you" in shown_text(app))
    app.root.update()
    assert not at_end(view)
    assert text.index("@0,0") == top
    hint = view.conversation.new_below
    assert hint.winfo_ismapped()
    assert hint.cget("text") == "New messages below ↓"
    time.sleep(0.3)
    app.root.update()
    desktop.screenshot("new-messages-below")

    hint.invoke()
    assert run_until(app.root, lambda: at_end(view), timeout=2)
    assert line_visible(view, "teacher muted you")
    assert not hint.winfo_ismapped()


UNSENT_QUESTION = (
    "1 message has not been sent yet. It goes out the next time you open "
    "EncTalk. Quit anyway?"
)


def test_quit_with_unsent_message_asks_first(app, others, server, tmp_path, desktop):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    client = app.client
    assert client is not None
    server.stop()
    assert run_until(app.root, lambda: not client.connected)
    view.input.insert("1.0", "Written while the server is down")
    view.send_message()
    assert run_until(app.root, lambda: "sending" in view.model.states.values())

    app.request_quit()
    dialog = app.quit_dialog
    assert dialog is not None
    assert dialog.winfo_exists()
    assert dialog.question.cget("text") == UNSENT_QUESTION
    assert str(dialog.cancel_button.cget("default")) == "active"
    app.root.update()
    assert dialog.focus_get() == dialog.cancel_button
    time.sleep(0.3)
    app.root.update()
    desktop.screenshot("quit-unsent")
    dialog.cancel_button.invoke()
    app.root.update()
    assert not app.closing
    assert not dialog.winfo_exists()

    view.input.focus_force()
    app.root.update()
    view.input.event_generate("<Control-q>")
    app.root.update()
    dialog = app.quit_dialog
    assert dialog is not None
    assert dialog.winfo_exists()
    dialog.quit_button.invoke()
    assert app.closing

    # The message stays in the saved outbox for the next start.
    again = Client(tmp_path / "sam", server=server.address, timeout=5)
    try:
        again.unlock(PASSWORDS["sam"])
        outbox = again.outbox()
    finally:
        again.close()
    assert len(outbox) == 1
    assert outbox[0]["group"] == group_id


def test_quit_without_unsent_messages_closes(app, others):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    view.input.insert("1.0", "This one goes out")
    view.send_message()
    assert run_until(app.root, lambda: "sent" in view.model.states.values())
    app.request_quit()
    assert app.closing
    assert app.quit_dialog is None


def test_message_menu_highlights_its_message(app, others, desktop):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    posted = others["teacher"].send_group_text(group_id, "Read chapter 3", 10)
    assert run_until(app.root, lambda: posted.message_id in view.conversation.entries)
    text = view.conversation.text
    start = text.search("Read chapter 3", "1.0")
    text.see(start)
    app.root.update()
    box = text.bbox(start)
    assert box is not None

    text.event_generate("<Button-3>", x=box[0] + 4, y=box[1] + 4)
    assert run_until(app.root, lambda: view.message_menu.winfo_ismapped(), timeout=5)
    highlighted = text.tag_ranges("menu_target")
    assert highlighted
    entry_ranges = text.tag_ranges(f"entry:{posted.message_id}")
    assert str(highlighted[0]) == str(entry_ranges[0])
    assert str(highlighted[-1]) == str(entry_ranges[-1])
    assert text.tag_cget("menu_target", "background")
    time.sleep(0.3)
    app.root.update()
    desktop.screenshot("message-menu-open")

    view.message_menu.unpost()
    assert run_until(app.root, lambda: not text.tag_ranges("menu_target"), timeout=5)


def test_presence_unknown_while_reconnecting(app, others, server, desktop):
    group_id = teacher_group_with_sam(others)
    view = open_group(app, group_id)
    client = app.client
    assert client is not None
    added: list[object] = []
    app.worker.submit(lambda: client.add_contact("kim"), view._contact_added)
    app.worker.submit(lambda: added.append(True))
    assert run_until(app.root, lambda: added and view.tree.exists("kim"))
    assert run_until(app.root, lambda: view.tree.item("kim", "text").startswith("●"))
    view.select("#" + group_id)
    panel = view.group_actions.panel
    tree = panel.tree
    assert run_until(app.root, lambda: tree.item("teacher", "text").startswith("●"))

    server.stop()
    assert run_until(app.root, lambda: not client.connected)
    assert run_until(app.root, lambda: tree.item("teacher", "text").startswith("○"))
    assert tree.item("teacher", "tags") == ("unknown",)
    assert "who is online is unknown" in panel.message.get()
    assert panel.member_tooltip("kim") == "kim\nusername kim · presence unknown"
    assert view.tree.item("kim", "text").startswith("○")
    assert "offline" in view.tree.item("kim", "tags")
    time.sleep(0.3)
    app.root.update()
    desktop.screenshot("presence-unknown")

    server.start()
    assert run_until(
        app.root, lambda: tree.item("teacher", "text").startswith("●"), timeout=40
    )
    assert tree.item("teacher", "tags") == ("online",)
    assert "who is online" not in panel.message.get()
    assert run_until(app.root, lambda: view.tree.item("kim", "text").startswith("●"))
