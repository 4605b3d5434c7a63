"""Fixtures for audio tests: an isolated PulseAudio daemon with a null sink.

The daemon runs with its state, runtime and config folders inside the
test's temporary directory and is reached through ``PULSE_SERVER``, so it
touches nothing in ``$HOME``. Its null sink is the default sink, and the
sink's monitor is the default source, so whatever is played into the sink
is what a recorder captures. Outside CI a missing tool skips the test; with
``CI=true`` it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SINK = "enctalk_test_sink"
START_TIMEOUT = 10.0
REQUIRED_TOOLS = ("pulseaudio", "pactl", "paplay", "espeak-ng")


def require(condition: bool, reason: str) -> None:
    """Skip the test when ``condition`` is false, or fail it in CI."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (audio tests must run in CI)")
    pytest.skip(reason)


def _sounddevice_loads() -> bool:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return False
    return True


class PulseServer:
    """The running test daemon: its environment and the sink's name."""

    def __init__(self, env: dict[str, str], sink: str) -> None:
        self.env = env
        self.sink = sink

    def play(self, wav: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["paplay", "--device", self.sink, str(wav)], env=self.env
        )


@pytest.fixture
def pulse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PulseServer]:
    for tool in REQUIRED_TOOLS:
        require(shutil.which(tool) is not None, f"{tool} is not installed")
    require(_sounddevice_loads(), "libportaudio2 is not installed")

    root = tmp_path / "pulse"
    runtime = root / "runtime"
    for folder in (root / "state", runtime, root / "config"):
        folder.mkdir(parents=True)
    runtime.chmod(0o700)
    env = dict(os.environ)
    env.update(
        PULSE_STATE_PATH=str(root / "state"),
        PULSE_RUNTIME_PATH=str(runtime),
        PULSE_CONFIG_PATH=str(root / "config"),
        PULSE_COOKIE=str(root / "cookie"),
        PULSE_SERVER=f"unix:{runtime}/native",
    )
    command = [
        "pulseaudio",
        "--daemonize=no",
        "-n",
        "--exit-idle-time=-1",
        "--disallow-exit",
        "--log-target=stderr",
        f"--load=module-native-protocol-unix auth-anonymous=1 socket={runtime}/native",
        f"--load=module-null-sink sink_name={SINK}",
        "--load=module-always-sink",
    ]
    log = open(root / "pulseaudio.log", "wb")
    daemon = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            info = subprocess.run(["pactl", "info"], env=env, capture_output=True)
            if info.returncode == 0:
                break
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "PulseAudio did not start: "
                    + (root / "pulseaudio.log").read_text(errors="replace")[-2000:]
                )
            time.sleep(0.1)
        subprocess.run(["pactl", "set-default-sink", SINK], env=env, check=True)
        subprocess.run(
            ["pactl", "set-default-source", f"{SINK}.monitor"], env=env, check=True
        )
        for name in ("PULSE_STATE_PATH", "PULSE_RUNTIME_PATH", "PULSE_CONFIG_PATH"):
            monkeypatch.setenv(name, env[name])
        monkeypatch.setenv("PULSE_COOKIE", env["PULSE_COOKIE"])
        monkeypatch.setenv("PULSE_SERVER", env["PULSE_SERVER"])
        _reset_portaudio()
        yield PulseServer(env, SINK)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=5)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        _reset_portaudio()


def _reset_portaudio() -> None:
    """Make PortAudio list devices again, so that it finds the new daemon."""
    try:
        import sounddevice
    except OSError:
        return
    sounddevice._terminate()
    sounddevice._initialize()


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    """A spoken sentence from espeak-ng, as a WAV file."""
    require(shutil.which("espeak-ng") is not None, "espeak-ng is not installed")
    path = tmp_path / "speech.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-w",
            str(path),
            "The quick brown fox jumps over the lazy dog near the school lab.",
        ],
        check=True,
    )
    return path


# The integration tests' server subprocess fixtures, for the end-to-end tests.
from tests.integration.conftest import make_server, server  # noqa: E402, F401
