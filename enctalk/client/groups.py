"""Groups on the client: the verified operation log, and what it decides.

These functions take the :class:`~enctalk.client.core.Client` they work
for and run under the client's lock. The client keeps, per group, every
operation it has verified (signature by the actor's pinned identity key,
hash chain, roles) and the state they build. The server's view is never
taken on trust: senders encrypt only to the members of the verified
state, and a received group message is shown only if its sender could
post at the epoch the message names.

Ordering: the server queues each operation to every member device in
commit order with the messages, so a device normally applies operation n
before any message sent at epoch n. A device that lacks operations (just
added, or a gap) fetches the log with ``group_log``. A message is
rejected when the operation after its epoch was committed before it,
because the sender then wrote against a state that had already ended.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enctalk.client import errors as codes
from enctalk.client.errors import ClientError
from enctalk.client.events import ERROR, GROUP_UPDATED, MESSAGE_DELETED
from enctalk.client.history import HistoryEntry
from enctalk.crypto.grouplog import (
    CREATE,
    DELETE,
    LEAVE,
    REMOVE,
    GroupOp,
    GroupOpError,
    GroupState,
    describe_op,
    parse_message_ref,
    sign_op,
    verify_op,
)

if TYPE_CHECKING:
    from enctalk.client.core import Client

logger = logging.getLogger(__name__)

# Attempts to submit an operation when the group keeps changing under it.
MAX_OP_ATTEMPTS = 4
# Pages of the log fetched at most in one sync (each has up to 500 ops).
MAX_LOG_PAGES = 100


@dataclass(frozen=True)
class GroupInfo:
    """A group as the front ends show it."""

    group_id: str
    name: str
    epoch: int
    role: str | None  # None once this account is no longer a member
    muted: bool
    read_only: bool
    members: int

    @property
    def conversation(self) -> str:
        return conversation_of(self.group_id)


def conversation_of(group_id: str) -> str:
    """Return the conversation name of a group: "#" and its id."""
    return "#" + group_id


def group_of(conversation: str) -> str | None:
    """Return the group id of a group conversation name, else None."""
    if conversation.startswith("#") and len(conversation) == 33:
        return conversation[1:]
    return None


def new_group_id() -> str:
    return secrets.token_hex(16)


def _groups(client: Client) -> dict[str, Any]:
    state = client._require_state()
    groups = state.setdefault("groups", {})
    assert isinstance(groups, dict)
    return groups


def local_state(client: Client, group_id: str) -> GroupState | None:
    record = _groups(client).get(group_id)
    if record is None:
        return None
    return GroupState.from_json(record["state"])


def require_group(client: Client, group_id: str) -> GroupState:
    state = local_state(client, group_id)
    if state is None:
        raise ClientError(
            codes.UNKNOWN_GROUP, f"This device knows no group with id {group_id}."
        )
    return state


def state_at(client: Client, group_id: str, epoch: int) -> GroupState | None:
    """Replay the stored log up to ``epoch``; None if it is not stored.

    The ops were verified when stored, so the replay checks only the rules.
    """
    record = _groups(client).get(group_id)
    if record is None or epoch > len(record["ops"]):
        return None
    current = GroupState.from_json(record["state"])
    if epoch == current.epoch:
        return current
    state = GroupState.empty(group_id)
    for data in record["ops"][:epoch]:
        state = state.apply(GroupOp.from_json(data))
    return state


def op_stamp(client: Client, group_id: str, index: int) -> int | None:
    """Return the server_seq of operation ``index``, if stored."""
    record = _groups(client).get(group_id)
    if record is None or not 1 <= index <= len(record["stamps"]):
        return None
    return int(record["stamps"][index - 1])


def info(client: Client, group_id: str) -> GroupInfo:
    state = require_group(client, group_id)
    me = client._require_username()
    return GroupInfo(
        group_id=group_id,
        name=state.name,
        epoch=state.epoch,
        role=state.roles.get(me),
        muted=me in state.muted,
        read_only=state.read_only,
        members=len(state.roles),
    )


def actor_identity(client: Client, username: str) -> bytes:
    """Return the AIK to check ``username``'s operations with.

    The pinned AIK if there is one; otherwise the server's listing, which
    is pinned now, like a contact's on first use.
    """
    pinned = client._pinned_identity(username)
    if pinned is not None:
        return pinned
    key = _listed_identity(client, username)
    if key is not None:
        client._check_identity(username, key)
        return key
    raise ClientError(
        codes.IDENTITY_INVALID,
        f"The server lists no identity key for {username}.",
    )


def _verify_actor(client: Client, op: GroupOp, catching_up: bool) -> bool:
    """Check that ``op`` is signed by its actor's AIK; return False if unchecked.

    The op must verify under the key it names. That key passes if it is
    the actor's pinned AIK, or if the server now lists it for the actor:
    a key change (a password reset without any old device), pinned with
    the usual warning, as for a message. While ``catching_up`` on a log
    this device never saw live, nothing can check an op under an earlier
    key of the actor, so it is accepted with a note in the conversation.
    Raises GroupOpError otherwise.
    """
    verify_op(op)
    refused = GroupOpError(
        f"Group operation {op.index} is not signed by the identity key of {op.actor}."
    )
    pinned = actor_identity(client, op.actor)
    if op.actor_key == pinned:
        return True
    if op.actor != client._require_username():
        listed = _listed_identity(client, op.actor)
        if listed == op.actor_key:
            client._check_identity(op.actor, listed)
            return True
    if catching_up:
        logger.warning(
            "group %s: operation %d signed by an earlier key of its actor",
            op.group_id,
            op.index,
        )
        return False
    raise refused


def _listed_identity(client: Client, username: str) -> bytes | None:
    reply = client._request("lookup_identities", usernames=[username])
    remember_names(client, reply["users"])
    for user in reply["users"]:
        if user["username"] == username:
            return bytes(user["identity_key"])
    return None


def remember_names(client: Client, users: list[dict[str, Any]]) -> None:
    """Keep the display names that a server reply lists, for conversation lines."""
    names = client._require_state().setdefault("display_names", {})
    for user in users:
        shown = user.get("display_name")
        if shown:
            names[user["username"]] = shown


def display_names(client: Client, usernames: list[str]) -> dict[str, str]:
    """Return the display names of ``usernames``, asking the server for new ones.

    A failed lookup leaves the usernames as they are: a line with a
    username is better than no line.
    """
    names: dict[str, str] = client._require_state().setdefault("display_names", {})
    missing = [name for name in dict.fromkeys(usernames) if name and name not in names]
    if missing:
        try:
            reply = client._request("lookup_identities", usernames=missing)
        except ClientError as exc:
            logger.info("display names not fetched: %s", exc.code)
        else:
            remember_names(client, reply["users"])
    # A name not listed (an account not set up yet) stays the username
    # for this line and is asked for again next time.
    return {name: names.get(name, name) for name in usernames if name}


def apply_op(
    client: Client,
    op: GroupOp,
    server_seq: int,
    server_time: int,
    catching_up: bool = False,
) -> GroupState:
    """Verify ``op``, store it and its state, and write its conversation line.

    Raises GroupOpError when it does not follow the stored state or was
    not signed by its actor, and ClientError when the actor's identity key
    cannot be fetched.
    """
    groups = _groups(client)
    record = groups.get(op.group_id)
    state = (
        GroupState.empty(op.group_id)
        if record is None
        else GroupState.from_json(record["state"])
    )
    new_state = state.apply(op)
    checked = _verify_actor(client, op, catching_up)
    if record is None:
        record = {"ops": [], "stamps": []}
        groups[op.group_id] = record
    record["state"] = new_state.to_json()
    record["ops"].append(op.to_json())
    record["stamps"].append(server_seq)
    _record_line(client, op, server_seq, server_time, checked)
    return new_state


def _record_line(
    client: Client, op: GroupOp, server_seq: int, server_time: int, checked: bool
) -> None:
    """Write the conversation line of ``op`` and report it as ``group_updated``."""
    conversation = conversation_of(op.group_id)
    if op.action == DELETE:
        _remove_deleted(client, op)

    text = _line_text(client, op)
    if not checked:
        text += (
            f" (signed with an earlier identity key of {op.actor}, which this "
            "device could not check)"
        )
    client._require_history().add(
        HistoryEntry(
            conversation=conversation,
            kind="system",
            direction="in",
            sender=op.actor,
            body=text,
            message_id=f"group-op:{op.group_id}:{op.index}",
            server_seq=server_seq,
            server_time=server_time,
            sent_at=op.time,
            state=None,
        )
    )

    me = client._require_username()
    client._emit(
        GROUP_UPDATED,
        group_id=op.group_id,
        conversation=conversation,
        epoch=op.index,
        action=op.action,
        actor=op.actor,
        target=op.target,
        text=text,
        member=op.action not in (REMOVE, LEAVE) or op.target != me,
    )


def _remove_deleted(client: Client, op: GroupOp) -> None:
    """Remove the message a delete names, if this device stored it."""
    conversation = conversation_of(op.group_id)
    history = client._require_history()
    author, message_id = parse_message_ref(op.value)
    entry = history.find(message_id)
    if entry is None or entry.conversation != conversation or entry.sender != author:
        return
    history.remove(message_id)
    client._emit(MESSAGE_DELETED, conversation=conversation, message_id=message_id)


def _line_text(client: Client, op: GroupOp) -> str:
    """Return the line for ``op`` with display names, and "You" for this account."""
    me = client._require_username()
    people = [op.actor, op.target]
    if op.action == DELETE:
        people.append(parse_message_ref(op.value)[0])
    names = display_names(client, people)
    if op.actor == me:
        names[me] = "You"
    elif op.target == me:
        names[me] = "you"
    return describe_op(op, names)


def receive_op(client: Client, op: GroupOp, server_seq: int, server_time: int) -> None:
    """Handle a queued operation: apply it, fetch what is missing, or skip it.

    Raises GroupOpError for an operation that fails its checks.
    """
    state = local_state(client, op.group_id)
    epoch = 0 if state is None else state.epoch
    if op.index <= epoch:
        record = _groups(client)[op.group_id]
        stored = GroupOp.from_json(record["ops"][op.index - 1])
        if stored.op_hash() != op.op_hash():
            raise GroupOpError(
                f"The server sent another operation {op.index} than the one "
                "this device stored; the group's log was forked."
            )
        return
    if op.index > epoch + 1:
        sync_log(client, op.group_id)
        state = local_state(client, op.group_id)
        if state is not None and state.epoch >= op.index:
            return
    apply_op(client, op, server_seq, server_time)


def sync_log(client: Client, group_id: str) -> GroupState | None:
    """Fetch and apply the operations after the stored epoch.

    Returns the new state, or None when the group has no operation this
    account may read. Raises GroupOpError for an operation that fails.
    """
    # Operations before the first state this device stored were never
    # seen live, so an earlier key of their actor cannot be checked.
    catching_up = local_state(client, group_id) is None
    if catching_up:
        _prefetch_names(client, group_id)
    for _page in range(MAX_LOG_PAGES):
        state = local_state(client, group_id)
        epoch = 0 if state is None else state.epoch
        try:
            reply = client._request("group_log", group_id=group_id, after=epoch)
        except ClientError as exc:
            if exc.code == "group_not_found":
                return state
            raise
        for item in reply["ops"]:
            op = GroupOp.from_wire(item["op"])
            if op.index <= epoch:
                continue
            apply_op(client, op, item["server_seq"], item["server_time"], catching_up)
            epoch = op.index
        if not reply["ops"] or epoch >= reply["epoch"]:
            return local_state(client, group_id)
    return local_state(client, group_id)


def _prefetch_names(client: Client, group_id: str) -> None:
    """Learn the members' display names before writing a whole log's lines.

    lookup_identities leaves out accounts not set up yet, but
    group_members names every member. A former member gets
    ``group_not_found`` and keeps the usernames.
    """
    try:
        reply = client._request("group_members", group_id=group_id)
    except ClientError as exc:
        logger.info("group %s: member names not fetched: %s", group_id, exc.code)
        return
    remember_names(client, reply["members"])


def sync_all(client: Client) -> None:
    """Bring every group this account is in up to the server's epoch."""
    reply = client._request("list_groups")
    for group in reply["groups"]:
        state = local_state(client, group["group_id"])
        if state is None or state.epoch < group["epoch"]:
            try:
                sync_log(client, group["group_id"])
            except GroupOpError as exc:
                logger.warning("group %s not synced: %s", group["group_id"], exc)
                client._emit(ERROR, code=codes.GROUP_INVALID, message=str(exc))


