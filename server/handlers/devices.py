"""Devices and prekeys: register_device, upload_prekeys, fetch_bundles, lists.

The server checks that the account identity key (AIK) signed every device
identity key and signed prekey it stores, with the formats of
``enctalk.crypto.keys``, and rejects a bad one with ``invalid_signature``.
The fetching client still verifies them, since it must not trust the
server.
"""

from __future__ import annotations

import logging
from typing import Any

from enctalk.crypto.errors import SignatureError
from enctalk.crypto.keys import verify_device_key, verify_prekey
from enctalk.protocol import InvalidUsername, canonical_username, errors, make_push
from server.handlers.base import (
    HandlerError,
    Outcome,
    Request,
    Services,
    Session,
    now_ms,
    require_device,
    require_session,
)

logger = logging.getLogger(__name__)

# A device holding fewer one-time prekeys than this is asked to upload more.
PREKEYS_LOW = 20


def _signed_prekey(value: dict[str, Any]) -> tuple[int, bytes, bytes]:
    return value["id"], value["key"], value["signature"]


def _one_time_prekeys(values: list[dict[str, Any]]) -> list[tuple[int, bytes]]:
    return [(item["id"], item["key"]) for item in values]


def prekeys_low_frame(services: Services, remaining: int) -> bytes:
    return services.encode(make_push("prekeys_low", remaining=remaining))


def _account_identity_key(services: Services, session: Session) -> bytes:
    user = services.store.user_by_id(session.user_id)
    if user is None:
        raise HandlerError(errors.INVALID_SESSION, "The account no longer exists.")
    return user.identity_key


def _check_signed_prekey(
    aik: bytes, signed_prekey: tuple[int, bytes, bytes], session: Session
) -> None:
    prekey_id, key, signature = signed_prekey
    try:
        verify_prekey(aik, prekey_id, key, signature)
    except SignatureError as exc:
        logger.info(
            "user %s: rejected signed prekey %d: %s", session.username, prekey_id, exc
        )
        raise HandlerError(
            errors.INVALID_SIGNATURE,
            f"The signature of signed prekey {prekey_id} does not verify with the "
            "account identity key.",
        ) from exc


