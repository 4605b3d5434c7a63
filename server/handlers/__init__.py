"""Request handlers, one function per request type, run in worker threads.

:func:`dispatch` runs the handler for a :class:`Request` and always
returns an :class:`Outcome`: a :class:`HandlerError` becomes its error
frame, and any other exception becomes ``internal_error`` (logged with its
traceback here, never sent to the client).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from enctalk.protocol import errors, make_error, make_reply
from server.handlers import accounts, contacts, devices, messages
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
    "list_devices": devices.list_devices,
    "remove_device": devices.remove_device,
    "add_contact": contacts.add_contact,
    "list_contacts": contacts.list_contacts,
    "send": messages.send,
    "sync": messages.sync,
    "ack": messages.ack,
}

# Request types an anonymous connection may send.
ANONYMOUS_REQUESTS = frozenset(
    {"hello", "register", "login", "resume", "redeem_reset", "ping"}
)


def dispatch(services: Services, request: Request) -> Outcome:
    """Run the handler of ``request`` and turn its result into frames."""
    handler = HANDLERS.get(request.kind)
    try:
        if handler is None:
            raise HandlerError(
                errors.UNKNOWN_TYPE, f"The server does not handle {request.kind}."
            )
        outcome = handler(services, request)
    except HandlerError as exc:
        return Outcome(reply=error_reply(request, exc))
    except Exception:
        logger.exception(
            "connection %d: %s request failed", request.conn_id, request.kind
        )
        return Outcome(
            reply=make_error(
                request.frame_id,
                errors.INTERNAL_ERROR,
                "The server failed to handle the request; try again later.",
            )
        )
    if outcome.reply is not None and outcome.reply.get("type") != "error":
        outcome.reply = make_reply(request.frame_id, **outcome.reply)
    return outcome


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
]
