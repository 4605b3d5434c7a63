"""The login view's list of servers on this network, on Xvfb.

The search is replaced by a fake, so no socket is opened: these tests
check that the search runs off the Tk main thread and that picking a
server fills the server field.
"""

from __future__ import annotations

import threading
import time
import tkinter as tk

import pytest

from enctalk.client.discovery import DiscoveredServer
from enctalk.ui import app as app_module
from enctalk.ui import theme
from enctalk.ui.app import App
from enctalk.ui.login import LoginView

FINGERPRINT = "SHA256:" + ":".join(["0A"] * 32)
SERVERS = [
    DiscoveredServer("10.0.0.5", 5443, "lab-a", FINGERPRINT),
    DiscoveredServer("10.0.0.6", 6000, "lab-b", FINGERPRINT),
]


def run_until(root, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        root.update()
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


@pytest.fixture
def root(display, monkeypatch):
    monkeypatch.setenv("DISPLAY", display)
    window = tk.Tk()
    theme.apply_theme(window)
    yield window


def test_login_lists_discovered_servers(root, tmp_path, monkeypatch) -> None:
    calls = []

    def fake_listen(seconds, address, port):
        calls.append((threading.current_thread().name, address, port))
        return SERVERS

    monkeypatch.setattr(app_module, "listen_for_servers", fake_listen)
    application = App(root, str(tmp_path / "profile"), "", ("127.0.0.1", 5999))
    try:
        view = application.view
        assert isinstance(view, LoginView)
        shown = run_until(root, lambda: len(view.servers.get_children()) == 2)
        assert shown
        assert calls == [("enctalk-ui-discovery", "127.0.0.1", 5999)]
        assert view.servers.item("10.0.0.6:6000")["values"][0] == "lab-b"

        view.servers.selection_set("10.0.0.6:6000")
        run_until(root, lambda: view.server.get() == "10.0.0.6:6000")
        assert view.server.get() == "10.0.0.6:6000"
    finally:
        application.close()


def test_login_reports_failed_search(root, tmp_path, monkeypatch) -> None:
    def fake_listen(seconds, address, port):
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(app_module, "listen_for_servers", fake_listen)
    application = App(root, str(tmp_path / "profile"), "", ("127.0.0.1", 5999))
    try:
        view = application.view
        status = view.discovery_status
        failed = run_until(root, lambda: "Cannot search" in status.get())
        assert failed, status.get()
        assert "Address already in use" in status.get()
        assert not application._searching
    finally:
        application.close()


def test_login_without_discovery_does_not_search(root, tmp_path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(
        app_module, "listen_for_servers", lambda *args: calls.append(args) or []
    )
    application = App(root, str(tmp_path / "profile"), "")
    try:
        run_until(root, lambda: False, timeout=0.3)
        assert calls == []
        assert not application.view.search_button.winfo_ismapped()
    finally:
        application.close()
