"""Accounts and sessions: register, login, resume, logout, passwords, backups.

The server never receives a password. A client sends a 32-byte auth key, and
the server stores bcrypt over its base64 (44 bytes, inside bcrypt's
72-byte input limit). bcrypt runs here, in a worker thread. An unknown
username is checked against a dummy hash, so it costs the same time as a
wrong key and gets the same ``invalid_credentials`` error.

Throttling: failed attempts are counted per account and per client
address. After ``free`` failures (the settings ``login_free_failures`` and
``address_free_failures``) the next attempt must wait
``min(2 ** (failures - free), login_max_delay)`` seconds after the last
failure, or it gets ``rate_limited`` without being checked. A success
clears both counts, and counts older than a day are forgotten. With
``address_free_failures = 0`` addresses are not counted, for labs whose
machines share one address behind a NAT. ``register`` is limited per
address by a token bucket (``register_burst``, ``register_rate``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets

import bcrypt

from enctalk.protocol import InvalidUsername, b64, canonical_username, errors
from server.handlers.base import (
    MS_PER_DAY,
    HandlerError,
    Outcome,
    Request,
    Revocation,
    Services,
    Session,
    now_ms,
    require_session,
)
from server.store import User, UsernameTaken

logger = logging.getLogger(__name__)

# The throttle delay doubles per failure; past this exponent it is always
# at the maximum, and 2 ** exponent stays a small number.
MAX_DELAY_EXPONENT = 30
# The largest retry_after the protocol allows in an error frame.
MAX_RETRY_AFTER_S = 86_400
FORGET_FAILURES_MS = MS_PER_DAY
# Digits and upper-case letters without 0, 1, I, L, O and U, which are
# easy to misread or to mistype from a printed sheet.
RESET_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
# A setup code is 16 characters of the 30-character alphabet: 16 * log2(30),
# about 78.5 bits. Wrong codes are throttled like failed logins. At the
# default login_max_delay of 300 s that allows about 288 guesses a day per
# account, so 30 days of guessing succeed with a chance of about 2 ** -65.
SETUP_CODE_GROUPS = 4
SETUP_CODE_GROUP_LENGTH = 4


def new_token() -> tuple[bytes, bytes]:
    """Return a fresh login token and its SHA-256, the form the database keeps."""
    token = secrets.token_bytes(32)
    return token, hashlib.sha256(token).digest()


def hash_auth_key(auth_key: bytes, cost: int) -> bytes:
    return bcrypt.hashpw(b64(auth_key).encode("ascii"), bcrypt.gensalt(rounds=cost))


def check_auth_key(auth_key: bytes, auth_hash: bytes) -> bool:
    try:
        return bcrypt.checkpw(b64(auth_key).encode("ascii"), auth_hash)
    except ValueError:
        return False


def normalize_reset_code(code: str) -> str:
    """Return the code in upper case without separators or spaces."""
    return "".join(char for char in code.upper() if char.isalnum())


def hash_reset_code(code: str) -> bytes:
    return hashlib.sha256(normalize_reset_code(code).encode("utf-8")).digest()


def _username(raw: str) -> str:
    try:
        return canonical_username(raw)
    except InvalidUsername as exc:
        raise HandlerError(errors.INVALID_USERNAME, str(exc)) from exc


def _throttle_keys(services: Services, account_key: str, address: str) -> list[str]:
    """Return the failure counter keys of an attempt: account, maybe address."""
    if services.config.address_free_failures == 0:
        return [account_key]
    return [account_key, f"addr:{address}"]


def _free_failures(services: Services, key: str) -> int:
    if key.startswith("addr:"):
        return services.config.address_free_failures
    return services.config.login_free_failures


def _check_throttle(services: Services, keys: list[str]) -> None:
    now = now_ms()
    counts = services.store.failure_counts(keys, now - FORGET_FAILURES_MS)
    max_delay_ms = services.config.login_max_delay * 1000
    wait_ms = 0.0
    for key, (count, last) in counts.items():
        free = _free_failures(services, key)
        if count >= free:
            exponent = min(count - free, MAX_DELAY_EXPONENT)
            delay_ms = min(2**exponent * 1000, max_delay_ms)
            wait_ms = max(wait_ms, last + delay_ms - now)
    if wait_ms > 0:
        seconds = min(max(1, math.ceil(wait_ms / 1000)), MAX_RETRY_AFTER_S)
        raise HandlerError(
            errors.RATE_LIMITED,
            f"Too many failed attempts; try again in {seconds} seconds.",
            retry_after=seconds,
        )


def _record_failure(
    services: Services, keys: list[str], reason: str, user: User | None
) -> None:
    """Count a failed attempt; log it without the name of an unknown account.

    A name that matches no account may be a password typed into the
    username field, so the log names only the address then.
    """
    now = now_ms()
    services.store.record_failure(keys, now, now - FORGET_FAILURES_MS)
    shown = [
        "an unknown user" if user is None and key.startswith("user:") else key
        for key in keys
    ]
    logger.info("rejected attempt (%s) for %s", reason, ", ".join(shown))


def _verify(services: Services, user: User | None, auth_key: bytes) -> bool:
    """Check an auth key in about the same time whether or not ``user`` exists."""
    if user is None or not user.auth_hash:
        check_auth_key(auth_key, services.dummy_hash)
        return False
    return check_auth_key(auth_key, user.auth_hash)


def _contact_ids(services: Services, user_id: int) -> frozenset[int]:
    """Return the users who see this user's presence: contacts and group peers."""
    contacts = {item[0] for item in services.store.contacts(user_id)}
    return frozenset(contacts | services.store.group_peers(user_id))


