"""``--self-test``: check that this installation or executable can run.

A check is a name and a function that returns a line of detail or raises.
:func:`run_checks` prints one line per check and returns the exit status:
0 when every check passed, 1 otherwise. The client's checks import every
native dependency, run the crypto known-answer tests, look for the
system's CA certificates and report the audio input and output. A missing
microphone or sound server is reported but is no failure, because text
chat works without them; a library that does not load is a failure.
"""

from __future__ import annotations

import os
import sqlite3
import ssl
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from enctalk.crypto.selftest import run_known_answer_tests

EXIT_PASSED = 0
EXIT_FAILED = 1

Check = tuple[str, Callable[[], str]]


class SelfTestFailure(Exception):
    """A check failed; ``str()`` is the reason in plain words."""


def run_checks(checks: Sequence[Check], out: TextIO) -> int:
    """Run ``checks`` in order, print one line each; return the exit status."""
    failures = 0
    for name, check in checks:
        try:
            detail = check()
        except Exception as exc:  # Every failure becomes one plain line.
            failures += 1
            reason = str(exc) or type(exc).__name__
            print(f"FAIL {name}: {reason}", file=out)
            continue
        suffix = f": {detail}" if detail else ""
        print(f"ok   {name}{suffix}", file=out)
    if failures:
        print(f"self-test failed: {failures} of {len(checks)} checks", file=out)
        return EXIT_FAILED
    print(f"self-test passed: {len(checks)} checks", file=out)
    return EXIT_PASSED


def check_known_answers() -> str:
    """Run the crypto known-answer tests; raise on the first failure."""
    results = run_known_answer_tests()
    failed = [f"{name} ({reason})" for name, reason in results if reason is not None]
    if failed:
        raise SelfTestFailure("known-answer test failed: " + "; ".join(failed))
    return f"{len(results)} known-answer tests passed"


def check_tls() -> str:
    if not ssl.HAS_TLSv1_3:
        raise SelfTestFailure(f"{ssl.OPENSSL_VERSION} has no TLS 1.3")
    return ssl.OPENSSL_VERSION


def check_cryptography() -> str:
    import cryptography
    from cryptography.hazmat.backends.openssl import backend

    return f"cryptography {cryptography.__version__}, {backend.openssl_version_text()}"


def check_sqlite() -> str:
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("CREATE TABLE t (x)")
        connection.execute("INSERT INTO t VALUES (1)")
        connection.commit()
        copy = sqlite3.connect(":memory:")
        connection.backup(copy)
        (count,) = copy.execute("SELECT count(*) FROM t").fetchone()
        copy.close()
    finally:
        connection.close()
    if count != 1:
        raise SelfTestFailure("SQLite backup lost a row")
    return f"SQLite {sqlite3.sqlite_version}"


def check_system_trust() -> str:
    """Report where the system's CA certificates are, for ``--system-trust``."""
    from enctalk.client.system_ca import find_system_ca

    location = find_system_ca()
    if location is None:
        # Pinned servers work without a CA store, so this is no failure.
        return "no CA store found; --system-trust needs SSL_CERT_FILE"
    return f"CA certificates in {location}"


def check_wav() -> str:
    import numpy as np

    from enctalk.client import audio

    with tempfile.TemporaryDirectory(prefix="enctalk-selftest-") as folder:
        path = Path(folder) / "tone.wav"
        samples = (np.sin(np.arange(1600) / 5.0) * 1000).astype(np.int16)
        audio.write_wav(path, samples, audio.PREFERRED_SAMPLE_RATE)
        rate, read_back = audio.read_wav(path)
    if rate != audio.PREFERRED_SAMPLE_RATE or len(read_back) != len(samples):
        raise SelfTestFailure("a WAV file did not read back as written")
    return f"numpy {np.__version__}, scipy.io.wavfile"


def check_portaudio() -> str:
    from enctalk.client import audio

    try:
        sd = audio.load_sounddevice()
    except audio.AudioUnavailable as exc:
        raise SelfTestFailure(str(exc)) from exc
    return f"{sd.get_portaudio_version()[1]} from {sd._libname}"


def _default_device_name(kind: str) -> str:
    from enctalk.client import audio

    sd = audio.load_sounddevice()
    try:
        info = sd.query_devices(None, kind)
    except (ValueError, sd.PortAudioError):
        return "none"
    return str(info.get("name", "unnamed"))


def check_audio_input() -> str:
    from enctalk.client import audio

    problem = audio.recording_problem()
    if problem is not None:
        return f"none ({problem})"
    return _default_device_name("input")


def check_audio_output() -> str:
    from enctalk.client import audio

    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    problem = audio.playback_problem()
    mixer = "ready" if problem is None else f"not available ({problem})"
    return (
        f"PortAudio device {_default_device_name('output')}; "
        f"pygame {pygame.version.ver} mixer {mixer}"
    )


def check_tk() -> str:
    """Load Tcl and check that Tcl's and Tk's script libraries are present."""
    import tkinter

    interpreter = tkinter.Tcl()
    library = Path(interpreter.eval("info library"))
    if not (library / "init.tcl").is_file():
        raise SelfTestFailure(f"Tcl's script library is missing at {library}")
    # A PyInstaller executable sets TK_LIBRARY to its bundled copy; Tk
    # itself cannot load here without a display.
    tk_library = os.environ.get("TK_LIBRARY")
    if tk_library and not (Path(tk_library) / "tk.tcl").is_file():
        raise SelfTestFailure(f"Tk's script library is missing at {tk_library}")
    return f"Tk {tkinter.TkVersion}, Tcl library {library}"


def check_password_list() -> str:
    from enctalk.client.passwords import common_passwords

    return f"{len(common_passwords())} common passwords to reject"


CLIENT_CHECKS: tuple[Check, ...] = (
    ("password list", check_password_list),
    ("crypto known-answer tests", check_known_answers),
    ("cryptography", check_cryptography),
    ("TLS 1.3", check_tls),
    ("SQLite", check_sqlite),
    ("system CA store", check_system_trust),
    ("Tk", check_tk),
    ("WAV files", check_wav),
    ("PortAudio", check_portaudio),
    ("audio input", check_audio_input),
    ("audio output", check_audio_output),
)


def run_client_self_test(out: TextIO) -> int:
    """Run the client's checks; return the exit status."""
    return run_checks(CLIENT_CHECKS, out)
