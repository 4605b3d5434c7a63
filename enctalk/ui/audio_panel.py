"""Voice message controls of the conversation: record, send, play.

:class:`RecordBar` records from the microphone with elapsed time, a level
meter, Cancel and Send, and shows the upload's progress. :class:`PlayerBar`
plays the audio entry last clicked in the conversation, with Play, Pause,
Stop and the position, and shows the download's progress. Recording and
playback each run outside Tk (PortAudio's and SDL's threads), and the
bars only read their state from ``after()`` polls on the Tk main thread.
Without a microphone or a sound output, the control is disabled and a
label gives the plain reason; received audio can still be saved.

Transfers run on their own :class:`~enctalk.ui.worker.Worker`, so a long
upload never holds up text messages, which use the app's worker.
"""

from __future__ import annotations

import json
import logging
import os
import tkinter as tk
from collections.abc import Callable
from pathlib import Path
from tkinter import filedialog, ttk
from typing import Any

from enctalk.client import attachments, audio
from enctalk.ui.worker import Worker

logger = logging.getLogger(__name__)

POLL_MS = 100
# Minimum button width in average characters. It is negative, so a button
# fits its text, because the theme's wider default made the player bar wider
# than the window at its default size.
BUTTON_WIDTH = -4
# The wrap width of a reason line until its bar has a size.
REASON_WRAP_PIXELS = 480
# Tests set this to a WAV file; Save then writes there without a dialog.
SAVE_PATH_VARIABLE = "ENCTALK_UI_SAVE_AUDIO"
# Tests set this to a file path. Playback and transfer progress then
# append JSON lines (event, message id, byte counts) to it, never audio.
AUDIO_TRACE_VARIABLE = "ENCTALK_UI_AUDIO_TRACE"


def _trace(**record: Any) -> None:
    path = os.environ.get(AUDIO_TRACE_VARIABLE)
    if path:
        with open(path, "a", encoding="utf-8") as trace:
            trace.write(json.dumps(record) + "\n")


def _reason_label(master: tk.Misc, text: tk.StringVar) -> ttk.Label:
    """Return a label for a reason line that wraps at the width ``master`` gets.

    The bar may get less width than its buttons request, so the label
    follows the bar's own size, not the columns it spans.
    """
    label = ttk.Label(
        master,
        textvariable=text,
        style="Muted.TLabel",
        justify="left",
        wraplength=REASON_WRAP_PIXELS,
    )
    master.bind(
        "<Configure>",
        lambda event: label.configure(wraplength=max(event.width - 8, 200)),
        add="+",
    )
    return label


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


