"""The conversation pane: a read-only Text with one block per history entry.

Each entry gets a tag named by its key (the message id, or a local key
until the core assigns one), and its delivery state sits in a range
tagged ``state:KEY``, so a state change rewrites only that range, and a
message deleted for everyone is removed by its tag. A sender's name is
tagged ``from:USERNAME``, so a group's display names, which arrive with
its member list, replace the usernames in place. Group system lines
(members added, muted, messages deleted) are centred in grey italics, apart
from the messages. Text
goes in through :func:`~enctalk.ui.formatting.display_text`, so every
character takes one Tk index position and Tk 8.6 never gets a character
it cannot draw. The history itself keeps the original text.

A view that shows the last line keeps showing it when lines are added
and when the pane changes size (a notice above it, the composer, the
window). A view scrolled up stays where it is, and a button offers the
new lines below it.
"""

from __future__ import annotations

import json
import os
import tkinter as tk
from collections.abc import Callable
from dataclasses import replace
from tkinter import font as tkfont
from tkinter import ttk

from enctalk.client.history import HistoryEntry
from enctalk.ui import theme
from enctalk.ui.formatting import display_text, format_time, state_label
from enctalk.ui.viewmodel import entry_time

Segments = list[tuple[str, tuple[str, ...]]]

NEW_BELOW_LABEL = "New messages below ↓"
MENU_TARGET_TAG = "menu_target"
# Tests set this to a file path. Each entry shown then appends a JSON line
# with its message id and direction to that file, never its text.
TRACE_VARIABLE = "ENCTALK_UI_TRACE"


def _trace(entry: HistoryEntry) -> None:
    path = os.environ.get(TRACE_VARIABLE)
    if not path or entry.message_id is None:
        return
    record = {"message_id": entry.message_id, "direction": entry.direction}
    with open(path, "a", encoding="utf-8") as trace:
        trace.write(json.dumps(record) + "\n")


def entry_key(entry: HistoryEntry) -> str:
    """Return the key that identifies ``entry`` in the view."""
    if entry.message_id is not None:
        return entry.message_id
    return f"notice:{entry.server_time}:{entry.body}"


