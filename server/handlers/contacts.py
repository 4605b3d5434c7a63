"""Contacts: add_contact and list_contacts. Contacts are always mutual."""

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

logger = logging.getLogger(__name__)


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
    added = services.store.add_contact(me.id, other.id, now_ms())
    outcome = Outcome(
        reply={
            "username": other.username,
            "online": services.online.is_online(other.id),
            "identity_key": other.identity_key,
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
        )
        outcome.user_frames.append((other.id, services.encode(push)))
    return outcome


def list_contacts(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    contacts = [
        {
            "username": username,
            "online": services.online.is_online(user_id),
            "identity_key": identity_key,
        }
        for user_id, username, identity_key in services.store.contacts(session.user_id)
    ]
    return Outcome(reply={"contacts": contacts})
