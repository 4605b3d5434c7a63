"""Class lists for teachers: list_classes and class_members.

A class is the group label that a roster import gave its accounts ("7B").
Only staff accounts may read the lists, because they name every pupil of
a class, also those who are not the caller's contacts.
"""

from __future__ import annotations

import logging

from enctalk.protocol import errors
from enctalk.protocol.schema import MAX_CLASS_MEMBERS, MAX_CLASSES
from server.handlers.base import (
    HandlerError,
    Outcome,
    Request,
    Services,
    require_session,
)
from server.store import User

logger = logging.getLogger(__name__)


def _require_staff(services: Services, request: Request) -> User:
    session = require_session(request)
    user = services.store.user_by_id(session.user_id)
    if user is None:
        raise HandlerError(errors.INVALID_SESSION, "The account no longer exists.")
    if not user.staff:
        logger.info(
            "connection %d: %s is not staff, %s rejected",
            request.conn_id,
            user.username,
            request.kind,
        )
        raise HandlerError(
            errors.NOT_ALLOWED, "Only staff accounts may see the class lists."
        )
    return user


def list_classes(services: Services, request: Request) -> Outcome:
    _require_staff(services, request)
    labels = services.store.class_labels()
    if len(labels) > MAX_CLASSES:
        # NOTE: a reply contains at most MAX_CLASSES labels; the rest are left out.
        logger.warning(
            "list_classes: %d class labels, only the first %d are sent",
            len(labels),
            MAX_CLASSES,
        )
        labels = labels[:MAX_CLASSES]
    return Outcome(reply={"classes": labels})


def class_members(services: Services, request: Request) -> Outcome:
    _require_staff(services, request)
    label = request.fields["group"]
    members = services.store.class_members(label)
    if len(members) > MAX_CLASS_MEMBERS:
        # NOTE: a reply contains at most MAX_CLASS_MEMBERS accounts; the rest
        # are left out.
        logger.warning(
            "class_members: class %r has %d accounts, only the first %d are sent",
            label,
            len(members),
            MAX_CLASS_MEMBERS,
        )
        members = members[:MAX_CLASS_MEMBERS]
    return Outcome(
        reply={
            "group": label,
            "members": [
                {
                    "username": member.username,
                    "display_name": member.display_name,
                    "pending": member.pending_setup,
                }
                for member in members
            ],
        }
    )
