"""The state behind the main window, reduced from client core events.

:class:`ChatModel` contains the contact rows (presence, unread count, latest
activity), the group rows (name, this account's role and state, unread
count), the delivery state of each outgoing message and the open
conversation. A group's conversation is named ``#`` and its id, which no
username can be. :meth:`ChatModel.apply` turns one core event into a list of
:class:`Effect` values that the Tk views carry out, so the rules (what
counts as unread, when the bell rings, how contacts sort) are tested
without a display.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from enctalk.client.events import (
    CONNECTION_STATE,
    CONTACT_ADDED,
    DECRYPT_FAILED,
    DELIVERY_UPDATED,
    ERROR,
    GROUP_UPDATED,
    IDENTITY_CHANGED,
    MESSAGE_DELETED,
    MESSAGE_RECEIVED,
    PRESENCE_CHANGED,
    SESSION_REVOKED,
    Event,
)
from enctalk.client.history import HistoryEntry

# Effect kinds, in the order the main window handles them.
APPEND = "append"  # entry: a line for the open conversation
STATE = "state"  # message_id, state, error: an outgoing message's new state
CONTACTS = "contacts"  # the list of contacts and groups changed
GROUP = "group"  # the group_updated data: fetch the group's state again
DELETED = "deleted"  # message_id: remove it from the open conversation
PRESENCE = "presence"  # username, online: for the member list
BELL = "bell"  # a message arrived in a conversation that is not open
STATUS = "status"  # state, data: the connection changed
KEY_CHANGED = "key_changed"  # username, old, new: show the warning banner
REVOKED = "revoked"  # reason: the session ended, back to the login view
NOTICE = "notice"  # text: a background error for the status line


@dataclass
class ContactRow:
    """One line of the contact list."""

    username: str
    online: bool = False
    verified: bool = False
    unread: int = 0
    last_activity: int = 0  # ms since the epoch, 0 when there is none yet
    key_changed: bool = False


@dataclass
class GroupRow:
    """One group in the list, with this account's standing in it.

    ``role`` is None once this account left or was removed. Then
    ``left_reason`` is the sentence for how, if an event of this session
    reported it, else empty.
    """

    group_id: str
    name: str = "Group"
    role: str | None = None
    muted: bool = False
    read_only: bool = False
    members: int = 0
    unread: int = 0
    last_activity: int = 0
    left_reason: str = ""

    @property
    def conversation(self) -> str:
        return GROUP_PREFIX + self.group_id

    @property
    def member(self) -> bool:
        return self.role is not None


@dataclass(frozen=True)
class Effect:
    """One change the views must make, named by ``kind`` (see the constants)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


GROUP_PREFIX = "#"


def is_group(conversation: str | None) -> bool:
    """Return whether ``conversation`` names a group (``#`` and its id)."""
    return conversation is not None and conversation.startswith(GROUP_PREFIX)


def _now_ms() -> int:
    return int(time.time() * 1000)


def entry_time(entry: HistoryEntry) -> int:
    """Return the time an entry is shown with: the server's, else the sender's."""
    return entry.server_time or entry.sent_at or 0


