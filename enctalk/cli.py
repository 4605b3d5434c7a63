"""Headless EncTalk commands over the client core.

``python run_client.py [options] COMMAND ARGS``. With no command,
:data:`GUI_COMMAND` opens the desktop window (``enctalk.ui``), which
imports tkinter only then, so the commands work on a Python without Tk.
Every error is one line on stderr and an exit code from :data:`EXIT_CODES`,
never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import queue
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from enctalk.client import attachments, audio
from enctalk.client.attachments import ATTACHMENT_PROGRESS
from enctalk.client.core import Client
from enctalk.client.discovery import (
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_LISTEN_SECONDS,
    listen_for_servers,
)
from enctalk.client.errors import ClientError
from enctalk.client.history import HistoryEntry
from enctalk.client.passwords import password_problem
from enctalk.protocol import InvalidUsername, canonical_username
from enctalk.protocol.announcement import DEFAULT_DISCOVERY_PORT
from enctalk.version import version_text

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_QUEUED = 3
EXIT_AUTH = 4
EXIT_UNREACHABLE = 5
EXIT_CERTIFICATE = 6
EXIT_INTERRUPTED = 130

_AUTH_CODES = frozenset(
    {
        "wrong_password",
        "invalid_credentials",
        "invalid_session",
        "account_disabled",
        "not_logged_in",
        "invalid_reset_code",
        "rate_limited",
        "weak_password",
        "setup_required",
    }
)
_UNREACHABLE_CODES = frozenset({"connection_failed", "timeout", "no_server"})
_CERTIFICATE_CODES = frozenset({"certificate_changed", "certificate_rejected"})
# Background errors that end listen, because nothing received can be
# stored or acknowledged until the user fixes them.
_FATAL_EVENT_CODES = frozenset({"save_failed"})

_FRIENDLY_MESSAGES = {
    "invalid_credentials": "Wrong username or password.",
    "username_taken": "That username is already taken; choose another.",
    "invalid_reset_code": "The code is invalid, used or expired.",
}

DEFAULT_TIMEOUT = 15.0


def _run_gui(args: argparse.Namespace) -> int:
    """Open the desktop window; tkinter is imported only here."""
    try:
        from enctalk.ui import run
    except ImportError as exc:
        print(
            f"error: the desktop window needs Tk ({exc}); install python3-tk, "
            "or run a command, for example 'run_client.py --help'.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return run(args)


# Runs when no command is given.
GUI_COMMAND: Callable[[argparse.Namespace], int] | None = _run_gui

_EPILOG = """\
The password comes from ENCTALK_PASSWORD, from the first line of standard
input with --password-stdin, or from a prompt. passwd reads the new password
from ENCTALK_NEW_PASSWORD, the second input line, or a prompt (twice);
redeem-reset and redeem-setup read the new password the same way as the
password; redeem-reset also reads an optional old password (to keep the
identity key) from ENCTALK_OLD_PASSWORD or the second input line. Every
command after register or login reuses the saved session, but unlocking the
profile's encrypted data needs the password on each run.

exit codes:
  0  success
  1  error (reported by the server or the client)
  2  invalid command line, or no command and no display or Tk for the window
  3  send: the message is queued in the outbox, not yet acknowledged
  4  wrong password, wrong credentials, weak password or ended session
  5  cannot reach the server, or it did not answer in time
  6  server certificate unknown and not accepted, or changed
 130 interrupted (Ctrl-C), except listen: Ctrl-C is its normal way to stop,
     so it exits with 0
