"""Receiving pushed frames: messages, receipts, presence, contacts, prekeys.

These functions take the :class:`~enctalk.client.core.Client` they work
for and run on its worker thread. A pushed message is opened in full
before anything is stored: the envelope decrypts on copies of the device
keys and of the sender's session, the payload opens and parses, and the
sender's AIK is checked. Only then are the one-time prekey, the session,
the pinned AIK and the history entry stored, and the message
acknowledged. A message that fails becomes a notice in the history, never
altered text.

The AIK of a message passes if it equals the AIK pinned for the sender.
Any other AIK, and the first one seen for a contact, must equal the AIK
that the server lists for the sender's account, and storing the message
pins it, with a key-change warning if another AIK was pinned. When that
lookup fails, the message and every later queue item are held
in memory, unacknowledged, and handled again in order after a retry
delay or, after a reconnect, resent by the server's ``sync``. After
MAX_IDENTITY_LOOKUPS failed lookups on a live connection the message is
rejected.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enctalk.client import attachments, groups
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
from enctalk.client.history import DELIVERED, SENT, HistoryEntry
from enctalk.crypto import session as e2e
from enctalk.crypto.errors import CryptoError
from enctalk.crypto.grouplog import GroupOp, GroupOpError
from enctalk.crypto.keys import DeviceKeys

if TYPE_CHECKING:
    from enctalk.client.core import Client

logger = logging.getLogger(__name__)

# Identity key lookups for one message on a live connection before the
# message is rejected. Each retry waits the server's retry_after, else the
# client's RETRY_DELAY.
MAX_IDENTITY_LOOKUPS = 5

# Queue items, counting the message that waits for its lookup, that are
# held in memory. Past this, that message gets one last lookup and is
# rejected if it fails, so that the items behind it can go on.
MAX_HELD_PUSHES = 1000

_QUEUE_ITEMS = frozenset({"message", "receipt", "group_op", "dropped"})
Event = tuple[str, dict[str, Any]]


class _IdentityLookupFailed(Exception):
    """The request for a sender's AIK failed with the ClientError ``error``."""

    def __init__(self, error: ClientError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class _OpenedMessage:
    """A message that passed every check, with the state it changes."""

    payload: dict[str, Any]
    device: DeviceKeys  # own device keys, with the prekey it used consumed
    session_key: str
    session: e2e.DeviceSession
    sender_aik: bytes


def handle_push(client: Client, kind: str, fields: dict[str, Any]) -> None:
    """Handle one frame the server pushed, in the order it arrived."""
    if kind in _QUEUE_ITEMS and _hold(client, kind, fields):
        return
    if kind == "message":
        _receive_message(client, fields)
    elif kind == "receipt":
        _receive_receipt(client, fields)
    elif kind == "group_op":
        _receive_group_op(client, fields)
    elif kind == "dropped":
        with client._lock:
            if client._state is not None:
                _acknowledge(client, fields["seq"])
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
            CONTACT_ADDED,
            username=fields["username"],
            online=fields["online"],
            display_name=fields["display_name"] or fields["username"],
        )
    elif kind == "prekeys_low":
        client._emit(PREKEYS_LOW, remaining=fields["remaining"])
        with client._lock:
            client._top_up_prekeys(fields["remaining"])
    elif kind == "session_revoked":
        # The reason is the server's sentence; only a disabled account
        # needs another answer than logging in again.
        disabled = "disabled" in str(fields["reason"]).lower()
        client.end_session("account_disabled" if disabled else "invalid_session")
        client._emit(SESSION_REVOKED, reason=fields["reason"])


def retry_held_pushes(client: Client) -> None:
    """Handle the held queue items again, oldest first."""
    with client._lock:
        held, client._held_pushes = client._held_pushes, None
    if not held:
        return
    for index, (kind, fields) in enumerate(held):
        handle_push(client, kind, fields)
        with client._lock:
            if client._held_pushes is not None:
                # That message waits again: keep the rest behind it.
                client._held_pushes.extend(held[index + 1 :])
                return


def drop_held_pushes(client: Client) -> None:
    """Forget the held queue items, because a ``sync`` is about to resend them."""
    with client._lock:
        if client._held_pushes:
            logger.info(
                "dropped %d held queue items before a sync", len(client._held_pushes)
            )
        client._held_pushes = None
        client._identity_lookups = 0


