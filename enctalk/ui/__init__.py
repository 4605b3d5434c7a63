"""The Tk desktop client: thin views over :class:`enctalk.client.core.Client`.

Nothing in this package imports tkinter at import time except the view
modules themselves, so the command line works on a Python without Tk.
:func:`run` is the entry point the command line calls when no command is
given.
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    """Open the desktop window for ``args.profile`` and ``args.server``.

    Returns the process exit code: 0 after a normal close, 2 when Tk
    cannot open a display.
    """
    from enctalk.ui.app import run_app

    return run_app(args)
