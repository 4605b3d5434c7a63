"""Which group actions this account may take, and how a group's state reads.

Pure functions with no Tk, so they are tested headless. They follow the
rules of :meth:`enctalk.crypto.grouplog.GroupState.apply`: the owner and
moderators add, remove, mute, rename, switch read-only and delete any
message; only the owner makes or unmakes moderators; nobody removes or
mutes the owner, and only the owner removes or mutes a moderator. The
views use them to hide or disable what would be rejected. The client core
still checks every operation, so a rule that drifted from the core would
show a button whose action fails with a readable error, not allow a
forbidden change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from enctalk.client.history import HistoryEntry
from enctalk.crypto.grouplog import MEMBER, MODERATOR, OWNER
from enctalk.protocol.names import InvalidUsername, canonical_username
from enctalk.ui.viewmodel import GroupRow

# Typed usernames may be separated by commas, semicolons or white space.
_USERNAME_SEPARATORS = re.compile(r"[\s,;]+")

ROLE_LABELS = {OWNER: "owner", MODERATOR: "moderator", MEMBER: "member"}
# The member details of an account that has not redeemed its setup code.
PENDING_DETAILS = "waiting for setup"
# The member list shows the owner first, then moderators, then the others.
ROLE_ORDER = {OWNER: 0, MODERATOR: 1, MEMBER: 2}


@dataclass(frozen=True)
class MemberActions:
    """What this account may do to one member of a group."""

    remove: bool = False
    mute: bool = False
    unmute: bool = False
    make_moderator: bool = False
    make_member: bool = False

    @property
    def any(self) -> bool:
        return (
            self.remove
            or self.mute
            or self.unmute
            or self.make_moderator
            or self.make_member
        )


def is_moderator(role: str | None) -> bool:
    """Return whether ``role`` may moderate (the owner or a moderator)."""
    return role in (OWNER, MODERATOR)


def member_actions(
    my_role: str | None, me: str, member: dict[str, Any]
) -> MemberActions:
    """Return what an account with ``my_role`` may do to ``member``.

    ``member`` is one item of ``Client.group_members``: username, role,
    muted and online.
    """
    target, role = str(member["username"]), str(member["role"])
    if target == me or not is_moderator(my_role) or role == OWNER:
        return MemberActions()
    # A moderator acts on ordinary members only; the owner on everyone else.
    ordinary = role == MEMBER or my_role == OWNER
    muted = bool(member.get("muted"))
    return MemberActions(
        remove=ordinary,
        mute=ordinary and not muted and role == MEMBER,
        unmute=muted,
        make_moderator=my_role == OWNER and role == MEMBER,
        make_member=my_role == OWNER and role == MODERATOR,
    )


def may_add_members(row: GroupRow) -> bool:
    return is_moderator(row.role)


def may_leave(row: GroupRow) -> bool:
    """Return whether this account may leave: any member but the owner."""
    return row.member and row.role != OWNER


def may_delete(
    row: GroupRow, me: str, entry: HistoryEntry, state: str | None = None
) -> bool:
    """Return whether this account may delete ``entry`` for everyone.

    A member deletes their own messages, a moderator any message. Lines
    the client wrote itself (system lines, notices) cannot be deleted, nor
    can an outgoing message that the server has not stored: ``state`` is
    its newest delivery state, when the view knows one newer than the entry.
    """
    if not row.member or entry.kind not in ("text", "audio"):
        return False
    if entry.message_id is None:
        return False
    state = state or entry.state
    unstored = entry.server_seq is None and state in (None, "sending", "failed")
    if entry.direction == "out" and unstored:
        return False
    return entry.sender == me or is_moderator(row.role)


def post_refusal(row: GroupRow) -> str | None:
    """Return why this account cannot post in the group, or None if it can."""
    if not row.member:
        return row.left_reason or "You are no longer a member of this group."
    if row.muted:
        return "A moderator has muted you in this group."
    if row.read_only and not is_moderator(row.role):
        return "This group is read-only: only its moderators can post."
    return None


def banner_text(row: GroupRow) -> str | None:
    """Return the notice above a group conversation, or None for no notice."""
    refusal = post_refusal(row)
    if refusal is None:
        return None
    if not row.member:
        return (
            f"{refusal} Its history stays on this computer, but you get no "
            "new messages and cannot post."
        )
    if row.muted:
        return (
            f"{refusal} You can still read new messages, but you cannot send "
            "any until a moderator unmutes you."
        )
    return f"{refusal} You can still read new messages."


def subtitle(row: GroupRow) -> str:
    """Return the line under a group's name: members, your role, modes."""
    count = "1 member" if row.members == 1 else f"{row.members} members"
    parts = [count]
    if row.role == OWNER:
        parts.append("you are the owner")
    elif row.role == MODERATOR:
        parts.append("you are a moderator")
    elif row.role is None:
        parts.append("you are not a member")
    if row.read_only:
        parts.append("read-only")
    if row.muted:
        parts.append("you are muted")
    return " · ".join(parts)


def member_name(member: dict[str, Any]) -> str:
    """Return the name to show for ``member``: its display name, else its username."""
    return str(member.get("display_name") or member["username"])


def sorted_members(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return ``members`` by role (owner, moderators, members), then by name."""
    return sorted(
        members,
        key=lambda member: (
            ROLE_ORDER.get(str(member["role"]), len(ROLE_ORDER)),
            member_name(member).casefold(),
            str(member["username"]),
        ),
    )


def member_details(member: dict[str, Any], presence_known: bool = True) -> str:
    """Return the line about one member under its name: username and presence.

    A pending member (no setup code redeemed yet) is never online, so the
    line shows "waiting for setup" in place of the presence. Without
    ``presence_known`` (while reconnecting) the presence is unknown.
    """
    parts = [f"username {member['username']}"]
    if member.get("pending"):
        parts.append(PENDING_DETAILS)
    elif not presence_known:
        parts.append("presence unknown")
    else:
        parts.append("online" if member.get("online") else "offline")
    if member.get("muted"):
        parts.append("muted")
    return " · ".join(parts)


def count_pending(members: list[dict[str, Any]]) -> int:
    """Return how many of ``members`` have not redeemed their setup code."""
    return sum(1 for member in members if member.get("pending"))


def members_title(members: list[dict[str, Any]]) -> str:
    """Return the member panel's heading: the count, and how many are pending."""
    pending = count_pending(members)
    if pending:
        return f"Members ({len(members)}, {pending} not set up)"
    return f"Members ({len(members)})"


def pending_notice(pending: int) -> str:
    """Return the notice for a message sent to a group with ``pending`` members."""
    if pending == 1:
        counted = "1 member has not set up their account yet."
    else:
        counted = f"{pending} members have not set up their accounts yet."
    return f"{counted} They get only the messages sent after they do."


def member_label(member: dict[str, Any]) -> str:
    """Return the role column of the member list: role and mute."""
    role = str(member["role"])
    words = [] if role == MEMBER else [ROLE_LABELS.get(role, role)]
    if member.get("muted"):
        words.append("muted")
    return ", ".join(words)


def parse_usernames(text: str) -> tuple[list[str], list[str]]:
    """Split typed usernames; return the canonical ones and the invalid ones.

    Duplicates are dropped, and the order of first appearance is kept.
    """
    valid: list[str] = []
    invalid: list[str] = []
    for word in _USERNAME_SEPARATORS.split(text.strip()):
        if not word:
            continue
        try:
            name = canonical_username(word)
        except InvalidUsername:
            invalid.append(word)
            continue
        if name not in valid:
            valid.append(name)
    return valid, invalid
