"""A tooltip for the rows of a ttk.Treeview, shown while the pointer rests on one.

The text of a row comes from a callback when the tip opens, so it always
matches the row's data. The tip is an undecorated Toplevel beside the
pointer. Leaving the row, clicking or destroying the tree hides it.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from enctalk.ui import theme
from enctalk.ui.formatting import display_text

# How long the pointer rests on a row before its tip opens, in milliseconds.
TOOLTIP_DELAY_MS = 500
# Offset of the tip from the pointer, in pixels, so it does not cover the row.
TOOLTIP_OFFSET = (12, 18)
TOOLTIP_BACKGROUND = "#ffffe6"


class TreeTooltip:
    """A tip with ``text_for(row id)`` beside the pointer, or none for None."""

    def __init__(
        self, tree: ttk.Treeview, text_for: Callable[[str], str | None]
    ) -> None:
        self.tree = tree
        self.text_for = text_for
        self.row = ""
        self.tip: tk.Toplevel | None = None
        self._after_id: str | None = None
        tree.bind("<Motion>", self._moved, add="+")
        tree.bind("<Leave>", lambda _event: self.hide(), add="+")
        tree.bind("<ButtonPress>", lambda _event: self.hide(), add="+")
        tree.bind("<Destroy>", lambda _event: self.hide(), add="+")

    def _moved(self, event: tk.Event[ttk.Treeview]) -> None:
        row = self.tree.identify_row(event.y)
        if row == self.row:
            return
        self.hide()
        self.row = row
        if row:
            x, y = event.x_root, event.y_root
            self._after_id = self.tree.after(
                TOOLTIP_DELAY_MS, lambda: self.show(row, x, y)
            )

    def show(self, row: str, x: int, y: int) -> None:
        """Open the tip of ``row`` near the screen position ``x``, ``y``."""
        self._after_id = None
        if not self.tree.exists(row):
            return
        text = self.text_for(row)
        if not text:
            return
        self.hide_tip()
        self.row = row
        tip = tk.Toplevel(self.tree)
        tip.wm_overrideredirect(True)
        tip.wm_geometry(f"+{x + TOOLTIP_OFFSET[0]}+{y + TOOLTIP_OFFSET[1]}")
        tk.Label(
            tip,
            text=display_text(text),
            background=TOOLTIP_BACKGROUND,
            foreground=theme.MUTED,
            relief="solid",
            borderwidth=1,
            padx=6,
            pady=3,
            justify="left",
        ).pack()
        self.tip = tip

    def hide_tip(self) -> None:
        if self.tip is not None:
            self.tip.destroy()
            self.tip = None

    def hide(self) -> None:
        """Close the tip and forget the row, so the next move starts over."""
        if self._after_id is not None:
            self.tree.after_cancel(self._after_id)
            self._after_id = None
        self.hide_tip()
        self.row = ""