"""


class _CommandError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Passwords:
    """Reads passwords from the environment, standard input or a prompt."""

    def __init__(self, use_stdin: bool, stdin: TextIO) -> None:
        self.use_stdin = use_stdin
        self.stdin = stdin
        self._lines_read = 0

    def _stdin_line(self, required: bool) -> str | None:
        line = self.stdin.readline()
        self._lines_read += 1
        if not line:
            if required:
                raise _CommandError(
                    f"--password-stdin: line {self._lines_read} of standard input "
                    "is missing.",
                    EXIT_USAGE,
                )
            return None
        return line.rstrip("\r\n")

    def _prompt(self, prompt: str) -> str:
        if not self.stdin.isatty():
            raise _CommandError(
                "No password given: standard input is not a terminal. Set "
                "ENCTALK_PASSWORD or use --password-stdin.",
                EXIT_USAGE,
            )
        return getpass.getpass(prompt)

    def current(self) -> str:
        value = os.environ.get("ENCTALK_PASSWORD")
        if value is not None:
            return value
        if self.use_stdin:
            line = self._stdin_line(required=True)
            assert line is not None
            return line
        return self._prompt("Password: ")

    def new(
        self, env: str = "ENCTALK_NEW_PASSWORD", username: str | None = None
    ) -> str:
        value = os.environ.get(env)
        if value is not None:
            return value
        if self.use_stdin:
            line = self._stdin_line(required=True)
            assert line is not None
            return line
        while True:
            first = self._prompt("New password: ")
            problem = password_problem(first, username)
            if problem is not None:
                print(problem, file=sys.stderr)
                continue
            if self._prompt("Repeat the new password: ") == first:
                return first
            print("The passwords differ; try again.", file=sys.stderr)

    def optional(self, env: str) -> str | None:
        value = os.environ.get(env)
        if value is not None:
            return value
        if self.use_stdin:
            return self._stdin_line(required=False)
        return None


def _confirm_server_prompt(stdin: TextIO) -> Callable[[str, str], bool]:
    def confirm(address: str, fingerprint: str) -> bool:
        if not stdin.isatty():
            raise ClientError(
                "certificate_rejected",
                f"The server {address} is new, with certificate fingerprint "
                f"{fingerprint}. Compare it with the one the server printed, then "
                "rerun with --accept-new-server or --server-fingerprint "
                f"{fingerprint}.",
            )
        print(f"The server {address} is not known yet.", file=sys.stderr)
        print(f"Its certificate fingerprint is {fingerprint}.", file=sys.stderr)
        print(
            "Compare it with the fingerprint the server printed at its start.",
            file=sys.stderr,
        )
        answer = input("Trust this server and remember it? [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    return confirm


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the command line."""
    common = argparse.ArgumentParser(add_help=False)
    _add_common_options(common, argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog="run_client.py",
        description="EncTalk end-to-end encrypted chat client. With no command, "
        "it opens the desktop window.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_options(parser, None)
    parser.add_argument("--version", action="version", version=version_text("enctalk"))
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="check the libraries, the crypto and the audio devices, then exit",
    )
    parser.add_argument(
        "--no-discovery",
        action="store_true",
        help="in the desktop window, do not listen for servers on this network",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, parents=[common])

    add("register", "create an account on the server").add_argument("username")
    add("login", "log in, on a new profile also as a new device").add_argument(
        "username"
    )
    add("logout", "end the saved session on the server")
    add("passwd", "change the password")
    reset = add("redeem-reset", "set a new password with an administrator's code")
    reset.add_argument("username")
    reset.add_argument("code")
    reset.add_argument(
        "--discard-local-data",
        action="store_true",
        help="without the old password, move this account's history and unsent "
        "messages aside (kept as *.old-DATE files) and make a new identity key",
    )
    setup = add(
        "redeem-setup",
        "set up an account your teacher created, with its setup code, and "
        "choose a password",
    )
    setup.add_argument("username")
    setup.add_argument("code", help="the setup code, such as ABCD-EFGH-JKMN-PQRS")
    add("add-contact", "add a contact (mutual)").add_argument("user")
    add("contacts", "list contacts with presence and verification")
    add("classes", "list the class labels of the server's accounts (staff only)")
    add(
        "class-members",
        "list the accounts of one class (staff only)",
    ).add_argument("label", metavar="LABEL", help="the class label, such as 7B")
    send = add("send", "send a text message and wait for the server's ack")
    send.add_argument("user")
    send.add_argument(
        "text", help="the message; - reads it from standard input, to its end"
    )
    send_audio = add("send-audio", "send a WAV file as a voice message")
    send_audio.add_argument("user")
    send_audio.add_argument("file", type=Path, metavar="FILE.wav")
    record_audio = add("record-audio", "record a voice message and send it")
    record_audio.add_argument("user")
    record_audio.add_argument(
        "--seconds",
        type=float,
        required=True,
        help=f"seconds to record, at most {audio.DEFAULT_MAX_SECONDS:g}",
    )
    listen = add("listen", "print events as JSON lines until --timeout or Ctrl-C")
    listen.add_argument(
        "--save-audio",
        type=Path,
        metavar="DIR",
        help="download received voice messages into DIR; the event's 'saved' "
        "field is the file's path",
    )
    history = add("history", "print the local conversation with a user")
    history.add_argument("user")
    history.add_argument("--json", action="store_true", help="one JSON object a line")
    history.add_argument("--limit", type=int, help="only the newest N lines")
    _add_group_commands(add)
    add("safety-number", "print the safety number with a contact").add_argument("user")
    add("verify", "mark a contact's safety number as compared").add_argument("user")
    add(
        "forget-server",
        "remove the pinned certificate of the server, after a reinstall that "
        "your teacher confirmed",
    )
    add("devices", "list the account's devices")
    remove = add("remove-device", "remove one of the account's devices")
    remove.add_argument("device_id", type=_device_id)
    discover = add("discover", "list the EncTalk servers announcing on this network")
    discover.add_argument(
        "--seconds",
        type=_timeout_seconds,
        default=DEFAULT_LISTEN_SECONDS,
        help=f"seconds to listen (default {DEFAULT_LISTEN_SECONDS:g})",
    )
    discover.add_argument(
        "--listen-address",
        default=DEFAULT_LISTEN_ADDRESS,
        metavar="ADDRESS",
        help=f"IPv4 address to listen on (default {DEFAULT_LISTEN_ADDRESS})",
    )
    discover.add_argument(
        "--discovery-port",
        type=int,
        default=DEFAULT_DISCOVERY_PORT,
        metavar="PORT",
        help=f"UDP port to listen on (default {DEFAULT_DISCOVERY_PORT})",
    )
    return parser