class ChatModel:
    """Contacts, groups, unread counts and delivery states of one account.

    NOTE: unread counts and the key-change flag live only in memory, so a
    restart clears them. The key-change notice stays in the history.
    """

    def __init__(self, me: str) -> None:
        self.me = me
        self.contacts: dict[str, ContactRow] = {}
        # Keyed by conversation name ("#" and the group id).
        self.groups: dict[str, GroupRow] = {}
        self.current: str | None = None
        self.states: dict[str, str] = {}
        self.errors: dict[str, str] = {}

    # Contacts.

    def contact(self, username: str) -> ContactRow:
        """Return the row of ``username``, adding one if it is new."""
        row = self.contacts.get(username)
        if row is None:
            row = ContactRow(username)
            self.contacts[username] = row
        return row

    def sorted_contacts(self) -> list[ContactRow]:
        """Return the rows with the latest activity first, then by name."""
        return sorted(
            self.contacts.values(),
            key=lambda row: (-row.last_activity, row.username.casefold()),
        )

    def group(self, conversation: str) -> GroupRow:
        """Return the row of a group conversation, adding one if it is new."""
        row = self.groups.get(conversation)
        if row is None:
            row = GroupRow(conversation.removeprefix(GROUP_PREFIX))
            self.groups[conversation] = row
        return row

    def sorted_groups(self) -> list[GroupRow]:
        """Return the groups this account is in first, each part by activity."""
        return sorted(
            self.groups.values(),
            key=lambda row: (
                not row.member,
                -row.last_activity,
                row.name.casefold(),
                row.group_id,
            ),
        )

    def row(self, conversation: str) -> ContactRow | GroupRow:
        """Return the contact or group row of ``conversation``."""
        if is_group(conversation):
            return self.group(conversation)
        return self.contact(conversation)

    def touch(self, conversation: str, when: int | None = None) -> None:
        """Record activity in ``conversation``."""
        row = self.row(conversation)
        row.last_activity = max(row.last_activity, when or _now_ms())

    def open(self, conversation: str | None) -> None:
        """Make ``conversation`` the open one and clear its unread count."""
        self.current = conversation
        if conversation is not None:
            self.row(conversation).unread = 0

    def current_group(self) -> GroupRow | None:
        """Return the row of the open conversation if it is a group."""
        if self.current is None or not is_group(self.current):
            return None
        return self.group(self.current)

    def total_unread(self) -> int:
        rows: list[ContactRow | GroupRow] = [
            *self.contacts.values(),
            *self.groups.values(),
        ]
        return sum(row.unread for row in rows)

    def title(self) -> str:
        """Return the window title, with the total unread count when there is one."""
        unread = self.total_unread()
        base = f"EncTalk - {self.me}"
        return f"({unread}) {base}" if unread else base

    # Events.

    def entry_from_message(self, data: dict[str, Any]) -> HistoryEntry:
        """Build the history entry a ``message_received`` event stands for."""
        sender = str(data["sender"])
        mine = sender == self.me
        return HistoryEntry(
            conversation=str(data["conversation"]),
            kind=str(data.get("kind") or "text"),
            direction="out" if mine else "in",
            sender=sender,
            body=str(data["body"]),
            message_id=data.get("message_id"),
            server_seq=data.get("server_seq"),
            server_time=data.get("server_time"),
            sent_at=data.get("sent_at"),
            # A copy of a message sent from another of my devices.
            state="sent" if mine else None,
            attachment=data.get("attachment"),
        )

    def apply(self, event: Event) -> list[Effect]:
        """Update the model from ``event``; return what the views must change."""
        handler = getattr(self, "_on_" + event.name, None)
        if handler is None:
            return []
        effects: list[Effect] = handler(event.data)
        return effects

    def _on_message_received(self, data: dict[str, Any]) -> list[Effect]:
        entry = self.entry_from_message(data)
        # A message can arrive before the view has fetched its group's state.
        effects = []
        if is_group(entry.conversation) and entry.conversation not in self.groups:
            effects.append(Effect(GROUP, {"group_id": data.get("group")}))
        self.touch(entry.conversation, entry_time(entry))
        if entry.conversation == self.current:
            return [Effect(APPEND, {"entry": entry}), Effect(CONTACTS), *effects]
        if entry.direction == "out":
            return [Effect(CONTACTS), *effects]
        self.row(entry.conversation).unread += 1
        return [Effect(CONTACTS), Effect(BELL), *effects]

    def _on_decrypt_failed(self, data: dict[str, Any]) -> list[Effect]:
        conversation = str(data["conversation"])
        notice = HistoryEntry(
            conversation=conversation,
            kind="notice",
            direction="in",
            sender=str(data["sender"]),
            body=f"A message from {data['sender']} could not be decrypted.",
            message_id=None,
            server_seq=None,
            server_time=_now_ms(),
            sent_at=None,
            state=None,
        )
        if conversation == self.current:
            return [Effect(APPEND, {"entry": notice})]
        return []

    def _on_delivery_updated(self, data: dict[str, Any]) -> list[Effect]:
        message_id = str(data["message_id"])
        state = str(data["state"])
        self.states[message_id] = state
        if data.get("error"):
            self.errors[message_id] = str(data["error"])
        return [
            Effect(
                STATE,
                {
                    "message_id": message_id,
                    "state": state,
                    "error": data.get("error"),
                },
            )
        ]

    def _on_presence_changed(self, data: dict[str, Any]) -> list[Effect]:
        username = str(data["username"])
        if username == self.me:
            return []
        online = bool(data["online"])
        effects = [Effect(PRESENCE, {"username": username, "online": online})]
        # The server also reports members of a common group, who need not
        # be contacts; only a contact has a row in the list.
        row = self.contacts.get(username)
        if row is not None:
            row.online = online
            effects.insert(0, Effect(CONTACTS))
        return effects

    def _on_group_updated(self, data: dict[str, Any]) -> list[Effect]:
        conversation = str(data["conversation"])
        row = self.group(conversation)
        now = _now_ms()
        row.last_activity = max(row.last_activity, now)
        if data.get("member", True):
            row.left_reason = ""
        else:
            row.role = None
            row.muted = False
            row.left_reason = _left_reason(data)
        effects = [Effect(GROUP, dict(data)), Effect(CONTACTS)]
        added_me = data.get("action") == "add" and data.get("target") == self.me
        if added_me and conversation != self.current:
            # A new group gets noticed like a message.
            row.unread += 1
            effects.append(Effect(BELL))
        if conversation == self.current:
            line = HistoryEntry(
                conversation=conversation,
                kind="system",
                direction="in",
                sender=str(data.get("actor", "")),
                body=str(data.get("text", "")),
                # The id the core gives the same line in the history.
                message_id=f"group-op:{data['group_id']}:{data['epoch']}",
                server_seq=None,
                server_time=now,
                sent_at=None,
                state=None,
            )
            effects.insert(0, Effect(APPEND, {"entry": line}))
        return effects

    def _on_message_deleted(self, data: dict[str, Any]) -> list[Effect]:
        if data.get("conversation") != self.current:
            return []
        return [Effect(DELETED, {"message_id": str(data["message_id"])})]

    def _on_contact_added(self, data: dict[str, Any]) -> list[Effect]:
        row = self.contact(str(data["username"]))
        row.online = bool(data.get("online"))
        return [Effect(CONTACTS)]

    def _on_identity_changed(self, data: dict[str, Any]) -> list[Effect]:
        username = str(data["username"])
        row = self.contact(username)
        row.verified = False
        row.key_changed = True
        effects = [
            Effect(CONTACTS),
            Effect(
                KEY_CHANGED,
                {
                    "username": username,
                    "old": data.get("old_fingerprint", ""),
                    "new": data.get("new_fingerprint", ""),
                },
            ),
        ]
        return effects

    def _on_connection_state(self, data: dict[str, Any]) -> list[Effect]:
        state = str(data.get("state", ""))
        rest = {key: value for key, value in data.items() if key != "state"}
        return [Effect(STATUS, {"state": state, "data": rest})]

    def _on_session_revoked(self, data: dict[str, Any]) -> list[Effect]:
        return [Effect(REVOKED, {"reason": data.get("reason", "")})]

    def _on_error(self, data: dict[str, Any]) -> list[Effect]:
        return [Effect(NOTICE, {"text": str(data.get("message", ""))})]


def _left_reason(data: dict[str, Any]) -> str:
    """Return the sentence for how this account stopped being a member."""
    if data.get("action") == "leave":
        return "You left this group."
    actor = str(data.get("actor") or "A moderator")
    return f"{actor} removed you from this group."


# The event names :meth:`ChatModel.apply` reduces; others are ignored.
HANDLED_EVENTS = frozenset(
    {
        MESSAGE_RECEIVED,
        DECRYPT_FAILED,
        DELIVERY_UPDATED,
        PRESENCE_CHANGED,
        CONTACT_ADDED,
        IDENTITY_CHANGED,
        CONNECTION_STATE,
        SESSION_REVOKED,
        GROUP_UPDATED,
        MESSAGE_DELETED,
        ERROR,
    }
)
