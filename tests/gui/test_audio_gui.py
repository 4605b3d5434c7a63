"""Voice messages in the desktop client on Xvfb, with a real recording."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from enctalk.client import audio
from tests.audio.conftest import pulse, speech  # noqa: F401  (fixtures)
from tests.gui.test_desktop_app import wait_until
from tests.integration.conftest import PASSWORD_ALICE, PASSWORD_BOB, Cli


def _trace(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _saved(cli: Cli, folder: Path) -> list[dict]:
    heard = cli.run("--timeout", "3", "listen", "--save-audio", str(folder))
    events = [json.loads(line) for line in heard.stdout.splitlines() if line]
    return [e for e in events if e.get("saved")]


def test_gui_records_sends_and_plays(
    pulse,  # noqa: F811
    speech,  # noqa: F811
    server,
    tmp_path,
    desktop,
    start_gui,
):
    trace = tmp_path / "audio-trace.jsonl"
    desktop.env.update(pulse.env)
    desktop.env["SDL_AUDIODRIVER"] = "dummy"
    desktop.env["ENCTALK_UI_AUDIO_TRACE"] = str(trace)
    bob = Cli(tmp_path / "bob", server, PASSWORD_BOB)
    assert bob.run("register", "bob").returncode == 0

    gui = start_gui(tmp_path / "alice", server.address)
    window = desktop.find_window("^EncTalk$")
    desktop.focus(window)
    desktop.key("alt+r")
    desktop.type("alice")
    desktop.key("Tab")
    desktop.type(PASSWORD_ALICE)
    desktop.key("Tab")
    desktop.type(PASSWORD_ALICE)
    desktop.key("Return")
    dialog = desktop.find_window("^Check the server$")
    desktop.focus(dialog)
    desktop.key("alt+t")
    window = desktop.find_window("^EncTalk - alice$")
    desktop.focus(window)
    desktop.key("ctrl+n")
    dialog = desktop.find_window("^Add contact$")
    desktop.focus(dialog)
    desktop.type("bob")
    desktop.key("Return")
    time.sleep(1.5)

    desktop.focus(window)
    desktop.key("ctrl+m")
    time.sleep(2.5)  # an idle null sink delivers its first block late
    assert pulse.play(speech).wait(20) == 0
    desktop.screenshot("recording")
    desktop.key("ctrl+m")
    uploads = wait_until(
        lambda: [
            e
            for e in _trace(trace)
            if e["event"] == "upload" and e["done"] == e["total"]
        ],
        timeout=20,
    )
    desktop.screenshot("uploaded")
    assert uploads

    saved = wait_until(lambda: _saved(bob, tmp_path / "bob-audio"), timeout=20)
    assert len(saved) == 1
    _, samples = audio.read_wav(Path(saved[0]["saved"]))
    values = samples.astype(np.float64) / audio.INT16_FULL_SCALE
    assert np.sqrt(np.mean(values**2)) > 0.01

    reply = bob.run("send-audio", "alice", saved[0]["saved"])
    assert reply.returncode == 0, reply.stderr
    time.sleep(2.0)
    desktop.focus(window)
    desktop.key("ctrl+p")
    played = wait_until(
        lambda: [e for e in _trace(trace) if e["event"] == "play"], timeout=20
    )
    time.sleep(0.5)
    desktop.screenshot("playing")
    assert played
    downloads = [e for e in _trace(trace) if e["event"] == "download"]
    assert downloads[-1]["done"] == downloads[-1]["total"]
    assert "Traceback" not in gui.stderr_text()
