"""Request handlers, one function per request type.

Most run in worker threads through :func:`dispatch`, which always returns
an :class:`Outcome`: a :class:`HandlerError` becomes its error frame, and
any other exception becomes ``internal_error`` (logged with its traceback
here, never sent to the client). ``send`` and ``ack`` run in the commit
writer's thread (``server.writer``), which calls :func:`run_handler` and
:func:`failure_outcome` itself so that it can roll back a failed request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from enctalk.protocol import errors, make_error, make_reply
from server.handlers import (
    accounts,
    attachments,
    classes,
    contacts,
    devices,
    groups,
    messages,
)
from server.handlers.base import (
    HandlerError,
    OnlineUsers,
    Outcome,
    Request,
    Revocation,
    Services,
    Session,
    error_reply,
)

logger = logging.getLogger(__name__)

Handler = Callable[[Services, Request], Outcome]

HANDLERS: dict[str, Handler] = {
    "register": accounts.register,
    "login": accounts.login,
    "resume": accounts.resume,
    "logout": accounts.logout,
    "change_password": accounts.change_password,
    "redeem_reset": accounts.redeem_reset,
    "upload_backup": accounts.upload_backup,
    "fetch_backup": accounts.fetch_backup,
    "register_device": devices.register_device,
    "upload_prekeys": devices.upload_prekeys,
    "fetch_bundles": devices.fetch_bundles,
    "fetch_bundle_set": devices.fetch_bundle_set,
    "lookup_identities": devices.lookup_identities,
    "list_devices": devices.list_devices,
    "remove_device": devices.remove_device,
    "add_contact": contacts.add_contact,
    "list_contacts": contacts.list_contacts,
    "list_classes": classes.list_classes,
    "class_members": classes.class_members,
    "send": messages.send,
    "sync": messages.sync,
    "ack": messages.ack,
    "group_op": groups.group_op,
    "group_send": groups.group_send,
    "group_log": groups.group_log,
    "list_groups": groups.list_groups,
    "group_members": groups.group_members,
    "attachment_create": attachments.attachment_create,
    "attachment_upload": attachments.attachment_upload,
    "attachment_status": attachments.attachment_status,
    "attachment_download": attachments.attachment_download,
}

# Request types an anonymous connection may send.
ANONYMOUS_REQUESTS = frozenset(
    {"hello", "register", "login", "resume", "redeem_reset", "ping"}
)


def run_handler(services: Services, request: Request) -> Outcome:
    """Run the handler of ``request``; raise what it raises.

    A successful outcome's reply is completed into an ``ok`` frame.
    """
    handler = HANDLERS.get(request.kind)
    if handler is None:
        raise HandlerError(
            errors.UNKNOWN_TYPE, f"The server does not handle {request.kind}."
        )
    outcome = handler(services, request)
    if outcome.reply is not None and outcome.reply.get("type") != "error":
        outcome.reply = make_reply(request.frame_id, **outcome.reply)
    return outcome


def failure_outcome(request: Request, exc: Exception) -> Outcome:
    """Turn a handler's exception into the outcome sent to the client.

    A :class:`HandlerError` becomes its error frame. Anything else is logged
    with its traceback and becomes ``internal_error``; call this inside the
    ``except`` block so the traceback is still available.
    """
    if isinstance(exc, HandlerError):
        return Outcome(reply=error_reply(request, exc))
    logger.exception("connection %d: %s request failed", request.conn_id, request.kind)
    return internal_error_outcome(request)


def internal_error_outcome(request: Request) -> Outcome:
    return Outcome(
        reply=make_error(
            request.frame_id,
            errors.INTERNAL_ERROR,
            "The server failed to handle the request; try again later.",
        )
    )


def dispatch(services: Services, request: Request) -> Outcome:
    """Run the handler of ``request`` and turn its result into frames."""
    try:
        return run_handler(services, request)
    except Exception as exc:
        return failure_outcome(request, exc)


__all__ = [
    "ANONYMOUS_REQUESTS",
    "HANDLERS",
    "HandlerError",
    "OnlineUsers",
    "Outcome",
    "Request",
    "Revocation",
    "Services",
    "Session",
    "dispatch",
    "failure_outcome",
    "internal_error_outcome",
    "run_handler",
]
