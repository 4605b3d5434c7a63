"""Dialogs for groups: "New group" (a name, then members), add members, rename.

Each dialog checks what it can locally (an empty or too long name, typed
usernames that cannot exist), then runs the client call on the app's
worker while a progress bar moves, and shows the core's error in plain
words under the form. Adding several members makes one ``group_add``
call per name, so one unknown name does not stop the others; the dialog
then stays open with the names that failed. A staff account can also add
a whole class of the server's roster (:mod:`enctalk.ui.class_picker`);
the dialog then stays open and says how many members the class brought.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable, Iterable
from tkinter import ttk
from typing import TYPE_CHECKING

from enctalk.client.errors import ClientError
from enctalk.crypto.grouplog import MAX_GROUP_NAME_LENGTH
from enctalk.ui.class_picker import (
    ClassAdded,
    ClassPicker,
    add_class,
    describe_class_added,
    describe_class_failed,
)
from enctalk.ui.formatting import display_text, friendly_error
from enctalk.ui.group_rules import parse_usernames

if TYPE_CHECKING:
    from enctalk.ui.app import App

NEW_GROUP_TITLE = "New group"
ADD_MEMBERS_TITLE = "Add members"
RENAME_TITLE = "Rename group"
PROGRESS_STEP_MS = 15

# (username, the error sentence or None) for each name a group_add was for.
AddResults = list[tuple[str, str | None]]


def name_problem(name: str) -> str | None:
    """Return why ``name`` cannot be a group name, or None if it can."""
    if not name:
        return "Type a name for the group."
    if len(name) > MAX_GROUP_NAME_LENGTH:
        return (
            f"A group name can have at most {MAX_GROUP_NAME_LENGTH} characters; "
            f"this one has {len(name)}."
        )
    return None


def add_members(app: App, group_id: str, names: list[str]) -> AddResults:
    """Call ``group_add`` for each name and collect each outcome.

    Runs on the worker. A ClientError becomes that name's error sentence.
    """
    client = app.client
    if client is None:
        return [(name, "You are logged out.") for name in names]
    results: AddResults = []
    for name in names:
        try:
            client.group_add(group_id, name)
        except ClientError as exc:
            results.append((name, friendly_error(exc)))
        else:
            results.append((name, None))
    return results


def describe_results(results: AddResults) -> str:
    """Return one line per failed name, after a line for the names added."""
    added = [name for name, error in results if error is None]
    lines = []
    if added:
        lines.append("Added " + ", ".join(display_text(name) for name in added) + ".")
    for name, error in results:
        if error is not None:
            lines.append(f"Not added {display_text(name)}: {error}")
    return "\n".join(lines)


class _Dialog(tk.Toplevel):
    """A small modal-looking window with an error line and a progress bar."""

    def __init__(self, parent: tk.Misc, app: App, title: str) -> None:
        super().__init__(parent)
        self.title(title)
        self.transient(parent.winfo_toplevel())
        self.app = app
        self.error = tk.StringVar()
        self.body = ttk.Frame(self, padding=16)
        self.body.pack(fill="both", expand=True)
        self.bind("<Escape>", lambda _event: self.destroy())
        self.geometry(f"+{parent.winfo_rootx() + 60}+{parent.winfo_rooty() + 60}")

    def _error_label(self, master: tk.Misc) -> ttk.Label:
        return ttk.Label(
            master,
            textvariable=self.error,
            style="Error.TLabel",
            wraplength=360,
            justify="left",
        )

    def _name_form(
        self,
        master: tk.Misc,
        variable: tk.StringVar,
        prompt: str,
        hint: str,
        action: tuple[str, Callable[[], None]],
    ) -> tuple[ttk.Entry, ttk.Progressbar, ttk.Button]:
        """Lay out a group name field with a hint, Cancel and ``action``.

        ``action`` is the button's text and command, which Return in the
        field runs too. Returns the field, the progress bar (not yet
        placed) and the button.
        """
        text, command = action
        ttk.Label(master, text=prompt).pack(anchor="w")
        entry = ttk.Entry(master, textvariable=variable, width=40)
        entry.pack(anchor="w", fill="x", pady=(4, 0))
        ttk.Label(master, text=hint, style="Muted.TLabel").pack(anchor="w", pady=(4, 0))
        self._error_label(master).pack(anchor="w", pady=(4, 0))
        progress = ttk.Progressbar(master, mode="indeterminate")
        buttons = ttk.Frame(master)
        buttons.pack(side="bottom", anchor="e", pady=(8, 0))
        ttk.Button(buttons, text="Cancel", command=self.destroy).pack(
            side="left", padx=(0, 8)
        )
        button = ttk.Button(buttons, text=text, command=command)
        button.pack(side="left")
        entry.bind("<Return>", lambda _event: command())
        entry.bind("<KP_Enter>", lambda _event: command())
        return entry, progress, button

    def _busy(self, progress: ttk.Progressbar, button: ttk.Button, busy: bool) -> None:
        if busy:
            button.state(["disabled"])
            progress.pack(fill="x", pady=(8, 0))
            progress.start(PROGRESS_STEP_MS)
        else:
            progress.stop()
            progress.pack_forget()
            button.state(["!disabled"])

    def alive(self) -> bool:
        try:
            return bool(self.winfo_exists())
        except tk.TclError:
            return False


class MemberPicker(ttk.Frame):
    """Contacts to click (several at once) and a field for typed usernames."""

    def __init__(self, master: tk.Misc, contacts: Iterable[str]) -> None:
        super().__init__(master)
        self.names = sorted(contacts, key=str.casefold)
        self.typed = tk.StringVar()
        self.columnconfigure(0, weight=1)
        if self.names:
            ttk.Label(self, text="Click contacts to pick them (several at once):").grid(
                row=0, column=0, columnspan=2, sticky="w"
            )
            self.listbox: tk.Listbox | None = tk.Listbox(
                self,
                selectmode="multiple",
                height=min(max(len(self.names), 3), 8),
                exportselection=False,
                activestyle="dotbox",
            )
            for name in self.names:
                self.listbox.insert("end", display_text(name))
            scrollbar = ttk.Scrollbar(
                self, orient="vertical", command=self.listbox.yview
            )
            self.listbox.configure(yscrollcommand=scrollbar.set)
            self.listbox.grid(row=1, column=0, sticky="nsew", pady=(4, 0))
            scrollbar.grid(row=1, column=1, sticky="ns", pady=(4, 0))
            typed_label = "Or type usernames, separated by commas or spaces:"
        else:
            self.listbox = None
            typed_label = "Usernames, separated by commas or spaces:"
        ttk.Label(self, text=typed_label).grid(
            row=2, column=0, columnspan=2, sticky="w", pady=(8, 0)
        )
        self.entry = ttk.Entry(self, textvariable=self.typed, width=40)
        self.entry.grid(row=3, column=0, columnspan=2, sticky="ew", pady=(4, 0))

    def picked(self) -> tuple[list[str], list[str]]:
        """Return the chosen usernames and the typed words that are not usernames."""
        chosen: list[str] = []
        if self.listbox is not None:
            indexes = self.listbox.curselection()  # type: ignore[no-untyped-call]
            chosen = [self.names[int(index)] for index in indexes]
        typed, invalid = parse_usernames(self.typed.get())
        for name in typed:
            if name not in chosen:
                chosen.append(name)
        return chosen, invalid

    def keep_only(self, added: list[str], failed: list[str]) -> None:
        """Drop the ``added`` names from the list; put ``failed`` in the field."""
        if self.listbox is not None:
            self.listbox.selection_clear(0, "end")
        self.drop(added)
        self.typed.set(", ".join(failed))

    def drop(self, names: Iterable[str]) -> None:
        """Remove ``names`` from the list of contacts, keeping the other choices."""
        if self.listbox is None:
            return
        for name in names:
            if name in self.names:
                index = self.names.index(name)
                self.names.pop(index)
                self.listbox.delete(index)

    def focus_first(self) -> None:
        if self.listbox is not None:
            self.listbox.focus_set()
            self.listbox.activate(0)
        else:
            self.entry.focus_set()


class AddMembersDialog(_Dialog):
    """Adds contacts and typed usernames to a group; stays open on errors."""

    def __init__(
        self,
        parent: tk.Misc,
        app: App,
        group_id: str,
        group_name: str,
        contacts: Iterable[str],
        on_done: Callable[[], None],
        title: str = ADD_MEMBERS_TITLE,
    ) -> None:
        super().__init__(parent, app, title)
        self.group_id = group_id
        self.on_done = on_done
        self.build_members(group_name, contacts)

    def build_members(self, group_name: str, contacts: Iterable[str]) -> None:
        body = self.body
        ttk.Label(
            body,
            text=f"Add members to \u201c{display_text(group_name)}\u201d",
            style="Title.TLabel",
        ).pack(anchor="w")
        self.classes = ClassPicker(body, self.app, self.add_class)
        self.classes.pack(fill="x", pady=(8, 0))
        self.classes.load()
        self.picker = MemberPicker(body, contacts)
        self.picker.pack(fill="both", expand=True, pady=(8, 0))
        self.result = tk.StringVar()
        ttk.Label(body, textvariable=self.result, wraplength=360, justify="left").pack(
            anchor="w", pady=(6, 0)
        )
        self._error_label(body).pack(anchor="w", pady=(4, 0))
        self.progress = ttk.Progressbar(body, mode="indeterminate")
        buttons = ttk.Frame(body)
        buttons.pack(side="bottom", anchor="e", pady=(8, 0))
        self.close_button = ttk.Button(buttons, text="Done", command=self.finish)
        self.close_button.pack(side="left", padx=(0, 8))
        self.add_button = ttk.Button(buttons, text="Add", command=self.submit)
        self.add_button.pack(side="left")
        self.picker.entry.bind("<Return>", lambda _event: self.submit())
        self.picker.entry.bind("<KP_Enter>", lambda _event: self.submit())
        if self.picker.listbox is not None:
            self.picker.listbox.bind("<Return>", lambda _event: self.submit())
        self.picker.focus_first()

    def submit(self) -> None:
        names, invalid = self.picker.picked()
        if invalid:
            words = ", ".join(repr(display_text(word)) for word in invalid)
            self.error.set(
                f"Not a username: {words}. A username has 3 to 32 letters a-z, "
                "digits, '.', '_' or '-'."
            )
            return
        if not names:
            self.error.set("Pick a contact or type a username.")
            return
        self.error.set("")
        self._set_busy(True)
        group_id = self.group_id
        self.app.worker.submit(
            lambda: add_members(self.app, group_id, names), self._added, self._failed
        )

    def _set_busy(self, busy: bool) -> None:
        """Show the progress bar and block both Add buttons while a call runs."""
        self._busy(self.progress, self.add_button, busy)
        self.classes.set_busy(busy)

    def _added(self, results: AddResults) -> None:
        self.on_done()
        if not self.alive():
            return
        self._set_busy(False)
        failed = [name for name, error in results if error is not None]
        if not failed:
            self.destroy()
            return
        self.result.set(describe_results(results))
        added = [name for name, error in results if error is None]
        self.picker.keep_only(added, failed)
        self.picker.entry.focus_set()

    def _failed(self, error: BaseException) -> None:
        if not self.alive():
            return
        self._set_busy(False)
        self.error.set(friendly_error(error))

    def add_class(self, label: str) -> None:
        """Add every account of the class ``label`` on the worker."""
        client = self.app.client
        if client is None:
            self.error.set("You are logged out.")
            return
        self.error.set("")
        self.result.set(
            f"Adding class {display_text(label)}… This takes a few seconds for "
            "a large class."
        )
        self._set_busy(True)
        group_id = self.group_id
        self.app.worker.submit(
            lambda: add_class(client, group_id, label),
            self._class_added,
            lambda error: self._class_failed(label, error),
        )

    def _class_added(self, result: ClassAdded) -> None:
        self.on_done()
        if not self.alive():
            return
        self._set_busy(False)
        self.result.set(describe_class_added(result))
        self.picker.drop(result.added)

    def _class_failed(self, label: str, error: BaseException) -> None:
        # Some members may be in the group already, so the panel reloads.
        self.on_done()
        if not self.alive():
            return
        self._set_busy(False)
        self.result.set("")
        self.error.set(describe_class_failed(label, error))

    def finish(self) -> None:
        self.destroy()


class NewGroupDialog(AddMembersDialog):
    """Asks for a name and creates the group, then offers to add members."""

    def __init__(
        self,
        parent: tk.Misc,
        app: App,
        contacts: Iterable[str],
        on_created: Callable[[str], None],
        on_done: Callable[[], None],
    ) -> None:
        _Dialog.__init__(self, parent, app, NEW_GROUP_TITLE)
        self.group_id = ""
        self.contacts = list(contacts)
        self.on_created = on_created
        self.on_done = on_done
        self.name = tk.StringVar()

        self.name_page = ttk.Frame(self.body)
        self.name_page.pack(fill="both", expand=True)
        self.name_entry, self.name_progress, self.create_button = self._name_form(
            self.name_page,
            self.name,
            "Name of the new group:",
            "You own the group. Next, pick who is in it.",
            ("Create", self.create),
        )
        self.name_entry.focus_set()

    def create(self) -> None:
        name = self.name.get().strip()
        problem = name_problem(name)
        client = self.app.client
        if problem is None and client is None:
            problem = "You are logged out."
        if problem is not None:
            self.error.set(problem)
            return
        assert client is not None
        self.error.set("")
        self._busy(self.name_progress, self.create_button, True)
        self.app.worker.submit(
            lambda: client.create_group(name),
            lambda group_id: self._created(group_id, name),
            self._create_failed,
        )

    def _created(self, group_id: str, name: str) -> None:
        self.group_id = group_id
        self.on_created(group_id)
        if not self.alive():
            return
        self.name_page.destroy()
        self.build_members(name, self.contacts)

    def _create_failed(self, error: BaseException) -> None:
        if not self.alive():
            return
        self._busy(self.name_progress, self.create_button, False)
        self.error.set(friendly_error(error))
        self.name_entry.focus_set()


class RenameGroupDialog(_Dialog):
    """Asks for a group's new name and renames it through the worker."""

    def __init__(
        self,
        parent: tk.Misc,
        app: App,
        group_id: str,
        current_name: str,
        on_done: Callable[[], None],
    ) -> None:
        super().__init__(parent, app, RENAME_TITLE)
        self.group_id = group_id
        self.on_done = on_done
        self.name = tk.StringVar(value=current_name)
        self.entry, self.progress, self.rename_button = self._name_form(
            self.body,
            self.name,
            "New name of the group:",
            "Every member sees the new name and who changed it.",
            ("Rename", self.submit),
        )
        self.entry.select_range(0, "end")
        self.entry.focus_set()

    def submit(self) -> None:
        name = self.name.get().strip()
        problem = name_problem(name)
        client = self.app.client
        if problem is None and client is None:
            problem = "You are logged out."
        if problem is not None:
            self.error.set(problem)
            return
        assert client is not None
        self.error.set("")
        self._busy(self.progress, self.rename_button, True)
        group_id = self.group_id
        self.app.worker.submit(
            lambda: client.group_rename(group_id, name), self._renamed, self._failed
        )

    def _renamed(self, _result: object) -> None:
        self.on_done()
        if self.alive():
            self.destroy()

    def _failed(self, error: BaseException) -> None:
        if not self.alive():
            return
        self._busy(self.progress, self.rename_button, False)
        self.error.set(friendly_error(error))
