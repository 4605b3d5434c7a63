"""A do-nothing group relay in its own process, for the fan-out baseline.

It extends :class:`bench.null_relay.NullRelay` with what the group
benchmark uses: sessions resumed by token, an empty ``sync``, and
``group_send``, which it copies to every listed device's connection at
once without storage or checks. Running the fan-out load against it shows
the load generator's own share of the latency. It runs in a separate
process so that it does not compete with the generator for the GIL.

    .venv/bin/python -m bench.group_null_relay
"""

from __future__ import annotations

import hashlib
import selectors
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.null_relay import READ_SIZE, NullRelay, _Peer
from enctalk.protocol import make_push, make_reply
from enctalk.protocol.schema import b64

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


class GroupNullRelay(NullRelay):
    """Serve on 127.0.0.1 until the process ends; see the module docstring."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(context)
        self.tokens: dict[str, str] = {}
        # Peers with queued output: only they are flushed after a read,
        # where the base class flushes every peer.
        self.dirty: set[_Peer] = set()

    def _service(self, peer: _Peer) -> None:
        try:
            if not peer.handshaken:
                peer.sock.do_handshake()
                peer.handshaken = True
                self._queue(
                    peer,
                    make_push("hello", version=1, server="null", max_frame_size=2**20),
                )
            while True:
                data = peer.sock.recv(READ_SIZE)
                if not data:
                    self._drop(peer)
                    return
                peer.decoder.receive_data(data)
                if not peer.sock.pending():
                    break
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError:
            self._drop(peer)
            return
        while (frame := peer.decoder.next_frame()) is not None:
            self._handle(peer, frame)
        for other in list(self.dirty):
            self._flush(other)
            if not other.out:
                self.dirty.discard(other)
        self._watch_writes()

    def _watch_writes(self) -> None:
        """Wait for EVENT_WRITE only on peers whose output did not all fit."""
        for peer in self.dirty:
            try:
                self.selector.modify(
                    peer.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, peer
                )
            except (KeyError, ValueError):
                pass

    def _handle(self, peer: _Peer, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        frame_id = frame.get("id")
        if kind == "register":
            token = hashlib.sha256(frame["username"].encode()).digest()
            self.tokens[b64(token)] = frame["username"]
            self._login(peer, frame["username"])
            self._queue(
                peer, make_reply(frame_id, token=token, username=frame["username"])
            )
        elif kind == "resume":
            self._login(peer, self.tokens[frame["token"]])
            self._queue(peer, make_reply(frame_id, device_id=frame["device_id"]))
        elif kind == "sync":
            self._queue(peer, make_reply(frame_id, last=0))
        elif kind == "group_send":
            self._queue(peer, make_reply(frame_id, message_id=frame["message_id"]))
            self._fan_out(peer, frame)
        else:
            super()._handle(peer, frame)

    def _login(self, peer: _Peer, username: str) -> None:
        peer.username = username
        self.by_name[username] = peer

    def _fan_out(self, sender: _Peer, frame: dict[str, Any]) -> None:
        for envelope in frame["envelopes"]:
            target = self.by_name.get(envelope["username"])
            if target is None:
                continue
            target.seq += 1
            push = make_push(
                "message",
                seq=target.seq,
                message_id=frame["message_id"],
                from_=sender.username,
                from_device=1,
                to="#" + frame["group_id"],
                server_seq=target.seq,
                server_time=0,
                group=frame["group_id"],
            )
            push["payload"] = frame["payload"]
            push["envelope"] = envelope["body"]
            self._queue(target, push)

    def _queue(self, peer: _Peer, frame: dict[str, Any]) -> None:
        super()._queue(peer, frame)
        self.dirty.add(peer)

    def _flush(self, peer: _Peer) -> None:
        super()._flush(peer)
        if not peer.out:
            try:
                self.selector.modify(peer.sock, selectors.EVENT_READ, peer)
            except (KeyError, ValueError):
                pass

    def _drop(self, peer: _Peer) -> None:
        self.dirty.discard(peer)
        super()._drop(peer)


class NullRelayProcess:
    """This module run as a subprocess; ``port`` is where it listens."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.group_null_relay"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        stdout = self.process.stdout
        assert stdout is not None
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.append(stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(START_TIMEOUT)
        line = lines[0] if lines else ""
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(
                f"null relay did not report its port within {START_TIMEOUT:g} s: "
                f"{line!r}"
            )
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main() -> None:
    from bench.run import null_relay_context

    with tempfile.TemporaryDirectory(prefix="enctalk-null-relay-") as directory:
        relay = GroupNullRelay(null_relay_context(Path(directory)))
    port = relay.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    # The parent terminates this process; the hour is only a backstop.
    deadline = time.monotonic() + 3600
    while relay.thread.is_alive() and time.monotonic() < deadline:
        relay.thread.join(1.0)


if __name__ == "__main__":
    main()
