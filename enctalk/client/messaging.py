"""Sending and receiving end-to-end messages: the outbox, envelopes, receipts.

These functions take the :class:`~enctalk.client.core.Client` they work
for and run on its worker thread under the client's lock. Sending seals
the payload once, then encrypts its key material for every active device
of the recipient and of the sender's other devices, fetching and
verifying prekey bundles for devices without a session. Receiving
decrypts the envelope, opens the payload, stores it in the history and
acknowledges it. A message that fails becomes a notice in the history,
never altered text.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enctalk.client import errors as codes
from enctalk.client.errors import ClientError
from enctalk.client.events import (
    CONTACT_ADDED,
    DECRYPT_FAILED,
    DELIVERY_UPDATED,
    MESSAGE_RECEIVED,
    PREKEYS_LOW,
    PRESENCE_CHANGED,
    SESSION_REVOKED,
)
from enctalk.client.history import DELIVERED, FAILED, SENT, HistoryEntry
from enctalk.crypto import session as e2e
from enctalk.crypto.errors import CryptoError
from enctalk.crypto.keys import verify_device_key, verify_prekey
from enctalk.crypto.x3dh import PreKeyBundle

if TYPE_CHECKING:
    from enctalk.client.core import Client

logger = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 4

# Server error codes after which resending the same message cannot help.
_PERMANENT_SEND_ERRORS = frozenset(
    {
        "not_a_contact",
        "user_not_found",
        "invalid_username",
        "invalid_frame",
        "message_id_conflict",
        "frame_too_large",
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
                reply = _send_item(client, item)
            except ClientError as exc:
                if exc.code not in _PERMANENT_SEND_ERRORS:
                    logger.info("send of a queued message deferred: %s", exc.code)
                    if exc.code != codes.CONNECTION_FAILED:
                        # A reconnect flushes again by itself; other
                        # errors (busy, rate_limited, timeout) need a timer.
                        client._schedule(("flush",), exc.retry_after)
                    return
                _finish_send(client, item, FAILED, error=exc.message)
                continue
            except (CryptoError, ValueError) as exc:
                # A bundle or session that cannot encrypt would fail the
                # same way on every retry and hold up the whole outbox.
                logger.warning("queued message could not be encrypted: %s", exc)
                _finish_send(client, item, FAILED, error=f"encryption failed: {exc}")
                continue
            _finish_send(client, item, SENT, reply=reply)


def _finish_send(
    client: Client,
    item: dict[str, Any],
    outcome: str,
    reply: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    state = client._require_state()
    state["outbox"] = [
        queued
        for queued in state["outbox"]
        if queued["message_id"] != item["message_id"]
    ]

    changes: dict[str, Any] = {"state": outcome}
    if reply is not None:
        changes["server_seq"] = reply["server_seq"]
        changes["server_time"] = reply["server_time"]
    client._require_history().update(item["message_id"], **changes)
    client._save()

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
    me = client._require_username()
    device_id = client.profile.device_id
    assert device_id is not None and client._device is not None
    to, message_id = item["to"], item["message_id"]
    payload = json.dumps(
        {
            "kind": "text",
            "body": item["body"],
            "sent_at": item["sent_at"],
            "message_id": message_id,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    key_material, sealed = e2e.seal_payload(
        payload, e2e.payload_associated_data(me, device_id, to, message_id)
    )
    for user in (to, me):
        if user not in client._require_state()["devices"]:
            _fetch_bundles(client, user)

    for _attempt in range(MAX_SEND_ATTEMPTS):
        envelopes = _make_envelopes(client, to, message_id, key_material)
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
        finally:
            client._save()
    raise ClientError(
        "device_list_mismatch",
        f"The device list of {to} kept changing; the message stays queued.",
    )


def _make_envelopes(
    client: Client, to: str, message_id: str, key_material: bytes
) -> list[dict[str, Any]]:
    state = client._require_state()
    me = client._require_username()
    own_device = client.profile.device_id
    assert client._device is not None and client._aik is not None
    assert own_device is not None
    envelopes = []
    for user in dict.fromkeys((to, me)):
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


def _apply_mismatch(client: Client, details: dict[str, Any]) -> None:
    state = client._require_state()
    refetch = set()
    for item in details.get("missing", []):
        user, device_id = item.get("username"), item.get("device_id")
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
    reply = client._request("fetch_bundles", username=user)
    client._check_identity(reply["username"], reply["identity_key"])
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


def handle_push(client: Client, kind: str, fields: dict[str, Any]) -> None:
    """Handle one frame the server pushed, in the order it arrived."""
    if kind == "message":
        _receive_message(client, fields)
    elif kind == "receipt":
        _receive_receipt(client, fields)
    elif kind == "presence":
        client._emit(
            PRESENCE_CHANGED, username=fields["username"], online=fields["online"]
        )
    elif kind == "contact_added":
        with client._lock:
            if client._state is not None:
                client._check_identity(fields["username"], fields["identity_key"])
                client._save()
        client._emit(
            CONTACT_ADDED, username=fields["username"], online=fields["online"]
        )
    elif kind == "prekeys_low":
        client._emit(PREKEYS_LOW, remaining=fields["remaining"])
        with client._lock:
            client._top_up_prekeys(fields["remaining"])
    elif kind == "session_revoked":
        with client._lock:
            if client._state is not None:
                client._state["token"] = None
                client._save()
            client._authenticated.clear()
            client._session_error = ClientError(
                "invalid_session",
                f"The session was revoked ({fields['reason']}); log in again.",
            )
        client._emit(SESSION_REVOKED, reason=fields["reason"])


def _acknowledge(client: Client, seq: int) -> None:
    state = client._require_state()
    if seq > state["last_seq"]:
        state["last_seq"] = seq
    client._save()
    if client._connection is not None:
        client._connection.send_nowait("ack", upto=seq)


def _receive_receipt(client: Client, fields: dict[str, Any]) -> None:
    with client._lock:
        state = client._state
        if state is None:
            return
        if fields["seq"] <= state["last_seq"]:
            _acknowledge(client, fields["seq"])
            return
        entry = client._require_history().find(fields["message_id"])
        updated = False
        if entry is not None and entry.direction == "out" and entry.state != DELIVERED:
            client._require_history().update(fields["message_id"], state=DELIVERED)
            updated = True
        _acknowledge(client, fields["seq"])
    if updated and entry is not None:
        client._emit(
            DELIVERY_UPDATED,
            message_id=fields["message_id"],
            conversation=entry.conversation,
            state=DELIVERED,
        )


def _receive_message(client: Client, fields: dict[str, Any]) -> None:
    with client._lock:
        state = client._state
        if state is None:
            return
        seq, message_id = fields["seq"], fields["message_id"]
        history = client._require_history()
        if seq <= state["last_seq"] or history.contains(message_id):
            _acknowledge(client, seq)
            return
        me = client._require_username()
        sender, sender_device = fields["from"], fields["from_device"]
        conversation = fields["to"] if sender == me else sender
        try:
            payload = _open_message(client, fields)
        except (CryptoError, ClientError, ValueError, KeyError, TypeError) as exc:
            logger.warning(
                "message %s from %s/%s did not decrypt: %s",
                message_id,
                sender,
                sender_device,
                type(exc).__name__,
            )
            history.add(
                HistoryEntry(
                    conversation=conversation,
                    kind="notice",
                    direction="in",
                    sender=sender,
                    body=f"could not decrypt a message from {sender}",
                    message_id=message_id,
                    server_seq=fields["server_seq"],
                    server_time=fields["server_time"],
                    sent_at=None,
                    state=None,
                )
            )
            _acknowledge(client, seq)
            event: tuple[str, dict[str, Any]] = (
                DECRYPT_FAILED,
                {
                    "conversation": conversation,
                    "sender": sender,
                    "sender_device": sender_device,
                    "message_id": message_id,
                    "server_seq": fields["server_seq"],
                },
            )
        else:
            entry = HistoryEntry(
                conversation=conversation,
                kind="text",
                direction="out" if sender == me else "in",
                sender=sender,
                body=payload["body"],
                message_id=message_id,
                server_seq=fields["server_seq"],
                server_time=fields["server_time"],
                sent_at=payload["sent_at"],
                state=SENT if sender == me else None,
            )
            history.add(entry)
            _acknowledge(client, seq)
            event = (
                MESSAGE_RECEIVED,
                {
                    "conversation": conversation,
                    "sender": sender,
                    "sender_device": sender_device,
                    "body": payload["body"],
                    "message_id": message_id,
                    "server_seq": fields["server_seq"],
                    "server_time": fields["server_time"],
                    "sent_at": payload["sent_at"],
                },
            )
    client._emit(event[0], **event[1])


def _open_message(client: Client, fields: dict[str, Any]) -> dict[str, Any]:
    """Decrypt one pushed message and check its payload; raise on any failure."""
    me = client._require_username()
    own_device = client.profile.device_id
    assert client._device is not None and client._aik is not None
    assert own_device is not None
    sender, sender_device = fields["from"], fields["from_device"]
    message_id, to = fields["message_id"], fields["to"]
    key = f"{sender}/{sender_device}"

    ad = e2e.message_associated_data(
        sender, sender_device, me, own_device, to, message_id
    )
    decrypted = e2e.decrypt_envelope(
        client._device,
        client._sessions.get(key),
        fields["envelope"],
        ad,
        own_aik_public=client._aik.public_bytes(),
    )
    # The envelope authenticated, so the sender's ratchet moved on too: keep
    # the session even if the payload is bad. A key change drops the
    # sender's old sessions, so it is checked before the session is stored.
    client._check_identity(sender, decrypted.sender_aik_public)
    client._sessions[key] = decrypted.session

    plaintext = e2e.open_payload(
        decrypted.plaintext,
        fields["payload"],
        e2e.payload_associated_data(sender, sender_device, to, message_id),
    )
    payload = json.loads(plaintext.decode("utf-8"))
    if not isinstance(payload, dict) or payload.get("kind") != "text":
        raise ValueError("payload is not a text message")
    if payload.get("message_id") != message_id:
        raise ValueError("payload message id differs from the envelope's")
    if not isinstance(payload.get("body"), str):
        raise ValueError("payload body is not text")
    if not isinstance(payload.get("sent_at"), int):
        raise ValueError("payload sent_at is not an integer")
    return payload


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
