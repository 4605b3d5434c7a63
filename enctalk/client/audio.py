"""Voice recording, WAV files and playback, each optional at run time.

Recording uses a sounddevice ``InputStream``. Its callback runs on
PortAudio's thread and only copies each block into a queue, with the
block's capture time and status flags. A consumer thread appends the
blocks, computes the level and stops at the maximum duration. An
overflow is counted when PortAudio flags one, and also when blocks reach
the callback more than MAX_INPUT_LAG seconds later than usual: through
ALSA's pulse plugin a stalled callback is not flagged, and its blocks
queue up and arrive late. For a flagged overflow, the dropped frames are
replaced by silence, found from the capture times, so the file keeps the
length of the time recorded. Recording is mono at 16 kHz when the device accepts
that rate, else at the device's default rate, and the WAV header states
the rate used.

WAV files are 16-bit PCM written by ``scipy.io.wavfile`` to a temporary
name and renamed when complete, so a half-written file is never sent or
played. Playback uses ``pygame.mixer.music``.

Without PortAudio, an input device or a working mixer, the functions
here raise :class:`AudioUnavailable` with a sentence for the user, and
text chat is unaffected.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from scipy.io import wavfile

logger = logging.getLogger(__name__)

PREFERRED_SAMPLE_RATE = 16_000
DEFAULT_MAX_SECONDS = 300.0
BLOCK_SECONDS = 0.02
INT16_FULL_SCALE = 32767
# Level meter floor: quieter blocks show as this many dB below full scale.
LEVEL_FLOOR_DB = -60.0
TEMP_SUFFIX = ".part"
# Extra delay between capture and callback, beyond the stream's usual
# delay, that counts as the callback falling behind the device.
MAX_INPUT_LAG = 0.5


# A captured block: samples, capture time, callback time, overflow flag.
_Block = tuple[np.ndarray[Any, Any], float, float, bool]


class AudioUnavailable(Exception):
    """Recording or playback cannot work here; ``str()`` is the plain reason."""


def load_sounddevice() -> ModuleType:
    """Import sounddevice, or raise AudioUnavailable when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioUnavailable(
            "No microphone support: the PortAudio library is not installed."
        ) from exc
    module: ModuleType = sounddevice
    return module


def input_device_info(device: int | str | None = None) -> dict[str, Any]:
    """Return the input device's sounddevice info, or raise AudioUnavailable."""
    sd = load_sounddevice()
    try:
        info = sd.query_devices(device, "input")
    except (ValueError, sd.PortAudioError) as exc:
        raise AudioUnavailable("No microphone found.") from exc
    if int(info.get("max_input_channels", 0)) < 1:
        raise AudioUnavailable("No microphone found.")
    return dict(info)


def recording_problem(device: int | str | None = None) -> str | None:
    """Return why recording cannot work, or None when it can."""
    try:
        input_device_info(device)
    except AudioUnavailable as exc:
        return str(exc)
    return None


def choose_sample_rate(device: int | str | None = None) -> int:
    """Return 16 kHz if the input device accepts it, else its default rate."""
    sd = load_sounddevice()
    info = input_device_info(device)
    try:
        sd.check_input_settings(
            device=device, channels=1, samplerate=PREFERRED_SAMPLE_RATE
        )
    except (ValueError, sd.PortAudioError):
        rate = int(info["default_samplerate"])
        logger.info("input device rejects 16 kHz; recording at %d Hz", rate)
        return rate
    return PREFERRED_SAMPLE_RATE


