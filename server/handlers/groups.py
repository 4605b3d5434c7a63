"""Groups: signed operations, group messages, logs and member lists.

The server keeps each group's current state in tables and its signed
operation log whole. A ``group_op`` gets the checks every client makes
(``enctalk.crypto.grouplog``). It must follow the current epoch and
head, and its actor must be the session's account, with the role the
action needs. The account's identity key must have signed it. It is
then stored and queued to every device of the old and the new members,
so a removed member learns of the removal. A ``group_send`` is refused
unless its sender may post at the group's current epoch, and its
envelopes must cover exactly the members' active devices: a removed
member's devices get nothing.

``group_op`` and ``group_send`` run in the commit writer's thread, which
orders them with every other send, so an epoch check and the store that
depends on it cannot interleave with another operation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from typing import Any

from enctalk.crypto.grouplog import (
    ADD,
    CREATE,
    DELETE,
    GroupOp,
    GroupOpError,
    GroupState,
    parse_message_ref,
    verify_op,
)
from enctalk.protocol import InvalidUsername, canonical_username, errors, make_push
from enctalk.protocol.schema import MAX_GROUP_OPS_PER_FRAME, b64
from server import policy
from server.handlers.base import (
    HandlerError,
    Outcome,
    Request,
    Services,
    now_ms,
    require_device,
    require_session,
)
from server.handlers.messages import (
    check_push_size,
    check_quotas,
    duplicate_reply,
    match_envelopes,
    stored_outcome,
)
from server.store import GroupRow

logger = logging.getLogger(__name__)


def _not_found(group_id: str) -> HandlerError:
    return HandlerError(
        errors.GROUP_NOT_FOUND, f"There is no group {group_id} that you are in."
    )


def _outdated(group: GroupRow | GroupState) -> HandlerError:
    return HandlerError(
        errors.GROUP_OUTDATED,
        "The group changed since your client last read it; fetch its log again.",
        details={"epoch": group.epoch},
    )


def _state(row: GroupRow) -> GroupState:
    return GroupState(
        group_id=row.group_id,
        name=row.name,
        epoch=row.epoch,
        head=row.head,
        roles={name: role for name, (_, role, _) in row.members.items()},
        muted=frozenset(name for name, (_, _, muted) in row.members.items() if muted),
        read_only=row.read_only,
    )


def _canonical(name: str) -> str:
    try:
        canonical = canonical_username(name)
    except InvalidUsername as exc:
        raise HandlerError(errors.INVALID_USERNAME, str(exc)) from exc
    if canonical != name:
        raise HandlerError(
            errors.INVALID_GROUP_OP,
            f"A group operation must name {canonical!r}, the canonical form "
            f"of {name!r}.",
        )
    return canonical


def _wire_op(op: GroupOp) -> dict[str, Any]:
    fields = op.to_wire()
    fields["prev"] = b64(op.prev)
    fields["actor_key"] = b64(op.actor_key)
    fields["signature"] = b64(op.signature)
    return fields


def group_op(services: Services, request: Request) -> Outcome:
    session, own_device = require_device(request)
    op = GroupOp.from_wire(request.fields["op"])
    if op.actor != session.username:
        raise HandlerError(
            errors.NOT_ALLOWED,
            "A group operation must name the account that sends it as its actor.",
        )
    store = services.store
    row = store.group(op.group_id)
    user_ids = {session.username: session.user_id}
    if op.action == CREATE:
        if row is not None:
            raise HandlerError(
                errors.GROUP_EXISTS, f"A group with id {op.group_id} already exists."
            )
        if op.index != 1:
            raise HandlerError(
                errors.INVALID_GROUP_OP,
                "A create must be operation 1 of a new group's log.",
            )
        user = store.user_by_id(session.user_id)
        if user is None or not policy.may_create_groups(services.config, user):
            raise HandlerError(
                errors.NOT_ALLOWED, "On this server only staff accounts create groups."
            )
        state = GroupState.empty(op.group_id)
    else:
        if row is None or session.username not in row.members:
            raise _not_found(op.group_id)
        state = _state(row)
        user_ids.update({name: uid for name, (uid, _, _) in row.members.items()})
    if op.index != state.epoch + 1 or op.prev != state.head:
        raise _outdated(state)

    if op.target:
        target = store.user_by_name(_canonical(op.target))
        if target is None:
            raise HandlerError(errors.USER_NOT_FOUND, f"There is no user {op.target}.")
        user_ids[target.username] = target.id
    try:
        new_state = state.apply(op)
    except GroupOpError as exc:
        raise HandlerError(errors.INVALID_GROUP_OP, str(exc)) from exc

    actor = store.user_by_id(session.user_id)
    assert actor is not None
    try:
        verify_op(op)
        if op.actor_key != actor.identity_key:
            raise GroupOpError(
                f"Group operation {op.index} is not signed by the identity key "
                f"of {op.actor}."
            )
    except GroupOpError as exc:
        logger.info("connection %d: group op refused: %s", request.conn_id, exc)
        raise HandlerError(errors.INVALID_SIGNATURE, str(exc)) from exc

    if op.action == DELETE:
        _withdraw(services, op)

    now = now_ms()
    new_row = GroupRow(
        group_id=op.group_id,
        name=new_state.name,
        epoch=new_state.epoch,
        head=new_state.head,
        read_only=new_state.read_only,
        members={
            name: (user_ids[name], role, name in new_state.muted)
            for name, role in new_state.roles.items()
        },
    )
    devices = [
        device_id
        for _, _, device_id in store.group_member_devices(
            user_ids.values(), services.active_since
        )
    ]
    wire = _wire_op(op)
    server_seq, queued = store.store_group_op(
        new_row,
        json.dumps(wire, ensure_ascii=False, separators=(",", ":")),
        (session.user_id, own_device),
        user_ids,
        devices,
        now,
    )
    logger.info(
        "group %s: %s by %s, epoch %d", op.group_id, op.action, op.actor, op.index
    )
    outcome = Outcome(
        reply={"server_seq": server_seq, "server_time": now, "epoch": op.index}
    )
    if op.action == ADD:
        # NOTE: a removed member keeps seeing the others' presence until
        # one of them logs in again, which rebuilds the presence lists.
        added = user_ids[op.target]
        outcome.new_contacts = [
            (added, uid) for uid, _, _ in new_row.members.values() if uid != added
        ]
    for device_id, seq in queued:
        push = make_push(
            "group_op", seq=seq, op=wire, server_seq=server_seq, server_time=now
        )
        outcome.queue_pushes.append((device_id, seq, services.encode(push)))
    return outcome


def _withdraw(services: Services, op: GroupOp) -> None:
    # NOTE: the ciphertext of a deleted voice message stays in the
    # attachment store until every device has fetched it or it expires.
    # The clients drop their reference to it.
    author_name, message_id = parse_message_ref(op.value)
    author = services.store.user_by_name(author_name)
    if author is None or not services.store.withdraw_group_message(
        op.group_id, author.id, message_id
    ):
        raise HandlerError(
            errors.INVALID_GROUP_OP,
            f"The group has no message {message_id} from {author_name}.",
        )


def group_send(services: Services, request: Request) -> Outcome:
    session, own_device = require_device(request)
    fields = request.fields
    group_id, message_id = fields["group_id"], fields["message_id"]
    payload: bytes = fields["payload"]
    payload_hash = hashlib.sha256(payload).digest()
    duplicate = duplicate_reply(
        services, request, session.user_id, group_id, payload_hash
    )
    if duplicate is not None:
        return duplicate

    row = services.store.group(group_id)
    if row is None or session.username not in row.members:
        raise _not_found(group_id)
    refusal = _state(row).post_refusal(session.username)
    if refusal is not None:
        _, _, muted = row.members[session.username]
        raise HandlerError(errors.MUTED if muted else errors.READ_ONLY, refusal)
    if fields["epoch"] != row.epoch:
        raise _outdated(row)
    check_push_size(services, payload, fields["envelopes"])

    member_ids = [uid for uid, _, _ in row.members.values()]
    expected = {
        (username, device_id)
        for _, username, device_id in services.store.group_member_devices(
            member_ids, services.active_since
        )
        if device_id != own_device
    }
    envelopes = match_envelopes(fields["envelopes"], expected)
    check_quotas(services, request, len(payload), envelopes)
    now = now_ms()
    try:
        stored = services.store.store_message(
            session.user_id,
            own_device,
            message_id,
            session.user_id,
            payload,
            payload_hash,
            envelopes,
            now,
            group_id,
        )
    except sqlite3.IntegrityError:
        duplicate = duplicate_reply(
            services, request, session.user_id, group_id, payload_hash
        )
        if duplicate is None:
            raise
        return duplicate
    return stored_outcome(
        services, request, "#" + group_id, stored, envelopes, now, group_id
    )


def group_log(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    group_id = request.fields["group_id"]
    upto = services.store.group_access(group_id, session.user_id)
    if upto is None:
        raise _not_found(group_id)
    rows = services.store.group_log(
        group_id, request.fields["after"], upto, MAX_GROUP_OPS_PER_FRAME
    )
    ops = [
        {"op": json.loads(op), "server_seq": server_seq, "server_time": server_time}
        for op, server_seq, server_time in rows
    ]
    return Outcome(reply={"ops": ops, "epoch": upto})


def list_groups(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    groups = [
        {"group_id": group_id, "name": name, "epoch": epoch}
        for group_id, name, epoch in services.store.user_groups(session.user_id)
    ]
    return Outcome(reply={"groups": groups})


def group_members(services: Services, request: Request) -> Outcome:
    session = require_session(request)
    group_id = request.fields["group_id"]
    row = services.store.group(group_id)
    if row is None or session.username not in row.members:
        raise _not_found(group_id)
    users = services.store.users_by_names(row.members)
    members = [
        {
            "username": name,
            "role": role,
            "muted": muted,
            "online": services.online.is_online(user_id),
            "display_name": (users[name].display_name if name in users else "") or name,
            "pending": name in users and users[name].pending_setup,
        }
        for name, (user_id, role, muted) in sorted(row.members.items())
    ]
    return Outcome(reply={"epoch": row.epoch, "members": members})
