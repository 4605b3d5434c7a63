"""Voice messages end to end: a real recording, a real server, two clients."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import signal

from enctalk.client import attachments, audio
from enctalk.client.core import Client
from tests.integration.conftest import (
    PASSWORD_ALICE,
    PASSWORD_BOB,
    ServerProcess,
    wait_for_event,
)

WAIT = 30.0


def _client(tmp_path: Path, server: ServerProcess, name: str) -> Client:
    return Client(
        tmp_path / name, server=server.address, accept_new_server=True, timeout=10.0
    )


@pytest.fixture
def pair(server: ServerProcess, tmp_path: Path) -> Any:
    alice = _client(tmp_path, server, "alice")
    bob = _client(tmp_path, server, "bob")
    alice.register("alice", PASSWORD_ALICE)
    bob.register("bob", PASSWORD_BOB)
    alice.add_contact("bob")
    yield alice, bob
    alice.close()
    bob.close()


def _audio_event(client: Client) -> Any:
    return wait_for_event(
        client.events,
        lambda e: e.name == "message_received" and e.data.get("kind") == "audio",
        WAIT,
    )


def _tone(tmp_path: Path, seconds: float, name: str = "tone.wav") -> Path:
    rate = audio.PREFERRED_SAMPLE_RATE
    t = np.arange(int(seconds * rate)) / rate
    samples = 0.5 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 0.5 * t)
    return audio.write_wav(tmp_path / name, samples, rate)


def _correlation(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    a = (a - a.mean()) / (a.std() or 1.0)
    b = (b - b.mean()) / (b.std() or 1.0)
    full = signal.correlate(a, b, mode="full", method="fft")
    return float(np.max(np.abs(full)) / min(len(a), len(b)))


def test_recorded_speech_reaches_contact(
    pulse: Any, speech: Path, pair: Any, tmp_path: Path
) -> None:
    alice, bob = pair
    recorder = audio.Recorder(tmp_path / "recorded.wav", max_seconds=20)
    recorder.start()
    assert recorder.first_block.wait(10)
    assert pulse.play(speech).wait(20) == 0
    time.sleep(0.3)
    recorded = recorder.stop()

    result = attachments.send_audio(alice, "bob", recorded, WAIT)
    assert result.state == "sent"
    event = _audio_event(bob)
    assert "key" not in event.data["attachment"]
    received = attachments.fetch_audio(bob, event.data["message_id"], tmp_path)

    assert received.read_bytes() == recorded.read_bytes()
    rate, samples = audio.read_wav(received)
    values = samples.astype(np.float64) / audio.INT16_FULL_SCALE
    assert np.sqrt(np.mean(values**2)) > 0.01
    source_rate, source = audio.read_wav(speech)
    reference = signal.resample_poly(source.astype(np.float64), rate, source_rate)
    assert _correlation(values, reference) > 0.8


def _record_requests(client: Client, calls: list[tuple[str, int]]) -> None:
    original = client._request

    def recording(kind: str, **fields: Any) -> dict[str, Any]:
        if kind.startswith("attachment_"):
            calls.append((kind, int(fields.get("offset", -1))))
        return original(kind, **fields)

    client._request = recording  # type: ignore[method-assign]


def test_upload_and_download_resume(
    server: ServerProcess, pair: Any, tmp_path: Path
) -> None:
    alice, bob = pair
    path = _tone(tmp_path, 40.0)  # about 1.3 MB, five chunks
    uploads: list[tuple[str, int]] = []
    _record_requests(alice, uploads)
    restarted: list[int] = []

    def interrupt(done: int, total: int) -> None:
        if not restarted and done >= 2 * attachments.CHUNK_SIZE:
            restarted.append(done)
            server.restart(kill=True)

    result = attachments.send_audio(alice, "bob", path, WAIT, progress=interrupt)
    assert result.state == "sent"
    offsets = [offset for kind, offset in uploads if kind == "attachment_upload"]
    resumed_at = restarted[0]
    assert offsets.count(0) == 1
    assert resumed_at in offsets[offsets.index(resumed_at - attachments.CHUNK_SIZE) :]
    assert ("attachment_status", -1) in uploads

    event = _audio_event(bob)
    downloads: list[tuple[str, int]] = []
    _record_requests(bob, downloads)
    restarted.clear()
    received = attachments.fetch_audio(
        bob, event.data["message_id"], tmp_path / "out.wav", progress=interrupt
    )
    assert received.read_bytes() == path.read_bytes()
    down = [offset for kind, offset in downloads if kind == "attachment_download"]
    assert down.count(0) == 1
    assert restarted[0] in down


def test_five_minute_message_both_ways(pair: Any, tmp_path: Path) -> None:
    alice, bob = pair
    path = _tone(tmp_path, 300.0)
    for sender, receiver, name in ((alice, bob, "bob"), (bob, alice, "alice")):
        result = attachments.send_audio(sender, name, path, WAIT)
        assert result.state == "sent"
        event = _audio_event(receiver)
        assert event.data["attachment"]["duration"] == pytest.approx(300.0)
        received = attachments.fetch_audio(receiver, event.data["message_id"])
        digest = hashlib.sha256(received.read_bytes()).hexdigest()
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_text_flows_during_upload(pair: Any, tmp_path: Path) -> None:
    alice, _ = pair
    path = _tone(tmp_path, 60.0)
    texts: list[str] = []

    def send_text_between_chunks(done: int, total: int) -> None:
        if len(texts) < 2:
            texts.append(alice.send_text("bob", f"during upload {len(texts)}").state)

    result = attachments.send_audio(
        alice, "bob", path, WAIT, progress=send_text_between_chunks
    )
    assert result.state == "sent"
    assert texts == ["sent", "sent"]