def register_device(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    fields = request.fields
    aik = _account_identity_key(services, session)
    try:
        verify_device_key(aik, fields["identity_key"], fields["signature"])
    except SignatureError as exc:
        logger.info("user %s: rejected device key: %s", session.username, exc)
        raise HandlerError(
            errors.INVALID_SIGNATURE,
            "The device key's signature does not verify with the account identity key.",
        ) from exc
    signed_prekey = _signed_prekey(fields["signed_prekey"])
    _check_signed_prekey(aik, signed_prekey, session)
    device_id = services.store.create_device(
        session.user_id,
        fields["name"],
        fields["identity_key"],
        fields["signature"],
        signed_prekey,
        _one_time_prekeys(fields["one_time_prekeys"]),
        session.token_hash,
        now_ms(),
    )
    logger.info("user %s registered device %d", session.username, device_id)
    return Outcome(
        reply={"device_id": device_id},
        session_changed=True,
        session=Session(
            session.user_id, session.username, device_id, session.token_hash
        ),
    )


def upload_prekeys(services: Services, request: Request) -> Outcome:
    session, device_id = require_device(request)
    fields = request.fields
    signed_prekey = None
    if fields["signed_prekey"] is not None:
        signed_prekey = _signed_prekey(fields["signed_prekey"])
        aik = _account_identity_key(services, session)
        _check_signed_prekey(aik, signed_prekey, session)
    held = services.store.upload_prekeys(
        device_id, signed_prekey, _one_time_prekeys(fields["one_time_prekeys"])
    )
    return Outcome(reply={"one_time_prekeys": held})


def fetch_bundles(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    outcome = Outcome()
    peers = services.store.group_peers(session.user_id)
    outcome.reply = _user_bundles(
        services, session, request.fields["username"], outcome, peers
    )
    return outcome


def fetch_bundle_set(services: Services, request: Request) -> Outcome:
    """Fetch the bundles of several users at once, for a group's first send."""
    session = require_session(request)
    outcome = Outcome()
    users = []
    peers = services.store.group_peers(session.user_id)
    for raw in dict.fromkeys(request.fields["usernames"]):
        # Accounts still waiting for their setup code have no keys, and
        # strangers get none: both are left out.
        bundles = _user_bundles(services, session, raw, outcome, peers, True)
        if bundles is not None:
            users.append(bundles)
    outcome.reply = {"users": users}
    return outcome


def lookup_identities(services: Services, request: Request) -> Outcome:
    """Return the AIKs of the named users; unknown names are left out.

    Clients check the signatures of group operations and group members'
    messages with these keys, also for members who are not contacts.
    """
    require_session(request)
    users = []
    for raw in dict.fromkeys(request.fields["usernames"]):
        try:
            username = canonical_username(raw)
        except InvalidUsername:
            continue
        user = services.store.user_by_name(username)
        if user is not None and not user.pending_setup:
            users.append(
                {
                    "username": user.username,
                    "identity_key": user.identity_key,
                    "display_name": user.display_name or user.username,
                }
            )
    return Outcome(reply={"users": users})


def _user_bundles(
    services: Services,
    session: Session,
    raw_name: str,
    outcome: Outcome,
    peers: set[int],
    skip: bool = False,
) -> dict[str, Any] | None:
    """Take one bundle per active device of a user; queue prekeys_low frames.

    Each bundle uses up a one-time prekey, so only the account itself, its
    contacts and the members of its groups (``peers``) get them:
    ``not_a_contact`` for anyone else. An account waiting for setup has no
    keys: ``setup_required``. With ``skip`` both return None instead.
    """
    try:
        username = canonical_username(raw_name)
    except InvalidUsername as exc:
        raise HandlerError(errors.INVALID_USERNAME, str(exc)) from exc
    user = services.store.user_by_name(username)
    if user is None:
        raise HandlerError(errors.USER_NOT_FOUND, f"There is no user {username}.")
    if user.pending_setup:
        if skip:
            return None
        logger.info("no bundles for %s, which is waiting for setup", username)
        raise HandlerError(
            errors.SETUP_REQUIRED,
            f"{username} has not redeemed the setup code yet, so the account "
            "has no keys.",
        )
    related = (
        user.id == session.user_id
        or user.id in peers
        or services.store.is_contact(session.user_id, user.id)
    )
    if not related:
        if skip:
            return None
        logger.info("no bundles of %s for %s: no contact", username, session.username)
        raise HandlerError(
            errors.NOT_A_CONTACT,
            f"{username} is neither a contact nor in a group with you, so the "
            "server does not hand out their keys.",
        )
    bundles = services.store.take_bundles(
        user.id,
        session.device_id,
        services.active_since,
        lambda device_id: services.may_take_prekey(session.user_id, device_id),
    )
    devices = []
    for bundle in bundles:
        one_time = None
        if bundle.one_time_prekey is not None:
            one_time = {
                "id": bundle.one_time_prekey[0],
                "key": bundle.one_time_prekey[1],
            }
        devices.append(
            {
                "device_id": bundle.device_id,
                "identity_key": bundle.identity_key,
                "signature": bundle.signature,
                "signed_prekey": {
                    "id": bundle.signed_prekey_id,
                    "key": bundle.signed_prekey,
                    "signature": bundle.signed_prekey_signature,
                },
                "one_time_prekey": one_time,
            }
        )
        if bundle.remaining < PREKEYS_LOW:
            outcome.device_frames.append(
                (bundle.device_id, prekeys_low_frame(services, bundle.remaining))
            )
    return {
        "username": user.username,
        "identity_key": user.identity_key,
        "devices": devices,
    }


def list_devices(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    active_since = services.active_since
    devices = [
        {
            "device_id": device.id,
            "name": device.name,
            "created": device.created,
            "last_seen": device.last_seen,
            "stale": device.last_seen < active_since,
            "current": device.id == session.device_id,
        }
        for device in services.store.list_devices(session.user_id)
    ]
    return Outcome(reply={"devices": devices})


def remove_device(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    device_id = request.fields["device_id"]
    if not services.store.remove_device(session.user_id, device_id):
        raise HandlerError(
            errors.DEVICE_NOT_FOUND, f"Device {device_id} is not one of your devices."
        )
    logger.info("user %s removed device %d", session.username, device_id)
    outcome = Outcome(reply={}, removed_devices=[device_id])
    if device_id == session.device_id:
        outcome.session_changed = True
        outcome.session = Session(
            session.user_id, session.username, None, session.token_hash
        )
    return outcome
