"""Cost of a 5-minute voice message: encrypt, upload, download, decrypt.

Starts ``run_server.py`` on 127.0.0.1, registers two clients, makes a
5-minute 16 kHz mono WAV file with numpy and sends it in both
directions. Each step is timed on its own, and the server's resident
memory is sampled every 10 ms during the transfers. Writes the results to
bench/AUDIO.md. Run: ``.venv/bin/python -m bench.audio``.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.run import ServerProcess, machine_description
from enctalk.client import attachments, audio
from enctalk.client.core import Client
from enctalk.crypto import session as e2e
from enctalk.crypto.aead import MAC_SIZE

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 300.0
PASSWORD = "violet lantern meadow"
SAMPLE_INTERVAL = 0.01


class RssSampler:
    """Samples a process's VmRSS in a thread; ``peak_kib`` is the maximum."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self.server.rss_kib())
            time.sleep(SAMPLE_INTERVAL)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def transfer(sender: Client, receiver: Client, to: str, wav: Path) -> dict[str, float]:
    """Time each step of one voice message; return seconds per step."""
    plaintext = wav.read_bytes()
    sender.wait_ready()
    created = sender._request(
        "attachment_create", to=to, size=len(plaintext) + MAC_SIZE
    )
    attachment_id = created["attachment_id"]
    ad = attachments.attachment_associated_data(attachment_id)

    started = time.perf_counter()
    key, ciphertext = e2e.seal_attachment(plaintext, ad)
    encrypted = time.perf_counter()
    attachments.upload(sender, attachment_id, ciphertext, "bench")
    uploaded = time.perf_counter()

    receiver.wait_ready()
    reference = {
        "attachment_id": attachment_id,
        "key": key.hex(),
        "size": len(ciphertext),
        "sha256": hashlib.sha256(plaintext).hexdigest(),
    }
    partial = attachments.audio_dir(receiver) / "bench-download.bin"
    with open(partial, "wb") as handle:
        offset = 0
        while offset < len(ciphertext):
            reply = receiver._request(
                "attachment_download",
                attachment_id=attachment_id,
                offset=offset,
                length=attachments.CHUNK_SIZE,
            )
            handle.write(reply["data"])
            offset += len(reply["data"])
    downloaded = time.perf_counter()
    opened = e2e.open_attachment(key, partial.read_bytes(), ad)
    decrypted = time.perf_counter()
    assert hashlib.sha256(opened).hexdigest() == reference["sha256"]
    partial.unlink()
    return {
        "encrypt": encrypted - started,
        "upload": uploaded - encrypted,
        "download": downloaded - uploaded,
        "decrypt": decrypted - downloaded,
    }


def measure(directory: Path) -> dict[str, Any]:
    rate = audio.PREFERRED_SAMPLE_RATE
    t = np.arange(int(SECONDS * rate)) / rate
    wav = audio.write_wav(
        directory / "five-minutes.wav", 0.4 * np.sin(2 * np.pi * 440 * t), rate
    )
    server = ServerProcess(directory, bcrypt_cost=4)
    clients = []
    try:
        address = f"127.0.0.1:{server.port}"
        alice = Client(directory / "alice", server=address, accept_new_server=True)
        bob = Client(directory / "bob", server=address, accept_new_server=True)
        clients = [alice, bob]
        alice.register("alice", PASSWORD)
        bob.register("bob", PASSWORD)
        alice.add_contact("bob")
        idle_kib = server.rss_kib()
        runs = []
        with RssSampler(server) as sampler:
            runs.append(transfer(alice, bob, "bob", wav))
            runs.append(transfer(bob, alice, "alice", wav))
        return {
            "size": wav.stat().st_size,
            "runs": runs,
            "idle_kib": idle_kib,
            "peak_kib": sampler.peak_kib,
        }
    finally:
        for client in clients:
            client.close()
        server.stop()


def render(results: dict[str, Any]) -> str:
    size_mb = results["size"] / 1e6
    lines = [
        "# Voice message transfer",
        "",
        f"Written by `python -m bench.audio` on {machine_description()}.",
        f"A {SECONDS / 60:g}-minute 16 kHz mono 16-bit WAV file "
        f"({size_mb:.1f} MB) goes from alice to bob and back through a",
        "server subprocess on 127.0.0.1, in chunks of "
        f"{attachments.CHUNK_SIZE // 1024} KiB. Each step is timed alone;",
        "the table lists both directions.",
        "",
        "| step | alice to bob (s) | bob to alice (s) |",
        "| --- | --- | --- |",
    ]
    for step in ("encrypt", "upload", "download", "decrypt"):
        first, second = (run[step] for run in results["runs"])
        lines.append(f"| {step} | {first:.3f} | {second:.3f} |")
    upload = statistics.mean(run["upload"] for run in results["runs"])
    lines += [
        "",
        f"Upload throughput: about {size_mb / upload:.1f} MB/s.",
        f"Server resident memory: {results['idle_kib'] / 1024:.1f} MiB before the "
        f"transfers, peak {results['peak_kib'] / 1024:.1f} MiB during them "
        f"(VmRSS sampled every {SAMPLE_INTERVAL * 1000:g} ms).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        results = measure(Path(folder))
    text = render(results)
    (ROOT / "bench" / "AUDIO.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
