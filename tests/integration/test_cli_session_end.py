"""Commands after the server ended the session: a disabled account, a reset."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.integration.conftest import ROOT
from tests.integration.test_cli import register_pair
from tests.integration.test_client_core import reset_code


def admin(server, *args):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_server.py"),
            "admin",
            "--data-dir",
            str(server.data_dir),
            "--config",
            str(server.config),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


DISABLED = "This account is disabled; ask your teacher."
RESET = "Your session was ended (password changed or reset by an administrator)"


def test_disabled_account_stops_every_command(server, tmp_path):
    alice, _bob = register_pair(server, tmp_path)
    admin(server, "disable", "alice")

    started = time.monotonic()
    sent = alice.run("--timeout", "20", "send", "bob", "after disable")
    assert time.monotonic() - started < 10
    assert sent.returncode == 4
    assert DISABLED in sent.stderr
    assert "Queued" not in sent.stdout

    for command in (["contacts"], ["--timeout", "20", "listen"], ["devices"]):
        result = alice.run(*command)
        assert result.returncode == 4, command
        assert DISABLED in result.stderr, command


def test_reset_session_stops_listen_and_contacts(server, tmp_path):
    alice, _bob = register_pair(server, tmp_path)
    reset_code(server, "alice")

    listened = alice.run("--timeout", "20", "listen")
    assert listened.returncode == 4
    assert RESET in listened.stderr

    contacts = alice.run("contacts")
    assert contacts.returncode == 4
    assert RESET in contacts.stderr