class RecordBar(ttk.Frame):
    """Record button, elapsed time, level meter, Cancel, Send and upload bar.

    ``send(path)`` is called on the Tk main thread with the finished WAV
    file. ``recordings()`` returns the folder for the files being recorded.
    """

    def __init__(
        self,
        master: tk.Misc,
        recordings: Callable[[], Path],
        send: Callable[[Path], None],
        max_seconds: float = audio.DEFAULT_MAX_SECONDS,
    ) -> None:
        super().__init__(master)
        self.recordings = recordings
        self.on_send = send
        self.max_seconds = max_seconds
        self.recorder: audio.Recorder | None = None
        self.elapsed = tk.StringVar(value="")
        self.reason = tk.StringVar(value="")
        self.problem = audio.recording_problem()
        # Why the open conversation takes no posts now, or None.
        self.refusal: str | None = None

        self.record_button = ttk.Button(
            self, text="● Record", width=BUTTON_WIDTH, command=self.start
        )
        self.record_button.grid(row=0, column=0, padx=(0, 6))
        ttk.Label(self, textvariable=self.elapsed, width=12).grid(row=0, column=1)
        self.level = ttk.Progressbar(
            self, length=120, maximum=-audio.LEVEL_FLOOR_DB, mode="determinate"
        )
        self.level.grid(row=0, column=2, padx=6)
        self.cancel_button = ttk.Button(
            self, text="Cancel", width=BUTTON_WIDTH, command=self.cancel
        )
        self.cancel_button.grid(row=0, column=3)
        self.send_button = ttk.Button(
            self, text="Send voice", width=BUTTON_WIDTH, command=self.finish
        )
        self.send_button.grid(row=0, column=4, padx=(6, 0))
        self.upload = ttk.Progressbar(self, length=100, mode="determinate")
        self.upload.grid(row=0, column=5, padx=(12, 0))
        _reason_label(self, self.reason).grid(
            row=1, column=0, columnspan=6, sticky="ew"
        )
        self._set_recording(False)
        if self.problem is not None:
            self.reason.set(self.problem)

    def _set_recording(self, recording: bool) -> None:
        for button in (self.cancel_button, self.send_button):
            button.state(["!disabled"] if recording else ["disabled"])
        blocked = recording or self.problem is not None or self.refusal is not None
        self.record_button.state(["disabled"] if blocked else ["!disabled"])

    def set_refusal(self, refusal: str | None) -> None:
        """Block recording while the conversation takes no posts; None allows it.

        A recording in progress is cancelled, because it could not be sent.
        """
        if refusal == self.refusal:
            return
        self.refusal = refusal
        if refusal is not None and self.recorder is not None:
            self.cancel()
        self._set_recording(self.recorder is not None)

    def start(self) -> None:
        blocked = self.problem is not None or self.refusal is not None
        if blocked or self.recorder is not None:
            return
        path = self.recordings() / f"recording-{os.getpid()}-{id(self)}.wav"
        try:
            recorder = audio.Recorder(path, max_seconds=self.max_seconds)
            recorder.start()
        except audio.AudioUnavailable as exc:
            self.reason.set(str(exc))
            return
        self.recorder = recorder
        self.reason.set("")
        self._set_recording(True)
        self.after(POLL_MS, self._poll)

    def _poll(self) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        self.elapsed.set(f"{_clock(recorder.elapsed)} / {_clock(self.max_seconds)}")
        self.level["value"] = recorder.level - audio.LEVEL_FLOOR_DB
        if recorder.overflows:
            self.reason.set(f"{recorder.overflows} input overflows: audio was lost")
        if recorder.finished:
            self.finish()
            return
        self.after(POLL_MS, self._poll)

    def cancel(self) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.cancel()
        self._reset()

    def finish(self) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        path = recorder.stop()
        self._reset()
        self.on_send(path)

    def _reset(self) -> None:
        self.elapsed.set("")
        self.level["value"] = 0
        self._set_recording(False)

    def show_upload(self, done: int, total: int) -> None:
        self.upload["maximum"] = max(total, 1)
        self.upload["value"] = done


