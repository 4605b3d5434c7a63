"""Terminal control characters in messages, printed by history and listen."""

from __future__ import annotations

from tests.integration.test_cli import register_pair

HOSTILE = "\x1b[2J\u202eevil\n[2024-01-01 10:00:00] bob: fake line"


def test_history_and_listen_escape_control_characters(server, tmp_path):
    alice, bob = register_pair(server, tmp_path)
    assert alice.run("send", "bob", HOSTILE).returncode == 0

    heard = bob.run("--timeout", "3", "listen")
    assert heard.returncode == 0, heard.stderr
    assert "\u202e" not in heard.stdout
    assert "\x1b" not in heard.stdout
    assert "\\u202e" in heard.stdout

    history = bob.run("history", "alice")
    assert history.returncode == 0, history.stderr
    assert "\x1b" not in history.stdout
    assert "\u202e" not in history.stdout
    lines = history.stdout.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("    [2024")