def _own_device(services: Services, user_id: int, device_id: int | None) -> int | None:
    if device_id is None:
        return None
    return device_id if services.store.device_owner(device_id) == user_id else None


def _logged_in(
    services: Services, user: User, token_hash: bytes, device_id: int | None
) -> Outcome:
    return Outcome(
        session_changed=True,
        session=Session(user.id, user.username, device_id, token_hash),
        contact_ids=_contact_ids(services, user.id),
    )


def register(services: Services, request: Request) -> Outcome:
    fields = request.fields
    wait = min(services.register_buckets.take(request.address), MAX_RETRY_AFTER_S)
    if wait:
        logger.info(
            "rejected registration from %s: over the rate limit", request.address
        )
        raise HandlerError(
            errors.RATE_LIMITED,
            f"Too many new accounts from this address; try again in {wait} seconds.",
            retry_after=wait,
        )
    username = _username(fields["username"])
    existing = services.store.user_by_name(username)
    if existing is not None and existing.pending_setup:
        # A pupil who chose Register for the account a teacher made would
        # otherwise pick another name and end up with a second account.
        logger.info("rejected registration of %s: waiting for setup", username)
        raise HandlerError(
            errors.SETUP_REQUIRED,
            f"The account {username} was made for you by your school. Choose "
            "'I have a setup code' and type the code your teacher gave you.",
        )
    if existing is not None:
        raise HandlerError(errors.USERNAME_TAKEN, f"The username {username} is taken.")
    auth_hash = hash_auth_key(fields["auth_key"], services.config.bcrypt_cost)
    token, token_hash = new_token()
    try:
        user_id = services.store.create_user(
            username,
            auth_hash,
            fields["identity_key"],
            fields["backup"],
            token_hash,
            now_ms(),
        )
    except UsernameTaken as exc:
        raise HandlerError(
            errors.USERNAME_TAKEN, f"The username {username} is taken."
        ) from exc
    logger.info("registered user %s (id %d)", username, user_id)
    return Outcome(
        reply={"token": token, "username": username},
        session_changed=True,
        session=Session(user_id, username, None, token_hash),
    )


