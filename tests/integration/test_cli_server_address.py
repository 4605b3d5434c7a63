"""The --server address is saved only after a connection to it succeeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from enctalk.client.core import Client
from enctalk.client.errors import ClientError
from tests.integration.conftest import PASSWORD_ALICE, ROOT, Cli

UNREACHABLE = "127.0.0.1:1"


def run_client(profile, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "run_client.py"), "--profile", str(profile), *args],
        cwd=ROOT,
        env=dict(os.environ, ENCTALK_PASSWORD=PASSWORD_ALICE),
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )


def saved_server(profile):
    return json.loads((profile / "settings.json").read_text()).get("server")


def test_cli_unreachable_server_is_not_saved(server, tmp_path):
    alice = Cli(tmp_path / "alice", server, PASSWORD_ALICE)
    assert alice.run("register", "alice").returncode == 0
    working = saved_server(alice.profile)
    assert working == {"host": "127.0.0.1", "port": server.port}

    failed = run_client(alice.profile, "--server", UNREACHABLE, "contacts")

    assert failed.returncode == 5, failed.stderr
    assert saved_server(alice.profile) == working
    again = run_client(alice.profile, "contacts")
    assert again.returncode == 0, again.stderr


def test_client_saves_server_after_connecting(server, tmp_path):
    bad = Client(tmp_path / "new", server=UNREACHABLE, timeout=2.0)
    try:
        with pytest.raises(ClientError) as info:
            bad.connect()
        assert info.value.code == "connection_failed"
    finally:
        bad.close()
    assert not (tmp_path / "new" / "settings.json").exists()

    good = Client(tmp_path / "new", server=server.address, accept_new_server=True)
    try:
        good.connect()
        assert good.profile.server == ("127.0.0.1", server.port)
    finally:
        good.close()
    assert saved_server(tmp_path / "new") == {"host": "127.0.0.1", "port": server.port}