def _hold(client: Client, kind: str, fields: dict[str, Any]) -> bool:
    with client._lock:
        held = client._held_pushes
        if held is None:
            return False
        held.append((kind, fields))
        if (
            len(held) >= MAX_HELD_PUSHES
            and client._identity_lookups < MAX_IDENTITY_LOOKUPS
        ):
            logger.warning(
                "%d queue items wait behind an identity key lookup; "
                "the message at their head gets one last lookup",
                len(held),
            )
            client._identity_lookups = MAX_IDENTITY_LOOKUPS
            client._schedule(("retry_held",), 0)
        return True


def _acknowledge(client: Client, seq: int) -> None:
    """Record that queue item ``seq`` is stored, and acknowledge what has no gap.

    ``ack`` is cumulative, and every queue item of a device takes the next
    ``seq``. An item stored ahead of a missing one therefore waits in
    ``client._stored_ahead`` until the missing item arrives, for example
    from the ``sync`` after a reconnect, because acknowledging past the
    gap would make the server delete the missing item.
    """
    state = client._require_state()
    last = int(state["last_seq"])
    if seq > last:
        client._stored_ahead.add(seq)
    while last + 1 in client._stored_ahead:
        last += 1
        client._stored_ahead.discard(last)
    if last == state["last_seq"] and seq > last:
        logger.info("queue item %d stored ahead of item %d; ack held", seq, last + 1)
        return
    state["last_seq"] = last
    client._save()
    if client._connection is not None:
        client._connection.send_nowait("ack", upto=last)


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
        if seq <= state["last_seq"] or client._require_history().contains(message_id):
            _acknowledge(client, seq)
            return

        event: Event
        try:
            opened = _open_message(client, fields)
        except _IdentityLookupFailed as exc:
            if _defer_message(client, fields, exc.error):
                return
            event = _reject_message(
                client,
                fields,
                ClientError(
                    codes.IDENTITY_INVALID,
                    f"A message from {fields['from']} was not shown: its identity "
                    "key could not be checked with the server.",
                ),
            )
        except (CryptoError, ClientError, ValueError, KeyError, TypeError) as exc:
            event = _reject_message(client, fields, exc)
        else:
            event = _accept_message(client, fields, opened)
        client._identity_lookups = 0
    client._emit(event[0], **event[1])


def _receive_group_op(client: Client, fields: dict[str, Any]) -> None:
    """Apply a queued group operation, or store a notice if it fails its checks.

    When an identity key or the log cannot be fetched, the operation and
    every later queue item are held, as for a message.
    """
    with client._lock:
        state = client._state
        if state is None:
            return
        seq = fields["seq"]
        if seq <= state["last_seq"]:
            _acknowledge(client, seq)
            return
        op = GroupOp.from_wire(fields["op"])
        try:
            groups.receive_op(client, op, fields["server_seq"], fields["server_time"])
        except GroupOpError as exc:
            logger.warning("group %s: operation %d rejected", op.group_id, op.index)
            _group_notice(
                client,
                op.group_id,
                f"A change to this group was rejected: {exc}",
                fields["server_seq"],
                fields["server_time"],
            )
        except ClientError as exc:
            if exc.code == codes.IDENTITY_INVALID:
                _group_notice(
                    client,
                    op.group_id,
                    f"A change to this group was rejected: {exc.message}",
                    fields["server_seq"],
                    fields["server_time"],
                )
            elif _defer_message(client, fields, exc, kind="group_op"):
                return
        _acknowledge(client, seq)


def _group_notice(
    client: Client, group_id: str, body: str, server_seq: int, server_time: int
) -> None:
    client._require_history().add(
        HistoryEntry(
            conversation=groups.conversation_of(group_id),
            kind="notice",
            direction="in",
            sender="",
            body=body,
            message_id=None,
            server_seq=server_seq,
            server_time=server_time,
            sent_at=None,
            state=None,
        )
    )


def _conversation(client: Client, fields: dict[str, Any]) -> str:
    if fields.get("group") is not None:
        return groups.conversation_of(fields["group"])
    sender = fields["from"]
    return str(fields["to"] if sender == client._require_username() else sender)


