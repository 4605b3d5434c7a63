"""Signed group operations, and the group state they build.

A group is the result of its operation log. Each operation is signed by
the account identity key (AIK) of the member who made it. It names the
operation before it by hash and carries the group's next epoch number.
So the server cannot forge, alter, reorder or insert an operation
without the members' clients noticing. It can delay or withhold
operations, as it can messages::

    signed data = OP_SIGNATURE_LABEL || canonical JSON of the fields
    signature   = Ed25519(actor_key, signed data)
    op hash     = SHA-256(OP_HASH_LABEL || signed data || signature)

``actor_key`` is the actor's AIK, named inside the signed data, so a log
can be checked on its own. Whether that key is the actor's is for the
reader to decide: the pinned key, or a key change the server lists.

The canonical JSON has sorted keys, no spaces and UTF-8 text. Operation 1
is ``create`` with ``prev`` of 32 zero bytes; operation n names the hash
of operation n - 1. :meth:`GroupState.apply` checks one operation against
the roles of the state it follows and returns the next state; the server
and every client run the same checks, so a server that stores an
operation its rules refuse is caught by the clients.

Roles: the creator is the ``owner``; the owner makes and unmakes
``moderator`` members. The owner and moderators add and remove members,
mute and unmute members, rename the group, set it read-only, and delete
any message for everyone. Every member may leave (except the owner) and
delete their own messages. A moderator cannot remove or mute another
moderator or the owner.

Cost: ``apply`` copies the member map, O(members); ``verify_op`` is one
Ed25519 verification.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any

from enctalk.crypto.errors import CryptoError
from enctalk.crypto.keys import AccountIdentity, verify_signature

OP_SIGNATURE_LABEL = b"EncTalk_group_op_v1\n"
OP_HASH_LABEL = b"EncTalk_group_op_hash_v1\n"
HASH_SIZE = 32
GENESIS_PREV = bytes(HASH_SIZE)
GROUP_ID_LENGTH = 32
MAX_GROUP_NAME_LENGTH = 64
# Members of one group at most; every member's devices get every message.
MAX_GROUP_MEMBERS = 500

OWNER = "owner"
MODERATOR = "moderator"
MEMBER = "member"

CREATE = "create"
ADD = "add"
REMOVE = "remove"
LEAVE = "leave"
RENAME = "rename"
SET_ROLE = "set_role"
MUTE = "mute"
UNMUTE = "unmute"
READ_ONLY = "read_only"
DELETE = "delete"
ACTIONS = (
    CREATE,
    ADD,
    REMOVE,
    LEAVE,
    RENAME,
    SET_ROLE,
    MUTE,
    UNMUTE,
    READ_ONLY,
    DELETE,
)

# Characters that are invisible or reorder text (controls, format
# characters such as bidi overrides and zero-width spaces, surrogates):
# a name with them can look like another one.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_VERBS = {
    ADD: "add members",
    REMOVE: "remove members",
    RENAME: "rename the group",
    MUTE: "mute members",
    UNMUTE: "unmute members",
    READ_ONLY: "change who may post",
    DELETE: "delete the messages of others",
}
_GROUP_ID = re.compile(f"[0-9a-f]{{{GROUP_ID_LENGTH}}}")
_MESSAGE_REF = re.compile(
    r"([^/]{1,64})/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)


class GroupOpError(CryptoError):
    """An operation is malformed, badly signed, or not allowed to its actor.

    ``str(error)`` is a sentence for people that names the failed rule.
    """


@dataclass(frozen=True)
class GroupOp:
    """One signed operation of a group's log.

    ``target`` is the member acted on (empty when none); ``value`` is
    the new name (create, rename), the role (set_role), ``on``/``off``
    (read_only) or ``author/message_id`` (delete), else is empty. ``time``
    is the actor's clock in ms and is only shown, never trusted.
    """

    group_id: str
    index: int
    prev: bytes
    actor: str
    action: str
    target: str
    value: str
    time: int
    actor_key: bytes = b""
    signature: bytes = b""

    def signed_data(self) -> bytes:
        fields = {
            "group_id": self.group_id,
            "index": self.index,
            "prev": self.prev.hex(),
            "actor": self.actor,
            "actor_key": self.actor_key.hex(),
            "action": self.action,
            "target": self.target,
            "value": self.value,
            "time": self.time,
        }
        text = json.dumps(
            fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return OP_SIGNATURE_LABEL + text.encode("utf-8")

    def op_hash(self) -> bytes:
        return hashlib.sha256(
            OP_HASH_LABEL + self.signed_data() + self.signature
        ).digest()

    def to_wire(self) -> dict[str, Any]:
        """Return the op as frame fields; ``bytes`` values become base64 later."""
        return {
            "group_id": self.group_id,
            "index": self.index,
            "prev": self.prev,
            "actor": self.actor,
            "actor_key": self.actor_key,
            "action": self.action,
            "target": self.target,
            "value": self.value,
            "time": self.time,
            "signature": self.signature,
        }

    @classmethod
    def from_wire(cls, fields: dict[str, Any]) -> GroupOp:
        """Build an op from validated frame fields (``prev``, ``signature`` bytes)."""
        return cls(
            group_id=str(fields["group_id"]),
            index=int(fields["index"]),
            prev=bytes(fields["prev"]),
            actor=str(fields["actor"]),
            actor_key=bytes(fields["actor_key"]),
            action=str(fields["action"]),
            target=str(fields["target"]),
            value=str(fields["value"]),
            time=int(fields["time"]),
            signature=bytes(fields["signature"]),
        )

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-safe dict for local storage (hex for bytes)."""
        data = self.to_wire()
        data["prev"] = self.prev.hex()
        data["actor_key"] = self.actor_key.hex()
        data["signature"] = self.signature.hex()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupOp:
        fields = dict(data)
        fields["prev"] = bytes.fromhex(str(data["prev"]))
        fields["actor_key"] = bytes.fromhex(str(data["actor_key"]))
        fields["signature"] = bytes.fromhex(str(data["signature"]))
        return cls.from_wire(fields)


