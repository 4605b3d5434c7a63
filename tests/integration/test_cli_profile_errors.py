"""The command line client when the profile cannot be written or is damaged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from enctalk.client.core import Client
from enctalk.client.errors import ClientError
from tests.integration.conftest import PASSWORD_ALICE, PASSWORD_BOB, ROOT
from tests.integration.test_cli import register_pair


def start_listen(cli, seconds):
    environment = dict(os.environ, ENCTALK_PASSWORD=cli.password)
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "run_client.py"),
            "--profile",
            str(cli.profile),
            "--timeout",
            str(seconds),
            "listen",
        ],
        cwd=ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_connected(process):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        if event.get("state") == "connected":
            return
    raise AssertionError("listen never reported a connection")


def test_listen_stops_when_vault_cannot_be_saved(server, tmp_path):
    alice, bob = register_pair(server, tmp_path)
    vault = bob.profile / "vault"
    listen = start_listen(bob, 30)
    try:
        wait_connected(listen)
        vault.rename(bob.profile / "vault.saved")
        vault.mkdir()
        assert alice.run("send", "bob", "while unwritable").returncode == 0
        _, stderr = listen.communicate(timeout=30)
    finally:
        listen.kill()
        listen.wait()
    assert listen.returncode == 1
    assert "error: Cannot save the profile" in stderr
    assert "Traceback" not in stderr
    assert "background push failed" not in stderr

    vault.rmdir()
    (bob.profile / "vault.saved").rename(vault)
    again = bob.run("--timeout", "3", "listen")
    assert again.returncode == 0, again.stderr
    history = bob.run("history", "alice")
    assert "while unwritable" in history.stdout


def test_send_text_unsaved_outbox_raises_save_failed(server, tmp_path):
    client = Client(tmp_path / "alice", server=server.address, accept_new_server=True)
    try:
        client.register("alice", PASSWORD_ALICE)
        bob = Client(tmp_path / "bob", server=server.address, accept_new_server=True)
        bob.register("bob", PASSWORD_BOB)
        bob.close()
        client.add_contact("bob")
        vault = client.profile.vault_path
        vault.rename(vault.with_name("vault.saved"))
        vault.mkdir()
        with pytest.raises(ClientError) as caught:
            client.send_text("bob", "not saved", 5)
        assert caught.value.code == "save_failed"
        assert client.outbox() == []
        assert client.history("bob") == []
    finally:
        client.close()
