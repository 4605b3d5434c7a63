"""Help > About: the program's version and build date."""

from __future__ import annotations

import platform
import tkinter as tk
from tkinter import ttk

from enctalk.version import VERSION, build_date

TITLE = "About EncTalk"


def about_text() -> str:
    """Return the lines the About dialog shows."""
    return (
        f"EncTalk {VERSION}\n"
        f"Built: {build_date()}\n"
        f"Python {platform.python_version()}, Tk {tk.TkVersion}"
    )


class AboutDialog(tk.Toplevel):
    """A small window with the version, the build date and a Close button."""

    def __init__(self, parent: tk.Misc) -> None:
        super().__init__(parent)
        self.title(TITLE)
        self.transient(parent.winfo_toplevel())
        self.resizable(False, False)
        frame = ttk.Frame(self, padding=16)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text="EncTalk", style="Title.TLabel").pack(anchor="w")
        self.details = ttk.Label(frame, text=about_text(), justify="left")
        self.details.pack(anchor="w", pady=(8, 12))
        close = ttk.Button(frame, text="Close", command=self.destroy)
        close.pack(anchor="e")
        self.bind("<Escape>", lambda _event: self.destroy())
        close.focus_set()


def add_help_menu(menu: tk.Menu, parent: tk.Misc) -> None:
    """Append the Help menu, with About, to a menu bar."""
    help_menu = tk.Menu(menu, tearoff=False)
    help_menu.add_command(label="About EncTalk", command=lambda: AboutDialog(parent))
    menu.add_cascade(label="Help", menu=help_menu, underline=0)
