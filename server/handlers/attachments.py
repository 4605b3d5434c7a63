"""Attachment requests: create, upload, status and download.

``attachment_create`` fixes the size and the devices allowed to download:
the recipient's devices and the uploader's other devices that are active
at creation time. Only the uploading account and those devices may read
the attachment. Anyone else gets ``attachment_not_found``, so an id
reveals nothing about its existence.
Each chunk is a request of its own, so other requests of the same
connection keep flowing between chunks.
"""

from __future__ import annotations

import logging
import threading
import time

from enctalk.protocol import InvalidUsername, canonical_username, errors
from server.attachments import (
    Attachment,
    AttachmentStore,
    OffsetMismatch,
    QuotaExceeded,
)
from server.handlers.base import (
    MS_PER_DAY,
    HandlerError,
    Outcome,
    Request,
    Services,
    now_ms,
    require_device,
)
from server.handlers.messages import check_policy

logger = logging.getLogger(__name__)

# Expired attachments are looked for at most this often, on the next request.
EXPIRY_CHECK_INTERVAL = 60.0

_open_lock = threading.Lock()
_last_expiry_check: dict[int, float] = {}


def attachment_store(services: Services) -> AttachmentStore:
    """Return the services' attachment store, opening it on first use."""
    with _open_lock:
        if services.attachments is None:
            services.attachments = AttachmentStore.open_in(
                services.store, services.config.resolved_data_dir()
            )
        store = services.attachments
        last = _last_expiry_check.get(id(services))
        due = last is None or time.monotonic() - last >= EXPIRY_CHECK_INTERVAL
        if due:
            _last_expiry_check[id(services)] = time.monotonic()
    if due:
        expire_attachments(services, store)
    return store


def expire_attachments(services: Services, store: AttachmentStore) -> int:
    """Delete the attachments older than the retention period."""
    retention_ms = int(services.config.attachment_retention_days * MS_PER_DAY)
    return store.expire(now_ms() - retention_ms)


def _not_found(attachment_id: str) -> HandlerError:
    return HandlerError(
        errors.ATTACHMENT_NOT_FOUND,
        f"There is no attachment {attachment_id} that this device may read; "
        "it may have expired or been fetched by every recipient.",
    )


def _readable(services: Services, request: Request) -> tuple[Attachment, int]:
    """Return the attachment and the caller's device, if the caller may read it."""
    session, device_id = require_device(request)
    store = attachment_store(services)
    attachment_id = request.fields["attachment_id"]
    attachment = store.get(attachment_id)
    if attachment is None:
        raise _not_found(attachment_id)
    if attachment.owner != session.user_id and not store.is_recipient(
        attachment_id, device_id
    ):
        logger.warning(
            "connection %d: device %d may not read attachment %s",
            request.conn_id,
            device_id,
            attachment_id,
        )
        raise _not_found(attachment_id)
    return attachment, device_id


def _contact_devices(services: Services, request: Request, name: str) -> set[int]:
    """Return the devices of a contact and of the requester's account."""
    session = request.session
    assert session is not None
    try:
        to = canonical_username(name)
    except InvalidUsername as exc:
        raise HandlerError(errors.INVALID_USERNAME, str(exc)) from exc
    recipient = services.store.user_by_name(to)
    if recipient is None:
        raise HandlerError(errors.USER_NOT_FOUND, f"There is no user {to}.")
    if recipient.id == session.user_id or not services.store.is_contact(
        session.user_id, recipient.id
    ):
        raise HandlerError(errors.NOT_A_CONTACT, f"{to} is not one of your contacts.")
    # Refused before the upload, not after it at the send.
    check_policy(services, request, recipient)
    active_since = services.active_since
    devices = set(services.store.active_devices(recipient.id, active_since))
    devices |= set(services.store.active_devices(session.user_id, active_since))
    return devices


