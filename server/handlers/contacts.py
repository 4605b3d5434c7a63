"""Contacts: add_contact and list_contacts. Contacts are always mutual.

Under ``direct_messages = "staff"`` (``server.policy``) an account that is
not staff may add only staff accounts. An account imported from a roster
cannot be added until its setup code is redeemed, because it has no
identity key yet.
"""

from __future__ import annotations

import logging

from enctalk.protocol import InvalidUsername, canonical_username, errors, make_push
from server.handlers.base import (
    HandlerError,
    Outcome,
    Request,
    Services,
    now_ms,
    require_session,
)
from server.policy import may_message_directly
from server.store import User

logger = logging.getLogger(__name__)


def not_allowed_to_message(recipient: User) -> HandlerError:
    """Return the error for a direct message that the lab policy forbids."""
    return HandlerError(
        errors.NOT_ALLOWED,
        "This lab allows pupils to message only teachers (staff accounts), and "
        f"{recipient.username} is not one.",
    )


def add_contact(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    try:
        username = canonical_username(request.fields["username"])
    except InvalidUsername as exc:
        raise HandlerError(errors.INVALID_USERNAME, str(exc)) from exc
    if username == session.username:
        raise HandlerError(errors.INVALID_USERNAME, "You cannot add yourself.")
    other = services.store.user_by_name(username)
    if other is None:
        raise HandlerError(errors.USER_NOT_FOUND, f"There is no user {username}.")
    me = services.store.user_by_id(session.user_id)
    if me is None:
        raise HandlerError(errors.INVALID_SESSION, "The account no longer exists.")
    if not may_message_directly(services.config, me, other):
        logger.info(
            "connection %d: %s may not add %s under the lab policy",
            request.conn_id,
            me.username,
            other.username,
        )
        raise not_allowed_to_message(other)
    if other.pending_setup:
        logger.info(
            "connection %d: %s cannot add %s, which is waiting for setup",
            request.conn_id,
            me.username,
            other.username,
        )
        raise HandlerError(
            errors.SETUP_REQUIRED,
            f"{other.username} has not redeemed the setup code yet, so the account "
            "has no keys. Add it after its first login.",
        )
    added = services.store.add_contact(me.id, other.id, now_ms())
    outcome = Outcome(
        reply={
            "username": other.username,
            "online": services.online.is_online(other.id),
            "identity_key": other.identity_key,
            "display_name": other.display_name,
        },
        new_contacts=[(me.id, other.id)],
    )
    if added:
        logger.info("users %s and %s are now contacts", me.username, other.username)
        push = make_push(
            "contact_added",
            username=me.username,
            online=True,
            identity_key=me.identity_key,
            display_name=me.display_name,
        )
        outcome.user_frames.append((other.id, services.encode(push)))
    return outcome


def list_contacts(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    contacts = [
        {
            "username": contact.username,
            "online": services.online.is_online(contact.user_id),
            "identity_key": contact.identity_key,
            "display_name": contact.display_name,
        }
        for contact in services.store.contacts(session.user_id)
    ]
    return Outcome(reply={"contacts": contacts})
