"""The PyInstaller executables, built once from this checkout and run.

The module builds ``enctalk`` and ``enctalk-server`` with ``build.spec``
into a temporary folder (about a minute on 2 cores), then runs them: the
server on 127.0.0.1, two clients in command-line mode that register and
exchange a text and a voice message, each ``--self-test``, the desktop
window under Xvfb, and the client's self-test with the system's
PortAudio hidden. Build time, sizes and start-up times are written to
test-artifacts/build/measurements.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from enctalk.client import audio
from enctalk.version import SOURCE_BUILD_DATE, VERSION

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "build"
BUILD_TIMEOUT = 900
CLIENT_SIZE_LIMIT = 60 * 1024 * 1024
SERVER_SIZE_LIMIT = 35 * 1024 * 1024
PASSWORD_ALICE = "violet lantern meadow"
PASSWORD_BOB = "copper kettle horizon"
_LISTENING = re.compile(r"listening on (\S+):(\d+)")
_FINGERPRINT = re.compile(r"certificate fingerprint: (SHA256:[0-9A-F:]{95})")
PORTAUDIO_CHECK = "import ctypes.util; print(ctypes.util.find_library('portaudio'))"

MEASUREMENTS: dict[str, float] = {}


class Frozen:
    """The two executables and a clean environment for running them."""

    def __init__(self, dist: Path, home: Path) -> None:
        self.client = dist / "enctalk"
        self.server = dist / "enctalk-server"
        self.home = home
        self.env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "SDL_AUDIODRIVER": "dummy",
            "LANG": "C.UTF-8",
        }

    def run(
        self, program: Path, *args: str, password: str | None = None, timeout=60
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if password is not None:
            env["ENCTALK_PASSWORD"] = password
        return subprocess.run(
            [str(program), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _write_measurements() -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "measurements.json"
    path.write_text(json.dumps(MEASUREMENTS, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frozen]:
    """Build both executables once for this module."""
    pyinstaller = Path(sys.executable).with_name("pyinstaller")
    if not pyinstaller.exists() and shutil.which("pyinstaller") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pyinstaller is missing; pip install -r requirements-dev.txt")
        pytest.skip("pyinstaller is not installed")
    build = tmp_path_factory.mktemp("pyinstaller")
    started = time.monotonic()
    result = subprocess.run(
        [
            str(pyinstaller if pyinstaller.exists() else "pyinstaller"),
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            str(build / "dist"),
            "--workpath",
            str(build / "work"),
            str(ROOT / "build.spec"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    MEASUREMENTS["build_seconds"] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, result.stderr[-4000:]
    home = tmp_path_factory.mktemp("home")
    built = Frozen(build / "dist", home)
    MEASUREMENTS["client_bytes"] = built.client.stat().st_size
    MEASUREMENTS["server_bytes"] = built.server.stat().st_size
    yield built
    _write_measurements()


def test_executable_sizes(frozen: Frozen) -> None:
    assert frozen.client.stat().st_size < CLIENT_SIZE_LIMIT
    assert frozen.server.stat().st_size < SERVER_SIZE_LIMIT


@pytest.mark.parametrize("name", ["client", "server"])
def test_frozen_version_shows_build_date(frozen: Frozen, name: str) -> None:
    started = time.monotonic()
    result = frozen.run(getattr(frozen, name), "--version")
    MEASUREMENTS[f"{name}_version_seconds"] = round(time.monotonic() - started, 2)
    assert result.returncode == 0, result.stderr
    assert VERSION in result.stdout
    assert "built 20" in result.stdout
    assert SOURCE_BUILD_DATE not in result.stdout


@pytest.mark.parametrize("name", ["client", "server"])
def test_frozen_self_test_passes(frozen: Frozen, name: str) -> None:
    result = frozen.run(getattr(frozen, name), "--self-test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-test passed" in result.stdout
    assert "known-answer tests passed" in result.stdout


class FrozenServer:
    def __init__(self, frozen: Frozen, *args: str) -> None:
        self.process = subprocess.Popen(
            [str(frozen.server), "--host", "127.0.0.1", *args],
            env=frozen.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())
            match = _LISTENING.search(line)
            if match:
                self.port = int(match.group(2))
                break
        else:
            raise AssertionError(f"the frozen server did not start: {self.lines}")

    @property
    def fingerprint(self) -> str:
        for line in self.lines:
            match = _FINGERPRINT.search(line)
            if match:
                return match.group(1)
        raise AssertionError(f"no fingerprint in {self.lines}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def test_frozen_clients_exchange_text_and_audio(frozen: Frozen, tmp_path: Path) -> None:
    server = FrozenServer(frozen, "--port", "0")
    try:
        address = f"127.0.0.1:{server.port}"
        # Alice uses the default profile, which must land in XDG_DATA_HOME.
        alice = ["--server", address, "--accept-new-server"]
        bob = ["--profile", str(tmp_path / "bob"), *alice]
        registered = frozen.run(
            frozen.client, *alice, "register", "alice", password=PASSWORD_ALICE
        )
        assert registered.returncode == 0, registered.stderr
        registered = frozen.run(
            frozen.client, *bob, "register", "bob", password=PASSWORD_BOB
        )
        assert registered.returncode == 0, registered.stderr
        added = frozen.run(frozen.client, "add-contact", "bob", password=PASSWORD_ALICE)
        assert added.returncode == 0, added.stderr
        sent = frozen.run(
            frozen.client,
            "send",
            "bob",
            "hello from a frozen client",
            password=PASSWORD_ALICE,
        )
        assert sent.returncode == 0, sent.stderr

        rate = audio.PREFERRED_SAMPLE_RATE
        tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate) * 0.3
        wav = audio.write_wav(tmp_path / "tone.wav", tone, rate)
        sent = frozen.run(
            frozen.client, "send-audio", "bob", str(wav), password=PASSWORD_ALICE
        )
        assert sent.returncode == 0, sent.stderr

        saved = tmp_path / "saved"
        heard = frozen.run(
            frozen.client,
            *bob,
            "--timeout",
            "6",
            "listen",
            "--save-audio",
            str(saved),
            password=PASSWORD_BOB,
        )
        assert heard.returncode == 0, heard.stderr
        events = [json.loads(line) for line in heard.stdout.splitlines() if line]
        received = [e for e in events if e["event"] == "message_received"]
        kinds = sorted(e["kind"] for e in received)
        assert kinds == ["audio", "text"]
        text = next(e for e in received if e["kind"] == "text")
        assert text["body"] == "hello from a frozen client"
        voice = next(e for e in received if e["kind"] == "audio")
        assert Path(voice["saved"]).read_bytes() == wav.read_bytes()
    finally:
        server.stop()

    profile = frozen.home / "data" / "enctalk" / "default"
    assert (profile / "settings.json").is_file()
    assert (profile / "vault").is_file()
    assert any((frozen.home / "data" / "enctalk-server").iterdir())


def test_frozen_server_keeps_data_across_restarts(frozen: Frozen) -> None:
    data_dir = frozen.home / "data" / "enctalk-server"
    first = FrozenServer(frozen, "--port", "0")
    first.stop()
    second = FrozenServer(frozen, "--port", "0")
    second.stop()
    assert second.fingerprint == first.fingerprint
    assert f"data directory: {data_dir}" in first.lines
    assert sorted(p.name for p in frozen.client.parent.iterdir()) == [
        "enctalk",
        "enctalk-server",
    ]


def test_frozen_gui_opens_window(frozen: Frozen, display: str, tmp_path: Path) -> None:
    env = {**frozen.env, "DISPLAY": display}
    started = time.monotonic()
    process = subprocess.Popen(
        [str(frozen.client), "--profile", str(tmp_path / "gui"), "--no-discovery"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        window = ""
        while time.monotonic() - started < 20 and not window:
            found = subprocess.run(
                ["xdotool", "search", "--onlyvisible", "--name", "^EncTalk$"],
                env=env,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            window = found.stdout.strip()
            time.sleep(0.05)
        shown = time.monotonic() - started
        MEASUREMENTS["client_window_seconds"] = round(shown, 2)
        assert window, "the frozen client showed no window within 20 s"
        time.sleep(0.5)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "frozen-login.png"
        subprocess.run(
            ["/usr/bin/import", "-window", "root", str(shot)],
            env=env,
            timeout=20,
            check=False,
        )
        assert shot.exists()
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=10)


def _hidden_portaudio_script(command: str) -> str:
    """Return a shell script that hides the system PortAudio, then runs command.

    Inside a private mount namespace it bind-mounts /dev/null over every
    PortAudio library file, rebuilds the dynamic linker's cache (ldconfig
    skips files that are not ELF) and mounts that cache over
    /etc/ld.so.cache, so ctypes.util.find_library finds nothing.
    """
    return (
        "set -e\n"
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
        "cache=$(mktemp)\n"
        "for lib in $(ls /usr/lib/*/libportaudio.so* /usr/lib/libportaudio.so* "
        "2>/dev/null); do\n"
        '  [ -L "$lib" ] || mount --bind /dev/null "$lib"\n'
        "done\n"
        'ldconfig -C "$cache" 2>/dev/null\n'
        'mount --bind "$cache" /etc/ld.so.cache\n'
        f"{command}\n"
    )


def test_frozen_client_uses_bundled_portaudio(frozen: Frozen) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is missing")
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"unshare --mount is not permitted: {probe.stderr!r}")
    hidden = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            _hidden_portaudio_script(
                f'{sys.executable} -c "{PORTAUDIO_CHECK}"; {frozen.client} --self-test'
            ),
        ],
        env=frozen.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = hidden.stdout.splitlines()
    assert lines[0] == "None", hidden.stderr
    assert hidden.returncode == 0, hidden.stdout + hidden.stderr
    portaudio = next(line for line in lines if line.startswith("ok   PortAudio"))
    assert "/_MEI" in portaudio
