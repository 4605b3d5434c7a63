"""One ttk theme, fonts in points and DPI awareness.

Fonts are set in points, so ``tk scaling`` (pixels per point) scales the
whole window; ``ENCTALK_UI_SCALE=2`` doubles it, for a 200% display.
Treeview rows do not follow the font by themselves, so their height is
set from the font's line spacing.
"""

from __future__ import annotations

import logging
import os
import sys
import tkinter as tk
from tkinter import font as tkfont
from tkinter import ttk

logger = logging.getLogger(__name__)

BASE_FONT_POINTS = 10
# Tk's pixels per point at 96 dpi, the 100% setting of most desktops.
POINTS_AT_96_DPI = 96 / 72
SCALE_VARIABLE = "ENCTALK_UI_SCALE"

ACCENT = "#1f5fa8"
ERROR_COLOUR = "#b00020"
WARNING_BACKGROUND = "#fff3cd"
MUTED = "#606060"
ONLINE_COLOUR = "#1b7f3b"
DISABLED_BACKGROUND = "#ececec"
# The background of the message whose menu is open.
SELECTED_BACKGROUND = "#d6e4f5"

_fonts: list[tkfont.Font] = []


def enable_dpi_awareness() -> None:
    """Ask Windows for real pixels instead of a blurry bitmap stretch.

    Must run before the first Tk window exists; does nothing elsewhere.
    """
    if sys.platform != "win32":
        return
    import ctypes

    try:
        ctypes.windll.shcore.SetProcessDpiAwareness(1)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        try:
            ctypes.windll.user32.SetProcessDPIAware()  # type: ignore[attr-defined]
        except (AttributeError, OSError):
            logger.info("could not enable DPI awareness")


def scale_factor() -> float | None:
    """Return the scale from ``ENCTALK_UI_SCALE`` (1 = 100%), or None if unset."""
    text = os.environ.get(SCALE_VARIABLE)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        logger.warning("ignoring %s=%r: not a number", SCALE_VARIABLE, text)
        return None
    return value if 0.5 <= value <= 4 else None


def apply_theme(root: tk.Tk) -> ttk.Style:
    """Set scaling, fonts and the ttk theme of ``root``; return its style."""
    factor = scale_factor()
    if factor is not None:
        root.tk.call("tk", "scaling", POINTS_AT_96_DPI * factor)

    for name in ("TkDefaultFont", "TkTextFont", "TkMenuFont", "TkHeadingFont"):
        tkfont.nametofont(name).configure(size=BASE_FONT_POINTS)
    tkfont.nametofont("TkFixedFont").configure(size=BASE_FONT_POINTS + 1)
    tkfont.nametofont("TkHeadingFont").configure(weight="bold")

    style = ttk.Style(root)
    names = style.theme_names()
    for theme in ("vista", "aqua", "clam"):
        if theme in names:
            style.theme_use(theme)
            break

    base = tkfont.nametofont("TkDefaultFont")
    line = base.metrics("linespace")
    style.configure("Treeview", rowheight=int(line * 1.6))
    style.configure("Error.TLabel", foreground=ERROR_COLOUR)
    style.configure("Muted.TLabel", foreground=MUTED)
    style.configure("Heading.TLabel", font="TkHeadingFont")
    title = tkfont.Font(
        root,
        name="EncTalkTitleFont",
        family=base.actual("family"),
        size=BASE_FONT_POINTS + 4,
        weight="bold",
    )
    # Tk deletes a named font when its Python object goes away.
    _fonts.append(title)
    style.configure("Title.TLabel", font=title)
    style.configure("Warning.TLabel", background=WARNING_BACKGROUND, padding=6)
    style.configure("Warning.TFrame", background=WARNING_BACKGROUND)
    style.configure("Status.TLabel", padding=(8, 2), foreground=MUTED)
    return style


def padding(root: tk.Misc, points: float) -> int:
    """Return ``points`` in pixels at the current ``tk scaling``."""
    return round(float(root.tk.call("tk", "scaling")) * points)
