"""The question before quitting while messages wait in the outbox.

A message that the server has not acknowledged stays in the client
core's outbox, which is saved in the profile, and goes out after the
next login. Quitting loses nothing, but the user may expect the message
to be read now, so the app asks first. Cancel is the default button.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

QUIT_TITLE = "Quit EncTalk"


def unsent_question(count: int) -> str:
    """Return the question for ``count`` unsent messages."""
    if count == 1:
        counted = "1 message has not been sent yet. It goes out"
    else:
        counted = f"{count} messages have not been sent yet. They go out"
    return f"{counted} the next time you open EncTalk. Quit anyway?"


class QuitDialog(tk.Toplevel):
    """The question whether to quit with ``count`` unsent messages.

    Quit calls ``on_quit``. Cancel, Escape and closing the dialog keep the
    app open.
    """

    def __init__(
        self, parent: tk.Misc, count: int, on_quit: Callable[[], None]
    ) -> None:
        super().__init__(parent)
        self.title(QUIT_TITLE)
        self.on_quit = on_quit
        frame = ttk.Frame(self, padding=16)
        frame.pack(fill="both", expand=True)
        self.question = ttk.Label(
            frame, text=unsent_question(count), wraplength=360, justify="left"
        )
        self.question.pack(anchor="w")

        buttons = ttk.Frame(frame)
        buttons.pack(anchor="e", pady=(12, 0))
        self.quit_button = ttk.Button(
            buttons, text="Quit", underline=0, command=self._quit
        )
        self.quit_button.pack(side="left", padx=(0, 8))
        self.cancel_button = ttk.Button(
            buttons, text="Cancel", default="active", command=self.destroy
        )
        self.cancel_button.pack(side="left")

        self.protocol("WM_DELETE_WINDOW", self.destroy)
        self.bind("<Escape>", lambda _event: self.destroy())
        self.bind("<Alt-q>", lambda _event: self._quit())
        self.bind("<Return>", self._invoke_focused)
        self.bind("<KP_Enter>", self._invoke_focused)
        self.transient(parent.winfo_toplevel())
        self.geometry(f"+{parent.winfo_rootx() + 80}+{parent.winfo_rooty() + 80}")
        self.cancel_button.focus_set()

    def _invoke_focused(self, _event: tk.Event[tk.Misc]) -> str:
        widget = self.focus_get()
        if isinstance(widget, ttk.Button):
            widget.invoke()
        return "break"

    def _quit(self) -> None:
        self.destroy()
        self.on_quit()
