"""The recorder against a real PulseAudio null sink."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from enctalk.client import audio


def _correlation(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    """Return the peak normalized cross-correlation of two signals."""
    from scipy import signal

    a = (a - a.mean()) / (a.std() or 1.0)
    b = (b - b.mean()) / (b.std() or 1.0)
    full = signal.correlate(a, b, mode="full", method="fft")
    return float(np.max(np.abs(full)) / min(len(a), len(b)))


def test_recorder_captures_speech(pulse: Any, speech: Path, tmp_path: Path) -> None:
    recorder = audio.Recorder(tmp_path / "voice.wav", max_seconds=20)
    recorder.start()
    assert recorder.first_block.wait(10)
    player = pulse.play(speech)
    assert player.wait(20) == 0
    time.sleep(0.5)
    path = recorder.stop()

    rate, recorded = audio.read_wav(path)
    assert rate == audio.PREFERRED_SAMPLE_RATE
    samples = recorded.astype(np.float64) / audio.INT16_FULL_SCALE
    assert np.sqrt(np.mean(samples**2)) > 0.01
    source_rate, source = audio.read_wav(speech)
    from scipy import signal

    resampled = signal.resample_poly(source.astype(np.float64), rate, source_rate)
    assert _correlation(samples, resampled) > 0.8
    assert recorder.overflows == 0


# One callback stalls this long. Through ALSA's pulse plugin PortAudio
# raises no overflow flag for it, so the recorder's lag check must.
STALL_SECONDS = 3.0


class _SlowRecorder(audio.Recorder):
    """A recorder whose tenth callback stalls for STALL_SECONDS."""

    calls = 0

    def _callback(self, indata: Any, frames: int, times: Any, status: Any) -> None:
        self.calls += 1
        if self.calls == 10:
            time.sleep(STALL_SECONDS)
        super()._callback(indata, frames, times, status)


def test_recorder_slow_callback_keeps_length(pulse: Any, tmp_path: Path) -> None:
    seconds = 6.0
    recorder = _SlowRecorder(tmp_path / "slow.wav", max_seconds=60)
    recorder.start()
    assert recorder.first_block.wait(10)
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    path = recorder.stop()

    rate, recorded = audio.read_wav(path)
    assert recorder.overflows > 0
    assert abs(len(recorded) / rate - wall) / wall < 0.02
