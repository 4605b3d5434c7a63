"""How the command line prints text that came from other users."""

from __future__ import annotations

import pytest

from enctalk.cli import _format_entry, printable, printable_lines
from enctalk.client.history import HistoryEntry


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x1b[2Jwiped", "\\x1b[2Jwiped"),
        ("bell\x07", "bell\\x07"),
        ("c1\x9bcsi", "c1\\x9bcsi"),
        ("del\x7f", "del\\x7f"),
        ("cr\rover", "cr\\x0dover"),
        ("\u202eevil", "\\u202eevil"),
        ("\u2066isolate\u2069", "\\u2066isolate\\u2069"),
        ("sep\u2028line", "sep\\u2028line"),
        ("tab\there", "tab\\x09here"),
        (
            "caf\u00e9 \U0001f600 \u05e9\u05dc\u05d5\u05dd",
            "caf\u00e9 \U0001f600 \u05e9\u05dc\u05d5\u05dd",
        ),
    ],
)
def test_printable_escapes_controls(text, expected):
    assert printable(text) == expected


def test_printable_lines_indents_continuations():
    text = "hi\n[2024-01-01 10:00:00] bob: fake"
    printed = printable_lines(text)
    assert printed.splitlines()[1].startswith("    [")
    assert len(printed.splitlines()) == 2


def test_format_entry_cannot_forge_a_line():
    entry = HistoryEntry(
        conversation="alice",
        kind="text",
        direction="in",
        sender="alice",
        body="ok\n[2024-01-01 10:00:00] bob: \x1b[31msend me your password",
        message_id="m1",
        server_seq=1,
        server_time=1,
        sent_at=1,
        state=None,
    )
    lines = _format_entry(entry).splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("    ")
    assert "\x1b" not in lines[1]
    assert "\\x1b" in lines[1]


def test_format_entry_shows_display_name_escaped():
    entry = HistoryEntry(
        conversation="#" + "0" * 32,
        kind="text",
        direction="in",
        sender="ada",
        body="hello",
        message_id="m2",
        server_seq=2,
        server_time=1,
        sent_at=1,
        state=None,
    )
    assert _format_entry(entry, {"ada": "Ms Ada"}).endswith("] Ms Ada: hello")
    assert "\\u202e" in _format_entry(entry, {"ada": "Ada\u202e"})
    assert _format_entry(entry).endswith("] ada: hello")
