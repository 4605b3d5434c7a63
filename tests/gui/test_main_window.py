"""The real App and MainWindow in this process, on Xvfb, over a fake client.

The fake client replaces the core's blocking methods, so these
tests check the views: what reaches ``send_text``, how a burst of events
is shown, unread counts in the title.
"""

from __future__ import annotations

import tempfile
import time
import tkinter as tk
from pathlib import Path

import pytest

from enctalk.client.core import Contact, SendResult
from enctalk.client.events import Event
from enctalk.ui import theme
from enctalk.ui.app import App
from enctalk.ui.main_window import CONTACTS_SECTION, MainWindow

NON_BMP_TEXT = "hi 😀👍🏽 𠀀"
BURST_SIZE = 500
# The maximum pause of the Tk main loop that still feels responsive.
MAX_PAUSE_SECONDS = 0.25


class FakeProfile:
    def __init__(self):
        self.server = ("127.0.0.1", 5443)
        self.known_servers = {}
        self.directory = Path(tempfile.mkdtemp(prefix="enctalk-fake-profile-"))


class FakeClient:
    """The part of the client core that the main window calls."""

    def __init__(self):
        self.sent = []
        self.connected = True
        self.username = "alice"
        self.profile = FakeProfile()

    def contacts(self):
        return [Contact("bob", True, False, ""), Contact("carol", False, False, "")]

    def groups(self):
        return []

    def history(self, username, limit=None, before_seq=None):
        return []

    def send_text(self, to, body, timeout=None):
        self.sent.append((to, body))
        return SendResult(f"00000000-0000-4000-8000-{len(self.sent):012d}", "queued")

    def close(self):
        pass


@pytest.fixture
def app(display, tmp_path, monkeypatch):
    monkeypatch.setenv("DISPLAY", display)
    root = tk.Tk()
    theme.apply_theme(root)
    application = App(root, str(tmp_path / "profile"), "127.0.0.1:5443")
    client = FakeClient()
    application._logged_in((client, "alice"))
    run_until(root, lambda: application.view.model.current == "bob")
    yield application
    application.close()


def run_until(root, predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        root.update()
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def incoming(sender, number):
    return Event(
        "message_received",
        {
            "conversation": sender,
            "sender": sender,
            "sender_device": 1,
            "body": f"m{number:04d}",
            "message_id": f"10000000-0000-4000-8000-{number:012d}",
            "server_seq": number + 1,
            "server_time": 1_700_000_000_000 + number,
            "sent_at": 1_700_000_000_000 + number,
        },
    )


def test_send_passes_non_bmp_text_unchanged(app):
    view = app.view
    assert isinstance(view, MainWindow)
    view.input.insert("1.0", NON_BMP_TEXT)
    assert view.read_input() == NON_BMP_TEXT
    view.send_message()
    assert run_until(app.root, lambda: app.client.sent)
    assert app.client.sent == [("bob", NON_BMP_TEXT)]
    shown = view.conversation.text_content()
    assert "hi \ufffd\ufffd\ufffd \ufffd" in shown


def test_shift_return_adds_line_and_return_sends(app):
    view = app.view
    view.input.focus_force()
    view.input.insert("end", "line one")
    view.input.event_generate("<Shift-Return>")
    view.input.insert("end", "line two")
    assert view.read_input() == "line one\nline two"
    view.input.event_generate("<Return>")
    assert run_until(app.root, lambda: app.client.sent)
    assert app.client.sent == [("bob", "line one\nline two")]


def test_burst_of_messages_keeps_loop_responsive(app):
    view = app.view
    pauses = []
    last = [time.monotonic()]

    def probe():
        now = time.monotonic()
        pauses.append(now - last[0])
        last[0] = now
        app.root.after(5, probe)

    app.root.after(5, probe)
    for number in range(BURST_SIZE):
        app.events.put(incoming("bob", number))
    shown = run_until(app.root, lambda: len(view.conversation.shown_keys) >= BURST_SIZE)
    assert shown
    assert max(pauses) < MAX_PAUSE_SECONDS

    text = view.conversation.text_content()
    positions = [text.index(f"m{number:04d}") for number in range(BURST_SIZE)]
    assert positions == sorted(positions)


def test_unread_counts_in_title_and_list(app):
    for number in range(3):
        app.events.put(incoming("carol", number))
    assert run_until(app.root, lambda: app.root.title().startswith("(3)"))
    assert app.root.title() == "(3) EncTalk - alice"
    assert app.view.tree.set("carol", "unread") == "3"
    assert app.view.tree.get_children(CONTACTS_SECTION)[0] == "carol"


def test_key_change_shows_warning(app):
    app.events.put(
        Event(
            "identity_changed",
            {"username": "bob", "old_fingerprint": "AA", "new_fingerprint": "BB"},
        )
    )
    assert run_until(app.root, lambda: app.view.warning_label.winfo_ismapped())
    assert "account key of bob changed" in app.view.warning.get()
