"""Group actions of the main window: moderation, leaving, deleting, refreshing.

:class:`GroupActions` owns the member panel of the open group. It runs
every client call on the app's worker, because each one waits for the
server, and carries the outcome out on the Tk main thread. Removing a
member, leaving and deleting a message for everyone ask first. A failed
action shows the core's sentence in the panel and the status line, never
a traceback. The member list is fetched again after every change to the
group and every :data:`MEMBER_REFRESH_MS`. Presence changes between
fetches come as ``presence_changed`` events, which the server sends
between members of a common group as well as between contacts. The
display names in the member list also name the senders of the group's
messages in the conversation.
"""

from __future__ import annotations

import logging
import tkinter as tk
from collections.abc import Callable
from tkinter import messagebox
from typing import TYPE_CHECKING, Any

from enctalk.client.history import HistoryEntry
from enctalk.crypto.grouplog import MODERATOR
from enctalk.ui import group_rules
from enctalk.ui.formatting import display_text, friendly_error
from enctalk.ui.member_panel import MemberPanel
from enctalk.ui.viewmodel import GroupRow

if TYPE_CHECKING:
    from enctalk.ui.main_window import MainWindow

logger = logging.getLogger(__name__)

# How often the open group's member list is fetched, also to catch a
# presence change that an event did not report.
MEMBER_REFRESH_MS = 30_000


def confirm(parent: tk.Misc, title: str, question: str) -> bool:
    """Ask a yes/no question with No as the default; return True for Yes."""
    return bool(
        messagebox.askyesno(
            title, question, icon="warning", default="no", parent=parent
        )
    )