class ConversationView(ttk.Frame):
    """Shows one conversation; calls ``on_top`` when scrolled to the top."""

    def __init__(
        self,
        master: tk.Misc,
        on_top: Callable[[], None],
        on_retry: Callable[[str], None],
        on_audio: Callable[[HistoryEntry], None] | None = None,
        on_menu: Callable[[HistoryEntry, int, int], None] | None = None,
    ) -> None:
        super().__init__(master)
        self.on_top = on_top
        self.on_retry = on_retry
        self.on_audio = on_audio
        # Called with an entry and the screen position for its menu, on a
        # right-click or the menu key.
        self.on_menu = on_menu
        self.audio_entries: dict[str, HistoryEntry] = {}
        self.entries: dict[str, HistoryEntry] = {}
        # Keys removed by a deletion, so a late copy is not shown again.
        self.deleted: set[str] = set()
        self.me = ""
        # Display names by username, for the sender lines of a group.
        self.sender_names: dict[str, str] = {}
        self.shown_keys: set[str] = set()
        self.aliases: dict[str, str] = {}
        self.failed: set[str] = set()
        self.oldest_seq: int | None = None
        # Whether the view shows the last line and keeps showing it when
        # lines are added or the pane changes size. Scrolling sets it.
        self.follow_end = True
        # The pane's (width, height) at the last scroll report, in pixels.
        self._view_size = (0, 0)

        self.text = tk.Text(
            self,
            wrap="word",
            state="disabled",
            takefocus=True,
            relief="flat",
            padx=10,
            pady=8,
            font="TkTextFont",
            cursor="arrow",
        )
        scrollbar = ttk.Scrollbar(self, orient="vertical", command=self.text.yview)
        self.text.configure(yscrollcommand=self._on_scroll(scrollbar))
        self.text.grid(row=0, column=0, sticky="nsew")
        scrollbar.grid(row=0, column=1, sticky="ns")
        self.new_below = ttk.Button(
            self,
            text=NEW_BELOW_LABEL,
            style="Toolbutton",
            command=self.scroll_to_end,
        )
        self.rowconfigure(0, weight=1)
        self.columnconfigure(0, weight=1)
        self.system_font = tkfont.nametofont("TkTextFont").copy()
        self.system_font.configure(slant="italic")
        self._configure_tags()
        self.text.bind("<Button-3>", self._right_clicked)
        # The menu key is "Menu" on X11 and "App" on Windows.
        for sequence in ("<Shift-F10>", "<Key-Menu>", "<Key-App>"):
            try:
                self.text.bind(sequence, self._menu_key)
            except tk.TclError:
                pass

    def _configure_tags(self) -> None:
        text = self.text
        text.tag_configure("sender_in", foreground=theme.ACCENT, font="TkHeadingFont")
        text.tag_configure("sender_out", foreground="#444444", font="TkHeadingFont")
        text.tag_configure("meta", foreground=theme.MUTED)
        text.tag_configure("failed", foreground=theme.ERROR_COLOUR)
        text.tag_configure("retry", foreground=theme.ACCENT, underline=True)
        text.tag_configure("header", spacing1=8)
        text.tag_configure("body", lmargin1=8, lmargin2=8)
        text.tag_configure(
            "notice",
            foreground="#7a4b00",
            background=theme.WARNING_BACKGROUND,
            lmargin1=4,
            lmargin2=4,
            spacing1=4,
            spacing3=6,
        )
        text.tag_configure(
            "system",
            foreground=theme.MUTED,
            font=self.system_font,
            justify="center",
            spacing1=6,
            spacing3=2,
        )
        # The entry whose menu is open, above every other tag's background.
        text.tag_configure(MENU_TARGET_TAG, background=theme.SELECTED_BACKGROUND)
        text.tag_configure("audio", foreground=theme.ACCENT, underline=True)
        text.tag_bind("audio", "<Button-1>", self._clicked_audio)
        text.tag_bind("audio", "<Enter>", lambda _e: text.configure(cursor="hand2"))
        text.tag_bind("audio", "<Leave>", lambda _e: text.configure(cursor="arrow"))
        text.tag_bind("retry", "<Button-1>", self._clicked_retry)
        text.tag_bind("retry", "<Enter>", lambda _e: text.configure(cursor="hand2"))
        text.tag_bind("retry", "<Leave>", lambda _e: text.configure(cursor="arrow"))

    def _on_scroll(self, scrollbar: ttk.Scrollbar) -> Callable[[float, float], None]:
        def update(first: float, last: float) -> None:
            scrollbar.set(first, last)
            size = (self.text.winfo_width(), self.text.winfo_height())
            resized = size != self._view_size
            self._view_size = size
            at_end = float(last) >= 1.0
            if resized and self.follow_end and not at_end:
                # A notice, the composer or the window changed the pane's
                # size under a view that showed the last line. Tk keeps the
                # top line in place, so the last lines would slide out.
                self.text.see("end")
                return
            self.follow_end = at_end
            if at_end:
                self.new_below.place_forget()
            if float(first) <= 0.0 and self.shown_keys:
                self.on_top()

        return update

    def scroll_to_end(self) -> None:
        """Show the last line, and keep following new lines."""
        self.follow_end = True
        self.new_below.place_forget()
        self.text.see("end")

    def _show_new_below(self) -> None:
        self.new_below.place(relx=0.5, rely=1.0, y=-8, anchor="s")
        self.new_below.lift()

    # Rendering.

    def _segments(self, entry: HistoryEntry, key: str, state: str | None) -> Segments:
        tag = f"entry:{key}"
        when = format_time(entry_time(entry) or None)
        if entry.kind == "notice":
            return [(f"⚠ {display_text(entry.body)}  {when}\n", ("notice", tag))]
        if entry.kind == "system":
            return [(f"{display_text(entry.body)} · {when}\n", ("system", tag))]
        own = entry.direction == "out"
        segments: Segments = [
            (
                display_text(self.sender_name(entry.sender)),
                (
                    "sender_out" if own else "sender_in",
                    "header",
                    f"from:{entry.sender}",
                    tag,
                ),
            ),
            (f"  {when}", ("meta", "header", tag)),
        ]
        if own:
            segments.extend(self._state_segments(key, state or entry.state))
        segments.append(("\n", (tag,)))
        if entry.kind == "audio" and entry.message_id is not None:
            self.audio_entries[entry.message_id] = entry
            segments.append((display_text(entry.body) + "  ", ("body", tag)))
            link = f"audio:{entry.message_id}"
            segments.append(("▶ Open", ("body", "audio", link, tag)))
            segments.append(("\n", ("body", tag)))
            return segments
        segments.append((display_text(entry.body) + "\n", ("body", tag)))
        return segments

    def _state_segments(self, key: str, state: str | None) -> Segments:
        tag = f"state:{key}"
        label = state_label(state)
        if state == "failed":
            return [
                (f"  · {label} ", ("failed", tag)),
                ("Retry", ("retry", tag, f"retry:{key}")),
            ]
        return [(f"  · {label}", ("meta", tag))]

    def _insert(self, index: str, segments: Segments) -> None:
        flat: list[str | tuple[str, ...]] = []
        for chunk, tags in segments:
            flat.extend((chunk, tags))
        self.text.configure(state="normal")
        self.text.insert(index, *flat)  # type: ignore[arg-type]
        self.text.configure(state="disabled")

    def clear(self) -> None:
        """Remove every entry."""
        self.text.configure(state="normal")
        self.text.delete("1.0", "end")
        self.text.configure(state="disabled")
        self.shown_keys.clear()
        self.aliases.clear()
        self.failed.clear()
        self.audio_entries.clear()
        self.entries.clear()
        self.deleted.clear()
        self.oldest_seq = None
        self.follow_end = True
        self.new_below.place_forget()

    def _remember(self, entry: HistoryEntry, key: str) -> None:
        _trace(entry)
        self.shown_keys.add(key)
        self.entries[key] = entry
        if entry.state == "failed":
            self.failed.add(key)
        seq = entry.server_seq
        if seq is not None and (self.oldest_seq is None or seq < self.oldest_seq):
            self.oldest_seq = seq

    def show(self, entries: list[HistoryEntry], states: dict[str, str]) -> None:
        """Replace the view with ``entries`` and scroll to the newest.

        Entries deleted while the history was loading stay hidden.
        """
        deleted = set(self.deleted)
        self.clear()
        self.deleted = deleted
        segments: Segments = []
        for entry in entries:
            key = entry_key(entry)
            if key in deleted:
                continue
            self._remember(entry, key)
            state = states.get(key, entry.state or "")
            if state == "failed":
                self.failed.add(key)
            segments.extend(self._segments(entry, key, state or None))
        if segments:
            self._insert("end", segments)
        self.scroll_to_end()

    def append(self, entry: HistoryEntry, key: str | None = None) -> bool:
        """Add ``entry`` at the end unless it is shown already; return if added."""
        key = key or entry_key(entry)
        if key in self.shown_keys or key in self.aliases or key in self.deleted:
            return False
        self._remember(entry, key)
        self._insert("end", self._segments(entry, key, entry.state))
        if self.follow_end or entry.direction == "out":
            self.scroll_to_end()
        else:
            self._show_new_below()
        return True

    def prepend(self, entries: list[HistoryEntry]) -> int:
        """Add older ``entries`` above the first one, keeping the view still."""
        fresh = [entry for entry in entries if entry_key(entry) not in self.shown_keys]
        if not fresh:
            return 0
        top_before = self.text.index("@0,0")
        lines_before = int(self.text.index("end-1c").split(".")[0])
        segments: Segments = []
        for entry in fresh:
            key = entry_key(entry)
            self._remember(entry, key)
            segments.extend(self._segments(entry, key, entry.state))
        self._insert("1.0", segments)
        added = int(self.text.index("end-1c").split(".")[0]) - lines_before
        line = int(top_before.split(".")[0]) + added
        self.text.yview(f"{line}.0")
        return len(fresh)

    # Sender names.

    def sender_name(self, username: str) -> str:
        """Return the display name of ``username`` if known, else the username."""
        return self.sender_names.get(username) or username

    def add_sender_names(self, names: dict[str, str]) -> None:
        """Show ``names`` (display names by username) in place of usernames."""
        changed = [
            username
            for username, name in names.items()
            if name and self.sender_names.get(username) != name
        ]
        self.sender_names.update(
            {username: name for username, name in names.items() if name}
        )
        for username in changed:
            self._relabel_sender(username)

    def forget_sender_names(self) -> None:
        """Show usernames again, for a conversation that is not a group's."""
        names, self.sender_names = self.sender_names, {}
        for username in names:
            self._relabel_sender(username)

    def _relabel_sender(self, username: str) -> None:
        ranges = self.text.tag_ranges(f"from:{username}")
        if not ranges:
            return
        label = display_text(self.sender_name(username))
        pairs = list(zip(ranges[0::2], ranges[1::2], strict=True))
        self.text.configure(state="normal")
        # From the end, so each replacement leaves the earlier indices valid.
        for start, end in reversed(pairs):
            tags = self.text.tag_names(start)
            self.text.delete(start, end)
            self.text.insert(start, label, tags)
        self.text.configure(state="disabled")

    # Delivery states.

    def alias(self, local_key: str, message_id: str) -> None:
        """Let ``message_id`` name the entry shown under ``local_key``."""
        self.aliases[message_id] = local_key
        entry = self.entries.get(local_key)
        if entry is not None:
            self.entries[local_key] = replace(entry, message_id=message_id)

    def _tag_key(self, key: str) -> str:
        return self.aliases.get(key, key)

    def set_state(self, key: str, state: str) -> None:
        """Show ``state`` for the outgoing message ``key``, if it is shown."""
        tag_key = self._tag_key(key)
        ranges = self.text.tag_ranges(f"state:{tag_key}")
        if not ranges:
            return
        if state == "failed":
            self.failed.add(key)
        else:
            self.failed.discard(key)
        start, end = ranges[0], ranges[-1]
        self.text.configure(state="normal")
        self.text.delete(start, end)
        flat: list[str | tuple[str, ...]] = []
        entry_tag = f"entry:{tag_key}"
        for chunk, tags in self._state_segments(tag_key, state):
            flat.extend((chunk, (*tags, entry_tag)))
        self.text.insert(start, *flat)  # type: ignore[arg-type]
        self.text.configure(state="disabled")

    def failed_keys(self) -> list[str]:
        """Return the keys of shown messages in the ``failed`` state."""
        reverse = {local: message_id for message_id, local in self.aliases.items()}
        return [reverse.get(key, key) for key in self.failed]

    def _clicked_retry(self, event: tk.Event[tk.Text]) -> None:
        index = self.text.index(f"@{event.x},{event.y}")
        for tag in self.text.tag_names(index):
            if tag.startswith("retry:"):
                key = tag.removeprefix("retry:")
                reverse = {local: mid for mid, local in self.aliases.items()}
                self.on_retry(reverse.get(key, key))
                return

    def _clicked_audio(self, event: tk.Event[tk.Text]) -> None:
        index = self.text.index(f"@{event.x},{event.y}")
        for tag in self.text.tag_names(index):
            entry = self.audio_entries.get(tag.removeprefix("audio:"))
            if tag.startswith("audio:") and entry is not None and self.on_audio:
                self.on_audio(entry)
                return

    # Deletion and the message menu.

    def remove(self, message_id: str) -> bool:
        """Remove the entry of ``message_id`` from the view; return if it was shown."""
        tag_key = self._tag_key(message_id)
        self.deleted.add(message_id)
        ranges = self.text.tag_ranges(f"entry:{tag_key}")
        self.shown_keys.discard(tag_key)
        self.entries.pop(tag_key, None)
        self.audio_entries.pop(message_id, None)
        self.failed.discard(message_id)
        self.failed.discard(tag_key)
        if not ranges:
            return False
        self.text.configure(state="normal")
        self.text.delete(ranges[0], ranges[-1])
        self.text.configure(state="disabled")
        return True

    def entry_at(self, index: str) -> HistoryEntry | None:
        """Return the entry shown at the Text ``index``, or None."""
        for tag in self.text.tag_names(index):
            if tag.startswith("entry:"):
                return self.entries.get(tag.removeprefix("entry:"))
        return None

    def highlight_at(self, index: str) -> None:
        """Highlight the whole entry shown at the Text ``index``, for its menu."""
        self.clear_highlight()
        for tag in self.text.tag_names(index):
            if tag.startswith("entry:"):
                ranges = self.text.tag_ranges(tag)
                self.text.tag_add(MENU_TARGET_TAG, ranges[0], ranges[-1])
                self.text.tag_raise(MENU_TARGET_TAG)
                return

    def clear_highlight(self) -> None:
        """Remove the highlight of the entry whose menu was open."""
        self.text.tag_remove(MENU_TARGET_TAG, "1.0", "end")

    def _right_clicked(self, event: tk.Event[tk.Text]) -> None:
        index = self.text.index(f"@{event.x},{event.y}")
        entry = self.entry_at(index)
        if entry is not None and self.on_menu is not None:
            self.highlight_at(index)
            self.on_menu(entry, event.x_root, event.y_root)

    def _menu_key(self, _event: tk.Event[tk.Text]) -> str:
        """Open the menu of the entry at the insertion cursor (arrow keys move it)."""
        entry = self.entry_at("insert")
        box = self.text.bbox("insert")
        if entry is not None and self.on_menu is not None and box is not None:
            x = self.text.winfo_rootx() + box[0]
            y = self.text.winfo_rooty() + box[1] + box[3]
            self.highlight_at("insert")
            self.on_menu(entry, x, y)
        return "break"

    def text_content(self) -> str:
        """Return the shown text (for tests and diagnostics)."""
        return self.text.get("1.0", "end-1c")
