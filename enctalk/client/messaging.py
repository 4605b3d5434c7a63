"""Sending end-to-end messages: the outbox, envelopes and prekey bundles.

These functions take the :class:`~enctalk.client.core.Client` they work
for and run on its worker thread under the client's lock. Sending seals
the payload once, then encrypts its key material for every active device
of the recipient and of the sender's other devices, fetching and
verifying prekey bundles for devices without a session. Receiving is in
:mod:`enctalk.client.receiving`.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enctalk.client import errors as codes
from enctalk.client import groups
from enctalk.client.errors import ClientError
from enctalk.client.events import DELIVERY_UPDATED, ERROR
from enctalk.client.history import FAILED, SENT
from enctalk.crypto import session as e2e
from enctalk.crypto.errors import CryptoError
from enctalk.crypto.keys import verify_device_key, verify_prekey
from enctalk.crypto.x3dh import PreKeyBundle
from enctalk.protocol.schema import MAX_BUNDLE_USERS

if TYPE_CHECKING:
    from enctalk.client.core import Client

logger = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 4

# Server error codes that mean the recipient is not a contact, so the
# message is dropped from the history as well as from the outbox.
_NOT_A_CONTACT_ERRORS = frozenset({"not_a_contact", "user_not_found"})

# Server error codes after which resending the same message cannot help.
_PERMANENT_SEND_ERRORS = frozenset(
    {
        "not_a_contact",
        "user_not_found",
        "invalid_username",
        "invalid_frame",
        "message_id_conflict",
        "frame_too_large",
        "group_not_found",
        "muted",
        "read_only",
        "not_allowed",
        codes.NOT_ALLOWED,
        codes.UNKNOWN_GROUP,
        codes.IDENTITY_INVALID,
    }
)


@dataclass(frozen=True)
class SendResult:
    """The outcome of a message handed to :meth:`Client.send_text`.

    ``state`` is ``"sent"`` (the server stored it), ``"queued"`` (in the
    outbox, to go out after a reconnect or restart) or ``"failed"``.
    """

    message_id: str
    state: str
    server_seq: int | None = None
    error: str | None = None


def flush_outbox(client: Client) -> None:
    """Send the queued messages in order; stop at the first that must wait."""
    while client._authenticated.is_set():
        with client._lock:
            state = client._state
            if state is None or not state["outbox"]:
                return
            item = dict(state["outbox"][0])
            try:
                if not _flush_item(client, item):
                    return
            except ClientError as exc:
                if exc.code != codes.SAVE_FAILED:
                    raise
                _stop_flush(client, item, exc)
                return


def _flush_item(client: Client, item: dict[str, Any]) -> bool:
    """Send the outbox's first message; return False if the rest must wait."""
    try:
        reply = _send_item(client, item)
    except ClientError as exc:
        if exc.code == codes.SAVE_FAILED:
            raise
        if exc.code not in _PERMANENT_SEND_ERRORS:
            logger.info("send of a queued message deferred: %s", exc.code)
            if exc.code != codes.CONNECTION_FAILED:
                # A reconnect flushes again by itself; other
                # errors (busy, rate_limited, timeout) need a timer.
                client._schedule(("flush",), exc.retry_after)
            return False
        keep = exc.code not in _NOT_A_CONTACT_ERRORS
        _finish_send(client, item, FAILED, error=exc.message, keep_history=keep)
        return True
    except (CryptoError, ValueError) as exc:
        # A bundle or session that cannot encrypt would fail the
        # same way on every retry and hold up the whole outbox.
        logger.warning("queued message could not be encrypted: %s", exc)
        _finish_send(client, item, FAILED, error=f"encryption failed: {exc}")
        return True
    _finish_send(client, item, SENT, reply=reply)
    return True


def _stop_flush(client: Client, item: dict[str, Any], error: ClientError) -> None:
    """Stop flushing after a failed save and report it to ``send_text`` waiters.

    The saved outbox still contains the message, so the next flush sends it
    again under the same message id and the server stores it once.
    """
    logger.warning(
        "flushing the outbox stopped at message %s: %s", item["message_id"], error
    )
    client._emit(ERROR, code=error.code, message=error.message)
    with client._send_done:
        client._send_outcomes[item["message_id"]] = error
        client._send_done.notify_all()


def _finish_send(
    client: Client,
    item: dict[str, Any],
    outcome: str,
    reply: dict[str, Any] | None = None,
    error: str | None = None,
    keep_history: bool = True,
) -> None:
    changes: dict[str, Any] = {"state": outcome}
    if reply is not None:
        changes["server_seq"] = reply["server_seq"]
        changes["server_time"] = reply["server_time"]
    if keep_history:
        client._require_history().update(item["message_id"], **changes)
    else:
        client._require_history().remove(item["message_id"])

    # On a failed save the message stays in the outbox, in memory as on disk.
    state = client._require_state()
    outbox = state["outbox"]
    state["outbox"] = [
        queued for queued in outbox if queued["message_id"] != item["message_id"]
    ]
    try:
        client._save()
    except ClientError:
        state["outbox"] = outbox
        raise

    data: dict[str, Any] = {
        "message_id": item["message_id"],
        "conversation": item["to"],
        "state": outcome,
    }
    if error is not None:
        data["error"] = error
    if reply is not None:
        data["server_seq"] = reply["server_seq"]
    client._emit(DELIVERY_UPDATED, **data)

    result = SendResult(
        item["message_id"],
        outcome,
        server_seq=None if reply is None else reply["server_seq"],
        error=error,
    )
    with client._send_done:
        client._send_outcomes[item["message_id"]] = result
        client._send_done.notify_all()