def login(services: Services, request: Request) -> Outcome:
    fields = request.fields
    username = _username(fields["username"])
    keys = _throttle_keys(services, f"user:{username}", request.address)
    _check_throttle(services, keys)
    user = services.store.user_by_name(username)
    if not _verify(services, user, fields["auth_key"]):
        # No password can work before setup, so this is not counted as a
        # failure. The reply reveals that the account is pending, but login
        # still hides whether a username is unknown or a password wrong.
        if user is not None and user.pending_setup:
            logger.info("rejected login of %s: setup code not redeemed", username)
            raise HandlerError(
                errors.SETUP_REQUIRED,
                "This account is waiting for its setup code. Choose 'I have a "
                "setup code' and type the code your teacher gave you.",
            )
        _record_failure(services, keys, "invalid credentials", user)
        raise HandlerError(
            errors.INVALID_CREDENTIALS, "The username or password is wrong."
        )
    assert user is not None
    services.store.clear_failures(keys)
    if user.disabled:
        logger.info("rejected login of disabled user %s", username)
        raise HandlerError(errors.ACCOUNT_DISABLED, "This account is disabled.")
    device_id = _own_device(services, user.id, fields["device_id"])
    token, token_hash = new_token()
    services.store.create_session(token_hash, user.id, device_id, now_ms())
    outcome = _logged_in(services, user, token_hash, device_id)
    outcome.reply = {
        "token": token,
        "username": user.username,
        "identity_key": user.identity_key,
        "backup": user.backup,
        "backup_stale": user.backup_stale,
        "device_id": device_id,
    }
    return outcome


def resume(services: Services, request: Request) -> Outcome:
    fields = request.fields
    token_hash = hashlib.sha256(fields["token"]).digest()
    found = services.store.session(token_hash)
    now = now_ms()
    expired_before = now - int(services.config.session_expiry_days * MS_PER_DAY)
    if found is None:
        raise HandlerError(errors.INVALID_SESSION, "The session is unknown or revoked.")
    user, stored_device, last_used = found
    if last_used < expired_before:
        services.store.delete_session(token_hash)
        raise HandlerError(errors.INVALID_SESSION, "The session expired; log in again.")
    if user.disabled:
        raise HandlerError(errors.ACCOUNT_DISABLED, "This account is disabled.")
    wanted = fields["device_id"] if fields["device_id"] is not None else stored_device
    device_id = _own_device(services, user.id, wanted)
    services.store.use_session(token_hash, device_id, now)
    outcome = _logged_in(services, user, token_hash, device_id)
    outcome.reply = {
        "username": user.username,
        "identity_key": user.identity_key,
        "device_id": device_id,
    }
    return outcome