def _add_group_commands(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Add the group commands to the parser through ``add(name, help)``."""
    add("groups", "list your groups: id, name, your role, members")
    add(
        "group-create", "create a group you own; prints its id on the last line"
    ).add_argument("name")

    for name, help_text in (
        ("group-add", "add users to a group (owner and moderators)"),
        ("group-remove", "remove users from a group (owner and moderators)"),
    ):
        command = add(name, help_text)
        command.add_argument("group_id", metavar="GROUP_ID")
        command.add_argument("users", nargs="+", metavar="USER")

    add_class = add(
        "group-add-class", "add every account of a roster class to a group (staff)"
    )
    add_class.add_argument("group_id", metavar="GROUP_ID")
    add_class.add_argument("label", metavar="CLASS")

    send = add("group-send", "send a text message to every member of a group")
    send.add_argument("group_id", metavar="GROUP_ID")
    send.add_argument(
        "text", help="the message; - reads it from standard input, to its end"
    )
    add("group-members", "list a group's members with role and presence").add_argument(
        "group_id", metavar="GROUP_ID"
    )

    for name, help_text in (
        ("group-mute", "stop a member from posting in a group"),
        ("group-unmute", "let a muted member post again"),
    ):
        command = add(name, help_text)
        command.add_argument("group_id", metavar="GROUP_ID")
        command.add_argument("user")

    readonly = add("group-readonly", "let only moderators post (on) or everyone (off)")
    readonly.add_argument("group_id", metavar="GROUP_ID")
    readonly.add_argument("state", choices=("on", "off"))

    role = add("group-role", "make a member a moderator or an ordinary member")
    role.add_argument("group_id", metavar="GROUP_ID")
    role.add_argument("user")
    role.add_argument("role", choices=("moderator", "member"))

    rename = add("group-rename", "give a group a new name")
    rename.add_argument("group_id", metavar="GROUP_ID")
    rename.add_argument("name")
    add("group-leave", "leave a group").add_argument("group_id", metavar="GROUP_ID")

    delete = add("group-delete", "delete a group message for everyone")
    delete.add_argument("group_id", metavar="GROUP_ID")
    delete.add_argument("message_id", metavar="MESSAGE_ID")


def run_discover(args: argparse.Namespace, stdout: TextIO) -> int:
    """Print one line per server heard: name, address and announced fingerprint."""
    try:
        servers = listen_for_servers(
            args.seconds, args.listen_address, args.discovery_port
        )
    except (OSError, OverflowError) as exc:
        raise _CommandError(
            f"cannot listen on UDP {args.listen_address}:{args.discovery_port}: {exc}",
            EXIT_ERROR,
        ) from None
    if not servers:
        print(f"No EncTalk server heard in {args.seconds:g} s.", file=sys.stderr)
        return EXIT_OK
    for server in servers:
        print(
            f"{printable(server.name)}\t{server.server_address}\t"
            f"{server.fingerprint} (announced, not verified)",
            file=stdout,
        )
    return EXIT_OK


# Device ids are positive 32-bit integers on the wire.
MAX_DEVICE_ID = 2**31 - 1


def _device_id(text: str) -> int:
    """Parse a device id, as the devices command lists them."""
    if not text.isdigit() or len(text) > 10 or not 1 <= int(text) <= MAX_DEVICE_ID:
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise argparse.ArgumentTypeError(
            f"{shown!r} is not a device id; the devices command lists them"
        )
    return int(text)


# Longer waits are taken as typing mistakes; a listen of 30 days is the limit.
MAX_TIMEOUT = 30 * 24 * 3600.0


def _timeout_seconds(text: str) -> float:
    """Parse --timeout: a number of seconds above 0 and at most MAX_TIMEOUT."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"{text} must be above 0 and at most {MAX_TIMEOUT:g} seconds"
        )
    return value


