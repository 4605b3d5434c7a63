"""Text the views show: times, states, fingerprints, errors and status lines.

Pure functions with no Tk, so they are tested headless. Tk 8.6 stores
text as UTF-16 and cannot draw a character outside the Basic
Multilingual Plane (most emoji). :func:`display_text` maps those to
U+FFFD for display only; the message itself is never changed.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from enctalk.client.errors import ClientError

REPLACEMENT_CHARACTER = "\ufffd"
MAX_BMP_CODE_POINT = 0xFFFF
_SURROGATES = range(0xD800, 0xE000)
_FINGERPRINT = re.compile(r"SHA256:[0-9A-Fa-f:]{95}")
FINGERPRINT_BYTES_PER_LINE = 8

STATE_LABELS = {
    "sending": "sending…",
    "sent": "sent",
    "delivered": "delivered",
    "failed": "failed",
}

# Plain sentences for the error codes a pupil meets most often. Any other
# ClientError shows its own message, which the core writes for people.
_ERROR_SENTENCES = {
    "username_taken": "That username is taken. Choose another one.",
    "invalid_credentials": "Wrong username or password.",
    "wrong_password": "Wrong password.",
    "timeout": "The server did not answer in time. Try again.",
    "certificate_rejected": (
        "The server's certificate was not accepted, so EncTalk did not connect."
    ),
    "account_disabled": "This account is disabled. Ask your teacher.",
    "user_not_found": "There is no user with that name.",
    "not_a_contact": "That user is not one of your contacts.",
    "session_revoked": "You were logged out. Log in again.",
    "invalid_session": "Your session has ended. Log in again.",
    "setup_required": (
        "This account is waiting for its setup code. Choose 'I have a setup "
        "code' and type the code your teacher gave you."
    ),
    "invalid_reset_code": (
        "The code is wrong, already used or expired. Check it, or ask your "
        "teacher for a new one."
    ),
}
# "not_allowed" is not in the table, because each of its messages names the
# rule that applied: a lab policy of the server, or a group's mute or roles.


def display_text(text: str) -> str:
    """Return ``text`` with every character Tk 8.6 cannot draw as U+FFFD.

    Those are code points above U+FFFF and lone surrogates. The result
    has one Tk index position per character, so it is safe to insert.
    """
    if text.isascii():
        return text
    return "".join(
        REPLACEMENT_CHARACTER
        if ord(char) > MAX_BMP_CODE_POINT or ord(char) in _SURROGATES
        else char
        for char in text
    )


def join_surrogates(text: str) -> str:
    """Combine UTF-16 surrogate pairs that Tk returns into single code points.

    Some Python and Tk 8.6 builds hand back a non-BMP character as two
    surrogates. A lone surrogate is kept as it is.
    """
    if not any(ord(char) in _SURROGATES for char in text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode(
        "utf-16-le", "surrogatepass"
    )


def format_time(ms: int | None, now: datetime | None = None) -> str:
    """Format milliseconds since the epoch in the local time zone.

    Today's times show as ``HH:MM``, older ones with their date.
    """
    if ms is None:
        return ""
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone()
    today = (now or datetime.now(tz=timezone.utc)).astimezone().date()
    if moment.date() == today:
        return moment.strftime("%H:%M")
    return moment.strftime("%Y-%m-%d %H:%M")


def state_label(state: str | None) -> str:
    """Return the label of an outgoing message's delivery state."""
    if state is None:
        return ""
    return STATE_LABELS.get(state, state)


def fingerprint_lines(fingerprint: str) -> list[str]:
    """Split ``SHA256:AB:CD:...`` into lines of eight bytes for comparing."""
    digits = fingerprint.removeprefix("SHA256:").upper().split(":")
    return [
        ":".join(digits[start : start + FINGERPRINT_BYTES_PER_LINE])
        for start in range(0, len(digits), FINGERPRINT_BYTES_PER_LINE)
    ]


def certificate_fingerprints(message: str) -> list[str]:
    """Return the SHA-256 fingerprints named in a certificate error, in order."""
    return _FINGERPRINT.findall(message)


def safety_number_rows(number: str, groups_per_row: int = 4) -> list[str]:
    """Split a safety number (12 groups of 5 digits) into rows of groups."""
    groups = number.split()
    return [
        " ".join(groups[start : start + groups_per_row])
        for start in range(0, len(groups), groups_per_row)
    ]


def friendly_error(error: BaseException) -> str:
    """Return one plain sentence for ``error``, never a code or a traceback."""
    if not isinstance(error, ClientError):
        return (
            f"Something went wrong inside EncTalk ({type(error).__name__}). Try again."
        )
    if error.code == "rate_limited":
        if error.retry_after:
            return f"Too many attempts. Try again in {error.retry_after} s."
        return "Too many attempts. Wait a moment and try again."
    sentence = _ERROR_SENTENCES.get(error.code, error.message)
    return " ".join(sentence.split())


def connection_status(state: str, data: dict[str, object], address: str) -> str:
    """Return the status line for a ``connection_state`` event."""
    if state == "connected":
        return f"Connected to {address}"
    if state == "connecting":
        return f"Connecting to {address}…"
    if state == "reconnecting":
        retry_in = data.get("retry_in")
        if isinstance(retry_in, (int, float)):
            return f"Reconnecting in {max(round(retry_in), 0)} s"
        return "Reconnecting…"
    error = data.get("error")
    if isinstance(error, str) and error:
        return f"Offline: {error}"
    return "Offline"