class PlayerBar(ttk.Frame):
    """Play, Pause, Stop, position, Save and download bar for one audio entry."""

    def __init__(self, master: tk.Misc, fetch: Callable[[str], None]) -> None:
        super().__init__(master)
        self.fetch = fetch
        self.message_id: str | None = None
        self.autoplay = False
        self.path: Path | None = None
        self.duration = 0.0
        self.title = tk.StringVar(value="No voice message selected")
        self.position = tk.StringVar(value="")
        self.reason = tk.StringVar(value="")
        self.player: audio.Player | None = None
        try:
            self.player = audio.Player()
        except audio.AudioUnavailable as exc:
            self.reason.set(f"{exc} Voice messages can still be saved.")

        ttk.Label(self, textvariable=self.title).grid(row=0, column=0, sticky="w")
        self.play_button = ttk.Button(
            self, text="▶ Play", width=BUTTON_WIDTH, command=self.play
        )
        self.play_button.grid(row=0, column=1, padx=(8, 0))
        self.pause_button = ttk.Button(
            self, text="❚❚ Pause", width=BUTTON_WIDTH, command=self.pause
        )
        self.pause_button.grid(row=0, column=2, padx=(4, 0))
        self.stop_button = ttk.Button(
            self, text="■ Stop", width=BUTTON_WIDTH, command=self.stop
        )
        self.stop_button.grid(row=0, column=3, padx=(4, 0))
        ttk.Label(self, textvariable=self.position, width=11).grid(row=0, column=4)
        self.save_button = ttk.Button(
            self, text="Save…", width=BUTTON_WIDTH, command=self.save
        )
        self.save_button.grid(row=0, column=5, padx=(4, 0))
        self.download = ttk.Progressbar(self, length=100, mode="determinate")
        self.download.grid(row=0, column=6, padx=(12, 0))
        _reason_label(self, self.reason).grid(
            row=1, column=0, columnspan=7, sticky="ew"
        )
        self._update_buttons()

    def _update_buttons(self) -> None:
        ready = self.path is not None
        playable = ready and self.player is not None
        for button in (self.play_button, self.pause_button, self.stop_button):
            button.state(["!disabled"] if playable else ["disabled"])
        self.save_button.state(["!disabled"] if ready else ["disabled"])

    def select(self, message_id: str, title: str, duration: float) -> None:
        """Make ``message_id`` the current entry and fetch its file."""
        if self.player is not None:
            self.player.unload()
        self.message_id = message_id
        self.path = None
        self.duration = duration
        self.title.set(title)
        self.position.set("")
        self._update_buttons()
        self.fetch(message_id)

    def file_ready(self, message_id: str, path: Path) -> None:
        if message_id != self.message_id:
            return
        self.path = path
        self.download["value"] = self.download["maximum"]
        self._update_buttons()
        if self.autoplay:
            self.autoplay = False
            self.play()

    def show_download(self, done: int, total: int) -> None:
        self.download["maximum"] = max(total, 1)
        self.download["value"] = done

    def play(self) -> None:
        if self.player is None or self.path is None:
            return
        if self.player.paused and self.player.path == self.path:
            self.player.resume()
        else:
            self.player.play(self.path)
        _trace(event="play", message_id=self.message_id)
        self.after(POLL_MS, self._poll)

    def pause(self) -> None:
        if self.player is not None and self.player.playing:
            self.player.pause()
            _trace(event="pause", message_id=self.message_id)

    def stop(self) -> None:
        if self.player is not None:
            self.player.stop()
        self.position.set("")

    def _poll(self) -> None:
        player = self.player
        if player is None or not player.playing:
            return
        self.position.set(f"{_clock(player.position)} / {_clock(self.duration)}")
        self.after(POLL_MS, self._poll)

    def save(self) -> None:
        if self.path is None:
            return
        target = os.environ.get(SAVE_PATH_VARIABLE) or filedialog.asksaveasfilename(
            parent=self, defaultextension=".wav", initialfile=self.path.name
        )
        if target:
            Path(target).write_bytes(self.path.read_bytes())
            self.reason.set(f"Saved to {target}")

    def destroy(self) -> None:
        if self.player is not None:
            self.player.unload()
        super().destroy()


class AudioControls:
    """Connects the two bars to a client through a transfer worker."""

    def __init__(
        self,
        parent: tk.Misc,
        worker: Worker,
        client: Any,
        peer: Callable[[], str | None],
        on_error: Callable[[BaseException], None],
        on_sent: Callable[[], None],
    ) -> None:
        self.on_sent = on_sent
        self.worker = worker
        self.client = client
        self.peer = peer
        self.on_error = on_error
        self.player_bar = PlayerBar(parent, self._fetch)
        self.record_bar = RecordBar(
            parent, lambda: attachments.audio_dir(client), self._send
        )

    def _send(self, path: Path) -> None:
        peer = self.peer()
        if peer is None:
            path.unlink(missing_ok=True)
            return
        client = self.client

        def work() -> Any:
            try:
                return attachments.send_audio(client, peer, path, 0.0)
            finally:
                path.unlink(missing_ok=True)

        self.worker.submit(work, lambda _result: self.on_sent(), self.on_error)

    def _fetch(self, message_id: str) -> None:
        client = self.client
        self.worker.submit(
            lambda: attachments.fetch_audio(client, message_id),
            lambda path: self.player_bar.file_ready(message_id, path),
            self.on_error,
        )

    def progress(self, data: dict[str, Any]) -> None:
        """Show an ``attachment_progress`` event in the matching bar."""
        _trace(
            event=data["direction"] + "load",
            message_id=data["message_id"],
            done=data["done"],
            total=data["total"],
        )
        if data["direction"] == "up":
            self.record_bar.show_upload(data["done"], data["total"])
        elif data["message_id"] == self.player_bar.message_id:
            self.player_bar.show_download(data["done"], data["total"])

    def close(self) -> None:
        self.record_bar.cancel()
        self.player_bar.destroy()
        attachments.remove_partial_files(self.client)