def _add_common_options(parser: argparse.ArgumentParser, default: Any) -> None:
    def value(normal: Any) -> Any:
        return normal if default is None else default

    parser.add_argument(
        "--profile",
        default=value(None),
        metavar="DIR",
        help="profile directory (default: the platform's user data directory)",
    )
    parser.add_argument(
        "--server",
        default=value(None),
        metavar="HOST[:PORT]",
        help="server address, saved in the profile once a connection to it "
        "succeeds; default port 5443, IPv6 in brackets",
    )
    parser.add_argument(
        "--accept-new-server",
        action="store_true",
        default=value(False),
        help="pin an unknown server certificate without asking",
    )
    parser.add_argument(
        "--server-fingerprint",
        default=value(None),
        metavar="SHA256:...",
        help="pin an unknown server certificate only if it has this fingerprint",
    )
    parser.add_argument(
        "--system-trust",
        action="store_true",
        default=value(False),
        help="verify a CA-signed server certificate with the system's trust store "
        "instead of pinning",
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        default=value(False),
        help="read the password (and a second one where needed) from stdin lines",
    )
    parser.add_argument(
        "--timeout",
        type=_timeout_seconds,
        default=value(None),
        metavar="SECONDS",
        help=f"seconds to wait for the server (default {DEFAULT_TIMEOUT:g}); "
        "for listen, how long to listen (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=value(False),
        help="log progress to stderr",
    )


def _exit_code(error: ClientError) -> int:
    if error.code in _CERTIFICATE_CODES:
        return EXIT_CERTIFICATE
    if error.code in _UNREACHABLE_CODES:
        return EXIT_UNREACHABLE
    if error.code in _AUTH_CODES:
        return EXIT_AUTH
    return EXIT_ERROR


def _error_text(error: ClientError) -> str:
    text = _FRIENDLY_MESSAGES.get(error.code, error.message)
    if error.code == "rate_limited" and error.retry_after:
        text = f"Too many attempts; try again in {error.retry_after} s."
    return printable(" ".join(text.split()))


# Characters that a terminal would act on rather than show: C0 and C1
# controls, DEL, line and paragraph separators, and the Unicode bidi
# controls (UAX #9), which can reorder the rest of a line.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_CONTINUATION_INDENT = "    "


def _escape_char(char: str) -> str:
    code = ord(char)
    unsafe = (
        code < 0x20
        or 0x7F <= code <= 0x9F
        or char in _BIDI_CONTROLS
        or char in "\u2028\u2029"
    )
    if not unsafe:
        return char
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """Return ``text`` with every control and bidi control written as an escape.

    Newlines are escaped too, so the result is always one line.
    """
    return "".join(_escape_char(char) for char in text)


def printable_lines(text: str) -> str:
    """Return ``text`` escaped like :func:`printable`, keeping its newlines.

    Every line after the first is indented, so a message cannot show a
    line that looks like another sender's.
    """
    lines = [printable(line) for line in text.split("\n")]
    return ("\n" + _CONTINUATION_INDENT).join(lines)


def _canonical_or_none(username: str) -> str | None:
    try:
        return canonical_username(username)
    except InvalidUsername:
        return None