def _send_item(client: Client, item: dict[str, Any]) -> dict[str, Any]:
    """Send one outbox item; return the server's reply.

    Encrypting the envelopes advances the sessions. After a reply,
    ``_finish_send`` saves them together with the shorter outbox. After a
    failure they are saved here, before the error is raised again.
    """
    try:
        if item.get("group") is not None:
            return _send_group_item(client, item)
        return _send_direct_item(client, item)
    except Exception:
        client._save()
        raise


def _send_direct_item(client: Client, item: dict[str, Any]) -> dict[str, Any]:
    me = client._require_username()
    to, message_id = item["to"], item["message_id"]
    key_material, sealed = _sealed_payload(client, item, to)
    for user in (to, me):
        if user not in client._require_state()["devices"]:
            _fetch_bundles(client, user)

    for _attempt in range(MAX_SEND_ATTEMPTS):
        envelopes = _make_envelopes(client, (to, me), to, message_id, key_material)
        try:
            return client._request(
                "send",
                message_id=message_id,
                to=to,
                payload=sealed,
                envelopes=envelopes,
            )
        except ClientError as exc:
            if exc.code != "device_list_mismatch":
                raise
            _apply_mismatch(client, exc.details)
    raise ClientError(
        "device_list_mismatch",
        f"The device list of {to} kept changing; the message stays queued.",
    )


def _send_group_item(client: Client, item: dict[str, Any]) -> dict[str, Any]:
    me = client._require_username()
    group_id, message_id = item["group"], item["message_id"]
    conversation = groups.conversation_of(group_id)
    for _attempt in range(MAX_SEND_ATTEMPTS):
        state = groups.require_group(client, group_id)
        refusal = state.post_refusal(me)
        if refusal is not None:
            raise ClientError(codes.NOT_ALLOWED, refusal)
        key_material, sealed = _sealed_payload(client, item, conversation, state.epoch)
        members = sorted(state.roles)
        _fetch_missing_bundles(client, members)
        envelopes = _make_envelopes(
            client, members, conversation, message_id, key_material
        )
        try:
            return client._request(
                "group_send",
                message_id=message_id,
                group_id=group_id,
                epoch=state.epoch,
                payload=sealed,
                envelopes=envelopes,
            )
        except ClientError as exc:
            if exc.code == "group_outdated":
                groups.sync_log(client, group_id)
            elif exc.code == "device_list_mismatch":
                _apply_mismatch(client, exc.details, allowed=set(members))
            else:
                raise
    raise ClientError(
        "device_list_mismatch",
        "The group's members or devices kept changing; the message stays queued.",
    )


def _sealed_payload(
    client: Client, item: dict[str, Any], conversation: str, epoch: int | None = None
) -> tuple[bytes, bytes]:
    """Return ``(key material, sealed payload)`` of an outbox item.

    The first call seals the payload and keeps it in the outbox entry, so
    a resend after a lost reply carries the same bytes and the server
    recognizes it as the message it stored. A group message is sealed
    again only when the epoch it names has changed, which the server
    refused to store.
    """
    stored = _outbox_entry(client, item["message_id"])
    if (
        stored is not None
        and "sealed" in stored
        and stored.get("sealed_epoch") == epoch
    ):
        return _unb64(stored["key_material"]), _unb64(stored["sealed"])
    me = client._require_username()
    device_id = client.profile.device_id
    assert device_id is not None
    fields: dict[str, Any] = {
        "kind": "text",
        "body": item["body"],
        "sent_at": item["sent_at"],
        "message_id": item["message_id"],
    }
    if item.get("attachment") is not None:
        fields.update(kind="audio", attachment=item["attachment"])
    if epoch is not None:
        fields.update(group=item["group"], epoch=epoch)
    payload = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )
    key_material, sealed = e2e.seal_payload(
        payload,
        e2e.payload_associated_data(me, device_id, conversation, item["message_id"]),
    )
    if stored is not None:
        stored.update(
            key_material=_b64(key_material), sealed=_b64(sealed), sealed_epoch=epoch
        )
    return key_material, sealed


def _outbox_entry(client: Client, message_id: str) -> dict[str, Any] | None:
    for entry in client._require_state()["outbox"]:
        if entry["message_id"] == message_id:
            return entry  # type: ignore[no-any-return]
    return None


