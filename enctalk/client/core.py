"""The client core: accounts, devices, contacts and end-to-end messages.

:class:`Client` ties the pieces together. Three kinds of thread touch it:

- the caller's threads, which call the public methods; each blocks up to
  its timeout and never needs the caller to pump the network;
- the connection thread (``enctalk.client.connection``), which only moves
  frames and hands pushes and state changes to the worker's queue;
- the worker thread, which handles pushes in order (decrypt, store, ack),
  resumes the session after a reconnect, syncs and flushes the outbox.

One re-entrant lock guards every piece of secret state (vault contents,
device keys, ratchet sessions, history), so a method and the worker never
interleave halfway through a change. Every change is saved to the vault
before the client sends the server its ``ack``. A crash therefore loses
nothing, and at worst the server sends an item again, which is dropped.
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from enctalk.client import errors as codes
from enctalk.client import groups, messaging, receiving
from enctalk.client.address import format_server_address, parse_server_address
from enctalk.client.connection import CONNECTED, Connection
from enctalk.client.errors import ClientError, profile_damaged, save_failed
from enctalk.client.events import (
    CONNECTION_STATE,
    DELIVERY_UPDATED,
    ERROR,
    IDENTITY_CHANGED,
    PREKEYS_UPLOADED,
    SESSION_REVOKED,
    Event,
)
from enctalk.client.groups import GroupInfo
from enctalk.client.history import (
    FAILED,
    HISTORY_KEY_SIZE,
    SENDING,
    HistoryEntry,
    HistoryStore,
)
from enctalk.client.messaging import SendResult
from enctalk.client.passwords import check_new_password
from enctalk.client.profile import Profile, default_profile_dir
from enctalk.client.trust import ConfirmServer, ServerTrust, certificate_fingerprint
from enctalk.crypto import backup as key_backup
from enctalk.crypto import grouplog, safety
from enctalk.crypto import session as e2e
from enctalk.crypto.errors import (
    BackupError,
    CryptoError,
    VaultCorruptError,
    VaultError,
)
from enctalk.crypto.kdf import derive_auth_key
from enctalk.crypto.keys import (
    ONE_TIME_PREKEY_COUNT,
    ONE_TIME_PREKEY_LOW_WATER,
    AccountIdentity,
    DeviceKeys,
    x25519_public_bytes,
)
from enctalk.crypto.vault import Vault
from enctalk.protocol import InvalidUsername, canonical_username

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
# Times a group change is retried after the server's request rate limit.
MAX_RATE_LIMITED_RETRIES = 10
STATE_FORMAT = 1
RETRY_DELAY = 2.0
# Text only; the protocol's payload limit (768 KiB) is far larger.
MAX_TEXT_BYTES = 64 * 1024
# Maximum length of the code in a redeem_reset request (the request schema's).
MAX_CODE_LENGTH = 64

# The vault document's entries that the client reads without a check.
_STATE_TYPES: dict[str, type] = {
    "username": str,
    "contacts": dict,
    "devices": dict,
    "outbox": list,
    "last_seq": int,
}

_SESSION_ENDED = frozenset({"invalid_session", "account_disabled"})
_SESSION_ENDED_MESSAGES = {
    "account_disabled": "This account is disabled; ask your teacher.",
    "invalid_session": "Your session was ended (password changed or reset by an "
    "administrator); log in again.",
}


def session_ended_error(code: str) -> ClientError:
    """Return the ClientError for a session that ended with ``code``."""
    if code not in _SESSION_ENDED_MESSAGES:
        code = "invalid_session"
    return ClientError(code, _SESSION_ENDED_MESSAGES[code])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii"))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _username(raw: str) -> str:
    try:
        return canonical_username(raw)
    except InvalidUsername as exc:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise ClientError(
            "invalid_username", f"Invalid username {shown!r}: {exc}"
        ) from exc


def _check_text(body: str) -> None:
    if not body:
        raise ClientError(codes.INVALID_MESSAGE, "The message is empty.")
    size = len(body.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        raise ClientError(
            codes.INVALID_MESSAGE,
            f"The message is {size} bytes long; the maximum is {MAX_TEXT_BYTES} bytes.",
        )


def _group_id(raw: str) -> str:
    """Return the group id in ``raw`` (with or without "#"), or raise."""
    text = raw.strip().lower()
    if text.startswith("#"):
        text = text[1:]
    if len(text) != 32 or any(char not in "0123456789abcdef" for char in text):
        raise ClientError(
            codes.UNKNOWN_GROUP,
            f"{raw[:40]!r} is not a group id (32 hexadecimal digits).",
        )
    return text


def _setup_code(raw: str) -> str:
    """Return a setup code as typed, without spaces; raise for an impossible one.

    The server ignores separators and case. A code that the request schema
    would reject (empty, over 64 characters, control characters) raises
    ``invalid_reset_code`` here instead of ending the connection.
    """
    code = "".join(raw.split())
    if not code or len(code) > MAX_CODE_LENGTH or not code.isprintable():
        raise ClientError(
            "invalid_reset_code",
            "The setup code is missing or malformed; type it as printed, "
            "for example ABCD-EFGH-JKMN-PQRS.",
        )
    return code


def _default_device_name() -> str:
    try:
        return socket.gethostname()[:64] or "computer"
    except OSError:
        return "computer"


def _vault_damaged(path: Path, reason: str) -> ClientError:
    return profile_damaged(
        "vault file",
        path,
        reason,
        "Restore it from a backup, or start a new profile with --profile.",
    )


def _key_fingerprint(key: bytes) -> str:
    return certificate_fingerprint(key).removeprefix("SHA256:")[:47]


@dataclass(frozen=True)
class Contact:
    """A contact as the client knows it: presence, pinned AIK and whether verified.

    ``newly_added`` is true only for the result of an ``add_contact`` call
    that made the user a contact. ``display_name`` is the name the server
    sends (set by the administrator), or "" from a server without display
    names; :attr:`shown_name` falls back to the username.
    """

    username: str
    online: bool
    verified: bool
    identity_fingerprint: str
    newly_added: bool = False
    display_name: str = ""

    @property
    def shown_name(self) -> str:
        """Return the display name, or the username when there is none."""
        return self.display_name or self.username


@dataclass(frozen=True)
class ClassMember:
    """One account of a class list: username, display name, setup state.

    ``pending`` is true while the account waits for its setup code. Such an
    account has no keys yet, so it cannot be added as a contact.
    """

    username: str
    display_name: str
    pending: bool


class Client:
    """The EncTalk client core for one profile.

    ``profile_dir`` defaults to the platform's user data directory.
    ``server`` (``HOST[:PORT]``) is saved in the profile after the first
    successful connection to it; without it the saved address is used.
    An unknown server certificate is pinned when its fingerprint equals
    ``server_fingerprint``, when ``accept_new_server`` is true, or when
    ``confirm_server(address, fingerprint)`` returns true.
    ``use_system_trust`` checks a CA-signed server certificate against the
    system trust store instead of pinning.

    Events go to ``events`` (a new queue unless given). Every method is
    thread-safe and blocks at most about ``timeout`` seconds per server
    round trip; failures raise :class:`ClientError`.
    """

    def __init__(
        self,
        profile_dir: Path | str | None = None,
        *,
        server: str | None = None,
        accept_new_server: bool = False,
        server_fingerprint: str | None = None,
        confirm_server: ConfirmServer | None = None,
        use_system_trust: bool = False,
        events: queue.Queue[Event] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        device_name: str | None = None,
    ) -> None:
        self.profile = Profile(profile_dir or default_profile_dir())
        # Saved in the profile only once a connection to it succeeds, so a
        # mistyped address does not replace a working one.
        self._server_override = None if server is None else parse_server_address(server)
        self.events: queue.Queue[Event] = (
            events if events is not None else queue.Queue()
        )
        self.timeout = timeout
        self.device_name = device_name or _default_device_name()
        self._trust = ServerTrust(
            self.profile.known_servers,
            accept_new_server=accept_new_server,
            server_fingerprint=server_fingerprint,
            confirm_server=confirm_server,
            use_system_trust=use_system_trust,
            settings_path=self.profile.settings_path,
        )

        self._lock = threading.RLock()
        self._vault: Vault | None = None
        self._state: dict[str, Any] | None = None
        self._history: HistoryStore | None = None
        self._aik: AccountIdentity | None = None
        self._device: DeviceKeys | None = None
        self._sessions: dict[str, Any] = {}
        self._bundles: dict[str, Any] = {}
        # Queue items held behind a message whose sender's AIK is being
        # looked up, or None; see enctalk.client.receiving.
        self._held_pushes: list[tuple[str, dict[str, Any]]] | None = None
        self._identity_lookups = 0
        # Queue seqs stored locally but not acknowledged yet, because an
        # older seq is still missing; see receiving._acknowledge.
        self._stored_ahead: set[int] = set()

        self._connection: Connection | None = None
        self._authenticated = threading.Event()
        # Set once the sync and the outbox flush after an authentication ran.
        self._ready = threading.Event()
        self._session_error: ClientError | None = None
        # The outcome of each message that send_text may wait for, or the
        # ClientError that stopped it (a failed save).
        self._send_outcomes: dict[str, SendResult | ClientError] = {}
        self._send_done = threading.Condition(threading.Lock())

        self._tasks: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._closed = False
        self._worker = threading.Thread(
            target=self._work, name="enctalk-client-worker", daemon=True
        )
        self._worker.start()

    # Public API: profile and connection.

    @property
    def username(self) -> str | None:
        return self.profile.username

    @property
    def device_id(self) -> int | None:
        return self.profile.device_id

    @property
    def unlocked(self) -> bool:
        return self._state is not None

    @property
    def logged_in(self) -> bool:
        return self._state is not None and self._state.get("token") is not None

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.connected

    @property
    def session_error(self) -> ClientError | None:
        """Why the saved session ended (revoked, expired), or None."""
        return self._session_error

    @property
    def connection_error(self) -> ClientError | None:
        """The error of the last failed connection attempt, while disconnected."""
        connection = self._connection
        if connection is None or connection.connected:
            return None
        return connection.last_error

    def unlock(self, password: str) -> None:
        """Open the profile's vault with ``password``.

        Raises ClientError ``wrong_password`` when the password does not
        open it, and ``not_logged_in`` when the profile has no account yet.
        """
        with self._lock:
            if self._state is not None:
                return
            if not self.profile.has_vault():
                raise ClientError(
                    codes.NOT_LOGGED_IN,
                    f"The profile {self.profile.directory} has no account yet; "
                    "run register or login first.",
                )
            path = self.profile.vault_path
            try:
                vault = Vault.unlock(path, password)
                document = vault.load()
            except VaultCorruptError as exc:
                raise _vault_damaged(path, exc.reason) from exc
            except VaultError as exc:
                raise ClientError(
                    codes.WRONG_PASSWORD,
                    "Wrong password: it does not open this profile's local data.",
                ) from exc
            except OSError as exc:
                raise ClientError(
                    codes.PROFILE_INVALID,
                    f"Cannot read the profile's vault file {path}: "
                    f"{exc.strerror or exc}.",
                ) from exc
            self._load_state(vault, document)

    def connect(self, timeout: float | None = None) -> None:
        """Connect to the server, pinning its certificate on first contact.

        Returns once the TLS and ``hello`` exchange succeeded, and raises
        the first attempt's ClientError otherwise. After a failure the
        connection thread keeps retrying in the background, except after a
        certificate error. With a saved session the worker then resumes it.
        """
        timeout = self.timeout if timeout is None else timeout
        self._start_connection(timeout)
        assert self._connection is not None
        self._connection.wait_connected(timeout)
        self._remember_server()

    def start(self, timeout: float | None = None) -> None:
        """Start connecting in the background; return without waiting."""
        self._start_connection(self.timeout if timeout is None else timeout)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the saved session is resumed on a live connection.

        Raises ClientError: the resume error (``invalid_session`` when the
        session was revoked), the connection error, or ``timeout``. Methods
        call it before taking the client's lock, because the worker needs
        that lock to resume the session.
        """
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.check_session()
        if self._connection is None:
            self.connect(timeout)
        while not (self._authenticated.is_set() and self._ready.is_set()):
            if self._session_error is not None:
                raise self._session_error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                connection = self._connection
                if connection is not None and not connection.connected:
                    error = connection.last_error
                    if error is not None:
                        raise ClientError(error.code, error.message)
                raise ClientError(
                    codes.TIMEOUT,
                    f"Timed out after {timeout:g} s waiting for the server.",
                )
            self._ready.wait(min(remaining, 0.05))

    def check_session(self) -> None:
        """Raise ClientError unless the profile has a session that has not ended.

        The error is ``account_disabled`` or ``invalid_session`` once the
        server ended the session, here or in an earlier run, and
        ``not_logged_in`` without a session.
        """
        if self._session_error is not None:
            raise self._session_error
        if self.logged_in:
            return
        state = self._state
        ended = None if state is None else state.get("session_ended")
        if ended is not None:
            raise session_ended_error(str(ended))
        raise ClientError(
            codes.NOT_LOGGED_IN, "Not logged in; run login USERNAME first."
        )

    def end_session(self, code: str) -> None:
        """Forget the token after the server ended the session with ``code``."""
        with self._lock:
            self._authenticated.clear()
            self._session_error = session_ended_error(code)
            if self._state is not None:
                self._state["token"] = None
                self._state["session_ended"] = code
                self._save()

    def forget_server(self) -> str | None:
        """Remove the pinned certificate of the configured server.

        Returns the address whose pin was removed, or None if none was
        pinned. The next connection pins the server's certificate anew.
        """
        with self._lock:
            address = self._server_address()
            if address is None:
                raise ClientError(
                    codes.NO_SERVER,
                    "No server is configured; pass --server HOST[:PORT].",
                )
            name = format_server_address(*address)
            if self.profile.known_servers.pop(name, None) is None:
                return None
            self.profile.save()
            logger.info("removed the pinned certificate of %s", name)
            return name

    def _server_address(self) -> tuple[str, int] | None:
        """Return the ``server`` argument, else the address saved in the profile."""
        return self._server_override or self.profile.server

    def _remember_server(self) -> None:
        """Save the ``server`` argument in the profile after a connection to it."""
        address = self._server_override
        if address is None:
            return
        with self._lock:
            if self.profile.server == address:
                return
            self.profile.server = address
            self.profile.save()
        logger.info("saved server address %s", format_server_address(*address))

    def close(self) -> None:
        """Stop the connection and the worker and close the history; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._connection is not None:
            self._connection.close()
        self._tasks.put(("stop",))
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout=10)
        with self._lock:
            if self._history is not None:
                self._history.close()
                self._history = None

    # Public API: accounts.

    def register(self, username: str, password: str) -> str:
        """Create an account with a new AIK and register this device.

        Returns the canonical username. Raises ClientError for a weak
        password (``weak_password``), a taken name (``username_taken``) or
        a profile that already contains an account (``profile_invalid``).
        """
        name = _username(username)
        check_new_password(password, name)
        with self._lock:
            self._check_profile_free(name)
            self.connect()
            auth_key = derive_auth_key(password, name)
            aik = AccountIdentity.generate()
            backup = key_backup.encrypt_backup(aik.private_bytes(), password, name)
            reply = self._request(
                "register",
                username=name,
                auth_key=auth_key,
                identity_key=aik.public_bytes(),
                backup=backup,
            )
            name = reply["username"]
            self._create_state(password, name, aik, reply["token"])
            self._register_device()
            self._ready.clear()
            self._authenticated.set()
        self._tasks.put(("authenticated",))
        logger.info("registered account %s, device %s", name, self.device_id)
        return str(name)

    def login(self, username: str, password: str) -> str:
        """Log in; on a new profile also restore the AIK and register a device.

        The AIK comes from the server's key backup, decrypted with the
        password, so safety numbers stay the same on every device. Returns
        the canonical username. Raises ClientError ``invalid_credentials``
        for a wrong username or password.
        """
        name = _username(username)
        with self._lock:
            same_account = self.profile.username == name and self.profile.has_vault()
            if not same_account:
                self._check_profile_free(name)
            self.connect()
            if same_account and self._state is None:
                try:
                    self.unlock(password)
                except ClientError as exc:
                    if exc.code != codes.WRONG_PASSWORD:
                        raise
                    # The vault stays locked: the password may have changed
                    # on another device. The server decides below.
            auth_key = derive_auth_key(password, name)
            device_id = self.profile.device_id if self._state is not None else None
            reply = self._request(
                "login", username=name, auth_key=auth_key, device_id=device_id
            )
            name = reply["username"]
            if self._state is None:
                if same_account:
                    self._set_aside_old_profile()
                aik = self._restore_identity(reply, password, name)
                self._create_state(password, name, aik, reply["token"])
            else:
                self._state["token"] = _b64(reply["token"])
                self._state.pop("session_ended", None)
                if reply["backup_stale"]:
                    self._upload_backup(password, name)
            self._finish_authentication(reply["device_id"])
        self._tasks.put(("authenticated",))
        logger.info("logged in as %s, device %s", name, self.device_id)
        return str(name)

    def _finish_authentication(self, bound_device_id: int | None) -> None:
        """Register a device if the server bound none, save, and mark the session live.

        The caller holds ``self._lock`` and queues the "authenticated" task
        after releasing it.
        """
        if bound_device_id is None or self._device is None:
            self._register_device()
        self._save()
        self._session_error = None
        self._ready.clear()
        self._authenticated.set()

    def logout(self) -> None:
        """Revoke this session on the server and forget its token.

        The keys and history stay in the profile, so a later login reuses
        this device.
        """
        with self._lock:
            self._require_state()
            try:
                if self.connected and self._authenticated.is_set():
                    self._request("logout")
            finally:
                assert self._state is not None
                self._state["token"] = None
                self._save()
                self._authenticated.clear()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def change_password(self, old_password: str, new_password: str) -> None:
        """Change the password: new auth key, backup re-encrypted, vault rewrapped.

        Every other session of the account is revoked by the server.
        """
        self.wait_ready()
        with self._lock:
            name = self._require_username()
            check_new_password(new_password, name)
            old_key = derive_auth_key(old_password, name)
            new_key = derive_auth_key(new_password, name)
            assert self._aik is not None and self._vault is not None
            backup = key_backup.encrypt_backup(
                self._aik.private_bytes(), new_password, name
            )
            reply = self._request(
                "change_password",
                old_auth_key=old_key,
                new_auth_key=new_key,
                backup=backup,
            )
            assert self._state is not None
            # Rewrap first: a crash in between then leaves a vault that opens
            # with the password the server now accepts.
            self._vault.rewrap(new_password)
            self._state["token"] = _b64(reply["token"])
            self._save()
        logger.info("changed the password of %s", name)

    def redeem_reset(
        self,
        username: str,
        code: str,
        new_password: str,
        old_password: str | None = None,
    ) -> bool:
        """Redeem an administrator's reset code and set ``new_password``.

        Keeps the AIK when this client has it: already unlocked, or the
        vault opens with ``old_password``. Otherwise makes a new AIK, which
        contacts see as a key change. Returns True when the AIK was kept.
        """
        name = _username(username)
        check_new_password(new_password, name)
        with self._lock:
            self.connect()
            if (
                self._state is None
                and old_password is not None
                and self.profile.username == name
                and self.profile.has_vault()
            ):
                self.unlock(old_password)
            kept = self._aik is not None and self.profile.username == name
            aik = (
                self._aik
                if kept and self._aik is not None
                else AccountIdentity.generate()
            )
            auth_key = derive_auth_key(new_password, name)
            backup = key_backup.encrypt_backup(aik.private_bytes(), new_password, name)
            reply = self._request(
                "redeem_reset",
                username=name,
                code=code,
                new_auth_key=auth_key,
                identity_key=aik.public_bytes(),
                backup=backup,
            )
            if kept:
                assert self._vault is not None and self._state is not None
                self._vault.rewrap(new_password)
            else:
                if self.profile.has_vault():
                    self._set_aside_old_profile()
                self._create_state(new_password, reply["username"], aik, reply["token"])
            # Bind this connection to the device; the auth key is already derived.
            login = self._request(
                "login",
                username=name,
                auth_key=auth_key,
                device_id=self.profile.device_id if kept else None,
            )
            assert self._state is not None
            self._state["token"] = _b64(login["token"])
            self._state.pop("session_ended", None)
            self._finish_authentication(login["device_id"])
        self._tasks.put(("authenticated",))
        return kept

    def redeem_setup(self, username: str, code: str, new_password: str) -> str:
        """Set up an account that an administrator imported from a class roster.

        Redeems the one-time setup code through ``redeem_reset``, sets
        ``new_password``, makes the account identity key and registers this
        device. Returns the canonical username. Raises ClientError
        ``invalid_reset_code`` for a wrong, used or expired code,
        ``weak_password``, or ``profile_invalid`` when the profile already
        contains an account.
        """
        name = _username(username)
        check_new_password(new_password, name)
        code = _setup_code(code)
        with self._lock:
            self._check_profile_free(name)
            self.redeem_reset(name, code, new_password)
        logger.info("set up account %s, device %s", name, self.device_id)
        return name

    # Public API: contacts and devices.

    def add_contact(self, username: str) -> Contact:
        """Add a contact (mutual) and pin its AIK; return it.

        The result's ``newly_added`` is false when ``username`` already was
        a contact.
        """
        name = _username(username)
        self.wait_ready()
        with self._lock:
            for item in self._request("list_contacts")["contacts"]:
                if item["username"] == name:
                    self._check_identity(name, item["identity_key"])
                    self._save()
                    return self._contact(name, item["online"], item["display_name"])
            reply = self._request("add_contact", username=name)
            self._check_identity(reply["username"], reply["identity_key"])
            self._save()
            contact = self._contact(
                reply["username"], reply["online"], reply["display_name"]
            )
            return replace(contact, newly_added=True)

    def contacts(self) -> list[Contact]:
        """Return the contact list from the server, with local verification flags."""
        self.wait_ready()
        with self._lock:
            reply = self._request("list_contacts")
            result = []
            for item in reply["contacts"]:
                self._check_identity(item["username"], item["identity_key"])
                result.append(
                    self._contact(
                        item["username"], item["online"], item["display_name"]
                    )
                )
            self._save()
            return result

    def list_classes(self) -> list[str]:
        """Return the class labels of the server's accounts, sorted.

        Only staff accounts may ask; others get ClientError ``not_allowed``.
        """
        self.wait_ready()
        with self._lock:
            return [str(label) for label in self._request("list_classes")["classes"]]

    def class_members(self, label: str) -> list[ClassMember]:
        """Return the accounts of the class ``label``, sorted by display name.

        An unknown label gives an empty list. Only staff accounts may ask;
        others get ClientError ``not_allowed``.
        """
        self.wait_ready()
        with self._lock:
            reply = self._request("class_members", group=label)
        return [
            ClassMember(item["username"], item["display_name"], item["pending"])
            for item in reply["members"]
        ]

    def devices(self) -> list[dict[str, Any]]:
        """Return the account's devices: device_id, name, created, last_seen,
        stale, current (times in ms since the epoch)."""
        self.wait_ready()
        with self._lock:
            return list(self._request("list_devices")["devices"])

    def remove_device(self, device_id: int) -> None:
        """Remove one of the account's devices (``device_not_found`` if unknown)."""
        self.wait_ready()
        with self._lock:
            if device_id == self.profile.device_id:
                raise ClientError(
                    codes.PROFILE_INVALID,
                    f"Device {device_id} is this device; log out instead.",
                )
            self._request("remove_device", device_id=device_id)
            messaging.forget_device(self, self._require_username(), device_id)
            self._save()

    def safety_number(self, username: str) -> str:
        """Return the formatted 60-digit safety number with ``username``.

        Computed from the two accounts' AIKs, so it is the same on every
        device. The contact's pinned AIK is used; it is fetched first if
        none is pinned yet.
        """
        name = _username(username)
        with self._lock:
            self._require_state()
            pinned = self._pinned_identity(name)
        if pinned is None:
            self.contacts()
        with self._lock:
            pinned = self._pinned_identity(name)
            if pinned is None:
                raise ClientError(
                    codes.UNKNOWN_CONTACT,
                    f"{name} is not a contact; add them first with add-contact.",
                )
            assert self._aik is not None
            digits = safety.safety_number(
                self._require_username(), self._aik.public_bytes(), name, pinned
            )
            return str(safety.format_safety_number(digits))

    def mark_verified(self, username: str, verified: bool = True) -> None:
        """Record that the user compared the safety number with ``username``."""
        name = _username(username)
        with self._lock:
            self._require_state()
            assert self._state is not None
            contact = self._state["contacts"].get(name)
            if contact is None:
                raise ClientError(
                    codes.UNKNOWN_CONTACT, f"{name} is not a contact; add them first."
                )
            contact["verified"] = verified
            self._save()

    # Public API: messages.

    def send_text(self, to: str, body: str, timeout: float | None = None) -> SendResult:
        """Queue a text message in the outbox and wait up to ``timeout`` for the
        server's acknowledgement.

        The message gets its UUID now and keeps it on every retry, so the
        server stores it once. Returns the outcome; ``"queued"`` means it
        stays in the outbox and goes out after a reconnect or restart.
        """
        name = _username(to)
        _check_text(body)
        if name == self.profile.username:
            raise ClientError(
                codes.INVALID_USERNAME, "You cannot send messages to yourself."
            )
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            self._require_state()
            self.check_session()
        self._require_contact(name, timeout)
        return self._queue_and_wait({"to": name, "body": body}, timeout)

    def send_group_text(
        self, group_id: str, body: str, timeout: float | None = None
    ) -> SendResult:
        """Queue a text message to every member of a group; wait as send_text.

        Raises ClientError ``not_allowed`` at once when this device's
        verified copy of the group does not let this account post
        (removed, muted, or read-only for members).
        """
        gid = _group_id(group_id)
        _check_text(body)
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            self.check_session()
            state = groups.require_group(self, gid)
            refusal = state.post_refusal(self._require_username())
            if refusal is not None:
                raise ClientError(codes.NOT_ALLOWED, refusal)
        item = {"to": groups.conversation_of(gid), "group": gid, "body": body}
        return self._queue_and_wait(item, timeout)

    def _queue_and_wait(self, fields: dict[str, Any], timeout: float) -> SendResult:
        """Put a new text message in the outbox and history; wait for its outcome."""
        message_id = str(uuid.uuid4())
        sent_at = _now_ms()
        conversation = fields["to"]
        with self._lock:
            state = self._require_state()
            self.check_session()
            me = self._require_username()
            item = {"message_id": message_id, "sent_at": sent_at, **fields}
            state["outbox"].append(item)
            try:
                self._save()
            except ClientError:
                state["outbox"].remove(item)
                raise
            # The outbox is saved first, so a failed history write leaves a
            # queued message rather than a history line that never goes out.
            entry = HistoryEntry(
                conversation=conversation,
                kind="text",
                direction="out",
                sender=me,
                body=fields["body"],
                message_id=message_id,
                server_seq=None,
                server_time=None,
                sent_at=sent_at,
                state=SENDING,
            )
            try:
                self._require_history().add(entry)
            except ClientError as exc:
                raise ClientError(
                    exc.code,
                    f"{exc.message} The message stays in the outbox and goes "
                    "out with the next command that connects.",
                ) from exc
        self._emit(
            DELIVERY_UPDATED,
            message_id=message_id,
            conversation=conversation,
            state=SENDING,
        )
        self._tasks.put(("flush",))
        return self.wait_for_send(message_id, timeout)

    def wait_for_send(self, message_id: str, timeout: float) -> SendResult:
        """Wait up to ``timeout`` for the outcome of a queued message."""
        deadline = time.monotonic() + timeout
        with self._send_done:
            while message_id not in self._send_outcomes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return SendResult(message_id, "queued")
                if self._session_error is not None:
                    # The message stays in the outbox for the next login.
                    raise self._session_error
                error = self.connection_error
                if error is not None and error.code.startswith("certificate_"):
                    # The connection thread has stopped; waiting cannot help.
                    raise error
                self._send_done.wait(min(remaining, 0.1))
            outcome = self._send_outcomes.pop(message_id)
        if isinstance(outcome, ClientError):
            raise outcome
        return outcome

    # Public API: groups.

    def create_group(self, name: str) -> str:
        """Create a group named ``name``, owned by this account; return its id."""
        clean = name.strip()
        if not clean:
            raise ClientError(codes.INVALID_MESSAGE, "A group needs a name.")
        self.wait_ready()
        with self._lock:
            return groups.create(self, clean)

    def groups(self) -> list[GroupInfo]:
        """Return the groups stored on this device, current ones first, by name.

        Groups this account has left or was removed from keep their
        history and have ``role`` None.
        """
        with self._lock:
            known = list(self._require_state().get("groups", {}))
            return sorted(
                (groups.info(self, gid) for gid in known),
                key=lambda info: (info.role is None, info.name.casefold()),
            )

    def display_names(self) -> dict[str, str]:
        """Return the display names this device has seen, by username."""
        with self._lock:
            return dict(self._require_state().get("display_names", {}))

    def group_info(self, group_id: str) -> GroupInfo:
        with self._lock:
            return groups.info(self, _group_id(group_id))

    def group_members(self, group_id: str) -> list[dict[str, Any]]:
        """Return the verified members and how they are shown.

        Each is a dict of username, display_name, role, muted, online and
        pending: the account has not redeemed its setup code, so it gets
        no messages until it has.

        Roles and mutes come from this device's verified log; online,
        pending and the display names come from the server.
        """
        gid = _group_id(group_id)
        self.wait_ready()
        with self._lock:
            groups.sync_log(self, gid)
            state = groups.require_group(self, gid)
            online: dict[str, bool] = {}
            pending: set[str] = set()
            if state.is_member(self._require_username()):
                reply = self._request("group_members", group_id=gid)
                online = {m["username"]: m["online"] for m in reply["members"]}
                pending = {m["username"] for m in reply["members"] if m["pending"]}
                groups.remember_names(self, reply["members"])
            names = self._require_state().get("display_names", {})
            self._save()
            order = {"owner": 0, "moderator": 1, "member": 2}
            return [
                {
                    "username": name,
                    "display_name": names.get(name, name),
                    "role": role,
                    "muted": name in state.muted,
                    "online": online.get(name, False),
                    "pending": name in pending,
                }
                for name, role in sorted(
                    state.roles.items(), key=lambda item: (order[item[1]], item[0])
                )
            ]

    def group_add(self, group_id: str, username: str) -> None:
        """Add ``username`` to a group (owner and moderators only)."""
        self._group_change(group_id, grouplog.ADD, _username(username))

    def group_add_class(self, group_id: str, label: str) -> list[str]:
        """Add every account of the roster class ``label`` not yet a member.

        Returns the usernames added, in the class list's order. Accounts
        still waiting for their setup code are added too; they get the
        messages sent after they have set up. Staff accounts only (the
        class list is theirs), and the moderators' right to add members.
        """
        gid = _group_id(group_id)
        members = self.class_members(label)
        if not members:
            raise ClientError(
                codes.UNKNOWN_CONTACT, f"The server has no class {label[:40]!r}."
            )
        with self._lock:
            current = groups.require_group(self, gid).roles
            groups.remember_names(
                self,
                [
                    {"username": m.username, "display_name": m.display_name}
                    for m in members
                ],
            )
        added: list[str] = []
        for member in members:
            if member.username in current:
                continue
            try:
                self.group_add(gid, member.username)
            except ClientError as exc:
                raise ClientError(
                    exc.code,
                    f"{len(added)} of the class were added; then adding "
                    f"{member.username} failed: {exc.message}",
                    details={"added": added},
                ) from exc
            added.append(member.username)
        return added

    def group_remove(self, group_id: str, username: str) -> None:
        """Remove ``username``; nobody encrypts to their devices from now on."""
        self._group_change(group_id, grouplog.REMOVE, _username(username))

    def group_leave(self, group_id: str) -> None:
        with self._lock:
            me = self._require_username()
        self._group_change(group_id, grouplog.LEAVE, me)

    def group_rename(self, group_id: str, name: str) -> None:
        self._group_change(group_id, grouplog.RENAME, value=name.strip())

    def group_set_role(self, group_id: str, username: str, role: str) -> None:
        """Make a member a ``moderator`` or an ordinary ``member`` (owner only)."""
        self._group_change(group_id, grouplog.SET_ROLE, _username(username), role)

    def group_mute(self, group_id: str, username: str, muted: bool = True) -> None:
        action = grouplog.MUTE if muted else grouplog.UNMUTE
        self._group_change(group_id, action, _username(username))

    def group_read_only(self, group_id: str, read_only: bool) -> None:
        value = "on" if read_only else "off"
        self._group_change(group_id, grouplog.READ_ONLY, value=value)

    def group_delete_message(self, group_id: str, message_id: str) -> None:
        """Delete a group message for everyone (its author or a moderator)."""
        gid = _group_id(group_id)
        with self._lock:
            entry = self._require_history().find(message_id)
            if entry is None or entry.conversation != groups.conversation_of(gid):
                raise ClientError(
                    codes.INVALID_MESSAGE,
                    f"This device has no message {message_id} in this group; "
                    "it may have been deleted already.",
                )
            value = grouplog.message_ref(entry.sender, message_id)
        self._group_change(gid, grouplog.DELETE, value=value)

    def _group_change(
        self, group_id: str, action: str, target: str = "", value: str = ""
    ) -> None:
        gid = _group_id(group_id)
        self.wait_ready()
        for _attempt in range(MAX_RATE_LIMITED_RETRIES):
            try:
                with self._lock:
                    groups.submit_op(self, gid, action, target, value)
                return
            except ClientError as exc:
                if exc.code != "rate_limited":
                    raise
                # Adding a whole class is many operations in a row; wait
                # outside the lock, so pushes are handled meanwhile.
                time.sleep(min(float(exc.retry_after or 1), RETRY_DELAY))
        raise ClientError(
            "rate_limited", "The server keeps refusing changes this fast; try later."
        )

    def _require_contact(self, name: str, timeout: float) -> None:
        """Raise ClientError ``unknown_contact`` unless ``name`` is a contact.

        A name missing from the local contact list is looked up on the
        server, because it may have become a contact on another device.
        """
        with self._lock:
            if name in self._require_state()["contacts"]:
                return
        try:
            self.wait_ready(timeout)
            listed = {contact.username for contact in self.contacts()}
        except ClientError as exc:
            if exc.code in _SESSION_ENDED or exc.code.startswith("certificate_"):
                raise
            raise ClientError(
                codes.UNKNOWN_CONTACT,
                f"{name} is not in the local contact list, and the server could "
                f"not be checked: {exc.message} Add them with add-contact once "
                "the server is reachable.",
            ) from exc
        if name not in listed:
            raise ClientError(
                codes.UNKNOWN_CONTACT,
                f"{name} is not a contact; add them first with add-contact.",
            )

    def history(
        self,
        username: str,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[HistoryEntry]:
        """Return the local conversation with ``username``, ordered by server_seq.

        A group's conversation is ``#`` and its id. ``limit`` keeps the
        newest entries; ``before_seq`` only those before the message with
        that server_seq (to page back).
        """
        if username.startswith("#"):
            name = groups.conversation_of(_group_id(username))
        else:
            name = _username(username)
        with self._lock:
            return self._require_history().conversation(name, limit, before_seq)

    def retry_send(self, message_id: str) -> None:
        """Put a failed outgoing message back in the outbox, with the same UUID.

        Raises ClientError ``invalid_message`` unless ``message_id`` is an
        outgoing message in the ``failed`` state. The outcome arrives as
        ``delivery_updated`` events.
        """
        with self._lock:
            state = self._require_state()
            history = self._require_history()
            entry = history.find(message_id)
            if entry is None or entry.direction != "out" or entry.state != FAILED:
                raise ClientError(
                    codes.INVALID_MESSAGE,
                    f"Message {message_id} is not a failed outgoing message.",
                )
            item = {
                "message_id": message_id,
                "to": entry.conversation,
                "body": entry.body,
                "sent_at": entry.sent_at or _now_ms(),
            }
            group_id = groups.group_of(entry.conversation)
            if group_id is not None:
                item["group"] = group_id
            state["outbox"].append(item)
            history.update(message_id, state=SENDING)
            self._save()
        self._emit(
            DELIVERY_UPDATED,
            message_id=message_id,
            conversation=entry.conversation,
            state=SENDING,
        )
        self._tasks.put(("flush",))

    def outbox(self) -> list[dict[str, Any]]:
        """Return the unsent messages: message_id, to, body, sent_at."""
        with self._lock:
            return [dict(item) for item in self._require_state()["outbox"]]

    # State: the vault contents.

    def _require_state(self) -> dict[str, Any]:
        if self._state is None:
            if self.profile.has_vault():
                raise ClientError(
                    codes.WRONG_PASSWORD, "The profile is locked; unlock it first."
                )
            raise ClientError(
                codes.NOT_LOGGED_IN, "Not logged in; run register or login first."
            )
        return self._state

    def _require_username(self) -> str:
        state = self._require_state()
        return str(state["username"])

    def _require_history(self) -> HistoryStore:
        self._require_state()
        assert self._history is not None
        return self._history

    def _check_profile_free(self, name: str) -> None:
        if self.profile.has_vault():
            raise ClientError(
                codes.PROFILE_INVALID,
                f"The profile {self.profile.directory} already holds the account "
                f"{self.profile.username}; use another --profile for {name}.",
            )

    def _set_aside_old_profile(self) -> None:
        """Rename a vault that no longer opens, so a fresh one can replace it."""
        suffix = time.strftime(".old-%Y%m%d-%H%M%S")
        for path in (self.profile.vault_path, self.profile.history_path):
            if path.exists():
                path.rename(path.with_name(path.name + suffix))
        logger.warning(
            "the local data of %s did not open with the current password and "
            "was set aside",
            self.profile.username,
        )
        self.profile.device_id = None

    def _create_state(
        self, password: str, name: str, aik: AccountIdentity, token: bytes
    ) -> None:
        vault = Vault.create(self.profile.vault_path, password)
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "username": name,
            "token": _b64(token),
            "aik": _b64(aik.private_bytes()),
            "device": None,
            "sessions": {},
            "devices": {},
            "contacts": {},
            "last_seq": 0,
            "outbox": [],
            "history_key": _b64(os.urandom(HISTORY_KEY_SIZE)),
        }
        self.profile.username = name
        self.profile.device_id = None
        self.profile.save()
        self._load_state(vault, state)
        self._save()

    def _load_state(self, vault: Vault, state: dict[str, Any]) -> None:
        for key, kind in _STATE_TYPES.items():
            if not isinstance(state.get(key), kind):
                reason = f"the {key!r} entry is missing or invalid"
                raise _vault_damaged(self.profile.vault_path, reason)
        try:
            self._aik = AccountIdentity.from_private_bytes(_unb64(state["aik"]))
            device = state.get("device")
            self._device = DeviceKeys.from_dict(device) if device else None
            self._sessions = {
                key: e2e.DeviceSession.from_dict(value)
                for key, value in state.get("sessions", {}).items()
            }
            history_key = _unb64(state["history_key"])
        except (KeyError, TypeError, ValueError, CryptoError) as exc:
            reason = "a stored key is invalid"
            raise _vault_damaged(self.profile.vault_path, reason) from exc
        self._vault = vault
        self._state = state
        if self._history is None:
            self._history = HistoryStore(self.profile.history_path, history_key)

    def _save(self) -> None:
        if self._state is None or self._vault is None:
            return
        state = self._state
        state["device"] = self._device.to_dict() if self._device else None
        state["sessions"] = {
            key: session.to_dict() for key, session in self._sessions.items()
        }
        try:
            self._vault.save(state)
        except OSError as exc:
            raise save_failed(self.profile.vault_path, exc) from exc

    def _restore_identity(
        self, reply: dict[str, Any], password: str, name: str
    ) -> AccountIdentity:
        try:
            private = key_backup.decrypt_backup(reply["backup"], password, name)
        except BackupError as exc:
            raise ClientError(
                codes.IDENTITY_INVALID,
                "The key backup on the server does not open with this password; "
                "after an administrator's reset, use redeem-reset.",
            ) from exc
        aik = AccountIdentity.from_private_bytes(private)
        if aik.public_bytes() != reply["identity_key"]:
            raise ClientError(
                codes.IDENTITY_INVALID,
                "The key backup does not match the account's identity key.",
            )
        return aik

    def _upload_backup(self, password: str, name: str) -> None:
        assert self._aik is not None
        backup = key_backup.encrypt_backup(self._aik.private_bytes(), password, name)
        self._request("upload_backup", backup=backup)
        logger.info("uploaded a fresh key backup for %s", name)

    # Devices and prekeys.

    def _register_device(self) -> None:
        assert self._aik is not None and self._state is not None
        device = DeviceKeys.generate(self._aik, ONE_TIME_PREKEY_COUNT)
        signed = device.signed_prekey_public()
        one_time = [
            {"id": prekey_id, "key": x25519_public_bytes(private)}
            for prekey_id, private in sorted(device.one_time_prekeys.items())
        ]
        reply = self._request(
            "register_device",
            name=self.device_name[:64],
            identity_key=device.identity_public(),
            signature=device.device_signature,
            signed_prekey=_signed_prekey_fields(signed),
            one_time_prekeys=one_time,
        )
        self._device = device
        self._sessions.clear()
        self._bundles.clear()
        self._state["devices"] = {}
        # A new device has a new queue, whose seqs start again at 1.
        self._state["last_seq"] = 0
        self._stored_ahead.clear()
        self.profile.device_id = reply["device_id"]
        self.profile.save()
        self._save()
        logger.info("registered device %s", reply["device_id"])

    def _maintain_prekeys(self) -> None:
        with self._lock:
            if self._device is None or self._aik is None:
                return
            now = int(time.time())
            signed = None
            if self._device.needs_signed_prekey_rotation(now):
                signed = _signed_prekey_fields(
                    self._device.rotate_signed_prekey(self._aik, now)
                )
                self._save()
            reply = self._request(
                "upload_prekeys", signed_prekey=signed, one_time_prekeys=[]
            )
            self._top_up_prekeys(reply["one_time_prekeys"])

    def _top_up_prekeys(self, remaining: int) -> None:
        if remaining >= ONE_TIME_PREKEY_LOW_WATER or self._device is None:
            return
        fresh = self._device.new_one_time_prekeys(ONE_TIME_PREKEY_COUNT - remaining)
        self._save()
        reply = self._request(
            "upload_prekeys",
            signed_prekey=None,
            one_time_prekeys=[{"id": i, "key": key} for i, key in fresh],
        )
        self._emit(PREKEYS_UPLOADED, count=reply["one_time_prekeys"])

    # Identity pins.

    def _pinned_identity(self, name: str) -> bytes | None:
        state = self._require_state()
        if name == state["username"]:
            assert self._aik is not None
            return self._aik.public_bytes()
        contact = state["contacts"].get(name)
        return _unb64(contact["identity_key"]) if contact else None

    def _check_identity(self, name: str, identity_key: bytes) -> None:
        """Pin ``identity_key`` for ``name`` on first use; report a change."""
        state = self._require_state()
        if name == state["username"]:
            assert self._aik is not None
            if identity_key != self._aik.public_bytes():
                raise ClientError(
                    codes.IDENTITY_INVALID,
                    "The server reports another identity key for this account.",
                )
            return

        contact = state["contacts"].get(name)
        if contact is None:
            state["contacts"][name] = {
                "identity_key": _b64(identity_key),
                "verified": False,
            }
            return
        old = _unb64(contact["identity_key"])
        if old == identity_key:
            return

        contact["identity_key"] = _b64(identity_key)
        contact["verified"] = False
        for key in [k for k in self._sessions if k.startswith(name + "/")]:
            del self._sessions[key]
        state["devices"].pop(name, None)

        old_fp, new_fp = _key_fingerprint(old), _key_fingerprint(identity_key)
        self._require_history().add(
            HistoryEntry(
                conversation=name,
                kind="notice",
                direction="in",
                sender=name,
                body=f"The identity key of {name} changed; compare the new "
                "safety number before trusting this conversation.",
                message_id=None,
                server_seq=None,
                server_time=_now_ms(),
                sent_at=None,
                state=None,
            )
        )
        logger.warning("identity key of %s changed", name)
        self._emit(
            IDENTITY_CHANGED,
            username=name,
            old_fingerprint=old_fp,
            new_fingerprint=new_fp,
        )

    def _contact(
        self, name: str, online: bool, display_name: str | None = None
    ) -> Contact:
        state = self._require_state()
        contact = state["contacts"].get(name, {})
        key = _unb64(contact["identity_key"]) if contact else b""
        return Contact(
            username=name,
            online=online,
            verified=bool(contact.get("verified")),
            identity_fingerprint=_key_fingerprint(key) if key else "",
            display_name=display_name or "",
        )

    # Network helpers.

    def _start_connection(self, timeout: float) -> None:
        with self._lock:
            if self._connection is not None:
                return
            address = self._server_address()
            if address is None:
                raise ClientError(
                    codes.NO_SERVER,
                    "No server is configured; pass --server HOST[:PORT].",
                )
            host, port = address
            if self._trust.ensure_pinned(host, port, timeout):
                self.profile.save()
            self._connection = Connection(
                host,
                port,
                self._trust,
                on_push=lambda kind, fields: self._tasks.put(("push", kind, fields)),
                on_state=lambda state, data: self._tasks.put(("state", state, data)),
                connect_timeout=timeout,
            )
            self._connection.start()

    def _request(self, kind: str, **fields: Any) -> dict[str, Any]:
        connection = self._connection
        if connection is None:
            raise ClientError(codes.CONNECTION_FAILED, "Not connected to the server.")
        return connection.request(kind, self.timeout, **fields)

    def _schedule(self, task: tuple[Any, ...], delay: float | None) -> None:
        """Queue ``task`` for the worker after ``delay`` seconds (a default if None)."""
        timer = threading.Timer(
            RETRY_DELAY if delay is None else max(delay, 0.1),
            self._tasks.put,
            args=(task,),
        )
        timer.daemon = True
        timer.start()

    def _emit(self, name: str, **data: Any) -> None:
        self.events.put(Event(name, data))

    # The worker thread.

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task[0] == "stop":
                return
            try:
                self._handle_task(task)
            except ClientError as exc:
                logger.warning("background %s failed: %s", task[0], exc.message)
                self._emit(ERROR, code=exc.code, message=exc.message)
            except Exception as exc:
                # The front end reports the ERROR event, so the traceback
                # goes to the debug log only.
                logger.warning("background %s failed: %r", task[0], exc)
                logger.debug("background %s failed", task[0], exc_info=True)
                self._emit(ERROR, code="internal_error", message=repr(exc))

    def _handle_task(self, task: tuple[Any, ...]) -> None:
        kind = task[0]
        if kind == "state":
            self._handle_connection_state(task[1], task[2])
        elif kind == "resume":
            self._resume_if_needed()
        elif kind == "authenticated":
            self._after_authenticated()
        elif kind == "flush":
            messaging.flush_outbox(self)
        elif kind == "push":
            receiving.handle_push(self, task[1], task[2])
        elif kind == "retry_held":
            receiving.retry_held_pushes(self)

    def _handle_connection_state(self, state: str, data: dict[str, Any]) -> None:
        if state != CONNECTED:
            self._authenticated.clear()
            self._ready.clear()
        self._emit(CONNECTION_STATE, state=state, **data)
        if state == CONNECTED:
            self._remember_server()
            self._resume_if_needed()

    def _resume_if_needed(self) -> None:
        if not self.connected or not self.logged_in or self._authenticated.is_set():
            return
        if self._resume():
            self._after_authenticated()

    def _resume(self) -> bool:
        with self._lock:
            state = self._state
            if state is None or state.get("token") is None:
                return False
            try:
                reply = self._request(
                    "resume",
                    token=_unb64(state["token"]),
                    device_id=self.profile.device_id,
                )
            except ClientError as exc:
                if exc.code in _SESSION_ENDED:
                    self.end_session(exc.code)
                    self._emit(SESSION_REVOKED, reason=exc.message)
                else:
                    logger.info("resume failed (%s); retrying", exc.code)
                    self._schedule(("resume",), exc.retry_after)
                return False
            if reply["device_id"] is None:
                logger.warning(
                    "device %s was removed; registering a new one",
                    self.profile.device_id,
                )
                self._register_device()
            self._session_error = None
            self._authenticated.set()
            return True

    def _after_authenticated(self) -> None:
        """Sync and flush the outbox, then let wait_ready return.

        Every command that waits for the session thus sends the queued
        messages first, in order, once per connection.
        """
        self._ready.clear()
        try:
            self._maintain_prekeys()
            with self._lock:
                # The sync resends every held item, because none was
                # acknowledged.
                receiving.drop_held_pushes(self)
                after = int(self._require_state()["last_seq"])
            self._request("sync", after=after)
            with self._lock:
                try:
                    groups.sync_all(self)
                finally:
                    self._save()
            messaging.flush_outbox(self)
        finally:
            self._ready.set()


def _signed_prekey_fields(signed: Any) -> dict[str, Any]:
    return {
        "id": signed["prekey_id"],
        "key": signed["public_key"],
        "signature": signed["signature"],
    }


__all__ = ["Client", "ClientError", "Contact", "GroupInfo", "SendResult"]
