"""The command line client on a profile whose files are damaged on disk."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.integration.conftest import PASSWORD_ALICE, Cli

VAULT_PREFIX_SIZE = 117


def truncate_vault(profile):
    path = profile / "vault"
    path.write_bytes(path.read_bytes()[:50])


def empty_vault(profile):
    (profile / "vault").write_bytes(b"")


def flip_document_bit(profile):
    path = profile / "vault"
    data = bytearray(path.read_bytes())
    data[VAULT_PREFIX_SIZE + 40] ^= 0x01
    path.write_bytes(bytes(data))


def random_history(profile):
    (profile / "history.sqlite3").write_bytes(os.urandom(8192))


def edit_settings(change):
    def edit(profile):
        path = profile / "settings.json"
        settings = json.loads(path.read_text())
        change(settings)
        path.write_text(json.dumps(settings))

    return edit


def text_port(settings):
    settings["server"]["port"] = str(settings["server"]["port"]) + "x"


def damaged_pin(settings):
    for entry in settings["known_servers"].values():
        entry["certificate"] = entry["certificate"][:-8] + "AAAAAAAA"


def known_servers_list(settings):
    settings["known_servers"] = list(settings["known_servers"])


# (damage, command, file named in the error, words in the error)
CASES = {
    "truncated vault": (truncate_vault, "history", "vault", "truncated"),
    "empty vault": (empty_vault, "history", "vault", "truncated to 0 bytes"),
    "flipped bit in vault": (flip_document_bit, "history", "vault", "damaged"),
    "random history": (random_history, "history", "history.sqlite3", "damaged"),
    "text port": (edit_settings(text_port), "history", "settings.json", "port"),
    "damaged pin": (edit_settings(damaged_pin), "contacts", "settings.json", "pin"),
    "known_servers list": (
        edit_settings(known_servers_list),
        "contacts",
        "settings.json",
        "known_servers",
    ),
}


@pytest.fixture
def registered(server, tmp_path):
    alice = Cli(tmp_path / "alice", server, PASSWORD_ALICE)
    assert alice.run("register", "alice").returncode == 0
    pristine = tmp_path / "alice.pristine"
    shutil.copytree(alice.profile, pristine)
    return alice, pristine


def test_cli_damaged_profile_names_file(registered):
    alice, pristine = registered
    for label, (damage, command, name, words) in CASES.items():
        shutil.rmtree(alice.profile)
        shutil.copytree(pristine, alice.profile)
        damage(alice.profile)
        pins = json.loads((alice.profile / "settings.json").read_text())

        result = alice.run(command, *(["bob"] if command == "history" else []))

        assert result.returncode == 1, (label, result.stderr)
        assert "Wrong password" not in result.stderr, label
        assert "internal error" not in result.stderr, label
        assert "Traceback" not in result.stderr, label
        assert "is damaged" in result.stderr, (label, result.stderr)
        assert name in result.stderr, (label, result.stderr)
        assert words in result.stderr, (label, result.stderr)
        assert PASSWORD_ALICE not in result.stderr, label
        after = json.loads((alice.profile / "settings.json").read_text())
        assert after["known_servers"] == pins["known_servers"], label


def test_cli_wrong_password_not_damaged(registered):
    alice, _ = registered
    result = alice.run("history", "bob", password="not the password at all")
    assert result.returncode == 4
    assert "Wrong password" in result.stderr
