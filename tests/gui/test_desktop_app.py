"""The desktop client as a subprocess on Xvfb, driven with xdotool.

Each test checks what happened through the server and a client on the
other end, and keeps a screenshot of every step under
test-artifacts/gui/<test name>/.
"""

from __future__ import annotations

import json
import re
import threading
import time

from enctalk.client.core import Client
from tests.integration.conftest import PASSWORD_ALICE, PASSWORD_BOB, Cli

EMOJI_TEXT = "hello bob 😀👍🏽 𠀀"
CLOSE_LIMIT_SECONDS = 2.0
_SENT = re.compile(r"Sent \(message ([0-9a-f-]{36})\)")


def wait_until(predicate, timeout=20.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def received_bodies(cli):
    heard = cli.run("--timeout", "2", "listen")
    events = [json.loads(line) for line in heard.stdout.splitlines() if line]
    return [e["body"] for e in events if e["event"] == "message_received"]


def log_in_gui(desktop, password):
    window = desktop.find_window("^EncTalk$")
    desktop.focus(window)
    desktop.type(password)
    desktop.key("Return")
    return window


def test_gui_register_chat_with_cli_user(server, tmp_path, desktop, start_gui):
    bob = Cli(tmp_path / "bob", server, PASSWORD_BOB)
    assert bob.run("register", "bob").returncode == 0

    gui = start_gui(tmp_path / "alice", server.address)
    window = desktop.find_window("^EncTalk$")
    desktop.focus(window)
    desktop.screenshot("login")

    desktop.key("alt+r")
    desktop.type("alice")
    desktop.key("Tab")
    desktop.type(PASSWORD_ALICE)
    desktop.key("Tab")
    desktop.type(PASSWORD_ALICE)
    desktop.screenshot("register-form")
    desktop.key("Return")

    dialog = desktop.find_window("^Check the server$")
    desktop.screenshot("fingerprint")
    desktop.focus(dialog)
    desktop.key("alt+t")

    window = desktop.find_window("^EncTalk - alice$")
    desktop.screenshot("main-window")
    desktop.focus(window)
    desktop.key("ctrl+n")
    dialog = desktop.find_window("^Add contact$")
    desktop.focus(dialog)
    desktop.type("bob")
    desktop.screenshot("add-contact")
    desktop.key("Return")
    time.sleep(1.0)

    desktop.focus(window)
    desktop.type(EMOJI_TEXT)
    desktop.key("Return")
    bodies = wait_until(lambda: received_bodies(bob), timeout=20)
    desktop.screenshot("sent")
    assert bodies == [EMOJI_TEXT]

    reply = bob.run("send", "alice", "hi alice, got it")
    assert reply.returncode == 0, reply.stderr
    reply_id = _SENT.search(reply.stdout).group(1)
    shown = wait_until(lambda: reply_id in gui.shown_message_ids(), timeout=20)
    desktop.screenshot("reply")
    assert shown

    desktop.focus(window)
    desktop.key("ctrl+i")
    dialog = desktop.find_window("^Contact details: bob$")
    time.sleep(0.5)
    desktop.screenshot("safety-number")
    desktop.focus(dialog)
    desktop.key("alt+m")
    time.sleep(0.5)
    desktop.screenshot("verified")
    desktop.key("Escape")

    desktop.focus(window)
    desktop.key("ctrl+comma")
    dialog = desktop.find_window("^Settings$")
    time.sleep(0.5)
    desktop.screenshot("settings")
    desktop.focus(dialog)
    desktop.key("Escape")

    assert "Traceback" not in gui.stderr_text()


def test_gui_at_double_scale(server, tmp_path, desktop, start_gui):
    desktop.env["ENCTALK_UI_SCALE"] = "2"
    gui = start_gui(tmp_path / "alice", server.address)
    window = desktop.find_window("^EncTalk$")
    desktop.focus(window)
    desktop.key("alt+r")
    time.sleep(0.5)
    desktop.screenshot("register-200-percent")
    assert gui.process.poll() is None


def test_gui_wrong_password_shows_plain_error(server, tmp_path, desktop, start_gui):
    alice = Cli(tmp_path / "alice", server, PASSWORD_ALICE)
    assert alice.run("register", "alice").returncode == 0

    gui = start_gui(tmp_path / "alice", server.address)
    log_in_gui(desktop, "not the password at all")
    time.sleep(3.0)
    desktop.screenshot("wrong-password")
    assert gui.process.poll() is None
    assert "Traceback" not in gui.stderr_text()


def test_gui_closes_quickly_while_messages_stream(server, tmp_path, desktop, start_gui):
    alice = Cli(tmp_path / "alice", server, PASSWORD_ALICE)
    bob = Cli(tmp_path / "bob", server, PASSWORD_BOB)
    assert alice.run("register", "alice").returncode == 0
    assert bob.run("register", "bob").returncode == 0
    assert alice.run("add-contact", "bob").returncode == 0

    gui = start_gui(tmp_path / "alice", server.address)
    log_in_gui(desktop, PASSWORD_ALICE)
    window = desktop.find_window("^EncTalk - alice$")

    sender = Client(tmp_path / "bob", server=server.address, timeout=5)
    sender.unlock(PASSWORD_BOB)
    sender.wait_ready(10)
    stop = threading.Event()
    sent = []

    def stream():
        while not stop.is_set():
            sent.append(sender.send_text("alice", f"stream {len(sent)}", 5).state)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        assert wait_until(lambda: len(gui.shown_message_ids()) >= 20, timeout=30)
        desktop.screenshot("streaming")
        desktop.focus(window)
        started = time.monotonic()
        desktop.key("ctrl+q")
        gui.process.wait(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        streamer.join(timeout=10)
        sender.close()

    assert elapsed < CLOSE_LIMIT_SECONDS, f"the window took {elapsed:.2f} s to exit"
    assert gui.process.returncode == 0
    assert "Traceback" not in gui.stderr_text()
