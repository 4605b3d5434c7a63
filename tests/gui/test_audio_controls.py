"""The voice message bars on Xvfb when there is no audio hardware."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Iterator
from pathlib import Path

import pytest

from enctalk.client import audio
from enctalk.ui import audio_panel


@pytest.fixture
def root(display: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tk.Tk]:
    monkeypatch.setenv("DISPLAY", display)
    window = tk.Tk()
    yield window
    window.destroy()


def test_record_bar_without_microphone(
    root: tk.Tk, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(audio, "recording_problem", lambda: "No microphone found.")
    bar = audio_panel.RecordBar(root, lambda: tmp_path, lambda _path: None)
    assert bar.record_button.instate(["disabled"])
    assert bar.reason.get() == "No microphone found."
    bar.start()
    assert bar.recorder is None


def test_player_bar_without_sound_output(
    root: tk.Tk, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_mixer() -> None:
        raise audio.AudioUnavailable("No sound output available (no driver).")

    monkeypatch.setattr(audio, "load_mixer", no_mixer)
    bar = audio_panel.PlayerBar(root, lambda _message_id: None)
    wav = tmp_path / "in.wav"
    wav.write_bytes(b"RIFF")
    bar.select("m1", "bob: Voice message", 1.0)
    bar.file_ready("m1", wav)
    assert bar.play_button.instate(["disabled"])
    assert bar.save_button.instate(["!disabled"])
    assert bar.reason.get().startswith("No sound output available")

    target = tmp_path / "saved.wav"
    monkeypatch.setenv(audio_panel.SAVE_PATH_VARIABLE, str(target))
    bar.save()
    assert target.read_bytes() == b"RIFF"