def _group_devices(services: Services, request: Request, group_id: str) -> set[int]:
    """Return the devices of every member of a group the requester may post in.

    NOTE: like a direct attachment, the devices are fixed here, so a member
    added after the upload cannot fetch it.
    """
    session = request.session
    assert session is not None
    row = services.store.group(group_id)
    if row is None or session.username not in row.members:
        raise HandlerError(
            errors.GROUP_NOT_FOUND, f"There is no group {group_id} that you are in."
        )
    member_ids = [uid for uid, _, _ in row.members.values()]
    return {
        device_id
        for _, _, device_id in services.store.group_member_devices(
            member_ids, services.active_since
        )
    }


def attachment_create(services: Services, request: Request) -> Outcome:
    session, own_device = require_device(request)
    size = request.fields["size"]
    limit = services.config.max_attachment_size
    if size > limit:
        raise HandlerError(
            errors.ATTACHMENT_TOO_LARGE,
            f"The attachment is {size} bytes; this server accepts at most "
            f"{limit} bytes.",
            details={"max_attachment_size": limit},
        )
    target = request.fields["to"]
    if target.startswith("#"):
        devices = _group_devices(services, request, target[1:])
    else:
        devices = _contact_devices(services, request, target)
    devices.discard(own_device)

    store = attachment_store(services)
    quota = services.config.attachment_quota
    try:
        attachment_id = store.create(
            session.user_id, own_device, size, devices, now_ms(), quota
        )
    except QuotaExceeded as exc:
        raise HandlerError(
            errors.QUOTA_EXCEEDED,
            f"Your attachments on the server already take {exc.used} of "
            f"{quota} bytes, so {size} more do not fit; wait until your "
            "contacts have fetched them.",
            details={"used": exc.used, "quota": quota},
        ) from exc
    logger.info(
        "connection %d: attachment %s of %d bytes for %d devices",
        request.conn_id,
        attachment_id,
        size,
        len(devices),
    )
    return Outcome(reply={"attachment_id": attachment_id})


def attachment_upload(services: Services, request: Request) -> Outcome:
    session, _ = require_device(request)
    store = attachment_store(services)
    attachment_id = request.fields["attachment_id"]
    attachment = store.get(attachment_id)
    if attachment is None or attachment.owner != session.user_id:
        raise _not_found(attachment_id)
    offset, data = request.fields["offset"], request.fields["data"]
    try:
        received = store.write_chunk(attachment_id, offset, data)
    except OffsetMismatch as exc:
        raise HandlerError(
            errors.INVALID_OFFSET,
            f"The server has {exc.received} bytes of attachment {attachment_id}; "
            f"send the next chunk from offset {exc.received}, not {offset}.",
            details={"received": exc.received},
        ) from exc
    except KeyError as exc:
        raise _not_found(attachment_id) from exc
    except ValueError as exc:
        raise HandlerError(errors.INVALID_OFFSET, f"Invalid chunk: {exc}.") from exc
    return Outcome(reply={"received": received})


def attachment_status(services: Services, request: Request) -> Outcome:
    attachment, _ = _readable(services, request)
    return Outcome(
        reply={
            "received": attachment.received,
            "size": attachment.size,
            "complete": attachment.complete,
        }
    )


def attachment_download(services: Services, request: Request) -> Outcome:
    attachment, device_id = _readable(services, request)
    attachment_id = attachment.attachment_id
    offset, length = request.fields["offset"], request.fields["length"]
    if not attachment.complete:
        raise HandlerError(
            errors.INVALID_OFFSET,
            f"Attachment {attachment_id} is still being uploaded "
            f"({attachment.received} of {attachment.size} bytes).",
            details={"received": attachment.received},
        )
    if offset >= attachment.size:
        raise HandlerError(
            errors.INVALID_OFFSET,
            f"Offset {offset} is past the end of attachment {attachment_id} "
            f"({attachment.size} bytes).",
        )
    store = attachment_store(services)
    try:
        data = store.read_chunk(attachment_id, offset, length)
    except FileNotFoundError as exc:
        raise _not_found(attachment_id) from exc
    if offset + len(data) >= attachment.size and attachment.owner_device != device_id:
        # NOTE: the attachment may be deleted here, so a client that loses
        # this reply cannot fetch the last chunk again.
        store.mark_fetched(attachment_id, device_id)
    return Outcome(reply={"data": data, "offset": offset, "size": attachment.size})
