"""The main window: groups and contacts on the left, the conversation on the right.

The view keeps a :class:`~enctalk.ui.viewmodel.ChatModel` and carries out
the effects the model returns for each core event. A group conversation
also shows its member panel (:mod:`enctalk.ui.group_actions`), and a
notice with the composer disabled while this account may not post.
Every client call runs on a worker (sends on their own, so that they
never wait behind a slow call), and its result comes back on the Tk main
thread. Enter sends, Shift+Enter starts a new line,
and every action is in a menu, which also lists the keyboard shortcuts.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import TYPE_CHECKING, Any

from enctalk.client.attachments import ATTACHMENT_PROGRESS
from enctalk.client.core import Contact
from enctalk.client.groups import GroupInfo
from enctalk.client.history import HistoryEntry
from enctalk.ui import group_rules, theme, viewmodel
from enctalk.ui.about_dialog import add_help_menu
from enctalk.ui.audio_panel import AudioControls
from enctalk.ui.conversation import ConversationView, entry_key
from enctalk.ui.formatting import (
    connection_status,
    display_text,
    friendly_error,
    join_surrogates,
)
from enctalk.ui.group_actions import GroupActions
from enctalk.ui.viewmodel import ChatModel, Effect, GroupRow, entry_time, is_group
from enctalk.ui.worker import Worker

if TYPE_CHECKING:
    from enctalk.ui.app import App

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
# The bell rings at most this often, however many messages arrive.
BELL_INTERVAL_SECONDS = 1.0
# The tree items that head the two parts of the list. No conversation has
# these names, because usernames have no ":" and group names start with "#".
GROUPS_SECTION = "section:groups"
CONTACTS_SECTION = "section:contacts"
COMPOSE_HINT = "Enter sends, Shift+Enter starts a new line."
READ_ONLY_LABEL = "Read-only: only moderators post"
DELETE_LABEL = "Delete for everyone…"


class MainWindow(ttk.Frame):
    """Contacts, conversation, input and status line of a logged-in account."""

    def __init__(self, master: tk.Misc, app: App, me: str, address: str) -> None:
        super().__init__(master)
        self.app = app
        self.model = ChatModel(me)
        self.address = address
        self.loading_older = False
        self.has_older = False
        self.pending: list[HistoryEntry] = []
        self.loading_conversation: str | None = None
        self._local_keys = itertools.count(1)
        self._last_bell = 0.0
        self._countdown: str | None = None
        self.status = tk.StringVar(value=f"Connecting to {address}…")
        self.header = tk.StringVar(value="No conversation open")
        self.subtitle = tk.StringVar()
        self.warning = tk.StringVar()
        self.compose_hint = tk.StringVar(value=COMPOSE_HINT)
        self.show_members = tk.BooleanVar(value=True)
        self.post_refusal: str | None = None
        # The group conversations that showed the notice about members who
        # have not set up their account, which appears once per session.
        self.pending_noticed: set[str] = set()
        # Sends handed to the sender worker whose outcome has not come back.
        self.sends_in_flight = 0
        # False from a lost connection until the contacts' presence is
        # fetched again. Until then the list shows every contact as offline.
        self.presence_known = True

        self._build()
        self._build_menu()
        self._bind_keys()
        self.refresh_title()

    # Layout.

    def _build_menu(self) -> None:
        top = self.winfo_toplevel()
        menu = tk.Menu(top)

        account = tk.Menu(menu, tearoff=False)
        account.add_command(
            label="Settings…", accelerator="Ctrl+,", command=self.open_settings
        )
        account.add_command(label="Log out", command=self.app.log_out)
        account.add_separator()
        account.add_command(
            label="Quit", accelerator="Ctrl+Q", command=self.app.request_quit
        )
        menu.add_cascade(label="Account", menu=account, underline=0)

        contacts = tk.Menu(menu, tearoff=False)
        contacts.add_command(
            label="Add contact…", accelerator="Ctrl+N", command=self.add_contact
        )
        contacts.add_command(
            label="Contact details…", accelerator="Ctrl+I", command=self.open_details
        )
        menu.add_cascade(label="Contacts", menu=contacts, underline=0)

        groups = tk.Menu(menu, tearoff=False)
        groups.add_command(
            label="New group…", accelerator="Ctrl+G", command=self.new_group
        )
        groups.add_separator()
        self._add_group_entries(groups)
        groups.add_checkbutton(
            label="Show members",
            accelerator="Ctrl+Shift+G",
            variable=self.show_members,
            command=self._place_member_panel,
        )
        menu.add_cascade(label="Groups", menu=groups, underline=0)
        self.groups_menu = groups

        conversation = tk.Menu(menu, tearoff=False)
        conversation.add_command(
            label="Retry failed messages", accelerator="Ctrl+R", command=self.retry_all
        )
        conversation.add_command(
            label="Go to contacts", accelerator="Ctrl+K", command=self.focus_contacts
        )
        conversation.add_command(
            label="Go to message input",
            accelerator="Ctrl+L",
            command=self.focus_input,
        )
        conversation.add_separator()
        conversation.add_command(
            label="Record or send voice message",
            accelerator="Ctrl+M",
            command=self.toggle_recording,
        )
        conversation.add_command(
            label="Cancel recording",
            accelerator="Ctrl+Shift+M",
            command=lambda: self.audio.record_bar.cancel(),
        )
        conversation.add_command(
            label="Play or pause newest voice message",
            accelerator="Ctrl+P",
            command=self.play_latest,
        )
        menu.add_cascade(label="Conversation", menu=conversation, underline=0)
        add_help_menu(menu, top)

        top.configure(menu=menu)
        self.menu = menu

    def _build(self) -> None:
        self.rowconfigure(0, weight=1)
        self.columnconfigure(0, weight=1)
        panes = ttk.PanedWindow(self, orient="horizontal")
        panes.grid(row=0, column=0, sticky="nsew")

        left = ttk.Frame(panes, padding=(8, 8, 4, 8))
        left.rowconfigure(1, weight=1)
        left.columnconfigure(0, weight=1)
        ttk.Label(left, text="Chats", style="Title.TLabel").grid(
            row=0, column=0, sticky="w", pady=(0, 4)
        )
        self.tree = ttk.Treeview(
            left, columns=("unread",), show="tree", selectmode="browse"
        )
        self.tree.column("#0", width=160, stretch=True)
        self.tree.column("unread", width=40, anchor="e", stretch=False)
        self.tree.tag_configure("online", foreground=theme.ONLINE_COLOUR)
        self.tree.tag_configure("offline", foreground=theme.MUTED)
        self.tree.tag_configure("unread", font="TkHeadingFont")
        self.tree.tag_configure("section", foreground=theme.MUTED, font="TkHeadingFont")
        self.tree.insert(
            "",
            "end",
            iid=CONTACTS_SECTION,
            text="Contacts",
            open=True,
            tags=("section",),
        )
        self.tree.grid(row=1, column=0, sticky="nsew")
        self.tree.bind("<<TreeviewSelect>>", self._on_select)
        actions = ttk.Frame(left)
        actions.grid(row=2, column=0, sticky="ew", pady=(6, 0))
        actions.columnconfigure(0, weight=1)
        actions.columnconfigure(1, weight=1)
        ttk.Button(actions, text="Add contact…", command=self.add_contact).grid(
            row=0, column=0, sticky="ew", padx=(0, 3)
        )
        ttk.Button(actions, text="New group…", command=self.new_group).grid(
            row=0, column=1, sticky="ew", padx=(3, 0)
        )
        panes.add(left, weight=1)

        right = ttk.Frame(panes, padding=(4, 8, 8, 8))
        right.rowconfigure(2, weight=1)
        right.columnconfigure(0, weight=1)
        head = ttk.Frame(right)
        head.grid(row=0, column=0, columnspan=2, sticky="ew")
        head.columnconfigure(0, weight=1)
        ttk.Label(head, textvariable=self.header, style="Title.TLabel").grid(
            row=0, column=0, sticky="w"
        )
        self.subtitle_label = ttk.Label(
            head, textvariable=self.subtitle, style="Muted.TLabel"
        )
        self.subtitle_label.grid(row=1, column=0, sticky="w")
        self.subtitle_label.grid_remove()
        self.details_button = ttk.Button(
            head, text="Safety number…", command=self.open_details
        )
        self.details_button.grid(row=0, column=1, rowspan=2, sticky="e")
        self.members_button = ttk.Checkbutton(
            head,
            text="Members",
            style="Toolbutton",
            variable=self.show_members,
            command=self._place_member_panel,
        )
        self.members_button.grid(row=0, column=2, rowspan=2, sticky="e")
        self.members_button.grid_remove()
        self.group_button = ttk.Menubutton(head, text="Group", width=-5)
        self.group_button_menu = tk.Menu(self.group_button, tearoff=False)
        self.group_button.configure(menu=self.group_button_menu)
        self.group_button.grid(row=0, column=1, rowspan=2, sticky="e", padx=(0, 6))
        self.group_button.grid_remove()
        self.warning_label = ttk.Label(
            right, textvariable=self.warning, style="Warning.TLabel", wraplength=520
        )
        self.warning_label.grid(row=1, column=0, columnspan=2, sticky="ew", pady=(4, 0))
        self.warning_label.grid_remove()
        self.warning_label.bind(
            "<Configure>",
            lambda event: self.warning_label.configure(
                wraplength=max(event.width - 16, 200)
            ),
        )

        body = ttk.Frame(right)
        body.grid(row=2, column=0, sticky="nsew", pady=(4, 4))
        body.rowconfigure(0, weight=1)
        body.columnconfigure(0, weight=1)
        self.conversation = ConversationView(
            body,
            on_top=self.load_older,
            on_retry=self.retry,
            on_audio=self.open_audio,
            on_menu=self.open_message_menu,
        )
        self.conversation.grid(row=0, column=0, sticky="nsew")
        # The member panel spans the conversation and the composer, so the
        # list gets their height together.
        self.group_actions = GroupActions(self, right)
        self.group_actions.panel.grid(
            row=2, column=1, rowspan=2, sticky="ns", pady=(4, 0)
        )
        self.group_actions.panel.grid_remove()
        self._add_group_entries(self.group_button_menu)
        self.message_menu = tk.Menu(self, tearoff=False)
        self.message_menu.bind(
            "<Unmap>", lambda _event: self.conversation.clear_highlight()
        )

        compose = ttk.Frame(right)
        compose.grid(row=3, column=0, sticky="ew")
        compose.columnconfigure(0, weight=1)
        self.input = tk.Text(
            compose, height=3, wrap="word", undo=True, font="TkTextFont"
        )
        self.input.grid(row=0, column=0, sticky="ew")
        self._input_background = str(self.input.cget("background"))
        self.send_button = ttk.Button(compose, text="Send", command=self.send_message)
        self.send_button.grid(row=0, column=1, sticky="ns", padx=(6, 0))
        self.compose_hint_label = ttk.Label(
            compose, textvariable=self.compose_hint, style="Muted.TLabel"
        )
        self.compose_hint_label.grid(row=1, column=0, sticky="w")
        self._build_audio(right)
        panes.add(right, weight=3)

        ttk.Separator(self).grid(row=1, column=0, sticky="ew")
        ttk.Label(self, textvariable=self.status, style="Status.TLabel").grid(
            row=2, column=0, sticky="ew"
        )
        self._set_compose_enabled(False)

    def _build_audio(self, parent: ttk.Frame) -> None:
        # Sends get their own worker, so a message reaches the outbox at
        # once even while the app's worker waits for an unreachable server.
        self.sender = Worker(self.app.outcomes, "enctalk-ui-sender")
        self.transfers = Worker(self.app.outcomes, "enctalk-ui-transfers")
        self.audio = AudioControls(
            parent,
            self.transfers,
            self.app.client,
            peer=lambda: self.model.current,
            on_error=self._show_error,
            on_sent=self._reload_conversation,
        )
        self.audio.player_bar.grid(
            row=4, column=0, columnspan=2, sticky="ew", pady=(6, 0)
        )
        self.audio.record_bar.grid(
            row=5, column=0, columnspan=2, sticky="ew", pady=(6, 0)
        )

    def _reload_conversation(self) -> None:
        if self.model.current is not None:
            self.select(self.model.current)

    def open_audio(self, entry: HistoryEntry) -> None:
        """Select an audio entry in the player bar and fetch its file."""
        if entry.message_id is None:
            return
        duration = float((entry.attachment or {}).get("duration", 0.0))
        sender = self.conversation.sender_name(entry.sender)
        title = f"{display_text(sender)}: {display_text(entry.body)}"
        self.audio.player_bar.select(entry.message_id, title, duration)

    def toggle_recording(self) -> None:
        """Start recording, or stop and send the recording in progress."""
        if self.model.current is None or self.post_refusal is not None:
            return
        bar = self.audio.record_bar
        if bar.recorder is None:
            bar.start()
        else:
            bar.finish()

    def play_latest(self) -> None:
        """Play (or pause) the newest voice message of the conversation."""
        bar = self.audio.player_bar
        if bar.player is not None and bar.player.playing:
            if bar.player.paused:
                bar.play()
            else:
                bar.pause()
            return
        entries = list(self.conversation.audio_entries.values())
        if entries:
            bar.autoplay = True
            self.open_audio(entries[-1])

    def destroy(self) -> None:
        self.group_actions.destroy()
        self.sender.stop()
        self.transfers.stop()
        self.audio.close()
        super().destroy()

    def _bind_keys(self) -> None:
        top = self.winfo_toplevel()
        bindings: dict[str, Callable[[], None]] = {
            "<Control-n>": self.add_contact,
            "<Control-g>": self.new_group,
            "<Control-G>": self.toggle_members,
            "<Control-i>": self.open_details,
            "<Control-comma>": self.open_settings,
            "<Control-r>": self.retry_all,
            "<Control-k>": self.focus_contacts,
            "<Control-l>": self.focus_input,
            "<Control-m>": self.toggle_recording,
            "<Control-M>": lambda: self.audio.record_bar.cancel(),
            "<Control-p>": self.play_latest,
        }
        for sequence, action in bindings.items():
            top.bind(sequence, self._key(action))
        self.input.bind("<Return>", self._key(self.send_message))
        self.input.bind("<KP_Enter>", self._key(self.send_message))
        self.input.bind("<Shift-Return>", self._newline)
        self.tree.bind("<Return>", self._key(self.focus_input))

    @staticmethod
    def _key(action: Callable[[], None]) -> Callable[[tk.Event[Any]], str]:
        def handler(_event: tk.Event[Any]) -> str:
            action()
            return "break"

        return handler

    def _newline(self, _event: tk.Event[Any]) -> str:
        self.input.insert("insert", "\n")
        self.input.see("insert")
        return "break"

    def _set_compose_enabled(self, enabled: bool, refusal: str | None = None) -> None:
        """Enable the composer, or disable it with ``refusal`` as the reason."""
        writable = enabled and refusal is None
        self.post_refusal = refusal
        self.input.configure(
            state="normal" if writable else "disabled",
            background=self._input_background
            if writable
            else theme.DISABLED_BACKGROUND,
        )
        self.send_button.state(["!disabled"] if writable else ["disabled"])
        self.details_button.state(["!disabled"] if enabled else ["disabled"])
        self.audio.record_bar.set_refusal(refusal)
        if refusal is None:
            self.compose_hint.set(COMPOSE_HINT)
            self.compose_hint_label.configure(style="Muted.TLabel")
        else:
            self.compose_hint.set(f"You cannot post here. {refusal}")
            self.compose_hint_label.configure(style="Error.TLabel")

    # Contacts and groups.

    def load_contacts(
        self, contacts: list[Contact], activity: dict[str, int], unread: list[str]
    ) -> None:
        """Fill the list after login: contacts and their latest activity."""
        for contact in contacts:
            row = self.model.contact(contact.username)
            row.online = contact.online
            row.verified = contact.verified
            row.last_activity = max(
                row.last_activity, activity.get(contact.username, 0)
            )
        self.refresh_contacts()
        self._open_first()

    def load_groups(
        self, groups: list[GroupInfo], activity: dict[str, int] | None = None
    ) -> None:
        """Take over the groups' states from the core and redraw what shows them.

        ``activity`` maps group conversations to their latest activity.
        """
        for info in groups:
            row = self.model.group(info.conversation)
            row.name = info.name
            row.role = info.role
            row.muted = info.muted
            row.read_only = info.read_only
            row.members = info.members
            if row.member:
                row.left_reason = ""
            when = (activity or {}).get(info.conversation, 0)
            row.last_activity = max(row.last_activity, when)
        self.refresh_contacts()
        current = self.model.current_group()
        if current is not None:
            self._show_group_state(current)
            self.group_actions.group_changed(current)
        self._update_group_menu()

    def _open_first(self) -> None:
        """Open the conversation with the latest activity, if none is open."""
        if self.model.current is not None:
            return
        rows: list[viewmodel.ContactRow | GroupRow] = [
            *self.model.sorted_groups(),
            *self.model.sorted_contacts(),
        ]
        if not rows:
            return
        newest = max(rows, key=lambda row: row.last_activity)
        if isinstance(newest, GroupRow):
            self.select(newest.conversation)
        else:
            self.select(newest.username)

    def refresh_contacts(self) -> None:
        """Redraw the groups and contacts from the model, keeping the selection."""
        self._refresh_section(
            CONTACTS_SECTION,
            [
                (row.username, *self._contact_item(row))
                for row in self.model.sorted_contacts()
            ],
        )
        groups = [
            (row.conversation, *self._group_item(row))
            for row in self.model.sorted_groups()
        ]
        if groups and not self.tree.exists(GROUPS_SECTION):
            self.tree.insert(
                "", 0, iid=GROUPS_SECTION, text="Groups", open=True, tags=("section",)
            )
        if self.tree.exists(GROUPS_SECTION):
            self._refresh_section(GROUPS_SECTION, groups)
        current = self.model.current
        if (
            current is not None
            and self.tree.exists(current)
            and self.tree.selection() != (current,)
        ):
            self.tree.selection_set(current)
        self.refresh_title()

    def _refresh_section(
        self, section: str, items: list[tuple[str, str, str, list[str]]]
    ) -> None:
        """Make the children of ``section`` the (iid, label, unread, tags) ``items``."""
        wanted = {iid for iid, *_rest in items}
        for item in self.tree.get_children(section):
            if item not in wanted:
                self.tree.delete(item)
        for index, (iid, label, unread, tags) in enumerate(items):
            if self.tree.exists(iid):
                self.tree.item(iid, text=label, values=(unread,), tags=tags)
            else:
                self.tree.insert(
                    section, "end", iid=iid, text=label, values=(unread,), tags=tags
                )
            if self.tree.parent(iid) != section or self.tree.index(iid) != index:
                self.tree.move(iid, section, index)

    def _contact_item(self, row: viewmodel.ContactRow) -> tuple[str, str, list[str]]:
        online = row.online and self.presence_known
        mark = "●" if online else "○"
        label = f"{mark} {display_text(row.username)}"
        if row.key_changed:
            label += "  ⚠"
        elif row.verified:
            label += "  ✓"
        tags = ["online" if online else "offline"]
        if row.unread:
            tags.append("unread")
        return label, str(row.unread) if row.unread else "", tags

    @staticmethod
    def _group_item(row: GroupRow) -> tuple[str, str, list[str]]:
        label = f"# {display_text(row.name)}"
        if not row.member:
            label += "  (left)"
        tags = ["group" if row.member else "offline"]
        if row.unread:
            tags.append("unread")
        return label, str(row.unread) if row.unread else "", tags

    def refresh_title(self) -> None:
        self.winfo_toplevel().title(display_text(self.model.title()))

    def _on_select(self, _event: tk.Event[Any]) -> None:
        selection = self.tree.selection()
        if not selection or selection[0] in (GROUPS_SECTION, CONTACTS_SECTION):
            return
        if selection[0] != self.model.current:
            self.select(selection[0])

    def select(self, conversation: str) -> None:
        """Open ``conversation`` (a username or a group) and load its newest entries."""
        self.model.open(conversation)
        self.conversation.clear()
        # A group's member list brings the display names of its senders.
        self.conversation.forget_sender_names()
        self.pending = []
        self.loading_conversation = conversation
        self.has_older = False
        group = self.model.current_group()
        if group is None:
            row = self.model.contact(conversation)
            self.header.set(display_text(conversation))
            self.subtitle_label.grid_remove()
            self.members_button.grid_remove()
            self.group_button.grid_remove()
            self.details_button.grid()
            self.group_actions.close()
            self._place_member_panel()
            self._show_key_warning(row.key_changed, conversation)
            self._set_compose_enabled(True)
        else:
            self.details_button.grid_remove()
            self.members_button.grid()
            self.group_button.grid()
            self._show_group_state(group)
            # open() fetches the members already.
            self.group_actions.open(group)
            self._place_member_panel(load=False)
        self._update_group_menu()
        self.refresh_contacts()
        client = self.app.client
        assert client is not None
        self.app.worker.submit(
            lambda: client.history(conversation, PAGE_SIZE),
            lambda entries: self._show_history(conversation, entries),
            self._show_error,
        )

    def _show_group_state(self, row: GroupRow) -> None:
        """Show the open group's name, standing and whether this account may post."""
        self.header.set(display_text(row.name))
        self.subtitle.set(group_rules.subtitle(row))
        self.subtitle_label.grid()
        self._show_banner(group_rules.banner_text(row))
        self._set_compose_enabled(True, group_rules.post_refusal(row))

    def _show_history(self, conversation: str, entries: list[HistoryEntry]) -> None:
        if conversation != self.model.current:
            return
        self.loading_conversation = None
        self.conversation.show(entries, self.model.states)
        for entry in self.pending:
            self.conversation.append(entry)
        self.pending = []
        self.has_older = len(entries) >= PAGE_SIZE

    def load_older(self) -> None:
        """Fetch the page of history before the oldest entry shown."""
        username = self.model.current
        if username is None or self.loading_older or not self.has_older:
            return
        client = self.app.client
        assert client is not None
        oldest = self.conversation.oldest_seq
        if oldest is None:
            return
        self.loading_older = True

        def shown(entries: list[HistoryEntry]) -> None:
            self.loading_older = False
            if username != self.model.current:
                return
            self.has_older = len(entries) >= PAGE_SIZE
            self.conversation.prepend(entries)

        def failed(error: BaseException) -> None:
            self.loading_older = False
            self._show_error(error)

        self.app.worker.submit(
            lambda: client.history(username, PAGE_SIZE, before_seq=oldest),
            shown,
            failed,
        )

    # Sending.

    def focus_input(self) -> None:
        if str(self.input.cget("state")) == "normal":
            self.input.focus_set()

    def focus_contacts(self) -> None:
        self.tree.focus_set()
        current = self.model.current
        if current is not None and self.tree.exists(current):
            self.tree.focus(current)

    def read_input(self) -> str:
        """Return exactly what is in the input, read through Tk indices."""
        return join_surrogates(self.input.get("1.0", "end-1c"))

    def send_message(self) -> None:
        """Send the input to the open conversation (Enter)."""
        peer = self.model.current
        if peer is None or str(self.input.cget("state")) != "normal":
            return
        if self.post_refusal is not None:
            self.status.set(self.post_refusal)
            return
        body = self.read_input()
        if not body.strip():
            return
        self.input.delete("1.0", "end")
        client = self.app.client
        assert client is not None
        local_key = f"local:{next(self._local_keys)}"
        now = int(time.time() * 1000)
        entry = HistoryEntry(
            conversation=peer,
            kind="text",
            direction="out",
            sender=self.model.me,
            body=body,
            message_id=None,
            server_seq=None,
            server_time=None,
            sent_at=now,
            state="sending",
        )
        self.conversation.append(entry, key=local_key)
        if is_group(peer):
            self._notice_pending_members(peer)
        self.model.touch(peer, now)
        self.refresh_contacts()

        def sent(result: Any) -> None:
            self.sends_in_flight -= 1
            self.conversation.alias(local_key, result.message_id)
            state = self.model.states.get(result.message_id, "sending")
            self.conversation.set_state(result.message_id, state)

        def failed(error: BaseException) -> None:
            self.sends_in_flight -= 1
            self.conversation.set_state(local_key, "failed")
            self.status.set(f"Not sent: {friendly_error(error)}")

        # timeout=0: the call returns once the message is in the outbox, and
        # delivery_updated events report the rest, also while offline.
        # NOTE: the core keeps each outcome nobody waited for in memory
        # until the client closes, a few hundred bytes per message sent.
        self.sends_in_flight += 1
        if is_group(peer):
            group_id = peer.removeprefix(viewmodel.GROUP_PREFIX)
            self.sender.submit(
                lambda: client.send_group_text(group_id, body, 0.0), sent, failed
            )
        else:
            self.sender.submit(lambda: client.send_text(peer, body, 0.0), sent, failed)

    def _notice_pending_members(self, conversation: str) -> None:
        """Say once per group conversation that members not set up miss messages.

        The count comes from the member list shown, which is fetched when
        the group opens and again after each change to it.
        """
        panel = self.group_actions.panel
        if conversation in self.pending_noticed or panel.row is None:
            return
        pending = panel.pending_count()
        if panel.row.conversation != conversation or not pending:
            return
        self.pending_noticed.add(conversation)
        notice = HistoryEntry(
            conversation=conversation,
            kind="notice",
            direction="in",
            sender=self.model.me,
            body=group_rules.pending_notice(pending),
            message_id=None,
            server_seq=None,
            server_time=int(time.time() * 1000),
            sent_at=None,
            state=None,
        )
        self.conversation.append(notice)

    def retry(self, message_id: str) -> None:
        """Send a failed message again, with the same message id."""
        client = self.app.client
        if client is None or message_id.startswith("local:"):
            return
        self.sender.submit(
            lambda: client.retry_send(message_id), None, self._show_error
        )

    def unsent_messages(self, timeout: float) -> int:
        """Return how many messages wait in the outbox; blocks up to ``timeout`` s.

        The count comes from the core, after the sends already handed to
        the sender worker. If the core does not answer in time, it is the
        number of messages this window has shown as sending, and of sends
        not yet in the outbox.
        """
        client = self.app.client
        if client is None:
            return 0
        listed = threading.Event()
        counts: list[int] = []

        def count() -> None:
            try:
                counts.append(len(client.outbox()))
            finally:
                listed.set()

        self.sender.submit(count)
        if listed.wait(timeout) and counts:
            return counts[0]
        # NOTE: this misses messages left in the outbox by an earlier run
        # that no event of this session reported.
        logger.info("the outbox was not listed within %.1f s", timeout)
        sending = sum(1 for state in self.model.states.values() if state == "sending")
        return sending + self.sends_in_flight

    def retry_all(self) -> None:
        """Retry every failed message shown in the open conversation (Ctrl+R)."""
        for message_id in self.conversation.failed_keys():
            self.retry(message_id)

    # Events.

    def apply_events(self, events: list[Any]) -> None:
        """Carry out a batch of core events; redraw the contact list once."""
        contacts_changed = False
        ring = False
        groups_changed = False
        for event in events:
            if event.name == ATTACHMENT_PROGRESS:
                self.audio.progress(event.data)
                continue
            for effect in self.model.apply(event):
                if effect.kind == viewmodel.CONTACTS:
                    contacts_changed = True
                elif effect.kind == viewmodel.BELL:
                    ring = True
                elif effect.kind == viewmodel.GROUP:
                    groups_changed = True
                else:
                    self._apply(effect)
        if contacts_changed:
            self.refresh_contacts()
        if groups_changed:
            self._group_updated()
        if ring:
            self._ring()

    def _group_updated(self) -> None:
        """Fetch the groups' states again after a batch with group changes."""
        current = self.model.current_group()
        if current is not None:
            # The event may have ended this account's membership already.
            self._show_group_state(current)
            self.group_actions.show_state(current)
        self._update_group_menu()
        self.group_actions.reload_groups()

    def _apply(self, effect: Effect) -> None:
        data = effect.data
        if effect.kind == viewmodel.APPEND:
            entry: HistoryEntry = data["entry"]
            if self.loading_conversation == entry.conversation:
                self.pending.append(entry)
            else:
                self.conversation.append(entry)
        elif effect.kind == viewmodel.STATE:
            self.conversation.set_state(data["message_id"], data["state"])
        elif effect.kind == viewmodel.DELETED:
            self.conversation.remove(data["message_id"])
        elif effect.kind == viewmodel.PRESENCE:
            self.group_actions.set_online(data["username"], data["online"])
        elif effect.kind == viewmodel.STATUS:
            self._show_status(data["state"], data["data"])
        elif effect.kind == viewmodel.KEY_CHANGED:
            if data["username"] == self.model.current:
                self._show_key_warning(True, data["username"])
        elif effect.kind == viewmodel.REVOKED:
            self.app.session_ended()
        elif effect.kind == viewmodel.NOTICE:
            self.status.set(display_text(data["text"]))

    def _ring(self) -> None:
        now = time.monotonic()
        if now - self._last_bell >= BELL_INTERVAL_SECONDS:
            self._last_bell = now
            self.bell()

    def _show_status(self, state: str, data: dict[str, Any]) -> None:
        self._set_connected(state == "connected")
        if self._countdown is not None:
            self.after_cancel(self._countdown)
            self._countdown = None
        retry_in = data.get("retry_in")
        if state == "reconnecting" and isinstance(retry_in, (int, float)):
            self._count_down(time.monotonic() + float(retry_in))
            return
        self.status.set(connection_status(state, data, self.address))

    def _set_connected(self, connected: bool) -> None:
        """Show presence as unknown while not connected; fetch it again after.

        Presence changes during the gap were never reported, so the lists
        keep the unknown look until the contacts and members come back.
        """
        if not connected:
            if self.presence_known:
                self.presence_known = False
                self.refresh_contacts()
            self.group_actions.panel.set_presence_known(False)
            return
        if self.presence_known:
            return
        client = self.app.client
        if client is None:
            return
        self.group_actions.load_members()
        self.app.worker.submit(
            client.contacts, self._contacts_refreshed, self._show_error
        )

    def _contacts_refreshed(self, contacts: list[Contact]) -> None:
        for contact in contacts:
            self.model.contact(contact.username).online = contact.online
        self.presence_known = True
        self.refresh_contacts()

    def _count_down(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        self.status.set(
            connection_status("reconnecting", {"retry_in": remaining}, self.address)
        )
        if remaining > 0.5:
            self._countdown = self.after(1000, lambda: self._count_down(deadline))
        else:
            self._countdown = None

    def _show_key_warning(self, changed: bool, username: str) -> None:
        if changed:
            self._show_banner(
                f"The account key of {display_text(username)} changed. Compare "
                "the new safety number with them in person before you trust "
                "this conversation (Ctrl+I)."
            )
        else:
            self._show_banner(None)

    def _show_banner(self, text: str | None) -> None:
        """Show ``text`` in the notice above the conversation, or hide it."""
        if text:
            self.warning.set(f"⚠ {text}")
            self.warning_label.grid()
        else:
            self.warning.set("")
            self.warning_label.grid_remove()

    def _show_error(self, error: BaseException) -> None:
        self.status.set(friendly_error(error))

    def show_error(self, error: BaseException) -> None:
        """Show ``error`` as a sentence in the status line."""
        self._show_error(error)

    # Groups.

    def members_shown(self) -> bool:
        """Return whether the member panel is on screen."""
        return self.model.current_group() is not None and self.show_members.get()

    def toggle_members(self) -> None:
        """Show or hide the member panel of the open group (Ctrl+Shift+G)."""
        self.show_members.set(not self.show_members.get())
        self._place_member_panel()

    def _place_member_panel(self, load: bool = True) -> None:
        """Show or hide the member panel; with ``load``, fetch the members too."""
        panel = self.group_actions.panel
        if self.members_shown():
            panel.grid()
            if load:
                self.group_actions.load_members()
        else:
            panel.grid_remove()

    def _add_group_entries(self, menu: tk.Menu) -> None:
        """Add the actions on the open group to ``menu``."""
        menu.add_command(label="Add members…", command=self._add_members)
        menu.add_command(label="Rename group…", command=self._rename_group)
        menu.add_checkbutton(
            label=READ_ONLY_LABEL,
            variable=self.group_actions.read_only,
            command=lambda: self.group_actions.set_read_only(
                self.group_actions.read_only.get()
            ),
        )
        menu.add_separator()
        menu.add_command(label="Leave group…", command=self._leave_group)

    def _update_group_menu(self) -> None:
        """Enable the Groups menu entries this account may use in the open group."""
        row = self.model.current_group()
        moderator = row is not None and group_rules.is_moderator(row.role)
        allowed = {
            "Add members…": moderator,
            "Rename group…": moderator,
            READ_ONLY_LABEL: moderator,
            "Leave group…": row is not None and group_rules.may_leave(row),
        }
        for menu in (self.groups_menu, self.group_button_menu):
            for label, enabled in allowed.items():
                menu.entryconfigure(label, state="normal" if enabled else "disabled")
        self.groups_menu.entryconfigure(
            "Show members", state="normal" if row is not None else "disabled"
        )

    def new_group(self) -> None:
        """Open the "New group" dialog (Ctrl+G)."""
        from enctalk.ui.group_dialogs import NewGroupDialog

        NewGroupDialog(
            self,
            self.app,
            list(self.model.contacts),
            self._group_created,
            self.group_actions.load_members,
        )

    def _group_created(self, group_id: str) -> None:
        conversation = viewmodel.GROUP_PREFIX + group_id
        self.model.touch(conversation)
        self.select(conversation)
        self.group_actions.reload_groups()

    def _add_members(self) -> None:
        self.group_actions.add_members()

    def _rename_group(self) -> None:
        self.group_actions.rename()

    def _leave_group(self) -> None:
        self.group_actions.leave()

    def open_message_menu(self, entry: HistoryEntry, x: int, y: int) -> None:
        """Open the menu of a right-clicked message at screen position ``x``, ``y``."""
        self.fill_message_menu(entry)
        self.message_menu.tk_popup(x, y)
        # On X11 tk_popup returns at once and the menu's <Unmap> ends the
        # highlight. NOTE: untested on Windows and macOS, where tk_popup is
        # expected to return only once the native menu has closed.
        if self.tk.call("tk", "windowingsystem") != "x11":
            self.conversation.clear_highlight()

    def fill_message_menu(self, entry: HistoryEntry) -> None:
        """Put the actions on ``entry`` in the message menu.

        Every line can be copied. A group message can also be deleted for
        everyone, by its author or a moderator.
        """
        menu = self.message_menu
        menu.delete(0, "end")
        menu.add_command(label="Copy text", command=lambda: self._copy_text(entry.body))
        row = self.model.current_group()
        state = self.model.states.get(entry.message_id or "")
        if row is not None and group_rules.may_delete(row, self.model.me, entry, state):
            menu.add_separator()
            menu.add_command(
                label=DELETE_LABEL,
                command=lambda: self.group_actions.delete_message(entry),
            )

    def _copy_text(self, text: str) -> None:
        self.clipboard_clear()
        self.clipboard_append(text)

    # Dialogs.

    def add_contact(self) -> None:
        from enctalk.ui.add_contact_dialog import AddContactDialog

        AddContactDialog(self, self.app, self._contact_added)

    def _contact_added(self, contact: Contact) -> None:
        row = self.model.contact(contact.username)
        row.online = contact.online
        row.verified = contact.verified
        self.model.touch(contact.username)
        self.refresh_contacts()
        self.select(contact.username)
        self.focus_input()

    def open_details(self) -> None:
        username = self.model.current
        if username is None:
            return
        if is_group(username):
            self.toggle_members()
            return
        from enctalk.ui.contact_dialog import ContactDialog

        ContactDialog(self, self.app, self.model.contact(username), self._verified)

    def _verified(self, username: str, verified: bool) -> None:
        row = self.model.contact(username)
        row.verified = verified
        if verified:
            row.key_changed = False
            if username == self.model.current:
                self._show_key_warning(False, username)
        self.refresh_contacts()

    def open_settings(self) -> None:
        from enctalk.ui.settings_dialog import SettingsDialog

        SettingsDialog(self, self.app)


def latest_activity(entries: list[HistoryEntry]) -> int:
    """Return the time of the newest entry, 0 for an empty conversation."""
    return max((entry_time(entry) for entry in entries), default=0)


__all__ = ["MainWindow", "entry_key", "latest_activity"]
