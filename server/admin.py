"""Admin commands on a server's data directory: accounts, rosters and setup codes.

They open the same SQLite database as the server and may run while it
runs; SQLite's locking keeps both consistent. A running server closes the
live connections of a disabled or reset user at its next session check
(every ``revocation_check_interval`` seconds).

Setup codes are stored in plain text (table ``setup_codes``) so that
``export-codes`` can print them again, and deleted when redeemed. That
is acceptable because the administrator, who alone can read the
database, can already reset any account, and a setup code opens only an
account that is still pending, which contains no messages, contacts or keys.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from enctalk.protocol import InvalidUsername, canonical_username
from server.config import ServerConfig
from server.handlers.accounts import hash_reset_code, make_reset_code, make_setup_code
from server.handlers.base import MS_PER_DAY, now_ms
from server.roster import (
    RosterError,
    RosterProblem,
    RosterRow,
    display_name_problem,
    read_roster,
)
from server.store import (
    DATABASE_FILE_NAME,
    RosterEntry,
    SetupCode,
    Store,
    StoreError,
    User,
    UsernameTaken,
)

RESET_CODE_HOURS = 24
SETUP_INSTRUCTION = (
    "Open EncTalk, choose 'I have a setup code', then type your username and this code."
)
SHEET_RULE = "-" * 72
# Listen addresses that do not tell a pupil where to connect.
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104


def _open_store(data_dir: Path) -> Store:
    if not (data_dir / DATABASE_FILE_NAME).exists():
        raise SystemExit(
            f"error: no EncTalk database in {data_dir}; start the server once, "
            "or pass the server's --data-dir"
        )
    try:
        return Store.open_in(data_dir)
    except (StoreError, sqlite3.Error) as exc:
        raise SystemExit(
            f"error: cannot open the EncTalk database in {data_dir}: {exc}"
        ) from exc


def _canonical(raw: str) -> str:
    try:
        return canonical_username(raw)
    except InvalidUsername as exc:
        raise SystemExit(f"error: {raw!r} is not a valid username: {exc}") from exc


def _time(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _error(text: str) -> int:
    print(f"error: {text}", file=sys.stderr)
    return 1


def _flags(user: User) -> str:
    flags = []
    if user.staff:
        flags.append("staff")
    if user.disabled:
        flags.append("disabled")
    if user.pending_setup:
        flags.append("setup-pending")
    elif not user.auth_hash:
        flags.append("reset-pending")
    if user.backup_stale and not user.pending_setup:
        flags.append("backup-stale")
    return ",".join(flags)


def list_users(store: Store) -> int:
    users = store.list_users()
    if not users:
        print("no users")
        return 0
    rows = [
        (
            user.username,
            user.display_name,
            user.class_label,
            _time(user.created),
            str(devices),
            str(sessions),
            _flags(user),
        )
        for user, devices, sessions in users
    ]
    header = (
        "username",
        "display name",
        "group",
        "created",
        "devices",
        "sessions",
        "flags",
    )
    _print_table(header, rows)
    return 0


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [
        max(len(row[index]) for row in [header, *rows]) for index in range(len(header))
    ]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip())


def reset_password(store: Store, config: ServerConfig, username: str) -> int:
    user = store.user_by_name(username)
    if user is None:
        return _error(f"there is no user {username}")
    if user.pending_setup:
        return _new_setup_code(store, config, username)
    code = make_reset_code()
    expires = now_ms() + RESET_CODE_HOURS * 3_600_000
    if not store.start_reset(username, hash_reset_code(code), expires):
        return _error(f"there is no user {username}")
    print(f"reset code for {username}: {code}")
    print(
        f"It is valid once, for {RESET_CODE_HOURS} hours. The old password no "
        "longer works, and all sessions of the user have been ended."
    )
    return 0


def _new_setup_code(store: Store, config: ServerConfig, username: str) -> int:
    """Replace the setup code of an account that was never set up."""
    now = now_ms()
    expires = now + int(config.setup_code_days * MS_PER_DAY)
    code = make_setup_code()
    if not store.replace_setup_code(username, code, expires, now):
        return _error(f"{username} is no longer waiting for setup; run it again")
    print(f"{username} has not redeemed the setup code yet.")
    print(f"new setup code for {username}: {code}")
    print(
        f"It is valid until {_time(expires)}; the previous setup code no longer works."
    )
    return 0


def set_disabled(store: Store, username: str, disabled: bool) -> int:
    if not store.set_disabled(username, disabled):
        return _error(f"there is no user {username}")
    state = "disabled" if disabled else "enabled"
    print(f"user {username} is now {state}")
    return 0


def set_staff(store: Store, username: str, staff: bool) -> int:
    if not store.set_staff(username, staff):
        return _error(f"there is no user {username}")
    state = "a staff account" if staff else "no longer a staff account"
    print(f"user {username} is now {state}")
    return 0


def set_display_name(store: Store, username: str, raw_name: str) -> int:
    name = raw_name.strip()
    problem = display_name_problem(name)
    if problem is not None:
        return _error(f"{problem}; nothing was changed")
    if not store.set_display_name(username, name):
        return _error(f"there is no user {username}")
    print(f"user {username} is now shown as {name}")
    return 0


# Roster import


def _taken_problems(
    rows: list[RosterRow], existing: dict[str, User]
) -> list[RosterProblem]:
    problems = []
    for row in rows:
        user = existing.get(row.username)
        if user is not None and not user.pending_setup:
            problems.append(
                RosterProblem(
                    row.line,
                    f"the username {row.username} is taken by an account that "
                    "is already set up; change the row's username, or remove "
                    "the row",
                )
            )
    return problems


def _report_problems(path: Path, problems: list[RosterProblem]) -> int:
    count = len(problems)
    rows = "row is" if count == 1 else "rows are"
    print(
        f"error: {count} {rows} invalid in {path}; nothing was imported:",
        file=sys.stderr,
    )
    for problem in sorted(problems, key=lambda item: item.line):
        print(f"  line {problem.line}: {problem.message}", file=sys.stderr)
    return 1


def import_users(
    store: Store, config: ServerConfig, path: Path, new_codes: bool
) -> int:
    """Create the pending accounts of a roster file, all of them or none."""
    try:
        rows, problems = read_roster(path)
    except RosterError as exc:
        return _error(f"{exc}; nothing was imported")
    existing = store.users_by_names(row.username for row in rows)
    problems += _taken_problems(rows, existing)
    if problems:
        return _report_problems(path, problems)

    entries = []
    for row in rows:
        pending = row.username in existing
        code = make_setup_code() if new_codes or not pending else None
        entries.append(
            RosterEntry(
                row.username, row.display_name, row.class_label, row.staff, code
            )
        )
    now = now_ms()
    expires = now + int(config.setup_code_days * MS_PER_DAY)
    try:
        store.import_users(entries, expires, now)
    except UsernameTaken as exc:
        return _error(
            f"the user {exc} was created or set up while the import ran; nothing "
            "was imported; run the import again"
        )

    codes = {item.user.username: item for item in store.setup_codes()}
    _print_import_table(rows, existing, codes, new_codes, now)
    _print_import_summary(
        rows, existing, new_codes, expires, config.resolved_data_dir()
    )
    return 0


def _import_note(
    row: RosterRow,
    existing: dict[str, User],
    code: SetupCode | None,
    new_codes: bool,
    now: int,
) -> str:
    user = existing.get(row.username)
    if user is None:
        return "new"
    note = "was pending"
    if (user.display_name, user.class_label, user.staff) != (
        row.display_name,
        row.class_label,
        row.staff,
    ):
        note += ", details updated"
    if new_codes:
        return note + ", new code"
    if code is not None and code.expires < now:
        return note + ", code EXPIRED (use --new-codes)"
    return note + ", code kept"


def _print_import_table(
    rows: list[RosterRow],
    existing: dict[str, User],
    codes: dict[str, SetupCode],
    new_codes: bool,
    now: int,
) -> None:
    table = []
    for row in rows:
        code = codes.get(row.username)
        role = "staff" if row.staff else "pupil"
        table.append(
            (
                row.username,
                row.display_name,
                row.class_label,
                role,
                code.code if code is not None else "-",
                _import_note(row, existing, code, new_codes, now),
            )
        )
    _print_table(
        ("username", "display name", "group", "role", "setup code", "note"), table
    )


def _accounts(count: int) -> str:
    return "1 account" if count == 1 else f"{count} accounts"


def _print_import_summary(
    rows: list[RosterRow],
    existing: dict[str, User],
    new_codes: bool,
    expires: int,
    data_dir: Path,
) -> None:
    created = sum(1 for row in rows if row.username not in existing)
    pending = len(rows) - created
    print()
    print(f"Created {_accounts(created)} waiting for setup.")
    if pending and new_codes:
        print(
            f"{_accounts(pending)} already waiting for setup got new codes, "
            "and their previous codes no longer work."
        )
    elif pending:
        print(
            f"{_accounts(pending)} already waiting for setup kept their codes "
            "(import with --new-codes to replace them)."
        )
    if created or new_codes:
        print(f"New codes are valid until {_time(expires)}.")
    print(
        "Print a sheet to hand out with: run_server.py admin --data-dir "
        f"{shlex.quote(str(data_dir))} export-codes"
    )


# Setup code sheet


def _server_hint(config: ServerConfig, server: str | None) -> str | None:
    """Return the address pupils connect to, or None when it is not known."""
    if server is not None:
        return server
    if config.host in _WILDCARD_HOSTS or config.port == 0:
        return None
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"{host}:{config.port}"


def _sheet_block(item: SetupCode, server: str | None) -> list[str]:
    user = item.user
    title = f"EncTalk account for {user.display_name}"
    if user.class_label:
        title += f" ({user.class_label})"
    expires = datetime.datetime.fromtimestamp(
        item.expires / 1000, tz=datetime.timezone.utc
    ).strftime("%Y-%m-%d")
    lines = [title, f"  Username:    {user.username}"]
    if server is not None:
        lines.append(f"  Server:      {server}")
    lines += [
        f"  Setup code:  {item.code}   (valid until {expires})",
        f"  {SETUP_INSTRUCTION}",
        SHEET_RULE,
    ]
    return lines


def export_codes(
    store: Store, config: ServerConfig, class_label: str | None, server: str | None
) -> int:
    """Print the setup codes of pending accounts as a sheet to cut into slips."""
    if class_label is not None and class_label not in store.class_labels():
        known = ", ".join(store.class_labels()) or "none"
        return _error(f"there is no group {class_label!r}; the groups are: {known}")
    now = now_ms()
    items = store.setup_codes(class_label)
    valid = [item for item in items if item.expires >= now]
    expired = [item for item in items if item.expires < now]
    if not items:
        scope = f" in group {class_label}" if class_label is not None else ""
        print(f"No account{scope} is waiting for setup.", file=sys.stderr)
        return 0

    hint = _server_hint(config, server)
    if valid:
        print(SHEET_RULE)
    for item in valid:
        print("\n".join(_sheet_block(item, hint)))
    if expired:
        names = ", ".join(item.user.username for item in expired)
        print(
            f"warning: {len(expired)} setup codes have expired and are not on the "
            f"sheet ({names}); issue new ones with import-users --new-codes FILE, "
            "or reset-password USER for one account",
            file=sys.stderr,
        )
    return 0


# Dispatch


def run_admin(args: argparse.Namespace, config: ServerConfig) -> int:
    """Run one admin command; return the process exit status."""
    data_dir = config.resolved_data_dir()
    store = _open_store(data_dir)
    try:
        return _run_on_store(store, config, args)
    except (StoreError, sqlite3.Error) as exc:
        return _error(f"cannot use the EncTalk database in {data_dir}: {exc}")
    finally:
        store.close()


def _run_on_store(store: Store, config: ServerConfig, args: argparse.Namespace) -> int:
    command = args.admin_command
    if command == "list-users":
        return list_users(store)
    if command == "import-users":
        return import_users(store, config, args.roster, args.new_codes)
    if command == "export-codes":
        return export_codes(store, config, args.group, args.server)
    name = _canonical(args.username)
    if command == "reset-password":
        return reset_password(store, config, name)
    if command == "disable":
        return set_disabled(store, name, True)
    if command == "enable":
        return set_disabled(store, name, False)
    if command == "set-staff":
        return set_staff(store, name, True)
    if command == "unset-staff":
        return set_staff(store, name, False)
    if command == "set-display-name":
        return set_display_name(store, name, args.display_name)
    raise SystemExit(f"error: unknown admin command {command!r}")
