"""Admin commands on a server's data directory: list, reset, disable, enable.

They open the same SQLite database as the server and may run while it
runs; SQLite's locking keeps both consistent. A running server closes the
live connections of a disabled or reset user at its next session check
(every ``revocation_check_interval`` seconds).
"""

from __future__ import annotations

import datetime
import sqlite3
import sys
from pathlib import Path

from enctalk.protocol import InvalidUsername, canonical_username
from server.handlers.accounts import hash_reset_code, make_reset_code
from server.handlers.base import now_ms
from server.store import DATABASE_FILE_NAME, Store, StoreError

RESET_CODE_HOURS = 24


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


def list_users(store: Store) -> int:
    users = store.list_users()
    if not users:
        print("no users")
        return 0
    print(f"{'username':<32}  {'created':<20}  devices  sessions  flags")
    for user, devices, sessions in users:
        flags = []
        if user.disabled:
            flags.append("disabled")
        if user.backup_stale:
            flags.append("backup-stale")
        if not user.auth_hash:
            flags.append("reset-pending")
        print(
            f"{user.username:<32}  {_time(user.created):<20}  {devices:>7}  "
            f"{sessions:>8}  {','.join(flags)}"
        )
    return 0


def reset_password(store: Store, username: str) -> int:
    code = make_reset_code()
    expires = now_ms() + RESET_CODE_HOURS * 3_600_000
    if not store.start_reset(username, hash_reset_code(code), expires):
        print(f"error: there is no user {username}", file=sys.stderr)
        return 1
    print(f"reset code for {username}: {code}")
    print(
        f"It is valid once, for {RESET_CODE_HOURS} hours. The old password no "
        "longer works, and all sessions of the user have been ended."
    )
    return 0


def set_disabled(store: Store, username: str, disabled: bool) -> int:
    if not store.set_disabled(username, disabled):
        print(f"error: there is no user {username}", file=sys.stderr)
        return 1
    state = "disabled" if disabled else "enabled"
    print(f"user {username} is now {state}")
    return 0


def run_admin(command: str, username: str | None, data_dir: Path) -> int:
    """Run one admin command; return the process exit status."""
    store = _open_store(data_dir)
    try:
        return _run_on_store(store, command, username)
    except (StoreError, sqlite3.Error) as exc:
        print(
            f"error: cannot read the EncTalk database in {data_dir}: {exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        store.close()


def _run_on_store(store: Store, command: str, username: str | None) -> int:
    if command == "list-users":
        return list_users(store)
    assert username is not None
    name = _canonical(username)
    if command == "reset-password":
        return reset_password(store, name)
    if command == "disable":
        return set_disabled(store, name, True)
    if command == "enable":
        return set_disabled(store, name, False)
    raise SystemExit(f"error: unknown admin command {command!r}")
