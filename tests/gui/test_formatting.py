"""Text the views show, without a display."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from enctalk.client.errors import ClientError
from enctalk.ui.formatting import (
    certificate_fingerprints,
    connection_status,
    display_text,
    fingerprint_lines,
    format_time,
    friendly_error,
    join_surrogates,
    safety_number_rows,
    state_label,
)

FINGERPRINT = "SHA256:" + ":".join(f"{value:02X}" for value in range(32))
NON_BMP_TEXT = "hi 😀👍🏽 𠀀"


def test_display_text_replaces_non_bmp_characters():
    shown = display_text(NON_BMP_TEXT)
    assert shown == "hi \ufffd\ufffd\ufffd \ufffd"
    assert all(ord(char) <= 0xFFFF for char in shown)


def test_display_text_keeps_bmp_text():
    text = "Grüße, Привет, مرحبا ✓"
    assert display_text(text) == text


def test_display_text_replaces_lone_surrogate():
    assert display_text("a\ud800b") == "a\ufffdb"


def test_join_surrogates_restores_code_points():
    pairs = NON_BMP_TEXT.encode("utf-16-le").decode("utf-16-le", "surrogatepass")
    split = "".join(
        chr(int.from_bytes(NON_BMP_TEXT.encode("utf-16-le")[i : i + 2], "little"))
        for i in range(0, len(NON_BMP_TEXT.encode("utf-16-le")), 2)
    )
    assert join_surrogates(split) == NON_BMP_TEXT
    assert join_surrogates(pairs) == NON_BMP_TEXT
    assert join_surrogates("plain") == "plain"


def test_format_time_today_shows_hours_only():
    now = datetime.now(tz=timezone.utc)
    ms = int(now.timestamp() * 1000)
    assert format_time(ms, now) == now.astimezone().strftime("%H:%M")


def test_format_time_older_shows_date():
    now = datetime.now(tz=timezone.utc)
    then = now - timedelta(days=3)
    text = format_time(int(then.timestamp() * 1000), now)
    assert text == then.astimezone().strftime("%Y-%m-%d %H:%M")
    assert format_time(None) == ""


def test_fingerprint_lines_group_eight_bytes():
    lines = fingerprint_lines(FINGERPRINT)
    assert len(lines) == 4
    assert lines[0] == "00:01:02:03:04:05:06:07"
    assert all(len(line.split(":")) == 8 for line in lines)


def test_certificate_fingerprints_found_in_message():
    other = FINGERPRINT.replace("00:", "FF:", 1)
    message = f"changed: pinned {FINGERPRINT}, server presented {other}. Ask."
    assert certificate_fingerprints(message) == [FINGERPRINT, other]


def test_safety_number_rows_three_rows_of_four():
    number = " ".join(f"{group:05d}" for group in range(12))
    rows = safety_number_rows(number)
    assert len(rows) == 3
    assert rows[0] == "00000 00001 00002 00003"


def test_friendly_error_plain_words():
    assert friendly_error(ClientError("username_taken", "x")) == (
        "That username is taken. Choose another one."
    )
    refused = ClientError(
        "connection_failed",
        "Cannot reach server 192.168.1.10:5443: connection refused.",
    )
    assert friendly_error(refused) == refused.message
    limited = ClientError("rate_limited", "slow down", retry_after=30)
    assert friendly_error(limited) == "Too many attempts. Try again in 30 s."


def test_friendly_error_hides_unexpected_exception():
    text = friendly_error(KeyError("token"))
    assert "Traceback" not in text
    assert "token" not in text
    assert "KeyError" in text


def test_connection_status_lines():
    address = "127.0.0.1:5443"
    assert connection_status("connected", {}, address) == f"Connected to {address}"
    assert connection_status("reconnecting", {"retry_in": 4.6}, address) == (
        "Reconnecting in 5 s"
    )
    assert connection_status("offline", {}, address) == "Offline"


def test_state_label_names_each_state():
    assert state_label("sending") == "sending…"
    assert state_label("failed") == "failed"
    assert state_label(None) == ""


def test_friendly_error_keeps_not_allowed_reason():
    muted = ClientError("not_allowed", "A moderator has muted you in this group.")
    assert friendly_error(muted) == "A moderator has muted you in this group."
    policy = ClientError(
        "not_allowed", "On this server only staff accounts create groups."
    )
    assert friendly_error(policy) == "On this server only staff accounts create groups."