def write_wav(path: Path, samples: np.ndarray[Any, Any], sample_rate: int) -> Path:
    """Write float samples in [-1, 1] as 16-bit PCM WAV, atomically.

    Samples are clipped to [-1, 1] and scaled by 32767. The file appears
    under ``path`` only once it is complete.
    """
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    pcm = np.round(clipped * INT16_FULL_SCALE).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix="." + path.stem, suffix=TEMP_SUFFIX
    )
    try:
        with os.fdopen(handle, "wb") as temp:
            wavfile.write(temp, sample_rate, pcm)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def read_wav(path: Path) -> tuple[int, np.ndarray[Any, Any]]:
    """Return ``(sample_rate, samples)``; raise ValueError if not a WAV file."""
    try:
        rate, data = wavfile.read(path)
    except (ValueError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable WAV file: {exc}") from exc
    return int(rate), data


def wav_duration(path: Path) -> float:
    """Return the duration of a WAV file in seconds."""
    rate, data = read_wav(path)
    return float(len(data)) / rate if rate else 0.0


def level_db(block: np.ndarray[Any, Any]) -> float:
    """Return a block's RMS level in dB relative to full scale."""
    if block.size == 0:
        return LEVEL_FLOOR_DB
    rms = float(np.sqrt(np.mean(np.square(block, dtype=np.float64))))
    if rms <= 0.0:
        return LEVEL_FLOOR_DB
    return max(LEVEL_FLOOR_DB, 20.0 * math.log10(rms))


class Recorder:
    """One voice recording from the default (or given) input device.

    :meth:`start` opens the stream and returns at once. :meth:`stop` ends
    the recording and writes the WAV file to ``path``, blocking until it
    is written. :meth:`cancel` discards it. The recording also stops by
    itself after ``max_seconds``; ``on_stop`` is then called from the
    consumer thread. ``elapsed``, ``level`` and ``overflows`` may be read
    from any thread while recording.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        device: int | str | None = None,
        sample_rate: int | None = None,
        on_stop: Callable[[Recorder], None] | None = None,
    ) -> None:
        self.path = path
        self.max_seconds = max_seconds
        self.device = device
        self.sample_rate = sample_rate or choose_sample_rate(device)
        self.on_stop = on_stop
        self.overflows = 0
        self.level = LEVEL_FLOOR_DB
        self.frames = 0
        self.filled_frames = 0
        self._blocks: queue.Queue[_Block | None] = queue.Queue()
        self._usual_lag: float | None = None
        self._lagging = False
        self._chunks: list[np.ndarray[Any, Any]] = []
        self._stream: Any = None
        self._consumer: threading.Thread | None = None
        self._first_time: float | None = None
        self._done = threading.Event()
        self._cancelled = False
        self.first_block = threading.Event()

    @property
    def elapsed(self) -> float:
        """Seconds of audio recorded so far."""
        return self.frames / self.sample_rate

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def start(self) -> None:
        sd = load_sounddevice()
        block = max(1, int(self.sample_rate * BLOCK_SECONDS))
        try:
            self._stream = sd.InputStream(
                samplerate=self.sample_rate,
                channels=1,
                dtype="float32",
                device=self.device,
                blocksize=block,
                callback=self._callback,
            )
            self._stream.start()
        except sd.PortAudioError as exc:
            raise AudioUnavailable(
                f"The microphone could not be opened: {exc}"
            ) from exc
        self._consumer = threading.Thread(
            target=self._consume, name="enctalk-recorder", daemon=True
        )
        self._consumer.start()
        logger.info("recording at %d Hz", self.sample_rate)

    def _callback(self, indata: Any, frames: int, times: Any, status: Any) -> None:
        # Runs on PortAudio's thread: copy and queue, nothing else.
        now = float(times.currentTime) or time.monotonic()
        captured = float(times.inputBufferAdcTime) or now
        self._blocks.put(
            (indata[:, 0].copy(), captured, now, bool(status.input_overflow))
        )

    def _consume(self) -> None:
        limit = int(self.max_seconds * self.sample_rate)
        while True:
            item = self._blocks.get()
            if item is None:
                break
            block, captured, delivered, overflowed = item
            if self._first_time is None:
                self._first_time = captured
                self.first_block.set()
            if overflowed:
                self.overflows += 1
                self._fill_gap(captured)
                logger.warning(
                    "input overflow %d: audio frames were dropped", self.overflows
                )
            self._check_lag(delivered - captured)
            block = block[: max(0, limit - self.frames)]
            self._chunks.append(block)
            self.frames += len(block)
            self.level = level_db(block)
            if self.frames >= limit:
                self._finish_stream()
                if self.on_stop is not None:
                    self.on_stop(self)
                break
        self._done.set()

    def _check_lag(self, lag: float) -> None:
        """Count an overflow when blocks start arriving late; see the module doc."""
        if self._usual_lag is None or lag < self._usual_lag:
            self._usual_lag = lag
        late = lag - self._usual_lag
        if late > MAX_INPUT_LAG and not self._lagging:
            self._lagging = True
            self.overflows += 1
            logger.warning(
                "input overflow %d: the recording callback fell %.1f s behind",
                self.overflows,
                late,
            )
        elif late < MAX_INPUT_LAG / 2:
            self._lagging = False

    def _fill_gap(self, captured: float) -> None:
        """Insert silence for the frames dropped before a block captured then."""
        # NOTE: the tests never reach this: PortAudio over a PulseAudio null
        # sink raises no input overflow flag, so only the lag check runs.
        assert self._first_time is not None
        expected = round((captured - self._first_time) * self.sample_rate)
        missing = expected - self.frames
        if missing > 0:
            self._chunks.append(np.zeros(missing, dtype=np.float32))
            self.frames += missing
            self.filled_frames += missing

    def _finish_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()

    def stop(self) -> Path:
        """Stop recording and write the WAV file; return its path."""
        self._finish_stream()
        self._blocks.put(None)
        if self._consumer is not None:
            self._consumer.join()
        samples = (
            np.concatenate(self._chunks)
            if self._chunks
            else np.zeros(0, dtype=np.float32)
        )
        if self.overflows:
            logger.warning(
                "recording had %d input overflows; %d frames filled with silence",
                self.overflows,
                self.filled_frames,
            )
        return write_wav(self.path, samples, self.sample_rate)

    def cancel(self) -> None:
        """Stop recording and discard the audio."""
        self._cancelled = True
        self._finish_stream()
        self._blocks.put(None)
        if self._consumer is not None:
            self._consumer.join()
        self._chunks.clear()


def record(
    path: Path,
    seconds: float,
    *,
    device: int | str | None = None,
    progress: Callable[[Recorder], None] | None = None,
) -> Recorder:
    """Record ``seconds`` of audio to ``path``, blocking; return the recorder."""
    recorder = Recorder(path, max_seconds=seconds, device=device)
    recorder.start()
    while not recorder.finished:
        if progress is not None:
            progress(recorder)
        time.sleep(0.1)
    recorder.stop()
    return recorder


def load_mixer() -> ModuleType:
    """Start pygame's mixer, or raise AudioUnavailable with the reason."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError as exc:
        raise AudioUnavailable("No sound output: pygame is not installed.") from exc
    if pygame.mixer.get_init() is None:
        try:
            pygame.mixer.init()
        except pygame.error as exc:
            raise AudioUnavailable(f"No sound output available ({exc}).") from exc
    return pygame


def playback_problem() -> str | None:
    """Return why playback cannot work, or None when it can."""
    try:
        load_mixer()
    except AudioUnavailable as exc:
        return str(exc)
    return None


class Player:
    """Plays one WAV file at a time through ``pygame.mixer.music``.

    Calls return at once; playback runs in SDL's audio thread. Use it
    from one thread (the Tk main thread, or the CLI's).
    """

    def __init__(self) -> None:
        self._pygame = load_mixer()
        self.path: Path | None = None
        self.paused = False

    @property
    def music(self) -> Any:
        return self._pygame.mixer.music

    def play(self, path: Path) -> None:
        if self.path != path:
            self.unload()
            self.music.load(str(path))
            self.path = path
        self.music.play()
        self.paused = False

    def pause(self) -> None:
        self.music.pause()
        self.paused = True

    def resume(self) -> None:
        self.music.unpause()
        self.paused = False

    def stop(self) -> None:
        self.music.stop()
        self.paused = False

    @property
    def playing(self) -> bool:
        return bool(self.music.get_busy()) or self.paused

    @property
    def position(self) -> float:
        """Seconds played of the current file; 0 when stopped."""
        milliseconds = int(self.music.get_pos())
        return max(0, milliseconds) / 1000.0

    def unload(self) -> None:
        """Stop and release the current file, so that it can be deleted."""
        if self.path is not None:
            self.music.stop()
            self.music.unload()
            self.path = None
