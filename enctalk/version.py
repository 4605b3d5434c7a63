"""The program version, and the build date of a PyInstaller executable.

``build.spec`` writes ``build_info.json`` next to this module inside the
executable. From a source checkout there is no such file, and the build
date reads "source checkout".
"""

from __future__ import annotations

import json
from pathlib import Path

VERSION = "0.1.0"
BUILD_INFO_FILE = "build_info.json"
SOURCE_BUILD_DATE = "source checkout"


def build_date() -> str:
    """Return the UTC date and time of the build, or "source checkout"."""
    path = Path(__file__).with_name(BUILD_INFO_FILE)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return SOURCE_BUILD_DATE
    value = info.get("build_date") if isinstance(info, dict) else None
    return value if isinstance(value, str) else SOURCE_BUILD_DATE


def version_text(program: str) -> str:
    """Return the ``--version`` line, for example "enctalk 0.1.0 (built ...)"."""
    return f"{program} {VERSION} (built {build_date()})"
