"""add-contact tells a new contact from an existing one."""

from __future__ import annotations

from tests.integration.conftest import Cli
from tests.integration.test_cli import register_pair


def test_cli_add_existing_contact_says_already(server, tmp_path):
    alice, bob = register_pair(server, tmp_path)

    again = alice.run("add-contact", "bob")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "bob is already a contact (offline)."

    reverse = bob.run("add-contact", "Alice")
    assert reverse.returncode == 0, reverse.stderr
    assert reverse.stdout.strip() == "alice is already a contact (offline)."


def test_cli_add_new_contact_says_added(server, tmp_path):
    register_pair(server, tmp_path)
    carol = Cli(tmp_path / "carol", server, "amber thistle quarry")
    assert carol.run("register", "carol").returncode == 0

    added = carol.run("add-contact", "bob")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "Added bob (offline)."
