"""The voice message commands of the command line, against a real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from enctalk.client import audio
from tests.integration.conftest import PASSWORD_ALICE, PASSWORD_BOB, Cli


def _pair(server: Any, tmp_path: Path) -> tuple[Cli, Cli]:
    alice = Cli(tmp_path / "alice", server, PASSWORD_ALICE)
    bob = Cli(tmp_path / "bob", server, PASSWORD_BOB)
    assert alice.run("register", "alice").returncode == 0
    assert bob.run("register", "bob").returncode == 0
    assert alice.run("add-contact", "bob").returncode == 0
    return alice, bob


def _saved_events(output: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in output.splitlines() if line]
    return [e for e in events if e["event"] == "message_received"]


def test_cli_send_audio_and_save(server: Any, tmp_path: Path) -> None:
    alice, bob = _pair(server, tmp_path)
    rate = audio.PREFERRED_SAMPLE_RATE
    tone = np.sin(2 * np.pi * 300 * np.arange(3 * rate) / rate) * 0.3
    wav = audio.write_wav(tmp_path / "hello.wav", tone, rate)

    sent = alice.run("send-audio", "bob", str(wav))
    assert sent.returncode == 0, sent.stderr
    assert "Sent voice message" in sent.stdout
    assert "upload 100%" in sent.stderr

    folder = tmp_path / "saved"
    heard = bob.run("--timeout", "4", "listen", "--save-audio", str(folder))
    assert heard.returncode == 0, heard.stderr
    received = _saved_events(heard.stdout)
    assert len(received) == 1
    assert received[0]["kind"] == "audio"
    assert "key" not in received[0]["attachment"]
    saved = Path(received[0]["saved"])
    assert saved.parent == folder
    assert saved.read_bytes() == wav.read_bytes()


def test_cli_record_audio_sends(pulse: Any, server: Any, tmp_path: Path) -> None:
    alice, bob = _pair(server, tmp_path)
    recorded = alice.run("record-audio", "bob", "--seconds", "2")
    assert recorded.returncode == 0, recorded.stderr
    assert "recording" in recorded.stderr
    heard = bob.run("--timeout", "4", "listen", "--save-audio", str(tmp_path / "in"))
    received = _saved_events(heard.stdout)
    assert len(received) == 1
    rate, samples = audio.read_wav(Path(received[0]["saved"]))
    assert rate == audio.PREFERRED_SAMPLE_RATE
    assert abs(len(samples) / rate - 2.0) < 0.05


def test_cli_record_without_microphone(server: Any, tmp_path: Path) -> None:
    alice, _ = _pair(server, tmp_path)
    env = {"PULSE_SERVER": f"unix:{tmp_path}/no-such-socket", "ALSA_CONFIG_PATH": ""}
    recorded = alice.run("record-audio", "bob", "--seconds", "1", env=env)
    assert recorded.returncode != 0
    assert "No microphone found" in recorded.stderr