def _accept_message(
    client: Client, fields: dict[str, Any], opened: _OpenedMessage
) -> Event:
    """Store an opened message and what it changed, then acknowledge it."""
    sender = fields["from"]
    me = client._require_username()
    conversation = _conversation(client, fields)
    payload = opened.payload

    # A key change drops the sender's old sessions, so the AIK is pinned
    # before the new session is stored.
    client._check_identity(sender, opened.sender_aik)
    old_device = client._device
    old_session = client._sessions.get(opened.session_key)
    client._device = opened.device
    client._sessions[opened.session_key] = opened.session

    entry = HistoryEntry(
        conversation=conversation,
        kind=payload["kind"],
        direction="out" if sender == me else "in",
        sender=sender,
        body=payload["body"],
        message_id=fields["message_id"],
        server_seq=fields["server_seq"],
        server_time=fields["server_time"],
        sent_at=payload["sent_at"],
        state=SENT if sender == me else None,
        attachment=payload.get("attachment"),
    )
    try:
        client._require_history().add(entry)
    except ClientError:
        # Not stored, so not acknowledged: the server sends the message
        # again, and it must still decrypt with the old session then.
        client._device = old_device
        if old_session is None:
            client._sessions.pop(opened.session_key, None)
        else:
            client._sessions[opened.session_key] = old_session
        raise
    _acknowledge(client, fields["seq"])
    reference = payload.get("attachment")
    return (
        MESSAGE_RECEIVED,
        {
            "conversation": conversation,
            "group": fields.get("group"),
            "sender": sender,
            "sender_device": fields["from_device"],
            "body": payload["body"],
            "message_id": fields["message_id"],
            "server_seq": fields["server_seq"],
            "server_time": fields["server_time"],
            "sent_at": payload["sent_at"],
            "kind": payload["kind"],
            "attachment": None
            if reference is None
            else attachments.public_reference(reference),
        },
    )


def _reject_message(client: Client, fields: dict[str, Any], error: Exception) -> Event:
    """Store a notice in place of a message that failed, then acknowledge it."""
    sender, sender_device = fields["from"], fields["from_device"]
    conversation = _conversation(client, fields)
    reason = type(error).__name__
    body = f"could not decrypt a message from {sender}"
    if isinstance(error, ClientError) and error.code in (
        codes.IDENTITY_INVALID,
        codes.NOT_ALLOWED,
    ):
        reason = error.code
        body = error.message
    logger.warning(
        "message %s from %s/%s rejected: %s",
        fields["message_id"],
        sender,
        sender_device,
        reason,
    )

    client._require_history().add(
        HistoryEntry(
            conversation=conversation,
            kind="notice",
            direction="in",
            sender=sender,
            body=body,
            message_id=fields["message_id"],
            server_seq=fields["server_seq"],
            server_time=fields["server_time"],
            sent_at=None,
            state=None,
        )
    )
    _acknowledge(client, fields["seq"])
    return (
        DECRYPT_FAILED,
        {
            "conversation": conversation,
            "sender": sender,
            "sender_device": sender_device,
            "message_id": fields["message_id"],
            "server_seq": fields["server_seq"],
        },
    )


def _defer_message(
    client: Client, fields: dict[str, Any], error: ClientError, kind: str = "message"
) -> bool:
    """Hold a message whose sender's AIK could not be fetched, or return False.

    Offline the message waits for the ``sync`` after the reconnect, which
    resends it. On a live connection it is tried again after a delay, and
    False means that MAX_IDENTITY_LOOKUPS lookups have failed.
    """
    offline = (
        error.code == codes.CONNECTION_FAILED
        or not client.connected
        or not client._authenticated.is_set()
    )
    if not offline:
        client._identity_lookups += 1
        if client._identity_lookups >= MAX_IDENTITY_LOOKUPS:
            return False
    client._held_pushes = [(kind, fields)]
    logger.info("queue item %d held: a lookup failed (%s)", fields["seq"], error.code)
    if not offline:
        client._schedule(("retry_held",), error.retry_after)
    return True


def _open_message(client: Client, fields: dict[str, Any]) -> _OpenedMessage:
    """Decrypt one pushed message and run every check, changing no client state.

    Raises CryptoError, ValueError, KeyError or TypeError for a message
    that does not open, ClientError ``identity_invalid`` for a sender AIK
    that the server does not list for the sender, and _IdentityLookupFailed
    when that list could not be fetched.
    """
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
    stored = client._sessions.get(key)
    device = client._device.copy()
    decrypted = e2e.decrypt_envelope(
        device,
        None if stored is None else stored.copy(),
        fields["envelope"],
        ad,
        own_aik_public=client._aik.public_bytes(),
    )

    plaintext = e2e.open_payload(
        decrypted.plaintext,
        fields["payload"],
        e2e.payload_associated_data(sender, sender_device, to, message_id),
    )
    payload = _parse_payload(plaintext, message_id)
    group = fields.get("group")
    if group is not None or payload.get("group") is not None:
        _check_group_message(client, fields, payload)

    _check_sender_identity(client, sender, decrypted.sender_aik_public)
    return _OpenedMessage(
        payload, device, key, decrypted.session, decrypted.sender_aik_public
    )


