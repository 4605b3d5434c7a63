"""The main window: contacts on the left, the open conversation on the right.

The view keeps a :class:`~enctalk.ui.viewmodel.ChatModel` and carries out
the effects the model returns for each core event. Every client call goes
through the app's worker, and its result comes back on the Tk main
thread. Enter sends, Shift+Enter starts a new line, and every action has
a key (listed in the menus).
"""

from __future__ import annotations

import itertools
import logging
import time
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import TYPE_CHECKING, Any

from enctalk.client.attachments import ATTACHMENT_PROGRESS
from enctalk.client.core import Contact
from enctalk.client.history import HistoryEntry
from enctalk.ui import theme, viewmodel
from enctalk.ui.about_dialog import add_help_menu
from enctalk.ui.audio_panel import AudioControls
from enctalk.ui.conversation import ConversationView, entry_key
from enctalk.ui.formatting import (
    connection_status,
    display_text,
    friendly_error,
    join_surrogates,
)
from enctalk.ui.viewmodel import ChatModel, Effect, entry_time
from enctalk.ui.worker import Worker

if TYPE_CHECKING:
    from enctalk.ui.app import App

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
# The bell rings at most this often, however many messages arrive.
BELL_INTERVAL_SECONDS = 1.0


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
        self.warning = tk.StringVar()

        self._build_menu()
        self._build()
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
        account.add_command(label="Quit", accelerator="Ctrl+Q", command=self.app.close)
        menu.add_cascade(label="Account", menu=account, underline=0)

        contacts = tk.Menu(menu, tearoff=False)
        contacts.add_command(
            label="Add contact…", accelerator="Ctrl+N", command=self.add_contact
        )
        contacts.add_command(
            label="Contact details…", accelerator="Ctrl+I", command=self.open_details
        )
        menu.add_cascade(label="Contacts", menu=contacts, underline=0)

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
        ttk.Label(left, text="Contacts", style="Title.TLabel").grid(
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
        self.tree.grid(row=1, column=0, sticky="nsew")
        self.tree.bind("<<TreeviewSelect>>", self._on_select)
        ttk.Button(left, text="Add contact…", command=self.add_contact).grid(
            row=2, column=0, sticky="ew", pady=(6, 0)
        )
        panes.add(left, weight=1)

        right = ttk.Frame(panes, padding=(4, 8, 8, 8))
        right.rowconfigure(2, weight=1)
        right.columnconfigure(0, weight=1)
        head = ttk.Frame(right)
        head.grid(row=0, column=0, sticky="ew")
        head.columnconfigure(0, weight=1)
        ttk.Label(head, textvariable=self.header, style="Title.TLabel").grid(
            row=0, column=0, sticky="w"
        )
        self.details_button = ttk.Button(
            head, text="Safety number…", command=self.open_details
        )
        self.details_button.grid(row=0, column=1, sticky="e")
        self.warning_label = ttk.Label(
            right, textvariable=self.warning, style="Warning.TLabel", wraplength=520
        )
        self.warning_label.grid(row=1, column=0, sticky="ew", pady=(4, 0))
        self.warning_label.grid_remove()

        self.conversation = ConversationView(
            right, on_top=self.load_older, on_retry=self.retry, on_audio=self.open_audio
        )
        self.conversation.grid(row=2, column=0, sticky="nsew", pady=(4, 4))

        compose = ttk.Frame(right)
        compose.grid(row=3, column=0, sticky="ew")
        compose.columnconfigure(0, weight=1)
        self.input = tk.Text(
            compose, height=3, wrap="word", undo=True, font="TkTextFont"
        )
        self.input.grid(row=0, column=0, sticky="ew")
        self.send_button = ttk.Button(compose, text="Send", command=self.send_message)
        self.send_button.grid(row=0, column=1, sticky="ns", padx=(6, 0))
        ttk.Label(
            compose,
            text="Enter sends, Shift+Enter starts a new line.",
            style="Muted.TLabel",
        ).grid(row=1, column=0, sticky="w")
        self._build_audio(right)
        panes.add(right, weight=3)

        ttk.Separator(self).grid(row=1, column=0, sticky="ew")
        ttk.Label(self, textvariable=self.status, style="Status.TLabel").grid(
            row=2, column=0, sticky="ew"
        )
        self._set_compose_enabled(False)

    def _build_audio(self, parent: ttk.Frame) -> None:
        self.transfers = Worker(self.app.outcomes, "enctalk-ui-transfers")
        self.audio = AudioControls(
            parent,
            self.transfers,
            self.app.client,
            peer=lambda: self.model.current,
            on_error=self._show_error,
            on_sent=self._reload_conversation,
        )
        self.audio.player_bar.grid(row=4, column=0, sticky="ew", pady=(6, 0))
        self.audio.record_bar.grid(row=5, column=0, sticky="ew", pady=(6, 0))

    def _reload_conversation(self) -> None:
        if self.model.current is not None:
            self.select(self.model.current)

    def open_audio(self, entry: HistoryEntry) -> None:
        """Select an audio entry in the player bar and fetch its file."""
        if entry.message_id is None:
            return
        duration = float((entry.attachment or {}).get("duration", 0.0))
        title = f"{display_text(entry.sender)}: {display_text(entry.body)}"
        self.audio.player_bar.select(entry.message_id, title, duration)

    def toggle_recording(self) -> None:
        """Start recording, or stop and send the recording in progress."""
        if self.model.current is None:
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
        self.transfers.stop()
        self.audio.close()
        super().destroy()

    def _bind_keys(self) -> None:
        top = self.winfo_toplevel()
        bindings: dict[str, Callable[[], None]] = {
            "<Control-n>": self.add_contact,
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

    def _set_compose_enabled(self, enabled: bool) -> None:
        self.input.configure(state="normal" if enabled else "disabled")
        self.send_button.state(["!disabled"] if enabled else ["disabled"])
        self.details_button.state(["!disabled"] if enabled else ["disabled"])

    # Contacts.

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
        if self.model.current is None and self.model.contacts:
            self.select(self.model.sorted_contacts()[0].username)

    def refresh_contacts(self) -> None:
        """Redraw the contact list from the model, keeping the selection."""
        rows = self.model.sorted_contacts()
        wanted = [row.username for row in rows]
        for item in self.tree.get_children():
            if item not in self.model.contacts:
                self.tree.delete(item)
        for index, row in enumerate(rows):
            mark = "●" if row.online else "○"
            label = f"{mark} {display_text(row.username)}"
            if row.key_changed:
                label += "  ⚠"
            elif row.verified:
                label += "  ✓"
            tags = ["online" if row.online else "offline"]
            if row.unread:
                tags.append("unread")
            unread = str(row.unread) if row.unread else ""
            if self.tree.exists(row.username):
                self.tree.item(row.username, text=label, values=(unread,), tags=tags)
            else:
                self.tree.insert(
                    "", "end", iid=row.username, text=label, values=(unread,), tags=tags
                )
            if self.tree.index(row.username) != index:
                self.tree.move(row.username, "", index)
        current = self.model.current
        if current in wanted and self.tree.selection() != (current,):
            self.tree.selection_set(current)
        self.refresh_title()

    def refresh_title(self) -> None:
        self.winfo_toplevel().title(display_text(self.model.title()))

    def _on_select(self, _event: tk.Event[Any]) -> None:
        selection = self.tree.selection()
        if selection and selection[0] != self.model.current:
            self.select(selection[0])

    def select(self, username: str) -> None:
        """Open the conversation with ``username`` and load its newest entries."""
        self.model.open(username)
        row = self.model.contact(username)
        self.header.set(display_text(username))
        self._show_key_warning(row.key_changed, username)
        self.conversation.clear()
        self.pending = []
        self.loading_conversation = username
        self.has_older = False
        self._set_compose_enabled(True)
        self.refresh_contacts()
        client = self.app.client
        assert client is not None
        self.app.worker.submit(
            lambda: client.history(username, PAGE_SIZE),
            lambda entries: self._show_history(username, entries),
            self._show_error,
        )

    def _show_history(self, username: str, entries: list[HistoryEntry]) -> None:
        if username != self.model.current:
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
        self.model.touch(peer, now)
        self.refresh_contacts()

        def sent(result: Any) -> None:
            self.conversation.alias(local_key, result.message_id)
            state = self.model.states.get(result.message_id, "sending")
            self.conversation.set_state(result.message_id, state)

        def failed(error: BaseException) -> None:
            self.conversation.set_state(local_key, "failed")
            self.status.set(f"Not sent: {friendly_error(error)}")

        # timeout=0: the call returns once the message is in the outbox, and
        # delivery_updated events report the rest, also while offline.
        # NOTE: the core keeps each outcome nobody waited for in memory
        # until the client closes, a few hundred bytes per message sent.
        self.app.worker.submit(lambda: client.send_text(peer, body, 0.0), sent, failed)

    def retry(self, message_id: str) -> None:
        """Send a failed message again, with the same message id."""
        client = self.app.client
        if client is None or message_id.startswith("local:"):
            return
        self.app.worker.submit(
            lambda: client.retry_send(message_id), None, self._show_error
        )

    def retry_all(self) -> None:
        """Retry every failed message shown in the open conversation (Ctrl+R)."""
        for message_id in self.conversation.failed_keys():
            self.retry(message_id)

    # Events.

    def apply_events(self, events: list[Any]) -> None:
        """Carry out a batch of core events; redraw the contact list once."""
        contacts_changed = False
        ring = False
        for event in events:
            if event.name == ATTACHMENT_PROGRESS:
                self.audio.progress(event.data)
                continue
            for effect in self.model.apply(event):
                if effect.kind == viewmodel.CONTACTS:
                    contacts_changed = True
                elif effect.kind == viewmodel.BELL:
                    ring = True
                else:
                    self._apply(effect)
        if contacts_changed:
            self.refresh_contacts()
        if ring:
            self._ring()

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
        if self._countdown is not None:
            self.after_cancel(self._countdown)
            self._countdown = None
        retry_in = data.get("retry_in")
        if state == "reconnecting" and isinstance(retry_in, (int, float)):
            self._count_down(time.monotonic() + float(retry_in))
            return
        self.status.set(connection_status(state, data, self.address))

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
            self.warning.set(
                f"⚠ The account key of {display_text(username)} changed. Compare "
                "the new safety number with them in person before you trust "
                "this conversation (Ctrl+I)."
            )
            self.warning_label.grid()
        else:
            self.warning_label.grid_remove()

    def _show_error(self, error: BaseException) -> None:
        self.status.set(friendly_error(error))

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
