"""PyInstaller runtime hook: make sounddevice load the bundled PortAudio.

sounddevice looks PortAudio up with ``ctypes.util.find_library``, which
PyInstaller redirects into the bundle only on Windows. On Linux the
library is bundled at the top of the temporary folder, and without this
hook the lookup searches only the system's folders. The hook makes the
lookup of ``portaudio`` return the bundled copy whenever there is one.
"""

import ctypes.util
import glob
import os
import sys

_bundle = getattr(sys, "_MEIPASS", None)
_original_find_library = ctypes.util.find_library


def _bundled_portaudio() -> "str | None":
    if _bundle is None:
        return None
    for pattern in ("libportaudio.so*", "libportaudio*.dylib", "libportaudio*.dll"):
        matches = sorted(glob.glob(os.path.join(_bundle, pattern)))
        if matches:
            return matches[0]
    return None


def _find_library(name: str) -> "str | None":
    if name == "portaudio":
        bundled = _bundled_portaudio()
        if bundled is not None:
            return bundled
    return _original_find_library(name)


ctypes.util.find_library = _find_library
