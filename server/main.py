"""Command line of ``run_server.py``: run the server, or an admin command.

Every :class:`~server.config.ServerConfig` field is also a flag
(``max_frame_size`` is ``--max-frame-size``); flags override the
``--config`` TOML file, which overrides the defaults.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

from enctalk.version import version_text
from server.admin import run_admin
from server.app import Server
from server.backup import BackupError, create_backup, restore_backup
from server.certs import CertificateError
from server.config import (
    LOG_LEVELS,
    POLICY_CHOICES,
    ConfigError,
    ServerConfig,
    build_config,
    default_data_dir,
    setting_fields,
)
from server.lockfile import DataDirLock, DataDirLocked
from server.store import StoreError

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "Path | None": Path}


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for config_field in setting_fields():
        flag = "--" + config_field.name.replace("_", "-")
        default = config_field.default
        if config_field.name == "data_dir":
            default = default_data_dir()
        help_text = config_field.metadata["help"]
        if default is not None and default != "":
            help_text += f" (default: {default})"
        kind = _TYPES[str(config_field.type)]
        options: dict[str, Any] = {"default": None, "help": help_text, "type": kind}
        if config_field.name == "log_level":
            options["choices"] = LOG_LEVELS
            options["type"] = str.upper
        if config_field.name in ("group_creators", "direct_messages"):
            options["choices"] = POLICY_CHOICES
        parser.add_argument(flag, **options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_server.py",
        description="Run the EncTalk chat server, or manage its accounts.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML file of settings (the keys are the long option names with _); "
        "flags override it",
    )
    parser.add_argument(
        "--version", action="version", version=version_text("enctalk-server")
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="check the libraries, the crypto and TLS, then exit",
    )
    _add_setting_flags(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    admin = commands.add_parser(
        "admin",
        help="manage accounts in the data directory (the server may be running)",
        description="Manage accounts in the data directory of a server; "
        "the server may be running.",
    )
    admin.add_argument(
        "--data-dir", type=Path, default=argparse.SUPPRESS, help="server data directory"
    )
    admin.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="server TOML file"
    )
    actions = admin.add_subparsers(
        dest="admin_command", metavar="ACTION", required=True
    )
    actions.add_parser("list-users", help="list accounts with their devices and flags")
    for name, help_text in (
        (
            "reset-password",
            "print a one-time reset code and end the user's sessions (for an "
            "account waiting for setup: a new setup code)",
        ),
        ("disable", "block logins and end the user's live connections"),
        ("enable", "allow logins again"),
        ("set-staff", "mark the user as staff (a teacher) for the lab policy"),
        ("unset-staff", "remove the user's staff mark"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("username", metavar="USER")
    display_name = actions.add_parser(
        "set-display-name", help="set the name shown to the user's contacts"
    )
    display_name.add_argument("username", metavar="USER")
    display_name.add_argument(
        "display_name", metavar="NAME", help="1 to 64 characters, no control characters"
    )
    _add_roster_actions(actions)
    backup = actions.add_parser(
        "backup",
        help="copy the database (online), certificate, key and attachments to DEST",
    )
    backup.add_argument("destination", type=Path, metavar="DEST")
    restore = actions.add_parser(
        "restore",
        help="restore a backup into the data directory (the server must be stopped)",
    )
    restore.add_argument("source", type=Path, metavar="SRC")
    restore.add_argument(
        "--force",
        action="store_true",
        help="move a non-empty data directory aside to DIR.before-restore-TIME "
        "instead of stopping",
    )
    return parser


def _add_roster_actions(actions: Any) -> None:
    roster = actions.add_parser(
        "import-users",
        help="create accounts waiting for setup from a CSV roster, and print "
        "their setup codes",
        description="Create an account waiting for setup for each row of a CSV "
        "file with a header row: username, display_name, and optionally group "
        "(a class label such as 7B) and role (staff or pupil, default pupil). "
        "Every row is checked first; if any is invalid, nothing is imported. "
        "Rows of accounts that are already waiting for setup keep their codes "
        "unless --new-codes is given.",
    )
    roster.add_argument("roster", type=Path, metavar="FILE.csv")
    roster.add_argument(
        "--new-codes",
        action="store_true",
        help="give the listed accounts that are already waiting for setup new "
        "codes; their previous codes stop working",
    )
    export = actions.add_parser(
        "export-codes",
        help="print the setup codes of accounts waiting for setup as a sheet "
        "to hand out",
    )
    export.add_argument(
        "--group", metavar="LABEL", help="only the accounts of this group (class)"
    )
    export.add_argument(
        "--server",
        metavar="HOST[:PORT]",
        help="server address to print on the sheet (default: the configured "
        "host and port, unless the server listens on all interfaces)",
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``run_server.py``; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.self_test:
        from server.selftest import run_server_self_test

        return run_server_self_test(sys.stdout)
    overrides = {item.name: getattr(args, item.name, None) for item in setting_fields()}
    try:
        config = build_config(args.config, overrides)
    except ConfigError as exc:
        parser.error(str(exc))
    try:
        _configure_logging(config)
    except OSError as exc:
        parser.error(f"cannot open log_file {config.log_file}: {exc.strerror or exc}")
    if args.command == "admin" and args.admin_command in ("backup", "restore"):
        return run_backup_command(args, config.resolved_data_dir())
    if args.command == "admin":
        try:
            return run_admin(args, config)
        except BrokenPipeError:
            # The output went to a pager or "head" that stopped reading.
            # Python would report the pipe again at exit, so stdout is
            # pointed at /dev/null first.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    try:
        return _serve(config)
    except KeyboardInterrupt:
        return 130


def run_backup_command(args: argparse.Namespace, data_dir: Path) -> int:
    """Run ``admin backup`` or ``admin restore``; return the exit status."""
    try:
        if args.admin_command == "backup":
            manifest = create_backup(data_dir, args.destination)
            print(
                f"backed up {len(manifest['files'])} files from {data_dir} "
                f"to {args.destination}"
            )
            return 0
        moved_to = restore_backup(args.source, data_dir, args.force)
    except (BackupError, DataDirLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as exc:
        print(f"error: {args.admin_command} failed: {exc}", file=sys.stderr)
        return 1
    if moved_to is not None:
        print(f"moved the previous data directory to {moved_to}")
    print(f"restored {args.source} into {data_dir}")
    return 0


def _configure_logging(config: ServerConfig) -> None:
    """Log to standard error, or to ``log_file`` rotated by size."""
    if config.log_file is None:
        logging.basicConfig(
            level=config.log_level, format=LOG_FORMAT, stream=sys.stderr
        )
        return
    config.log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        config.log_file,
        maxBytes=config.log_max_bytes,
        backupCount=config.log_backup_count,
        encoding="utf-8",
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=config.log_level, handlers=[handler])


def _serve(config: Any) -> int:
    server = Server(config)
    # The lock lives as long as this process, so admin restore can tell
    # that a server runs on the data directory.
    lock = DataDirLock(server.data_dir)
    try:
        server.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock.acquire()
        server.prepare()
    except (CertificateError, StoreError, OSError) as exc:
        # Without a log_file the log is standard error too, and one line
        # there is enough.
        if config.log_file is not None:
            logger.error("cannot start the server: %s", exc)
        print(f"error: cannot start the server: {exc}", file=sys.stderr)
        return 1

    def on_signal(signum: int, frame: object) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        server.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"data directory: {server.data_dir}")
    print(f"certificate fingerprint: {server.fingerprint}")
    # Public, and the only way to read it for a service whose output is lost.
    logger.info("certificate fingerprint: %s", server.fingerprint)
    print(f"listening on {server.display_host}:{server.port}", flush=True)
    server.serve_forever()
    return 0
