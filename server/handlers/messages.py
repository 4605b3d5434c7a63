"""Messages and queues: send, sync and ack.

A ``send`` is committed (message row plus one queue row per envelope) in
one transaction before the reply, so an acknowledged message survives a
restart. Each device queue has its own increasing ``seq``; ``ack`` deletes
rows up to a ``seq`` and queues receipts for the senders' devices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sqlite3
from typing import Any

from enctalk.protocol import InvalidUsername, canonical_username, errors, make_push
from server.handlers.base import (
    HandlerError,
    Outcome,
    Request,
    Services,
    now_ms,
    require_device,
)
from server.handlers.contacts import not_allowed_to_message
from server.handlers.devices import PREKEYS_LOW, prekeys_low_frame
from server.policy import direct_messages_restricted, may_message_directly
from server.store import QueueItem, User

logger = logging.getLogger(__name__)

# One part of a sync pushes at most this many items. Its byte budget is
# half the output soft limit, so a long queue cannot push the connection
# over its hard limit.
SYNC_BATCH_ITEMS = 200
# Room for the fields of a message push besides payload and envelope.
MESSAGE_PUSH_OVERHEAD = 512


def _b64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def queue_item_frame(item: QueueItem) -> dict[str, Any] | None:
    """Build the push for one queue row."""
    if item.kind == "receipt":
        return make_push(
            "receipt",
            seq=item.seq,
            message_id=item.message_id,
            username=item.receipt_user,
            device_id=item.receipt_device,
        )
    if item.payload is None:
        # Deleted for everyone, or its device was removed meanwhile: the
        # device still gets the sequence number, so its queue has no gap.
        return make_push("dropped", seq=item.seq)
    if item.message_kind == "op":
        return make_push(
            "group_op",
            seq=item.seq,
            op=json.loads(item.payload),
            server_seq=item.server_seq,
            server_time=item.server_time,
        )
    if item.envelope is None:
        return make_push("dropped", seq=item.seq)
    group = item.group_id if item.message_kind == "group" else None
    return message_push(item, group)


def message_push(item: QueueItem, group: str | None) -> dict[str, Any]:
    """Build the ``message`` push of a direct or group message."""
    fields: dict[str, Any] = {}
    if group is not None:
        fields["group"] = group
    return make_push(
        "message",
        seq=item.seq,
        message_id=item.message_id,
        from_=item.sender,
        from_device=item.sender_device,
        to=item.recipient if group is None else "#" + group,
        server_seq=item.server_seq,
        server_time=item.server_time,
        payload=item.payload,
        envelope=item.envelope,
        **fields,
    )


def _address(username: str, device_id: int) -> dict[str, Any]:
    return {"username": username, "device_id": device_id}


def _send_reply(
    message_id: str, server_seq: int, server_time: int, duplicate: bool
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "server_seq": server_seq,
        "server_time": server_time,
        "duplicate": duplicate,
    }


def duplicate_reply(
    services: Services,
    request: Request,
    recipient_id: int,
    group_id: str | None,
    payload_hash: bytes,
) -> Outcome | None:
    """Return the reply to a resend of a stored message, or ``None``.

    A group message has the sender as its recipient and names its group.
    Raises ``message_id_conflict`` when the id was used for another message.
    """
    session = request.session
    assert session is not None
    message_id = request.fields["message_id"]
    stored = services.store.find_message(session.user_id, message_id)
    if stored is None:
        return None
    server_seq, server_time, stored_recipient, stored_hash, stored_group = stored
    if (
        stored_recipient != recipient_id
        or stored_group != group_id
        or stored_hash != payload_hash
    ):
        raise HandlerError(
            errors.MESSAGE_ID_CONFLICT,
            f"Message id {message_id} was already used for a different message.",
        )
    return Outcome(reply=_send_reply(message_id, server_seq, server_time, True))


def stored_outcome(
    services: Services,
    request: Request,
    to: str,
    stored: tuple[int, list[tuple[int, int]]],
    envelopes: list[tuple[int, bytes]],
    now: int,
    group_id: str | None = None,
) -> Outcome:
    """Return the reply to a stored send, with a live push per queue row.

    ``to`` is the push's conversation field, ``stored`` what
    ``Store.store_message`` returned, and ``group_id`` set for a group.
    """
    session, own_device = require_device(request)
    fields = request.fields
    server_seq, queued = stored
    extra = {} if group_id is None else {"group": group_id}
    bodies = dict(envelopes)
    outcome = Outcome(reply=_send_reply(fields["message_id"], server_seq, now, False))
    for device_id, seq in queued:
        push = make_push(
            "message",
            seq=seq,
            message_id=fields["message_id"],
            from_=session.username,
            from_device=own_device,
            to=to,
            server_seq=server_seq,
            server_time=now,
            payload=fields["payload"],
            envelope=bodies[device_id],
            **extra,
        )
        outcome.queue_pushes.append((device_id, seq, services.encode(push)))
    return outcome


def _check_envelopes(
    services: Services,
    request: Request,
    recipient_id: int,
    recipient_name: str,
) -> list[tuple[int, bytes]]:
    """Match the envelopes to the expected devices; return ``(device_id, body)``."""
    session, own_device = require_device(request)
    active_since = services.active_since
    expected = {
        (recipient_name, device_id)
        for device_id in services.store.active_devices(recipient_id, active_since)
    }
    expected |= {
        (session.username, device_id)
        for device_id in services.store.active_devices(session.user_id, active_since)
        if device_id != own_device
    }
    return match_envelopes(request.fields["envelopes"], expected)


def match_envelopes(
    envelopes: list[dict[str, Any]], expected: set[tuple[str, int]]
) -> list[tuple[int, bytes]]:
    """Return ``(device_id, body)`` if the envelopes cover exactly ``expected``.

    ``expected`` contains ``(username, device_id)`` pairs. Raises
    ``device_list_mismatch`` naming the missing and the extra devices.
    """
    given: dict[tuple[str, int], bytes] = {}
    extra: list[dict[str, Any]] = []
    for envelope in envelopes:
        try:
            username = canonical_username(envelope["username"])
        except InvalidUsername:
            username = envelope["username"]
        address = (username, envelope["device_id"])
        if address in given or address not in expected:
            extra.append(_address(*address))
            continue
        given[address] = envelope["body"]
    missing = [_address(*address) for address in sorted(expected - given.keys())]
    if missing or extra:
        raise HandlerError(
            errors.DEVICE_LIST_MISMATCH,
            "The envelopes do not match the recipients' devices; "
            "fetch the bundles again.",
            details={"missing": missing, "extra": extra},
        )
    return [(address[1], body) for address, body in given.items()]


def check_quotas(
    services: Services,
    request: Request,
    payload_size: int,
    envelopes: list[tuple[int, bytes]],
) -> None:
    """Raise ``quota_exceeded`` if storing the message would pass a limit."""
    session = request.session
    assert session is not None
    store = services.store
    quota = services.config.message_quota
    used = store.queued_payload_bytes(session.user_id)
    if used + payload_size > quota:
        logger.info(
            "connection %d: send rejected, %s has %d of %d bytes queued",
            request.conn_id,
            session.username,
            used,
            quota,
        )
        raise HandlerError(
            errors.QUOTA_EXCEEDED,
            f"Your undelivered messages already take {used} of {quota} bytes, "
            f"so {payload_size} more do not fit; wait until your contacts "
            "have received them.",
            details={"used": used, "quota": quota},
        )
    max_items = services.config.max_queued_items
    for device_id, _ in envelopes:
        length = store.queue_length(device_id)
        if length >= max_items:
            logger.info(
                "connection %d: send rejected, queue of device %d has %d items",
                request.conn_id,
                device_id,
                length,
            )
            raise HandlerError(
                errors.QUOTA_EXCEEDED,
                f"Device {device_id} already has {length} undelivered items, "
                f"the maximum is {max_items}; wait until it comes online.",
                details={"device_id": device_id, "max_items": max_items},
            )


def check_push_size(
    services: Services, payload: bytes, envelopes: list[dict[str, Any]]
) -> None:
    """Raise ``frame_too_large`` if a push of the message would not fit a frame."""
    largest_envelope = max((len(e["body"]) for e in envelopes), default=0)
    push_size = (
        _b64_length(len(payload))
        + _b64_length(largest_envelope)
        + MESSAGE_PUSH_OVERHEAD
    )
    if push_size > services.config.max_frame_size:
        raise HandlerError(
            errors.FRAME_TOO_LARGE,
            "The message is too large to deliver within the maximum frame size of "
            f"{services.config.max_frame_size} bytes.",
        )


def check_policy(services: Services, request: Request, recipient: User) -> None:
    """Raise ``not_allowed`` if the lab policy forbids this direct message.

    The sender's row is read only under a restrictive policy. In the
    commit writer's batch both rows come from its lookup cache.
    """
    session = request.session
    assert session is not None
    if not direct_messages_restricted(services.config):
        return
    sender = services.store.user_by_name(session.username)
    if sender is None:
        raise HandlerError(errors.INVALID_SESSION, "The account no longer exists.")
    if not may_message_directly(services.config, sender, recipient):
        logger.info(
            "connection %d: send from %s to %s rejected by the lab policy",
            request.conn_id,
            sender.username,
            recipient.username,
        )
        raise not_allowed_to_message(recipient)


def send(services: Services, request: Request) -> Outcome:
    session, own_device = require_device(request)
    fields = request.fields
    try:
        to = canonical_username(fields["to"])
    except InvalidUsername as exc:
        raise HandlerError(errors.INVALID_USERNAME, str(exc)) from exc

    recipient = services.store.user_by_name(to)
    if recipient is None:
        raise HandlerError(errors.USER_NOT_FOUND, f"There is no user {to}.")

    payload: bytes = fields["payload"]
    payload_hash = hashlib.sha256(payload).digest()
    duplicate = duplicate_reply(services, request, recipient.id, None, payload_hash)
    if duplicate is not None:
        return duplicate

    check_policy(services, request, recipient)
    if recipient.id == session.user_id or not services.store.is_contact(
        session.user_id, recipient.id
    ):
        raise HandlerError(errors.NOT_A_CONTACT, f"{to} is not one of your contacts.")

    check_push_size(services, payload, fields["envelopes"])

    envelopes = _check_envelopes(services, request, recipient.id, recipient.username)
    check_quotas(services, request, len(payload), envelopes)
    now = now_ms()
    try:
        stored = services.store.store_message(
            session.user_id,
            own_device,
            fields["message_id"],
            recipient.id,
            payload,
            payload_hash,
            envelopes,
            now,
        )
    except sqlite3.IntegrityError:
        # Another worker stored the same message id first.
        duplicate = duplicate_reply(services, request, recipient.id, None, payload_hash)
        if duplicate is None:
            raise
        return duplicate
    return stored_outcome(services, request, recipient.username, stored, envelopes, now)


def sync(services: Services, request: Request) -> Outcome:
    _, device_id = require_device(request)
    after = request.fields["after"]
    if not request.fields.get("continued"):
        services.store.touch_device(device_id, now_ms())

    items = services.store.queue_items(device_id, after, SYNC_BATCH_ITEMS)
    budget = max(services.config.output_soft_limit // 2, 1)
    outcome = Outcome()
    size = 0
    highest = after
    for item in items:
        frame = queue_item_frame(item)
        highest = item.seq
        if frame is None:
            logger.warning(
                "queue item %d of device %d has no payload", item.seq, device_id
            )
            continue
        data = services.encode(frame)
        outcome.before.append(data)
        size += len(data)
        if size >= budget:
            break

    outcome.highest_seq = highest
    if items and (highest != items[-1].seq or len(items) == SYNC_BATCH_ITEMS):
        fields = dict(request.fields, after=highest, continued=True)
        outcome.continuation = dataclasses.replace(request, fields=fields)
        return outcome

    outcome.reply = {"last": services.store.last_seq(device_id)}
    remaining = services.store.prekey_count(device_id)
    if remaining < PREKEYS_LOW:
        outcome.after.append(prekeys_low_frame(services, remaining))
    return outcome


def ack(services: Services, request: Request) -> Outcome:
    session, device_id = require_device(request)
    receipts = services.store.acknowledge(
        device_id,
        session.username,
        request.fields["upto"],
        session.user_id,
        services.active_since,
    )
    outcome = Outcome(reply={})
    for target, seq, message_id in receipts:
        push = make_push(
            "receipt",
            seq=seq,
            message_id=message_id,
            username=session.username,
            device_id=device_id,
        )
        outcome.queue_pushes.append((target, seq, services.encode(push)))
    return outcome
