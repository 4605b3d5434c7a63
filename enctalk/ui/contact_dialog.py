"""Contact details: the safety number and the "Mark as verified" action.

The safety number (60 digits in 12 groups of 5) is the same on both
sides when neither account key was replaced. The user compares it in
person, and the dialog records the result in the client core.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import TYPE_CHECKING

from enctalk.ui.formatting import display_text, friendly_error, safety_number_rows
from enctalk.ui.viewmodel import ContactRow

if TYPE_CHECKING:
    from enctalk.ui.app import App

TITLE = "Contact details"


class ContactDialog(tk.Toplevel):
    """Shows the safety number with one contact and lets the user verify it."""

    def __init__(
        self,
        parent: tk.Misc,
        app: App,
        row: ContactRow,
        on_verified: Callable[[str, bool], None],
    ) -> None:
        super().__init__(parent)
        self.title(f"{TITLE}: {display_text(row.username)}")
        self.transient(parent.winfo_toplevel())
        self.app = app
        self.row = row
        self.on_verified = on_verified
        self.number = tk.StringVar(value="Computing the safety number…")
        self.state_text = tk.StringVar()
        self.error = tk.StringVar()

        frame = ttk.Frame(self, padding=16)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text=display_text(row.username), style="Title.TLabel").pack(
            anchor="w"
        )
        presence = "online" if row.online else "offline"
        ttk.Label(frame, text=f"Now {presence}.", style="Muted.TLabel").pack(anchor="w")
        ttk.Label(
            frame,
            text=(
                "Safety number. Compare it with the one on "
                f"{display_text(row.username)}'s screen, in person. If all 12 "
                "groups match, nobody is reading along."
            ),
            wraplength=420,
            justify="left",
        ).pack(anchor="w", pady=(10, 4))
        ttk.Label(frame, textvariable=self.number, font="TkFixedFont", padding=8).pack(
            anchor="w"
        )
        ttk.Label(frame, textvariable=self.state_text).pack(anchor="w")
        ttk.Label(frame, textvariable=self.error, style="Error.TLabel").pack(anchor="w")

        buttons = ttk.Frame(frame)
        buttons.pack(anchor="e", pady=(10, 0))
        ttk.Button(buttons, text="Close", command=self.destroy).pack(
            side="left", padx=(0, 8)
        )
        self.verify_button = ttk.Button(buttons, command=self.toggle_verified)
        self.verify_button.pack(side="left")
        self.verify_button.state(["disabled"])
        self._show_state()

        self.bind("<Escape>", lambda _event: self.destroy())
        self.bind("<Alt-m>", lambda _event: self.toggle_verified())
        self.geometry(f"+{parent.winfo_rootx() + 60}+{parent.winfo_rooty() + 60}")
        self.verify_button.focus_set()

        client = app.client
        if client is not None:
            app.worker.submit(
                lambda: client.safety_number(row.username), self._shown, self._failed
            )

    def _show_state(self) -> None:
        if self.row.verified:
            self.state_text.set("✓ You marked this safety number as verified.")
            self.verify_button.configure(text="Mark as not verified", underline=0)
        else:
            self.state_text.set("Not verified yet.")
            self.verify_button.configure(text="Mark as verified", underline=0)

    def _shown(self, number: str) -> None:
        if not self.winfo_exists():
            return
        self.number.set("\n".join(safety_number_rows(number)))
        self.verify_button.state(["!disabled"])
        self.verify_button.focus_set()

    def _failed(self, error: BaseException) -> None:
        if self.winfo_exists():
            self.number.set("")
            self.error.set(friendly_error(error))

    def toggle_verified(self) -> None:
        """Record the comparison, or undo it (Alt+M)."""
        client = self.app.client
        if client is None or self.verify_button.instate(["disabled"]):
            return
        verified = not self.row.verified
        username = self.row.username

        def done(_result: object) -> None:
            self.on_verified(username, verified)
            if self.winfo_exists():
                self._show_state()

        self.app.worker.submit(
            lambda: client.mark_verified(username, verified), done, self._failed
        )