class GroupActions:
    """The member panel and the group operations of one main window."""

    def __init__(self, window: MainWindow, parent: tk.Misc) -> None:
        self.window = window
        self.panel = MemberPanel(parent, self)
        # The read-only mode of the open group, for the menus' checkbuttons.
        self.read_only = tk.BooleanVar(value=False)
        self._refresh_id: str | None = None
        # Replaced by tests, which cannot answer a Tk message box.
        self.confirm: Callable[[str, str], bool] = lambda title, question: confirm(
            self.window, title, question
        )

    # The open group.

    @property
    def row(self) -> GroupRow | None:
        return self.window.model.current_group()

    def open(self, row: GroupRow) -> None:
        """Show ``row`` in the panel and fetch its members."""
        self.panel.clear()
        self.show_state(row)
        self.panel.message.set("Loading the members…")
        self.load_members()

    def close(self) -> None:
        """Forget the open group (a contact's conversation opened instead)."""
        self._cancel_refresh()
        self.panel.clear()

    def group_changed(self, row: GroupRow) -> None:
        """Show a new state of the open group and fetch its members again."""
        self.show_state(row)
        self.load_members()

    def show_state(self, row: GroupRow) -> None:
        """Show the controls for a new state of the open group, keeping the list."""
        self.read_only.set(row.read_only)
        self.panel.show(row, self.window.model.me, None)

    def load_members(self) -> None:
        """Fetch the open group's members on the worker and show them."""
        self._cancel_refresh()
        row, client = self.row, self.window.app.client
        if row is None or client is None:
            return
        group_id = row.group_id

        def shown(members: list[dict[str, Any]]) -> None:
            current = self.row
            if current is None or current.group_id != group_id:
                return
            self.panel.show(current, self.window.model.me, members)
            self.window.conversation.add_sender_names(
                {
                    str(member["username"]): str(member.get("display_name") or "")
                    for member in members
                }
            )
            self.panel.message.set(
                "" if current.member else "You are no longer a member."
            )
            self._schedule_refresh()

        def failed(error: BaseException) -> None:
            current = self.row
            if current is None or current.group_id != group_id:
                return
            self.panel.message.set(f"Members not loaded: {friendly_error(error)}")
            self._schedule_refresh()

        self.window.app.worker.submit(
            lambda: client.group_members(group_id), shown, failed
        )

    def _schedule_refresh(self) -> None:
        self._cancel_refresh()
        if self.window.members_shown():
            self._refresh_id = self.panel.after(MEMBER_REFRESH_MS, self.load_members)

    def _cancel_refresh(self) -> None:
        if self._refresh_id is not None:
            self.panel.after_cancel(self._refresh_id)
            self._refresh_id = None

    def set_online(self, username: str, online: bool) -> None:
        self.panel.set_online(username, online)

    # Group list.

    def reload_groups(self) -> None:
        """Fetch every group's state from the core and show it."""
        client = self.window.app.client
        if client is None:
            return
        self.window.app.worker.submit(
            client.groups, self.window.load_groups, self.window.show_error
        )

    # Operations. Each runs on the worker; the core's group_updated event
    # then redraws the conversation, the list and the panel.

    def _run(self, description: str, call: Callable[[], Any]) -> None:
        """Run ``call`` on the worker; show a failure with ``description``."""
        self.panel.message.set("")

        def done(_result: Any) -> None:
            self.load_members()

        def failed(error: BaseException) -> None:
            sentence = f"{description} failed: {friendly_error(error)}"
            self.panel.message.set(sentence)
            self.window.status.set(sentence)

        self.window.app.worker.submit(call, done, failed)

    def _client_call(self) -> tuple[Any, GroupRow] | None:
        row, client = self.row, self.window.app.client
        if row is None or client is None:
            return None
        return client, row

    def add_members(self) -> None:
        found = self._client_call()
        if found is None:
            return
        _client, row = found
        if not group_rules.may_add_members(row):
            return
        from enctalk.ui.group_dialogs import AddMembersDialog

        candidates = [
            name
            for name in self.window.model.contacts
            if name not in self.panel.members
        ]
        AddMembersDialog(
            self.window,
            self.window.app,
            row.group_id,
            row.name,
            candidates,
            self.load_members,
        )

    def remove_member(self, username: str) -> None:
        found = self._client_call()
        if found is None:
            return
        client, row = found
        shown = display_text(self.panel.member_name(username))
        question = (
            f"Remove {shown} from \u201c{display_text(row.name)}\u201d? They keep "
            "the messages they have, but get no new ones. You can add them again."
        )
        if not self.confirm("Remove member", question):
            return
        group_id = row.group_id
        self._run(f"Removing {shown}", lambda: client.group_remove(group_id, username))

    def mute_member(self, username: str, muted: bool) -> None:
        found = self._client_call()
        if found is None:
            return
        client, row = found
        verb = "Muting" if muted else "Unmuting"
        group_id = row.group_id
        self._run(
            f"{verb} {display_text(self.panel.member_name(username))}",
            lambda: client.group_mute(group_id, username, muted),
        )

    def set_role(self, username: str, role: str) -> None:
        found = self._client_call()
        if found is None:
            return
        client, row = found
        goal = "a moderator" if role == MODERATOR else "an ordinary member"
        group_id = row.group_id
        self._run(
            f"Making {display_text(self.panel.member_name(username))} {goal}",
            lambda: client.group_set_role(group_id, username, role),
        )

    def set_read_only(self, read_only: bool) -> None:
        found = self._client_call()
        if found is None:
            return
        client, row = found
        if not group_rules.is_moderator(row.role) or read_only == row.read_only:
            self.read_only.set(row.read_only)
            return
        description = (
            "Making the group read-only" if read_only else "Letting everyone post"
        )
        group_id = row.group_id
        # The checkbutton shows the group's state, not the click, until it changes.
        self.read_only.set(row.read_only)
        self._run(description, lambda: client.group_read_only(group_id, read_only))

    def rename(self) -> None:
        found = self._client_call()
        if found is None:
            return
        _client, row = found
        if not group_rules.is_moderator(row.role):
            return
        from enctalk.ui.group_dialogs import RenameGroupDialog

        RenameGroupDialog(
            self.window, self.window.app, row.group_id, row.name, self.reload_groups
        )

    def leave(self) -> None:
        found = self._client_call()
        if found is None:
            return
        client, row = found
        if not group_rules.may_leave(row):
            return
        question = (
            f"Leave \u201c{display_text(row.name)}\u201d? You get no new messages "
            "from it, and only a moderator can add you again. Its history stays "
            "on this computer."
        )
        if not self.confirm("Leave group", question):
            return
        group_id = row.group_id
        self._run("Leaving the group", lambda: client.group_leave(group_id))

    def delete_message(self, entry: HistoryEntry) -> None:
        """Delete ``entry`` for everyone in the open group, after asking."""
        found = self._client_call()
        if found is None or entry.message_id is None:
            return
        client, row = found
        if entry.sender == self.window.model.me:
            question = "Delete your message for everyone in the group?"
        else:
            question = (
                "Delete this message from "
                f"{display_text(self.panel.member_name(entry.sender))} for "
                "everyone in the group? Every member sees that you deleted it."
            )
        if not self.confirm("Delete message", question):
            return
        group_id, message_id = row.group_id, entry.message_id
        self._run(
            "Deleting the message",
            lambda: client.group_delete_message(group_id, message_id),
        )

    def destroy(self) -> None:
        self._cancel_refresh()