def logout(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    services.store.delete_session(session.token_hash)
    return Outcome(reply={}, session_changed=True, session=None)


def change_password(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    fields = request.fields
    keys = _throttle_keys(services, f"user:{session.username}", request.address)
    _check_throttle(services, keys)

    user = services.store.user_by_id(session.user_id)
    if not _verify(services, user, fields["old_auth_key"]):
        _record_failure(services, keys, "wrong old password", user)
        raise HandlerError(errors.INVALID_CREDENTIALS, "The old password is wrong.")
    services.store.clear_failures(keys)

    auth_hash = hash_auth_key(fields["new_auth_key"], services.config.bcrypt_cost)
    token, token_hash = new_token()
    services.store.set_password(
        session.user_id,
        auth_hash,
        fields["backup"],
        token_hash,
        session.device_id,
        now_ms(),
    )

    logger.info("user %s changed the password", session.username)
    return Outcome(
        reply={"token": token},
        session_changed=True,
        session=Session(
            session.user_id, session.username, session.device_id, token_hash
        ),
        contact_ids=_contact_ids(services, session.user_id),
        revocation=Revocation(
            session.user_id, token_hash, "The password was changed on another device."
        ),
    )


def redeem_reset(services: Services, request: Request) -> Outcome:
    fields = request.fields
    username = _username(fields["username"])
    keys = _throttle_keys(services, f"reset:{username}", request.address)
    _check_throttle(services, keys)
    invalid = HandlerError(
        errors.INVALID_RESET_CODE, "The reset code is invalid or has expired."
    )

    user = services.store.user_by_name(username)
    if user is not None and user.pending_setup:
        return _redeem_setup(services, request, user, keys)
    pending = None if user is None else services.store.reset_code(user.id)
    code_hash = hash_reset_code(fields["code"])
    now = now_ms()
    if (
        user is None
        or pending is None
        or not hmac.compare_digest(pending[0], code_hash)
        or pending[1] < now
    ):
        _record_failure(services, keys, "invalid reset code", user)
        raise invalid

    if user.disabled:
        raise HandlerError(errors.ACCOUNT_DISABLED, "This account is disabled.")

    auth_hash = hash_auth_key(fields["new_auth_key"], services.config.bcrypt_cost)
    token, token_hash = new_token()
    redeemed, removed = services.store.redeem_reset(
        user.id,
        code_hash,
        auth_hash,
        fields["identity_key"],
        fields["backup"],
        token_hash,
        now_ms(),
    )
    if not redeemed:
        raise invalid

    services.store.clear_failures(keys)
    logger.info(
        "user %s redeemed a reset code (%d devices removed)", username, len(removed)
    )
    outcome = _logged_in(services, user, token_hash, None)
    outcome.reply = {"token": token, "username": username}
    outcome.revocation = Revocation(user.id, token_hash, "The password was reset.")
    outcome.removed_devices = removed
    return outcome


def _redeem_setup(
    services: Services, request: Request, user: User, keys: list[str]
) -> Outcome:
    """Finish an account imported from a roster with its setup code.

    Runs for ``redeem_reset`` on a pending account, with the same
    throttling as a reset code.
    """
    fields = request.fields
    stored = services.store.setup_code(user.id)
    typed_code = normalize_reset_code(fields["code"]).encode("utf-8")
    if (
        stored is None
        or not hmac.compare_digest(
            normalize_reset_code(stored[0]).encode("utf-8"), typed_code
        )
        or stored[1] < now_ms()
    ):
        _record_failure(services, keys, "invalid setup code", user)
        raise _invalid_setup_code()

    if user.disabled:
        raise HandlerError(errors.ACCOUNT_DISABLED, "This account is disabled.")

    auth_hash = hash_auth_key(fields["new_auth_key"], services.config.bcrypt_cost)
    token, token_hash = new_token()
    redeemed = services.store.redeem_setup(
        user.id,
        stored[0],
        auth_hash,
        fields["identity_key"],
        fields["backup"],
        token_hash,
        now_ms(),
    )
    if not redeemed:
        raise _invalid_setup_code()

    services.store.clear_failures(keys)
    logger.info("user %s redeemed the setup code", user.username)
    outcome = _logged_in(services, user, token_hash, None)
    outcome.reply = {"token": token, "username": user.username}
    return outcome


def _invalid_setup_code() -> HandlerError:
    return HandlerError(
        errors.INVALID_RESET_CODE,
        "The setup code is wrong or has expired. Check it, or ask your teacher "
        "for a new one.",
    )


def upload_backup(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    services.store.set_backup(session.user_id, request.fields["backup"])
    return Outcome(reply={})


def fetch_backup(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    user = services.store.user_by_id(session.user_id)
    if user is None:
        raise HandlerError(errors.INVALID_SESSION, "The account no longer exists.")
    return Outcome(reply={"backup": user.backup, "backup_stale": user.backup_stale})


def make_reset_code() -> str:
    """Return a one-time reset code: three groups of four unambiguous characters."""
    return _make_code(3, 4)


def make_setup_code() -> str:
    """Return a setup code: four groups of four unambiguous characters."""
    return _make_code(SETUP_CODE_GROUPS, SETUP_CODE_GROUP_LENGTH)


def _make_code(groups: int, length: int) -> str:
    parts = [
        "".join(secrets.choice(RESET_CODE_ALPHABET) for _ in range(length))
        for _ in range(groups)
    ]
    return "-".join(parts)
