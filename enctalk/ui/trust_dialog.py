"""Dialogs about the server's certificate: a first connection, and a change.

The first connection to a server shows its certificate's SHA-256
fingerprint in lines of eight bytes, the way the server prints it, and
pins it only when the user confirms. A changed certificate is a hard
error: the dialog shows both fingerprints and EncTalk does not connect.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from enctalk.ui.formatting import fingerprint_lines

FIRST_CONNECTION_TITLE = "Check the server"
CHANGED_TITLE = "Server certificate changed"


def _place_over(dialog: tk.Toplevel, parent: tk.Misc) -> None:
    dialog.transient(parent.winfo_toplevel())
    dialog.update_idletasks()
    x = parent.winfo_rootx() + 40
    y = parent.winfo_rooty() + 40
    dialog.geometry(f"+{x}+{y}")


def _fingerprint_block(master: tk.Misc, fingerprint: str) -> ttk.Label:
    return ttk.Label(
        master,
        text="\n".join(fingerprint_lines(fingerprint)),
        font="TkFixedFont",
        justify="left",
        padding=8,
    )


class FirstConnectionDialog(tk.Toplevel):
    """Asks whether to trust a new server; calls ``on_answer(True/False)`` once."""

    def __init__(
        self,
        parent: tk.Misc,
        address: str,
        fingerprint: str,
        on_answer: Callable[[bool], None],
    ) -> None:
        super().__init__(parent)
        self.title(FIRST_CONNECTION_TITLE)
        self.on_answer: Callable[[bool], None] | None = on_answer
        frame = ttk.Frame(self, padding=16)
        frame.pack(fill="both", expand=True)

        ttk.Label(
            frame, text=f"First connection to {address}", style="Title.TLabel"
        ).pack(anchor="w")
        ttk.Label(
            frame,
            text=(
                "Compare this fingerprint with the one the server printed when it "
                "started (your teacher can show it). Trust the server only if "
                "every group matches."
            ),
            wraplength=440,
            justify="left",
        ).pack(anchor="w", pady=(8, 4))
        _fingerprint_block(frame, fingerprint).pack(anchor="w")

        buttons = ttk.Frame(frame)
        buttons.pack(anchor="e", pady=(12, 0))
        self.cancel_button = ttk.Button(
            buttons, text="Cancel", command=lambda: self._answer(False)
        )
        self.cancel_button.pack(side="left", padx=(0, 8))
        self.trust_button = ttk.Button(
            buttons,
            text="They match: trust",
            underline=12,
            command=lambda: self._answer(True),
        )
        self.trust_button.pack(side="left")

        self.protocol("WM_DELETE_WINDOW", lambda: self._answer(False))
        self.bind("<Escape>", lambda _event: self._answer(False))
        self.bind("<Alt-t>", lambda _event: self._answer(True))
        self.bind("<Return>", self._invoke_focused)
        self.bind("<KP_Enter>", self._invoke_focused)
        _place_over(self, parent)
        self.cancel_button.focus_set()

    def _invoke_focused(self, _event: tk.Event[tk.Misc]) -> str:
        widget = self.focus_get()
        if isinstance(widget, ttk.Button):
            widget.invoke()
        return "break"

    def _answer(self, trusted: bool) -> None:
        callback, self.on_answer = self.on_answer, None
        self.destroy()
        if callback is not None:
            callback(trusted)


class CertificateChangedDialog(tk.Toplevel):
    """Warns that the server's certificate differs from the pinned one."""

    def __init__(
        self, parent: tk.Misc, address: str, pinned: str, presented: str
    ) -> None:
        super().__init__(parent)
        self.title(CHANGED_TITLE)
        frame = ttk.Frame(self, padding=16)
        frame.pack(fill="both", expand=True)

        ttk.Label(
            frame,
            text=f"The certificate of {address} has changed",
            style="Title.TLabel",
        ).pack(anchor="w")
        ttk.Label(
            frame,
            text=(
                "EncTalk did not connect. Someone may be pretending to be the "
                "server. If your teacher reinstalled the server on purpose, ask "
                "them to help you remove the old one from this computer."
            ),
            wraplength=440,
            justify="left",
            style="Warning.TLabel",
        ).pack(anchor="w", fill="x", pady=(8, 8))
        ttk.Label(frame, text="Remembered fingerprint:").pack(anchor="w")
        _fingerprint_block(frame, pinned).pack(anchor="w")
        ttk.Label(frame, text="Fingerprint the server shows now:").pack(anchor="w")
        _fingerprint_block(frame, presented).pack(anchor="w")

        close = ttk.Button(frame, text="Close", command=self.destroy)
        close.pack(anchor="e", pady=(12, 0))
        self.bind("<Escape>", lambda _event: self.destroy())
        self.bind("<Return>", lambda _event: self.destroy())
        _place_over(self, parent)
        close.focus_set()
