"""The "I have a setup code" path of the login window, on Xvfb with a real server.

A roster import makes the account; the window first shows the error of
a plain login to it, then sets it up with the code. Screenshots of each
step go to test-artifacts/gui/<test name>/.
"""

from __future__ import annotations

import time

from tests.integration.conftest import PASSWORD_ALICE, Cli
from tests.integration.test_cli_roster import admin, import_roster


def test_gui_setup_code_sets_up_account(server, tmp_path, desktop, start_gui):
    codes = import_roster(server, tmp_path)
    gui = start_gui(tmp_path / "ada", server.address)

    window = desktop.find_window("^EncTalk$")
    desktop.focus(window)
    desktop.type("ada")
    desktop.key("Tab")
    desktop.type("any password at all")
    desktop.key("Return")
    dialog = desktop.find_window("^Check the server$")
    desktop.focus(dialog)
    desktop.key("alt+t")
    time.sleep(2.0)
    desktop.screenshot("pending-login")

    desktop.focus(window)
    desktop.key("alt+s")
    time.sleep(0.3)
    desktop.type(codes["ada"])
    desktop.key("Tab")
    desktop.type(PASSWORD_ALICE)
    desktop.key("Tab")
    desktop.type(PASSWORD_ALICE)
    time.sleep(0.3)
    desktop.screenshot("setup-form")
    desktop.key("Return")

    desktop.find_window("^EncTalk - ada$")
    time.sleep(0.5)
    desktop.screenshot("main-window")
    assert gui.process.poll() is None
    assert "Traceback" not in gui.stderr_text()

    listing = admin(server, "list-users")
    assert listing.returncode == 0, listing.stderr
    ada_line = next(
        line for line in listing.stdout.splitlines() if line.startswith("ada ")
    )
    assert "setup-pending" not in ada_line
    other = Cli(tmp_path / "ada-cli", server, PASSWORD_ALICE)
    logged_in = other.run("login", "ada")
    assert logged_in.returncode == 0, logged_in.stderr
