"""The "Add contact" dialog: one username, errors shown inline."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import TYPE_CHECKING

from enctalk.client.core import Contact
from enctalk.ui.formatting import friendly_error

if TYPE_CHECKING:
    from enctalk.ui.app import App

TITLE = "Add contact"


class AddContactDialog(tk.Toplevel):
    """Asks for a username and adds it as a contact through the worker."""

    def __init__(
        self, parent: tk.Misc, app: App, on_added: Callable[[Contact], None]
    ) -> None:
        super().__init__(parent)
        self.title(TITLE)
        self.transient(parent.winfo_toplevel())
        self.app = app
        self.on_added = on_added
        self.username = tk.StringVar()
        self.error = tk.StringVar()

        frame = ttk.Frame(self, padding=16)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text="Username of your contact:").pack(anchor="w")
        self.entry = ttk.Entry(frame, textvariable=self.username, width=32)
        self.entry.pack(anchor="w", fill="x", pady=(4, 0))
        ttk.Label(
            frame,
            text="They see you in their contacts too.",
            style="Muted.TLabel",
        ).pack(anchor="w", pady=(4, 0))
        ttk.Label(
            frame, textvariable=self.error, style="Error.TLabel", wraplength=320
        ).pack(anchor="w", pady=(4, 0))
        self.progress = ttk.Progressbar(frame, mode="indeterminate")
        buttons = ttk.Frame(frame)
        buttons.pack(anchor="e", pady=(8, 0))
        ttk.Button(buttons, text="Cancel", command=self.destroy).pack(
            side="left", padx=(0, 8)
        )
        self.add_button = ttk.Button(buttons, text="Add", command=self.submit)
        self.add_button.pack(side="left")

        self.entry.bind("<Return>", lambda _event: self.submit())
        self.entry.bind("<KP_Enter>", lambda _event: self.submit())
        self.bind("<Escape>", lambda _event: self.destroy())
        self.geometry(f"+{parent.winfo_rootx() + 60}+{parent.winfo_rooty() + 60}")
        self.entry.focus_set()

    def submit(self) -> None:
        name = self.username.get().strip()
        client = self.app.client
        if not name or client is None:
            self.error.set("Type a username.")
            return
        self.error.set("")
        self.add_button.state(["disabled"])
        self.progress.pack(fill="x", pady=(8, 0))
        self.progress.start(15)
        self.app.worker.submit(
            lambda: client.add_contact(name), self._added, self._failed
        )

    def _added(self, contact: Contact) -> None:
        if self.winfo_exists():
            self.destroy()
        self.on_added(contact)

    def _failed(self, error: BaseException) -> None:
        if not self.winfo_exists():
            return
        self.progress.stop()
        self.progress.pack_forget()
        self.add_button.state(["!disabled"])
        self.error.set(friendly_error(error))
        self.entry.focus_set()