def submit_op(
    client: Client,
    group_id: str,
    action: str,
    target: str = "",
    value: str = "",
    create: bool = False,
) -> GroupState:
    """Sign and send the next operation of a group; apply it once stored."""
    me = client._require_username()
    assert client._aik is not None
    for _attempt in range(MAX_OP_ATTEMPTS):
        if create:
            state = GroupState.empty(group_id)
        else:
            state = require_group(client, group_id)
        unsigned = state.next_op(me, action, target, value, time=_now_ms())
        try:
            state.apply(unsigned)
        except GroupOpError as exc:
            raise ClientError(codes.NOT_ALLOWED, str(exc)) from exc
        op = sign_op(client._aik, unsigned)
        try:
            reply = client._request("group_op", op=op.to_wire())
        except ClientError as exc:
            if exc.code != "group_outdated" or create:
                raise
            sync_log(client, group_id)
            continue
        try:
            new_state = apply_op(client, op, reply["server_seq"], reply["server_time"])
        finally:
            client._save()
        return new_state
    raise ClientError(
        "group_outdated",
        "The group kept changing while this change was sent; try again.",
    )


def create(client: Client, name: str) -> str:
    group_id = new_group_id()
    submit_op(client, group_id, CREATE, value=name, create=True)
    return group_id


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
