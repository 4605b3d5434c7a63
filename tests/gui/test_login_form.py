"""The setup-code and register forms of the login view, in this process on Xvfb.

The wrong-code test imports a class roster on a real server subprocess
on 127.0.0.1, and a headless client pins its certificate in the profile
first, so no trust dialog opens. The other checks need no server.
"""

from __future__ import annotations

import queue
import time
import tkinter as tk
from collections.abc import Iterator
from pathlib import Path

import pytest

from enctalk.client.core import Client
from enctalk.client.discovery import DiscoveredServer
from enctalk.ui import app as app_module
from enctalk.ui import theme
from enctalk.ui.app import App
from enctalk.ui.login import REGISTER, LoginView
from tests.gui.test_group_window import run_until
from tests.integration.conftest import ServerProcess
from tests.integration.test_cli_roster import import_roster

NEW_PASSWORD = "quiet harbour lantern"
COMMON_PASSWORD = "password123"
COMMON_PROBLEM = "on a list of commonly used passwords"
# A code of the printed shape that the server never issued.
WRONG_CODE = "ABCD-EFGH-JKMN-PQRS"
DRAW_SECONDS = 0.3
FINGERPRINT = "SHA256:" + ":".join(["0A"] * 32)
SERVERS = [
    DiscoveredServer("10.0.0.5", 5443, "lab-a", FINGERPRINT),
    DiscoveredServer("10.0.0.6", 6000, "lab-b", FINGERPRINT),
]


@pytest.fixture
def root(display: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tk.Tk]:
    monkeypatch.setenv("DISPLAY", display)
    window = tk.Tk()
    theme.apply_theme(window)
    yield window
    try:
        window.destroy()
    except tk.TclError:
        pass


def open_app(root: tk.Tk, profile: Path, address: str) -> App:
    application = App(root, str(profile), address)
    root.geometry("+0+0")
    return application


def login_view(application: App) -> LoginView:
    view = application.view
    assert isinstance(view, LoginView)
    return view


def pin_server(profile: Path, server: ServerProcess) -> None:
    """Trust the server's certificate in ``profile`` without an account."""
    client = Client(
        profile,
        server=server.address,
        accept_new_server=True,
        events=queue.Queue(),
        timeout=10,
    )
    try:
        client.connect()
    finally:
        client.close()


def fill_setup(view: LoginView, code: str, password: str) -> None:
    view.toggle_setup_mode()
    view.username.set("ada")
    view.code.set(code)
    view.password.set(password)
    view.repeat.set(password)


def test_setup_wrong_code_selects_code_field(root, server, tmp_path, desktop):
    import_roster(server, tmp_path)
    profile = tmp_path / "ada"
    pin_server(profile, server)
    application = open_app(root, profile, server.address)
    try:
        view = login_view(application)
        fill_setup(view, WRONG_CODE, NEW_PASSWORD)
        view.submit()
        assert run_until(root, lambda: view.error.get() != "")
        assert run_until(root, lambda: not view.busy)
        assert "code is wrong" in view.error.get()
        assert view.password.get() == NEW_PASSWORD
        assert view.repeat.get() == NEW_PASSWORD
        root.update()
        assert view.focus_get() == view.code_entry
        assert view.code_entry.selection_present()
        assert view.code_entry.selection_get() == WRONG_CODE
        time.sleep(DRAW_SECONDS)
        root.update()
        desktop.screenshot("setup-wrong-code")
    finally:
        application.close()


def test_setup_common_password_error_shown_once(root, tmp_path, desktop):
    application = open_app(root, tmp_path / "ada", "127.0.0.1:5443")
    try:
        view = login_view(application)
        fill_setup(view, WRONG_CODE, COMMON_PASSWORD)
        root.update()
        assert COMMON_PROBLEM in view.rule_status.get()
        assert str(view.rule_label.cget("style")) != "Error.TLabel"

        view.submit()
        root.update()
        assert not view.busy
        assert COMMON_PROBLEM not in view.error.get()
        assert COMMON_PROBLEM in view.rule_status.get()
        assert str(view.rule_label.cget("style")) == "Error.TLabel"
        assert view.focus_get() == view.password_entry
        time.sleep(DRAW_SECONDS)
        root.update()
        desktop.screenshot("setup-common-password")

        view.password.set(NEW_PASSWORD)
        view.repeat.set(NEW_PASSWORD)
        root.update()
        assert view.rule_status.get() == "✓ This password is fine."
        assert str(view.rule_label.cget("style")) != "Error.TLabel"
    finally:
        application.close()


def test_register_rule_hint_keeps_form_width(root, tmp_path):
    application = open_app(root, tmp_path / "alice", "127.0.0.1:5443")
    try:
        view = login_view(application)
        view.toggle_mode()
        assert view.mode == REGISTER
        view.username.set("alice")
        root.update()
        form = view.rule_label.master
        width = form.winfo_width()
        for typed in ("p", "passw", COMMON_PASSWORD, "alice", NEW_PASSWORD):
            view.password.set(typed)
            root.update()
            assert form.winfo_width() == width, typed
    finally:
        application.close()


def fits_in_window(widget: tk.Misc) -> bool:
    """Return whether ``widget`` is shown whole inside its toplevel window."""
    top = widget.winfo_toplevel()
    bottom = widget.winfo_rooty() + widget.winfo_height()
    right = widget.winfo_rootx() + widget.winfo_width()
    return (
        bool(widget.winfo_ismapped())
        and bottom <= top.winfo_rooty() + top.winfo_height()
        and right <= top.winfo_rootx() + top.winfo_width()
    )


@pytest.mark.parametrize("mode", ["setup", "register", "login"])
def test_login_form_fits_default_window(root, tmp_path, monkeypatch, desktop, mode):
    monkeypatch.setattr(app_module, "listen_for_servers", lambda *args: SERVERS)
    application = App(root, str(tmp_path / "ada"), "", ("127.0.0.1", 5999))
    try:
        view = login_view(application)
        assert run_until(root, lambda: len(view.servers.get_children()) == 2)
        if mode == "setup":
            view.toggle_setup_mode()
        elif mode == "register":
            view.toggle_mode()
        view.password.set(COMMON_PASSWORD)
        view.submit()
        root.update()
        assert root.winfo_width() == 980
        assert fits_in_window(view.submit_button)
        assert fits_in_window(view.servers)
        assert fits_in_window(view.search_button)
        time.sleep(DRAW_SECONDS)
        root.update()
        desktop.screenshot(f"{mode}-default-size")
    finally:
        application.close()