def _fetch_missing_bundles(client: Client, users: list[str]) -> None:
    """Fetch, in one request per batch, the bundles of users with no device list."""
    state = client._require_state()
    missing = [user for user in users if user not in state["devices"]]
    for start in range(0, len(missing), MAX_BUNDLE_USERS):
        chunk = missing[start : start + MAX_BUNDLE_USERS]
        reply = client._request("fetch_bundle_set", usernames=chunk)
        listed = set()
        for user in reply["users"]:
            _store_bundles(client, user)
            listed.add(user["username"])
        for user in chunk:
            if user not in listed:
                # No identity key yet (the account was never set up), so
                # no devices to encrypt to.
                state["devices"][user] = []


def _make_envelopes(
    client: Client,
    users: tuple[str, ...] | list[str],
    to: str,
    message_id: str,
    key_material: bytes,
) -> list[dict[str, Any]]:
    """Encrypt ``key_material`` to every known device of ``users`` but this one.

    ``to`` is the conversation: a contact's username or a group's name.
    """
    state = client._require_state()
    me = client._require_username()
    own_device = client.profile.device_id
    assert client._device is not None and client._aik is not None
    assert own_device is not None
    envelopes = []
    for user in dict.fromkeys(users):
        for device_id in state["devices"].get(user, []):
            if user == me and device_id == own_device:
                continue
            key = f"{user}/{device_id}"
            if key not in client._sessions and key not in client._bundles:
                _fetch_bundles(client, user)
            ad = e2e.message_associated_data(
                me, own_device, user, device_id, to, message_id
            )
            body, session = e2e.encrypt_for_device(
                client._device,
                client._aik.public_bytes(),
                client._sessions.get(key),
                client._bundles.pop(key, None),
                key_material,
                ad,
            )
            client._sessions[key] = session
            envelopes.append({"username": user, "device_id": device_id, "body": body})
    return envelopes


def _apply_mismatch(
    client: Client, details: dict[str, Any], allowed: set[str] | None = None
) -> None:
    """Follow the server's list of missing and extra devices.

    With ``allowed`` (a group's verified members), a device of anyone
    else is never added: the server cannot make a sender encrypt to a
    user the group's log does not list.
    """
    state = client._require_state()
    refetch = set()
    for item in details.get("missing", []):
        user, device_id = item.get("username"), item.get("device_id")
        if allowed is not None and user not in allowed:
            logger.warning("server asked for envelopes to non-member %r", user)
            continue
        if isinstance(user, str) and isinstance(device_id, int):
            known = state["devices"].setdefault(user, [])
            if device_id not in known:
                known.append(device_id)
            refetch.add(user)
    for item in details.get("extra", []):
        user, device_id = item.get("username"), item.get("device_id")
        if isinstance(user, str) and isinstance(device_id, int):
            forget_device(client, user, device_id)
    for user in refetch:
        _fetch_bundles(client, user)


def forget_device(client: Client, user: str, device_id: int) -> None:
    """Drop a device from the known device list, with its session and bundle."""
    state = client._require_state()
    known = state["devices"].get(user, [])
    if device_id in known:
        known.remove(device_id)
    client._sessions.pop(f"{user}/{device_id}", None)
    client._bundles.pop(f"{user}/{device_id}", None)


def _fetch_bundles(client: Client, user: str) -> None:
    """Fetch and verify the prekey bundles of every active device of ``user``."""
    _store_bundles(client, client._request("fetch_bundles", username=user))


def _store_bundles(client: Client, reply: dict[str, Any]) -> None:
    """Verify one user's bundles and make them the user's device list."""
    user = reply["username"]
    client._check_identity(user, reply["identity_key"])
    aik = reply["identity_key"]
    device_ids = []
    for device in reply["devices"]:
        bundle = _bundle_from_reply(aik, device)
        try:
            _verify_bundle(bundle)
        except CryptoError as exc:
            raise ClientError(
                codes.IDENTITY_INVALID,
                f"Device {device['device_id']} of {user} has a key that its "
                "account identity key did not sign.",
            ) from exc
        device_ids.append(device["device_id"])
        key = f"{user}/{device['device_id']}"
        if key not in client._sessions:
            client._bundles[key] = bundle
    state = client._require_state()
    for old in set(state["devices"].get(user, [])) - set(device_ids):
        forget_device(client, user, old)
    state["devices"][user] = device_ids


def _bundle_from_reply(aik: bytes, device: dict[str, Any]) -> PreKeyBundle:
    one_time = device.get("one_time_prekey")
    return PreKeyBundle(
        identity_key=device["identity_key"],
        signed_prekey_id=device["signed_prekey"]["id"],
        signed_prekey=device["signed_prekey"]["key"],
        signed_prekey_signature=device["signed_prekey"]["signature"],
        one_time_prekey_id=None if one_time is None else one_time["id"],
        one_time_prekey=None if one_time is None else one_time["key"],
        account_identity_key=aik,
        device_signature=device["signature"],
    )


def _verify_bundle(bundle: PreKeyBundle) -> None:
    """Raise SignatureError unless the AIK signed the device and signed prekey."""
    verify_device_key(
        bundle.account_identity_key, bundle.identity_key, bundle.device_signature
    )
    verify_prekey(
        bundle.account_identity_key,
        bundle.signed_prekey_id,
        bundle.signed_prekey,
        bundle.signed_prekey_signature,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii"))
