"""Server settings: defaults, the TOML config file and their checks.

:class:`ServerConfig` contains every setting, with its unit in the name or
the help text. :func:`build_config` combines the defaults, a TOML file
whose keys are the field names, and command-line flags, which override
the file. Unknown keys and values of the wrong type raise
:class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from enctalk.protocol import DEFAULT_MAX_FRAME_SIZE, HEADER_SIZE
from enctalk.protocol.announcement import (
    DEFAULT_DISCOVERY_PORT,
    MAX_SERVER_NAME_LENGTH,
)

DEFAULT_PORT = 5443
MIN_BCRYPT_COST = 4
MAX_BCRYPT_COST = 31
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DISCOVERY_MODES = ("auto", "on", "off")
# Values of the lab policy settings (server.policy).
POLICY_CHOICES = ("everyone", "staff")


class ConfigError(ValueError):
    """A setting is missing, unknown or out of range; the text names it."""


def default_data_dir() -> Path:
    """Return the platform's per-user data directory for the server."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "EncTalk" / "Server"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "EncTalk Server"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "enctalk-server"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ServerConfig:
    """Every server setting. Field names are also the TOML keys.

    The defaults are sized for a lab of a few hundred users on one modest
    machine: each idle connection costs tens of KiB, and the output
    buffer limits bound what a stalled reader can pin in memory.
    """

    host: str = field(
        default="", metadata=_help('address to listen on; "" means all interfaces')
    )
    port: int = field(
        default=DEFAULT_PORT,
        metadata=_help("TCP port to listen on; 0 picks a free one"),
    )
    data_dir: Path | None = field(
        default=None,
        metadata=_help("directory for the database and certificate"),
    )
    cert_file: Path | None = field(
        default=None,
        metadata=_help("PEM certificate to use instead of the generated one"),
    )
    key_file: Path | None = field(
        default=None, metadata=_help("PEM private key for cert_file")
    )
    log_level: str = field(
        default="INFO", metadata=_help("log level: DEBUG, INFO, WARNING or ERROR")
    )
    log_file: Path | None = field(
        default=None,
        metadata=_help(
            "file to write the log to, rotated by size; unset means standard error"
        ),
    )
    log_max_bytes: int = field(
        default=10 * 1024 * 1024,
        metadata=_help("bytes after which log_file is rotated"),
    )
    log_backup_count: int = field(
        default=5, metadata=_help("rotated log files kept beside log_file")
    )
    max_frame_size: int = field(
        default=DEFAULT_MAX_FRAME_SIZE,
        metadata=_help("maximum frame body size in bytes"),
    )
    handshake_timeout: float = field(
        default=10.0, metadata=_help("seconds a client has to finish the TLS handshake")
    )
    idle_timeout: float = field(
        default=60.0,
        metadata=_help(
            "seconds without a complete frame before a connection is closed"
        ),
    )
    max_connections: int = field(
        default=2000, metadata=_help("maximum open connections in total")
    )
    max_connections_per_address: int = field(
        default=64,
        metadata=_help(
            "maximum open connections from one client IP address; for a lab "
            "behind one NAT address, set it to at least twice the number of "
            "machines, because a reconnecting client may hold its old "
            "connection until that times out"
        ),
    )
    register_burst: int = field(
        default=10,
        metadata=_help(
            "accounts one client IP address may register at once before "
            "register_rate applies; for a lab behind one NAT address, set it to "
            "the number of pupils who register in the same lesson"
        ),
    )
    register_rate: float = field(
        default=10.0,
        metadata=_help(
            "accounts per minute one client IP address may register after the burst"
        ),
    )
    login_free_failures: int = field(
        default=3,
        metadata=_help(
            "failed logins (or reset codes) per account before each further "
            "attempt must wait; the wait starts at 1 second and doubles with "
            "each failure, up to login_max_delay"
        ),
    )
    address_free_failures: int = field(
        default=3,
        metadata=_help(
            "failed logins (or reset codes) from one client IP address before "
            "its attempts must wait in the same way, or 0 to throttle by account "
            "only; behind a NAT every pupil shares one address, so set it to "
            "about 10 per pupil, or to 0"
        ),
    )
    login_max_delay: float = field(
        default=300.0,
        metadata=_help(
            "seconds a throttled login must wait at most after the last failure"
        ),
    )
    request_rate: float = field(
        default=20.0,
        metadata=_help("sustained requests per second allowed on one connection"),
    )
    request_burst: int = field(
        default=60,
        metadata=_help(
            "requests one connection may send at once before the rate applies"
        ),
    )
    output_soft_limit: int = field(
        default=1024 * 1024,
        metadata=_help(
            "bytes queued for a client above which the server stops reading from it"
        ),
    )
    output_hard_limit: int = field(
        default=4 * 1024 * 1024,
        metadata=_help(
            "bytes queued for a client above which the connection is dropped"
        ),
    )
    stale_device_days: float = field(
        default=30.0,
        metadata=_help("days without a connection after which a device is stale"),
    )
    session_expiry_days: float = field(
        default=30.0,
        metadata=_help("days without use after which a login token expires"),
    )
    worker_threads: int = field(
        default=4, metadata=_help("threads running bcrypt and database work")
    )
    bcrypt_cost: int = field(
        default=12, metadata=_help("bcrypt cost factor (log2 rounds), 4 to 31")
    )
    # A 5-minute mono WAV is 9.6 MB at 16 kHz and 28.8 MB at 48 kHz.
    max_attachment_size: int = field(
        default=64 * 1024 * 1024,
        metadata=_help("maximum size in bytes of one encrypted attachment"),
    )
    attachment_quota: int = field(
        default=512 * 1024 * 1024,
        metadata=_help(
            "bytes of attachments one user may have stored on the server at once"
        ),
    )
    message_quota: int = field(
        default=64 * 1024 * 1024,
        metadata=_help(
            "bytes of message payloads one user may have queued on the server "
            "and not yet delivered to every recipient device"
        ),
    )
    max_queued_items: int = field(
        default=10_000,
        metadata=_help("maximum number of items waiting in one device's queue"),
    )
    attachment_retention_days: float = field(
        default=30.0,
        metadata=_help(
            "days after which an attachment is deleted even if not every "
            "recipient fetched it"
        ),
    )
    revocation_check_interval: float = field(
        default=2.0,
        metadata=_help(
            "seconds between checks that live sessions are not revoked or disabled"
        ),
    )
    setup_code_days: float = field(
        default=30.0,
        metadata=_help(
            "days a setup code printed by admin import-users stays valid; "
            "after that, issue a new one with import-users --new-codes"
        ),
    )
    group_creators: str = field(
        default="everyone",
        metadata=_help(
            "who may create group chats: everyone, or staff (only accounts "
            "marked as staff)"
        ),
    )
    direct_messages: str = field(
        default="everyone",
        metadata=_help(
            "who may message whom directly: everyone, or staff (an account "
            "that is not staff may add and message only staff accounts; staff "
            "may message anyone)"
        ),
    )
    discovery: str = field(
        default="auto",
        metadata=_help(
            "announce the server on the LAN by UDP broadcast: auto (only when "
            "host is all interfaces or a non-loopback IPv4 address), on or off; "
            "a loopback host is never announced"
        ),
    )
    discovery_port: int = field(
        default=DEFAULT_DISCOVERY_PORT,
        metadata=_help("UDP port the announcements are sent to"),
    )
    discovery_interval: float = field(
        default=5.0, metadata=_help("seconds between two announcements")
    )
    server_name: str = field(
        default="",
        metadata=_help(
            "name shown to clients that find the server on the LAN; "
            "unset means the host name"
        ),
    )

    def resolved_data_dir(self) -> Path:
        """Return ``data_dir``, or the platform default when it is unset."""
        return self.data_dir if self.data_dir is not None else default_data_dir()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value out of its allowed range."""
        _check_range("port", self.port, 0, 65535)
        _check_range("max_frame_size", self.max_frame_size, 64, 2**32 - 1)
        _check_positive("handshake_timeout", self.handshake_timeout)
        _check_positive("idle_timeout", self.idle_timeout)
        _check_range("max_connections", self.max_connections, 1, 1_000_000)
        _check_range(
            "max_connections_per_address",
            self.max_connections_per_address,
            1,
            1_000_000,
        )
        _check_positive("request_rate", self.request_rate)
        _check_range("register_burst", self.register_burst, 1, 1_000_000)
        _check_positive("register_rate", self.register_rate)
        _check_range("login_free_failures", self.login_free_failures, 1, 1_000_000)
        _check_range("address_free_failures", self.address_free_failures, 0, 1_000_000)
        _check_positive("login_max_delay", self.login_max_delay)
        _check_range("request_burst", self.request_burst, 1, 1_000_000)
        _check_range("output_soft_limit", self.output_soft_limit, 1, 2**40)
        smallest_hard = self.max_frame_size + HEADER_SIZE + 64 * 1024
        if self.output_hard_limit < smallest_hard:
            raise ConfigError(
                f"output_hard_limit must be at least {smallest_hard} bytes "
                "(max_frame_size plus 64 KiB), so one frame always fits"
            )
        if self.output_soft_limit > self.output_hard_limit:
            raise ConfigError("output_soft_limit must not exceed output_hard_limit")
        _check_positive("stale_device_days", self.stale_device_days)
        _check_positive("session_expiry_days", self.session_expiry_days)
        _check_range("worker_threads", self.worker_threads, 1, 256)
        _check_range("bcrypt_cost", self.bcrypt_cost, MIN_BCRYPT_COST, MAX_BCRYPT_COST)
        _check_positive("revocation_check_interval", self.revocation_check_interval)
        _check_range("max_attachment_size", self.max_attachment_size, 1, 2**62)
        _check_range("attachment_quota", self.attachment_quota, 1, 2**62)
        _check_range("message_quota", self.message_quota, 1, 2**62)
        _check_range("max_queued_items", self.max_queued_items, 1, 2**62)
        _check_positive("attachment_retention_days", self.attachment_retention_days)
        _check_range("log_max_bytes", self.log_max_bytes, 1024, 2**40)
        _check_range("log_backup_count", self.log_backup_count, 0, 1000)
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, "
                f"not {self.log_level!r}"
            )
        _check_positive("setup_code_days", self.setup_code_days)
        _check_range("setup_code_days", self.setup_code_days, 0, 3650)
        for name in ("group_creators", "direct_messages"):
            value = getattr(self, name)
            if value not in POLICY_CHOICES:
                raise ConfigError(
                    f"{name} must be one of {', '.join(POLICY_CHOICES)}, not {value!r}"
                )
        if self.discovery not in DISCOVERY_MODES:
            raise ConfigError(
                f"discovery must be one of {', '.join(DISCOVERY_MODES)}, "
                f"not {self.discovery!r}"
            )
        _check_range("discovery_port", self.discovery_port, 1, 65535)
        _check_range("discovery_interval", self.discovery_interval, 0.1, 3600.0)
        if len(self.server_name) > MAX_SERVER_NAME_LENGTH or not (
            self.server_name.isprintable()
        ):
            raise ConfigError(
                f"server_name must be printable and at most "
                f"{MAX_SERVER_NAME_LENGTH} characters, not {self.server_name!r}"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("cert_file and key_file must be given together")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be greater than 0, not {value}")


def setting_fields() -> list[dataclasses.Field[Any]]:
    """Return the fields of :class:`ServerConfig` in declaration order."""
    return list(dataclasses.fields(ServerConfig))


def _field_kind(config_field: dataclasses.Field[Any]) -> type:
    default = config_field.default
    if config_field.name in ("data_dir", "cert_file", "key_file", "log_file"):
        return Path
    return type(default)


def coerce_value(name: str, value: Any) -> Any:
    """Convert a TOML or flag value for setting ``name`` to its Python type.

    Raises :class:`ConfigError` when ``name`` is unknown or ``value`` has the
    wrong type.
    """
    by_name = {item.name: item for item in setting_fields()}
    config_field = by_name.get(name)
    if config_field is None:
        known = ", ".join(sorted(by_name))
        raise ConfigError(f"unknown setting {name!r}; known settings: {known}")
    kind = _field_kind(config_field)
    if kind is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{name} must be a path string, not {value!r}")
        return Path(value).expanduser()
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, not {value!r}")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, not {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not {value!r}")
    return value


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file and return its settings, converted and checked.

    Relative paths in the file are taken relative to the file's directory.
    """
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    settings: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            converted = coerce_value(name, value)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if isinstance(converted, Path) and not converted.is_absolute():
            converted = path.parent / converted
        settings[name] = converted
    return settings


def build_config(
    config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> ServerConfig:
    """Combine defaults, an optional TOML file and overrides, then validate."""
    settings: dict[str, Any] = {}
    if config_file is not None:
        settings.update(load_config_file(config_file))
    for name, value in (overrides or {}).items():
        if value is not None:
            settings[name] = coerce_value(name, value)
    config = ServerConfig(**settings)
    config.log_level = config.log_level.upper()
    config.validate()
    return config