def _format_time(ms: int | None) -> str:
    if ms is None:
        return "--"
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _count(number: int, noun: str) -> str:
    """Return "1 member" or "3 members"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _format_entry(entry: HistoryEntry, names: dict[str, str] | None = None) -> str:
    """Return one history line; ``names`` maps usernames to display names."""
    when = _format_time(entry.server_time or entry.sent_at)
    body = printable_lines(entry.body)
    if entry.kind in ("notice", "system"):
        return f"[{when}] * {body}"
    state = f" ({entry.state})" if entry.direction == "out" and entry.state else ""
    sender = (names or {}).get(entry.sender, entry.sender)
    return f"[{when}] {printable(sender)}: {body}{state}"


class _Runner:
    """Runs one command with its Client; each method returns an exit code."""

    def __init__(self, args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> None:
        self.args = args
        self.stdout = stdout
        self.passwords = _Passwords(args.password_stdin, stdin)
        self.timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
        self.client = Client(
            args.profile,
            server=args.server,
            accept_new_server=args.accept_new_server,
            server_fingerprint=args.server_fingerprint,
            confirm_server=_confirm_server_prompt(stdin),
            use_system_trust=args.system_trust,
            timeout=self.timeout,
        )

    def say(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    def unlock(self) -> None:
        self.client.unlock(self.passwords.current())

    def online(self) -> None:
        self.unlock()
        self.client.wait_ready(self.timeout)

    def cmd_register(self) -> int:
        password = self.passwords.new("ENCTALK_PASSWORD", self.args.username)
        name = self.client.register(self.args.username, password)
        self.say(f"Registered {name} as device {self.client.device_id}.")
        return EXIT_OK

    def cmd_login(self) -> int:
        name = self.client.login(self.args.username, self.passwords.current())
        self.say(f"Logged in as {name} on device {self.client.device_id}.")
        return EXIT_OK

    def cmd_logout(self) -> int:
        self.unlock()
        try:
            self.client.wait_ready(self.timeout)
        except ClientError:
            pass  # Forget the token locally even when the server is unreachable.
        self.client.logout()
        self.say("Logged out.")
        return EXIT_OK

    def cmd_passwd(self) -> int:
        old = self.passwords.current()
        self.client.unlock(old)
        self.client.wait_ready(self.timeout)
        new = self.passwords.new(username=self.client.username)
        self.client.change_password(old, new)
        self.say("Password changed; every other session of the account has ended.")
        return EXIT_OK

    def cmd_redeem_reset(self) -> int:
        new = self.passwords.new("ENCTALK_PASSWORD", self.args.username)
        old = self.passwords.optional("ENCTALK_OLD_PASSWORD")
        profile = self.client.profile
        holds_account = (
            profile.has_vault()
            and profile.username is not None
            and profile.username == _canonical_or_none(self.args.username)
        )
        if holds_account and not old:
            old = self._old_password_or_discard()
        if holds_account and not old:
            self._announce_set_aside()
        kept = self.client.redeem_reset(self.args.username, self.args.code, new, old)
        if kept:
            self.say("Password reset; the identity key was kept.")
        else:
            self.say(
                "Password reset with a new identity key: contacts will see a "
                "safety number change."
            )
        return EXIT_OK

    def cmd_redeem_setup(self) -> int:
        new = self.passwords.new("ENCTALK_PASSWORD", self.args.username)
        name = self.client.redeem_setup(self.args.username, self.args.code, new)
        self.say(
            f"Account {name} is set up on this computer; log in with your new "
            "password from now on."
        )
        return EXIT_OK

    def _old_password_or_discard(self) -> str | None:
        """Prompt for the old password on a terminal; None means discard."""
        if self.passwords.stdin.isatty():
            answer = getpass.getpass(
                "Old password, to keep the identity key and the local data "
                "(empty to skip): "
            )
            return answer or None
        if self.args.discard_local_data:
            return None
        raise _CommandError(
            f"The profile {self.client.profile.directory} holds the account "
            f"{self.client.profile.username}. Without the old password its "
            "history and unsent messages are moved aside and the account gets "
            "a new identity key. Give the old password in ENCTALK_OLD_PASSWORD "
            "to keep them, or pass --discard-local-data to go on without it.",
            EXIT_USAGE,
        )

    def _announce_set_aside(self) -> None:
        profile = self.client.profile
        moved = [profile.vault_path.name]
        if profile.history_path.exists():
            moved.append(profile.history_path.name)
        print(
            f"Without the old password, {' and '.join(moved)} in "
            f"{profile.directory} will be renamed to *.old-DATE and kept, not "
            "deleted. The unsent messages in the outbox stay in that old vault: "
            "their number cannot be read without the old password.",
            file=sys.stderr,
        )

    def cmd_add_contact(self) -> int:
        self.online()
        contact = self.client.add_contact(self.args.user)
        presence = "online" if contact.online else "offline"
        name = printable(contact.username)
        if contact.newly_added:
            self.say(f"Added {name} ({presence}).")
        else:
            self.say(f"{name} is already a contact ({presence}).")
        return EXIT_OK

    def cmd_contacts(self) -> int:
        self.online()
        contacts = self.client.contacts()
        if not contacts:
            self.say("No contacts yet; add one with add-contact USER.")
        for contact in contacts:
            presence = "online" if contact.online else "offline"
            verified = "verified" if contact.verified else "not verified"
            self.say(
                f"{printable(contact.username)}\t{presence}\t{verified}\t"
                f"{printable(contact.shown_name)}"
            )
        return EXIT_OK

    def cmd_classes(self) -> int:
        self.online()
        labels = self.client.list_classes()
        if not labels:
            self.say("No account belongs to a class yet.")
        for label in labels:
            self.say(printable(label))
        return EXIT_OK

    def cmd_class_members(self) -> int:
        self.online()
        members = self.client.class_members(self.args.label)
        if not members:
            raise _CommandError(
                f"No account belongs to the class {self.args.label!r}; the "
                "classes command lists the classes.",
                EXIT_ERROR,
            )
        for member in members:
            state = "waiting for setup" if member.pending else "set up"
            self.say(
                f"{printable(member.username)}\t{printable(member.display_name)}"
                f"\t{state}"
            )
        return EXIT_OK

    def cmd_send(self) -> int:
        self.unlock()
        reason = None
        try:
            self.client.start()
        except ClientError as exc:
            if exc.code in _CERTIFICATE_CODES:
                raise
            reason = _error_text(exc)
        text = self.args.text
        if text == "-":
            # Read after the password, which --password-stdin takes first.
            text = self.passwords.stdin.read().rstrip("\n")
        result = self.client.send_text(self.args.user, text, self.timeout)
        if result.state == "sent":
            self.say(f"Sent (message {result.message_id}).")
            return EXIT_OK
        if result.state == "failed":
            raise _CommandError(f"Not sent: {result.error}", EXIT_ERROR)
        if reason is None:
            error = self.client.connection_error
            reason = _error_text(error) if error else "no acknowledgement in time."
        self.say(
            f"Queued in the outbox (message {result.message_id}): {reason} "
            "It goes out with the next command that connects."
        )
        return EXIT_QUEUED

    def cmd_listen(self) -> int:
        self.unlock()
        self.client.check_session()
        self.client.connect(DEFAULT_TIMEOUT if self.args.timeout is None else None)
        deadline = (
            None if self.args.timeout is None else time.monotonic() + self.timeout
        )
        while True:
            wait = 0.5 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                return EXIT_OK
            try:
                event = self.client.events.get(timeout=min(wait, 0.5))
            except queue.Empty:
                continue
            data = event.to_dict()
            if event.name == ATTACHMENT_PROGRESS:
                continue
            if event.name == "error" and data["code"] in _FATAL_EVENT_CODES:
                raise ClientError(data["code"], data["message"])
            if self.args.save_audio is not None and data.get("kind") == "audio":
                data["saved"] = self._save_audio(data["message_id"])
            self.say(json.dumps(data, ensure_ascii=True, sort_keys=True))
            if event.name == "session_revoked" and self.client.session_error:
                raise self.client.session_error

    def _save_audio(self, message_id: str) -> str | None:
        folder: Path = self.args.save_audio
        folder.mkdir(parents=True, exist_ok=True)
        try:
            saved = attachments.fetch_audio(self.client, message_id, folder)
        except ClientError as exc:
            print(f"error: audio not saved: {_error_text(exc)}", file=sys.stderr)
            return None
        return str(saved)

    def _progress(self, label: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            percent = 100 * done // max(total, 1)
            print(f"{label} {percent}% ({done}/{total} bytes)", file=sys.stderr)

        return report

    def _send_audio_file(self, path: Path) -> int:
        result = attachments.send_audio(
            self.client,
            self.args.user,
            path,
            self.timeout,
            progress=self._progress("upload"),
        )
        if result.state == "sent":
            self.say(f"Sent voice message (message {result.message_id}).")
            return EXIT_OK
        if result.state == "failed":
            raise _CommandError(f"Not sent: {result.error}", EXIT_ERROR)
        self.say(
            f"Uploaded; the message is queued in the outbox "
            f"(message {result.message_id})."
        )
        return EXIT_QUEUED

    def cmd_send_audio(self) -> int:
        self.online()
        return self._send_audio_file(self.args.file)

    def cmd_record_audio(self) -> int:
        seconds = self.args.seconds
        if not 0 < seconds <= audio.DEFAULT_MAX_SECONDS:
            raise _CommandError(
                f"--seconds must be between 0 and {audio.DEFAULT_MAX_SECONDS:g}, "
                f"not {seconds:g}",
                EXIT_USAGE,
            )
        self.online()
        path = attachments.audio_dir(self.client) / f"recording-{os.getpid()}.wav"

        def show(recorder: audio.Recorder) -> None:
            print(
                f"recording {recorder.elapsed:5.1f} s  level {recorder.level:6.1f} dB"
                f"  overflows {recorder.overflows}",
                file=sys.stderr,
            )

        try:
            recorder = audio.record(path, seconds, progress=show)
        except audio.AudioUnavailable as exc:
            raise _CommandError(str(exc), EXIT_ERROR) from exc
        if recorder.overflows:
            print(
                f"warning: {recorder.overflows} input overflows during recording",
                file=sys.stderr,
            )
        try:
            return self._send_audio_file(path)
        finally:
            path.unlink(missing_ok=True)

    def cmd_history(self) -> int:
        self.unlock()
        entries = self.client.history(self.args.user, self.args.limit)
        # Group lines name their senders as the membership lines do.
        names = self.client.display_names() if self.args.user.startswith("#") else {}
        for entry in entries:
            if self.args.json:
                data = entry.to_dict()
                if data.get("attachment") is not None:
                    data["attachment"] = attachments.public_reference(
                        data["attachment"]
                    )
                self.say(json.dumps(data, ensure_ascii=True, sort_keys=True))
            else:
                self.say(_format_entry(entry, names))
        return EXIT_OK

    def cmd_groups(self) -> int:
        self.online()
        found = self.client.groups()
        if not found:
            self.say("No groups yet; create one with group-create NAME.")
        for group in found:
            role = group.role or "left"
            flags = [
                flag
                for flag, on in (("muted", group.muted), ("read-only", group.read_only))
                if on
            ]
            extra = f"\t{','.join(flags)}" if flags else ""
            self.say(
                f"{group.group_id}\t{printable(group.name)}\t{role}"
                f"\t{_count(group.members, 'member')}{extra}"
            )
        return EXIT_OK

    def cmd_group_create(self) -> int:
        self.online()
        group_id = self.client.create_group(self.args.name)
        self.say(f"Created the group {printable(self.args.name.strip())}.")
        self.say(group_id)
        return EXIT_OK

    def cmd_group_add(self) -> int:
        self.online()
        return self._for_each_user(self.client.group_add, "Added")

    def cmd_group_add_class(self) -> int:
        self.online()
        added = self.client.group_add_class(self.args.group_id, self.args.label)
        for name in added:
            self.say(f"Added {printable(name)}.")
        self.say(f"{len(added)} added from class {printable(self.args.label)}.")
        return EXIT_OK

    def cmd_group_remove(self) -> int:
        self.online()
        return self._for_each_user(self.client.group_remove, "Removed")

    def _for_each_user(self, change: Callable[[str, str], None], done: str) -> int:
        """Apply ``change`` to each named user; go on after a failure.

        Each name is tried once, in order. Every failure is one line on
        stderr, and the exit code is EXIT_ERROR if any failed.
        """
        failed = 0
        for user in dict.fromkeys(self.args.users):
            try:
                change(self.args.group_id, user)
            except ClientError as exc:
                if exc.code in _CERTIFICATE_CODES or exc.code in _AUTH_CODES:
                    raise
                failed += 1
                print(f"error: {printable(user)}: {_error_text(exc)}", file=sys.stderr)
                continue
            self.say(f"{done} {printable(user)}.")
        return EXIT_ERROR if failed else EXIT_OK

    def cmd_group_send(self) -> int:
        self.online()
        text = self.args.text
        if text == "-":
            text = self.passwords.stdin.read().rstrip("\n")
        result = self.client.send_group_text(self.args.group_id, text, self.timeout)
        if result.state == "sent":
            self.say(f"Sent (message {result.message_id}).")
            return EXIT_OK
        if result.state == "failed":
            raise _CommandError(f"Not sent: {result.error}", EXIT_ERROR)
        self.say(
            f"Queued in the outbox (message {result.message_id}); it goes out "
            "with the next command that connects."
        )
        return EXIT_QUEUED

    def cmd_group_members(self) -> int:
        self.online()
        # Columns: username, role, presence, display name, then flags.
        for member in self.client.group_members(self.args.group_id):
            presence = "online" if member["online"] else "offline"
            flags = [
                flag
                for flag, on in (
                    ("muted", member["muted"]),
                    ("waiting for setup", member["pending"]),
                )
                if on
            ]
            columns = [
                printable(member["username"]),
                member["role"],
                presence,
                printable(member["display_name"]),
                *flags,
            ]
            self.say("\t".join(columns))
        return EXIT_OK

    def cmd_group_mute(self) -> int:
        self.online()
        self.client.group_mute(self.args.group_id, self.args.user, True)
        self.say(f"Muted {printable(self.args.user)}.")
        return EXIT_OK

    def cmd_group_unmute(self) -> int:
        self.online()
        self.client.group_mute(self.args.group_id, self.args.user, False)
        self.say(f"Unmuted {printable(self.args.user)}.")
        return EXIT_OK

    def cmd_group_readonly(self) -> int:
        self.online()
        on = self.args.state == "on"
        self.client.group_read_only(self.args.group_id, on)
        self.say(
            "Only moderators may post now." if on else "Every member may post now."
        )
        return EXIT_OK

    def cmd_group_role(self) -> int:
        self.online()
        self.client.group_set_role(self.args.group_id, self.args.user, self.args.role)
        self.say(f"{printable(self.args.user)} is now a {self.args.role}.")
        return EXIT_OK

    def cmd_group_rename(self) -> int:
        self.online()
        self.client.group_rename(self.args.group_id, self.args.name)
        self.say(f"Renamed the group to {printable(self.args.name.strip())}.")
        return EXIT_OK

    def cmd_group_leave(self) -> int:
        self.online()
        self.client.group_leave(self.args.group_id)
        self.say("You left the group.")
        return EXIT_OK

    def cmd_group_delete(self) -> int:
        self.online()
        self.client.group_delete_message(self.args.group_id, self.args.message_id)
        self.say(f"Deleted message {printable(self.args.message_id)} for everyone.")
        return EXIT_OK

    def cmd_safety_number(self) -> int:
        self.unlock()
        if self.client.logged_in:
            try:
                self.client.wait_ready(self.timeout)
            except ClientError:
                pass  # A pinned identity key is enough without the server.
        self.say(self.client.safety_number(self.args.user))
        return EXIT_OK

    def cmd_verify(self) -> int:
        self.unlock()
        self.client.mark_verified(self.args.user)
        self.say(
            f"Marked the safety number with {printable(self.args.user)} as verified."
        )
        return EXIT_OK

    def cmd_forget_server(self) -> int:
        address = self.client.forget_server()
        if address is None:
            self.say("No certificate was pinned for the server.")
        else:
            self.say(
                f"Removed the pinned certificate of {address}; the next command "
                "that connects shows the new fingerprint to confirm."
            )
        return EXIT_OK

    def cmd_devices(self) -> int:
        self.online()
        for device in self.client.devices():
            marks = []
            if device["current"]:
                marks.append("this device")
            if device["stale"]:
                marks.append("stale")
            suffix = f" ({', '.join(marks)})" if marks else ""
            self.say(
                f"{device['device_id']}\t{printable(device['name'])}\t"
                f"last seen {_format_time(device['last_seen'])}{suffix}"
            )
        return EXIT_OK

    def cmd_remove_device(self) -> int:
        self.online()
        self.client.remove_device(self.args.device_id)
        self.say(f"Removed device {self.args.device_id}.")
        return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run one command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.self_test:
        from enctalk.selftest import run_client_self_test

        return run_client_self_test(stdout or sys.stdout)
    if args.command is None:
        if GUI_COMMAND is not None:
            return int(GUI_COMMAND(args))
        print(
            "The EncTalk GUI is not built yet; run a command, for example "
            "'run_client.py --help'.",
            file=sys.stderr,
        )
        return EXIT_USAGE

    runner: _Runner | None = None
    try:
        if args.command == "discover":
            return run_discover(args, stdout or sys.stdout)
        runner = _Runner(args, stdin or sys.stdin, stdout or sys.stdout)
        handler = getattr(runner, "cmd_" + args.command.replace("-", "_"))
        return int(handler())
    except ClientError as exc:
        print(f"error: {_error_text(exc)}", file=sys.stderr)
        return _exit_code(exc)
    except _CommandError as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED if args.command != "listen" else EXIT_OK
    except Exception as exc:  # A user never sees a traceback.
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        detail = printable(f"{type(exc).__name__}: {exc}")
        print(f"error: internal error ({detail})", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if runner is not None:
            runner.client.close()
            attachments.remove_partial_files(runner.client)
