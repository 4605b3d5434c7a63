"""The "Add a whole class" part of adding members to a group, for staff accounts.

The server keeps the class lists of its roster (labels such as 7B) and
lists them to staff accounts only. The picker requests the labels when it
opens, and chooses the class when there is only one. The server rejects
the request from any other account with ``not_allowed``, and the picker
then shows one line saying so in place of the list. Adding a class is
``Client.group_add_class``, which makes one server call per new member,
so the dialog runs it on the worker while its progress bar moves.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass
from tkinter import ttk
from typing import TYPE_CHECKING

from enctalk.client.errors import NOT_ALLOWED, ClientError
from enctalk.ui.formatting import display_text, friendly_error

if TYPE_CHECKING:
    from enctalk.client.core import Client
    from enctalk.ui.app import App

CLASSES_TITLE = "Add a whole class"
LOADING_TEXT = "Loading the classes…"
CLASSES_HINT = (
    "Adds everyone in the class who is not in the group yet, also accounts "
    "that are still waiting for their setup code."
)
NOT_STAFF_TEXT = "Only staff accounts can add a whole class."
NO_CLASSES_TEXT = (
    "The server has no classes yet. An administrator makes them by importing a roster."
)


@dataclass(frozen=True)
class ClassAdded:
    """The outcome of adding a class: who was added, and who is not set up yet."""

    label: str
    added: tuple[str, ...]
    # The added accounts that are still waiting for their setup code.
    pending: tuple[str, ...]


def add_class(client: Client, group_id: str, label: str) -> ClassAdded:
    """Add every account of the class ``label`` to the group; runs on the worker."""
    waiting = {
        member.username for member in client.class_members(label) if member.pending
    }
    added = client.group_add_class(group_id, label)
    return ClassAdded(
        label, tuple(added), tuple(name for name in added if name in waiting)
    )


def describe_class_added(result: ClassAdded) -> str:
    """Return how many members a class added, and how many are not set up yet."""
    label = display_text(result.label)
    count = len(result.added)
    if count == 0:
        return f"Everyone in class {label} is in the group already."
    noun = "member" if count == 1 else "members"
    text = f"Added {count} {noun} from class {label}."
    waiting = len(result.pending)
    if waiting == 1:
        text += (
            " 1 of them has not used their setup code yet and gets only the "
            "messages sent after that."
        )
    elif waiting > 1:
        text += (
            f" {waiting} of them have not used their setup codes yet and get "
            "only the messages sent after that."
        )
    return text


def describe_class_failed(label: str, error: BaseException) -> str:
    """Return the sentences for a failed class add, which may have added some."""
    return (
        f"Adding class {display_text(label)} failed: {friendly_error(error)} "
        "Anyone added before the failure stays in the group, and adding the "
        "class again adds the rest."
    )


class ClassPicker(ttk.LabelFrame):
    """The classes of the server to pick one from, and its "Add class" button.

    ``on_add(label)`` runs on the Tk main thread when a class is chosen;
    the dialog adds it and calls :meth:`set_busy` around the call.
    """

    def __init__(
        self, master: tk.Misc, app: App, on_add: Callable[[str], None]
    ) -> None:
        super().__init__(master, text=CLASSES_TITLE, padding=8)
        self.app = app
        self.on_add = on_add
        self.classes: list[str] = []
        self.busy = False
        self.choice = tk.StringVar()
        self.note = tk.StringVar(value=LOADING_TEXT)
        self.columnconfigure(1, weight=1)

        self.combobox = ttk.Combobox(
            self, textvariable=self.choice, state="readonly", width=18
        )
        self.add_button = ttk.Button(self, text="Add class", command=self.submit)
        self.note_label = ttk.Label(
            self,
            textvariable=self.note,
            style="Muted.TLabel",
            wraplength=340,
            justify="left",
        )
        self.note_label.grid(row=1, column=0, columnspan=2, sticky="w", pady=(4, 0))
        self.combobox.bind("<<ComboboxSelected>>", lambda _event: self._update())
        self.combobox.bind("<Return>", lambda _event: self.submit())
        self.combobox.bind("<KP_Enter>", lambda _event: self.submit())

    def load(self) -> None:
        """Request the server's classes on the worker and show them."""
        client = self.app.client
        if client is None:
            self.note.set("You are logged out.")
            return
        self.app.worker.submit(client.list_classes, self._loaded, self._load_failed)

    def _loaded(self, classes: list[str]) -> None:
        if not self._alive():
            return
        self.classes = list(classes)
        if not self.classes:
            self.note.set(NO_CLASSES_TEXT)
            return
        self.combobox.configure(values=[display_text(label) for label in self.classes])
        self.combobox.grid(row=0, column=0, sticky="w")
        self.add_button.grid(row=0, column=1, sticky="w", padx=(8, 0))
        self.note.set(CLASSES_HINT)
        if len(self.classes) == 1:
            # Nothing to choose between, so the one class is chosen already.
            self.combobox.current(0)
        self._update()

    def _load_failed(self, error: BaseException) -> None:
        if not self._alive():
            return
        if isinstance(error, ClientError) and error.code == NOT_ALLOWED:
            self.note.set(NOT_STAFF_TEXT)
        else:
            self.note.set(f"Classes not loaded: {friendly_error(error)}")

    def shown(self) -> bool:
        """Return whether the list of classes is on offer (staff, some classes)."""
        return bool(self.classes)

    def chosen(self) -> str | None:
        """Return the label of the chosen class, or None."""
        index = self.combobox.current()
        if not isinstance(index, int) or not 0 <= index < len(self.classes):
            return None
        return self.classes[index]

    def choose(self, label: str) -> None:
        """Choose the class ``label``, as a click in the list would."""
        self.combobox.current(self.classes.index(label))
        self._update()

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        self._update()

    def _update(self) -> None:
        enabled = not self.busy and self.chosen() is not None
        self.add_button.state(["!disabled"] if enabled else ["disabled"])

    def submit(self) -> None:
        label = self.chosen()
        if label is not None and not self.busy:
            self.on_add(label)

    def _alive(self) -> bool:
        try:
            return bool(self.winfo_exists())
        except tk.TclError:
            return False