def sign_op(aik: AccountIdentity, op: GroupOp) -> GroupOp:
    """Return ``op`` naming ``aik`` as its actor key and signed with it."""
    named = replace(op, actor_key=aik.public_bytes())
    return replace(named, signature=aik.sign(named.signed_data()))


def verify_op(op: GroupOp) -> None:
    """Raise GroupOpError unless the op's own ``actor_key`` signed it.

    The caller still checks that ``actor_key`` is the actor's AIK.
    """
    try:
        verify_signature(op.actor_key, op.signature, op.signed_data())
    except CryptoError as exc:
        raise GroupOpError(
            f"Group operation {op.index} is not signed by the identity key of "
            f"{op.actor}."
        ) from exc


def parse_message_ref(value: str) -> tuple[str, str]:
    """Split a delete op's ``author/message_id``; raise GroupOpError if malformed."""
    match = _MESSAGE_REF.fullmatch(value)
    if match is None:
        raise GroupOpError("A delete names no message as author/message_id.")
    return match.group(1), match.group(2)


def message_ref(author: str, message_id: str) -> str:
    return f"{author}/{message_id}"


@dataclass(frozen=True)
class GroupState:
    """A group after ``epoch`` operations; ``head`` is the hash of the last one."""

    group_id: str
    name: str
    epoch: int
    head: bytes
    roles: dict[str, str] = field(default_factory=dict)
    muted: frozenset[str] = frozenset()
    read_only: bool = False

    @classmethod
    def empty(cls, group_id: str) -> GroupState:
        return cls(group_id=group_id, name="", epoch=0, head=GENESIS_PREV)

    @property
    def owner(self) -> str | None:
        for name, role in self.roles.items():
            if role == OWNER:
                return name
        return None

    def is_member(self, username: str) -> bool:
        return username in self.roles

    def is_moderator(self, username: str) -> bool:
        """True for the owner and the moderators."""
        return self.roles.get(username) in (OWNER, MODERATOR)

    def may_post(self, username: str) -> bool:
        """True if ``username`` may send messages into the group now."""
        if username not in self.roles or username in self.muted:
            return False
        return not self.read_only or self.is_moderator(username)

    def post_refusal(self, username: str) -> str | None:
        """Return why ``username`` may not post, as a sentence, or None."""
        if username not in self.roles:
            return "You are not a member of this group."
        if username in self.muted:
            return "A moderator has muted you in this group."
        if self.read_only and not self.is_moderator(username):
            return "The group is read-only: only its moderators may post."
        return None

    def next_op(
        self, actor: str, action: str, target: str = "", value: str = "", time: int = 0
    ) -> GroupOp:
        """Return the unsigned op that would follow this state."""
        return GroupOp(
            group_id=self.group_id,
            index=self.epoch + 1,
            prev=self.head,
            actor=actor,
            action=action,
            target=target,
            value=value,
            time=time,
        )

    def apply(self, op: GroupOp) -> GroupState:
        """Check ``op`` against this state's rules and return the next state.

        The signature is not checked here: :func:`verify_op` checks it,
        and the caller decides whether ``actor_key`` is the actor's AIK.
        Raises GroupOpError.
        """
        _check_shape(op)
        if op.group_id != self.group_id:
            raise GroupOpError("The operation belongs to another group.")
        if op.index != self.epoch + 1:
            raise GroupOpError(
                f"Operation {op.index} does not follow operation {self.epoch}."
            )
        if op.prev != self.head:
            raise GroupOpError(
                f"Operation {op.index} does not name operation {self.epoch} before it."
            )
        if op.action == CREATE:
            if self.epoch != 0:
                raise GroupOpError("Only the first operation may create the group.")
            return replace(
                self, name=op.value, epoch=1, head=op.op_hash(), roles={op.actor: OWNER}
            )
        if self.epoch == 0:
            raise GroupOpError("The first operation must create the group.")
        if op.actor not in self.roles:
            raise GroupOpError(f"{op.actor} is not a member of the group.")

        roles = dict(self.roles)
        muted = set(self.muted)
        name, read_only = self.name, self.read_only
        if op.action == ADD:
            self._require_moderator(op)
            if op.target in roles:
                raise GroupOpError(f"{op.target} is already a member.")
            if len(roles) >= MAX_GROUP_MEMBERS:
                raise GroupOpError(
                    f"The group already has the maximum of {MAX_GROUP_MEMBERS} members."
                )
            roles[op.target] = MEMBER
        elif op.action == REMOVE:
            self._require_moderator(op)
            self._require_ordinary_target(op, "remove")
            del roles[op.target]
            muted.discard(op.target)
        elif op.action == LEAVE:
            if op.target != op.actor:
                raise GroupOpError("A member can only leave for themselves.")
            if roles[op.actor] == OWNER:
                raise GroupOpError("The owner cannot leave the group.")
            del roles[op.actor]
            muted.discard(op.actor)
        elif op.action == RENAME:
            self._require_moderator(op)
            name = op.value
        elif op.action == SET_ROLE:
            if roles[op.actor] != OWNER:
                raise GroupOpError("Only the owner can make or unmake moderators.")
            if op.target not in roles or roles[op.target] == OWNER:
                raise GroupOpError(f"{op.target} is not a member the owner can change.")
            roles[op.target] = op.value
            if op.value == MODERATOR:
                muted.discard(op.target)
        elif op.action == MUTE:
            self._require_moderator(op)
            self._require_ordinary_target(op, "mute")
            if op.target in muted:
                raise GroupOpError(f"{op.target} is already muted.")
            muted.add(op.target)
        elif op.action == UNMUTE:
            self._require_moderator(op)
            if op.target not in muted:
                raise GroupOpError(f"{op.target} is not muted.")
            muted.discard(op.target)
        elif op.action == READ_ONLY:
            self._require_moderator(op)
            read_only = op.value == "on"
        elif op.action == DELETE:
            author, _ = parse_message_ref(op.value)
            if author != op.actor:
                self._require_moderator(op)
        return replace(
            self,
            name=name,
            epoch=op.index,
            head=op.op_hash(),
            roles=roles,
            muted=frozenset(muted),
            read_only=read_only,
        )

    def _require_moderator(self, op: GroupOp) -> None:
        if not self.is_moderator(op.actor):
            verb = _VERBS.get(op.action, op.action.replace("_", " "))
            raise GroupOpError(f"{op.actor} is not a moderator, so cannot {verb}.")

    def _require_ordinary_target(self, op: GroupOp, verb: str) -> None:
        if op.target not in self.roles:
            raise GroupOpError(f"{op.target} is not a member of the group.")
        target_role = self.roles[op.target]
        if target_role == OWNER or (
            target_role == MODERATOR and self.roles[op.actor] != OWNER
        ):
            raise GroupOpError(f"{op.actor} cannot {verb} {op.target}.")

    def to_json(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "name": self.name,
            "epoch": self.epoch,
            "head": self.head.hex(),
            "roles": dict(self.roles),
            "muted": sorted(self.muted),
            "read_only": self.read_only,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupState:
        return cls(
            group_id=str(data["group_id"]),
            name=str(data["name"]),
            epoch=int(data["epoch"]),
            head=bytes.fromhex(str(data["head"])),
            roles={str(k): str(v) for k, v in dict(data["roles"]).items()},
            muted=frozenset(str(name) for name in data["muted"]),
            read_only=bool(data["read_only"]),
        )


def _check_shape(op: GroupOp) -> None:
    """Raise GroupOpError unless the op's fields fit its action."""
    if not _GROUP_ID.fullmatch(op.group_id):
        raise GroupOpError("The group id is not 32 lowercase hex digits.")
    if op.action not in ACTIONS:
        raise GroupOpError(f"Unknown group action {op.action[:32]!r}.")
    if len(op.prev) != HASH_SIZE or op.index < 1:
        raise GroupOpError("The operation has no valid place in the log.")
    needs_target = op.action in (ADD, REMOVE, LEAVE, SET_ROLE, MUTE, UNMUTE)
    if needs_target != bool(op.target):
        raise GroupOpError(f"A {op.action} operation has the wrong target.")
    if op.action in (CREATE, RENAME):
        name = op.value
        if not name.strip() or len(name) > MAX_GROUP_NAME_LENGTH:
            raise GroupOpError(
                f"A group name needs 1 to {MAX_GROUP_NAME_LENGTH} characters."
            )
        if any(unicodedata.category(char) in _HIDDEN_CATEGORIES for char in name):
            raise GroupOpError(
                "A group name cannot contain control, format or direction characters."
            )
    elif op.action == SET_ROLE:
        if op.value not in (MODERATOR, MEMBER):
            raise GroupOpError("A role is either moderator or member.")
    elif op.action == READ_ONLY:
        if op.value not in ("on", "off"):
            raise GroupOpError("Read-only is either on or off.")
    elif op.action == DELETE:
        parse_message_ref(op.value)
    elif op.value:
        raise GroupOpError(f"A {op.action} operation carries no value.")


def describe_op(op: GroupOp, names: dict[str, str] | None = None) -> str:
    """Return the conversation line for ``op``, e.g. "ada added sam".

    ``names`` maps usernames to display names where known.
    """
    shown = names or {}

    def who(username: str) -> str:
        return shown.get(username, username)

    actor, target = who(op.actor), who(op.target)
    if op.action == CREATE:
        return f"{actor} created the group \u201c{op.value}\u201d"
    if op.action == ADD:
        return f"{actor} added {target}"
    if op.action == REMOVE:
        return f"{actor} removed {target}"
    if op.action == LEAVE:
        return f"{actor} left the group"
    if op.action == RENAME:
        return f"{actor} renamed the group to \u201c{op.value}\u201d"
    if op.action == SET_ROLE:
        if op.value == MODERATOR:
            return f"{actor} made {target} a moderator"
        return f"{actor} made {target} an ordinary member"
    if op.action == MUTE:
        return f"{actor} muted {target}"
    if op.action == UNMUTE:
        return f"{actor} unmuted {target}"
    if op.action == READ_ONLY:
        if op.value == "on":
            return f"{actor} made the group read-only"
        return f"{actor} let every member post again"
    author, _ = parse_message_ref(op.value)
    if author == op.actor:
        return f"{actor} deleted a message"
    return f"{actor} deleted a message from {who(author)}"
