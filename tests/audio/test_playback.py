"""Playback through pygame's dummy driver, and the no-hardware reasons."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from enctalk.client import audio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dummy_mixer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")


def test_player_plays_pauses_stops(dummy_mixer: None, tmp_path: Path) -> None:
    rate = audio.PREFERRED_SAMPLE_RATE
    tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(2 * rate) / rate)
    path = audio.write_wav(tmp_path / "tone.wav", tone, rate)
    player = audio.Player()

    player.play(path)
    time.sleep(0.3)
    assert player.playing
    assert player.position > 0.1
    player.pause()
    assert player.paused
    player.resume()
    player.stop()
    player.unload()
    path.unlink()
    assert not path.exists()


def _run(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_no_portaudio_reason(tmp_path: Path) -> None:
    # A ctypes find_library that finds nothing is what a missing
    # libportaudio2 looks like to sounddevice.
    code = (
        "import ctypes.util; ctypes.util.find_library = lambda name: None\n"
        "from enctalk.client import audio\n"
        "print(audio.recording_problem())"
    )
    output = _run(code, {"PATH": "/usr/bin:/bin"})
    assert output == "No microphone support: the PortAudio library is not installed."


def test_no_input_device_reason(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PULSE_SERVER": f"unix:{tmp_path}/none"}
    code = "from enctalk.client import audio\nprint(audio.recording_problem())"
    assert _run(code, env) == "No microphone found."


def test_no_mixer_reason(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "SDL_AUDIODRIVER": "pulseaudio",
        "PULSE_SERVER": f"unix:{tmp_path}/none",
    }
    code = "from enctalk.client import audio\nprint(audio.playback_problem())"
    assert _run(code, env).startswith("No sound output available")
