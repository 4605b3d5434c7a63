"""The client profile: one directory per account and computer.

Layout, with the directory at mode 0700 and every file at 0600::

    settings.json     non-secret settings: server address, username,
                      device id and pinned server certificates
    vault             every secret (session token, account identity key,
                      device keys, ratchet sessions, contacts' pinned
                      identity keys, the outbox), encrypted under a key
                      derived from the password by ``enctalk.crypto.vault``
    history.sqlite3   the message history, each row sealed separately
                      (see ``enctalk.client.history``)

The default directory follows each platform's convention for per-user
application data, never the program's own folder, so a frozen build
keeps nothing next to its executable or in its temporary folder.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TypeGuard

from enctalk.client.errors import (
    PROFILE_INVALID,
    ClientError,
    profile_damaged,
    save_failed,
)

logger = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
VAULT_FILE = "vault"
HISTORY_FILE = "history.sqlite3"
SETTINGS_VERSION = 1
DEFAULT_PROFILE_NAME = "default"


def default_profile_dir(
    platform: str | None = None, environ: dict[str, str] | None = None
) -> Path:
    """Return the platform's per-user data directory for the default profile.

    Linux and other Unix: ``$XDG_DATA_HOME/enctalk/default``, else
    ``~/.local/share/enctalk/default``. Windows: ``%APPDATA%\\EncTalk\\default``.
    macOS: ``~/Library/Application Support/EncTalk/default``.
    """
    platform = sys.platform if platform is None else platform
    env = os.environ if environ is None else environ
    home = Path(env.get("HOME") or Path.home())
    if platform.startswith("win"):
        appdata = env.get("APPDATA")
        base = Path(appdata) if appdata else home / "AppData" / "Roaming"
        return base / "EncTalk" / DEFAULT_PROFILE_NAME
    if platform == "darwin":
        return (
            home / "Library" / "Application Support" / "EncTalk" / DEFAULT_PROFILE_NAME
        )
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base / "enctalk" / DEFAULT_PROFILE_NAME


def write_private_file(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, readable only by the owner."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(temp_name, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise


def _settings_problem(settings: dict[str, Any]) -> str | None:
    """Describe the first invalid value in ``settings``, or return None.

    A value that the client wrote itself can only be invalid in a damaged
    file, so it is reported rather than replaced by a default.
    """
    server = settings.get("server")
    if server is not None:
        if not isinstance(server, dict):
            return "the server address is not an object"
        host, port = server.get("host"), server.get("port")
        if not isinstance(host, str) or not host:
            return f"the server host {host!r} is not a host name"
        if not _is_int(port) or not 1 <= port <= 65535:
            return f"the server port {port!r} is not an integer from 1 to 65535"
    username = settings.get("username")
    if username is not None and not isinstance(username, str):
        return f"the username {username!r} is not a string"
    device_id = settings.get("device_id")
    if device_id is not None and not (_is_int(device_id) and device_id > 0):
        return f"the device id {device_id!r} is not a positive integer"
    if not isinstance(settings["known_servers"], dict):
        # Never reset to empty: that would drop every certificate pin.
        return "the pinned server certificates (known_servers) are not an object"
    return None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class Profile:
    """A profile directory and its non-secret settings.

    Creating the object creates the directory (mode 0700) if needed and
    reads ``settings.json``; nothing here touches a secret. Not thread-safe:
    the client core serializes access under its own lock.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory).expanduser()
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if os.name == "posix":
                os.chmod(self.directory, 0o700)
        except OSError as exc:
            raise ClientError(
                PROFILE_INVALID,
                f"Cannot create the profile directory {self.directory}: "
                f"{exc.strerror or exc}.",
            ) from exc
        self.settings: dict[str, Any] = self._read_settings()

    @property
    def settings_path(self) -> Path:
        return self.directory / SETTINGS_FILE

    @property
    def vault_path(self) -> Path:
        return self.directory / VAULT_FILE

    @property
    def history_path(self) -> Path:
        return self.directory / HISTORY_FILE

    def has_vault(self) -> bool:
        return self.vault_path.exists()

    def _read_settings(self) -> dict[str, Any]:
        try:
            raw = self.settings_path.read_bytes()
        except FileNotFoundError:
            return {"version": SETTINGS_VERSION, "known_servers": {}}
        except OSError as exc:
            raise ClientError(
                PROFILE_INVALID,
                f"Cannot read {self.settings_path}: {exc.strerror or exc}.",
            ) from exc
        try:
            settings = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ClientError(
                PROFILE_INVALID,
                f"{self.settings_path} is not valid JSON; move it away to start over.",
            ) from exc
        if not isinstance(settings, dict):
            raise ClientError(
                PROFILE_INVALID, f"{self.settings_path} does not contain an object."
            )
        settings.setdefault("known_servers", {})
        problem = _settings_problem(settings)
        if problem is not None:
            raise profile_damaged(
                "settings file",
                self.settings_path,
                problem,
                "Correct that value, restore the file from a backup, or start a "
                "new profile with --profile.",
            )
        return settings

    def save(self) -> None:
        """Write the settings file atomically; raise ClientError ``save_failed``."""
        data = json.dumps(self.settings, indent=2, sort_keys=True).encode("utf-8")
        try:
            write_private_file(self.settings_path, data + b"\n")
        except OSError as exc:
            raise save_failed(self.settings_path, exc) from exc

    # Typed accessors for the settings the client core uses.

    @property
    def server(self) -> tuple[str, int] | None:
        value = self.settings.get("server")
        if isinstance(value, dict):
            host, port = value.get("host"), value.get("port")
            if isinstance(host, str) and isinstance(port, int):
                return host, port
        return None

    @server.setter
    def server(self, address: tuple[str, int]) -> None:
        self.settings["server"] = {"host": address[0], "port": address[1]}

    @property
    def username(self) -> str | None:
        value = self.settings.get("username")
        return value if isinstance(value, str) else None

    @username.setter
    def username(self, value: str | None) -> None:
        self.settings["username"] = value

    @property
    def device_id(self) -> int | None:
        value = self.settings.get("device_id")
        return value if isinstance(value, int) else None

    @device_id.setter
    def device_id(self, value: int | None) -> None:
        self.settings["device_id"] = value

    @property
    def known_servers(self) -> dict[str, Any]:
        servers: dict[str, Any] = self.settings["known_servers"]
        return servers