def _check_group_message(
    client: Client, fields: dict[str, Any], payload: dict[str, Any]
) -> None:
    """Raise ClientError ``not_allowed`` unless the sender could post then.

    The payload names the group and the epoch the sender wrote at; both
    are under the sender's key, so the server cannot move the message.
    The log is fetched first when this device is behind that epoch.
    Raises _IdentityLookupFailed when that fetch fails.
    """
    group_id, named_epoch = fields.get("group"), payload.get("epoch", "")
    if (
        group_id is None
        or payload.get("group") != group_id
        or fields["to"] != groups.conversation_of(group_id)
        or not _is_int(named_epoch)
    ):
        raise ValueError("group message names another group than its envelope")
    epoch: int = named_epoch
    local = groups.local_state(client, group_id)
    if local is None or local.epoch < epoch:
        try:
            groups.sync_log(client, group_id)
        except ClientError as exc:
            raise _IdentityLookupFailed(exc) from exc
    state = groups.state_at(client, group_id, epoch)
    sender = fields["from"]
    if state is None:
        raise ClientError(
            codes.NOT_ALLOWED,
            f"A message from {sender} names a group state this device cannot check.",
        )
    refusal = state.post_refusal(sender)
    following = groups.op_stamp(client, group_id, epoch + 1)
    if refusal is None and following is not None and following < fields["server_seq"]:
        refusal = "it was written against a group state that had already changed."
    if refusal is not None:
        raise ClientError(
            codes.NOT_ALLOWED,
            f"A message from {sender} was rejected: "
            + refusal.replace("You are", "they were").replace("you", "them"),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_payload(plaintext: bytes, message_id: str) -> dict[str, Any]:
    payload = json.loads(plaintext.decode("utf-8"))
    # A JSON escape can carry a lone surrogate, which no terminal, Tk or
    # UTF-8 file can take; encoding raises UnicodeEncodeError, a ValueError.
    json.dumps(payload, ensure_ascii=False).encode("utf-8")
    if not isinstance(payload, dict) or payload.get("kind") not in ("text", "audio"):
        raise ValueError("payload is not a text or audio message")
    if payload["kind"] == "audio":
        payload["attachment"] = attachments.check_reference(payload.get("attachment"))
    if payload.get("message_id") != message_id:
        raise ValueError("payload message id differs from the envelope's")
    if not isinstance(payload.get("body"), str):
        raise ValueError("payload body is not text")
    if not isinstance(payload.get("sent_at"), int):
        raise ValueError("payload sent_at is not an integer")
    return payload


def _check_sender_identity(client: Client, sender: str, aik: bytes) -> None:
    """Raise ClientError ``identity_invalid`` unless ``aik`` is the AIK of ``sender``.

    The pinned AIK passes without a lookup. Any other AIK must be the one
    that the server lists for ``sender``. Raises _IdentityLookupFailed when
    the server's list could not be fetched.
    """
    if sender == client._require_username():
        if aik != client._pinned_identity(sender):
            raise ClientError(
                codes.IDENTITY_INVALID,
                "A message from another device of this account was rejected: "
                "it carries another account identity key.",
            )
        return
    if client._pinned_identity(sender) == aik:
        return
    if _listed_identity(client, sender) != aik:
        raise ClientError(
            codes.IDENTITY_INVALID,
            f"A message from {sender} was rejected: its identity key is not "
            f"the one the server lists for {sender}.",
        )


def _listed_identity(client: Client, name: str) -> bytes | None:
    """Return the AIK that the server lists for ``name``, or None."""
    try:
        reply = client._request("lookup_identities", usernames=[name])
    except ClientError as exc:
        raise _IdentityLookupFailed(exc) from exc
    for user in reply["users"]:
        if user["username"] == name:
            return bytes(user["identity_key"])
    return None
