"""A do-nothing relay that speaks just enough of the protocol for the load
generator: it answers every request with ``ok`` and forwards each ``send``
to the recipient's connection at once, without storage or checks.

Running the load generator against it shows the generator's own ceiling,
so a result against the real server can be told apart from a limit of the
generator.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
from typing import Any

from enctalk.protocol import FrameDecoder, encode_frame, make_push, make_reply

READ_SIZE = 65536


class _Peer:
    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.decoder = FrameDecoder()
        self.out = bytearray()
        self.handshaken = False
        self.username = ""
        self.seq = 0


class NullRelay:
    """Serve on 127.0.0.1 in a background thread until :meth:`stop`."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.by_name: dict[str, _Peer] = {}
        self.next_device = 1
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> int:
        self.thread.start()
        return self.port

    def stop(self) -> None:
        self.running = False
        self.thread.join(5)

    def _run(self) -> None:
        while self.running:
            for key, _ in self.selector.select(0.2):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._service(key.data)

    def _accept(self) -> None:
        raw, _ = self.listener.accept()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.setblocking(False)
        sock = self.context.wrap_socket(
            raw, server_side=True, do_handshake_on_connect=False
        )
        peer = _Peer(sock)
        self.selector.register(sock, selectors.EVENT_READ, peer)

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
        self._flush(peer)
        for other in list(self.by_name.values()):
            self._flush(other)

    def _handle(self, peer: _Peer, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        frame_id = frame.get("id")
        if kind == "register":
            peer.username = frame["username"]
            self.by_name[peer.username] = peer
            self._queue(peer, make_reply(frame_id, token=b"\0" * 32))
        elif kind == "register_device":
            self.next_device += 1
            self._queue(peer, make_reply(frame_id, device_id=self.next_device))
        elif kind == "send":
            self._queue(peer, make_reply(frame_id, message_id=frame["message_id"]))
            target = self.by_name.get(frame["to"])
            if target is not None:
                target.seq += 1
                push = make_push(
                    "message",
                    seq=target.seq,
                    message_id=frame["message_id"],
                    from_=peer.username,
                    from_device=1,
                    to=frame["to"],
                    server_seq=target.seq,
                    server_time=0,
                )
                push["payload"] = frame["payload"]
                push["envelope"] = frame["envelopes"][0]["body"]
                self._queue(target, push)
        elif frame_id is not None:
            self._queue(peer, make_reply(frame_id))

    def _queue(self, peer: _Peer, frame: dict[str, Any]) -> None:
        peer.out += encode_frame(frame)

    def _flush(self, peer: _Peer) -> None:
        while peer.out:
            try:
                sent = peer.sock.send(peer.out)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            except OSError:
                self._drop(peer)
                return
            del peer.out[:sent]

    def _drop(self, peer: _Peer) -> None:
        try:
            self.selector.unregister(peer.sock)
        except (KeyError, ValueError):
            pass
        peer.sock.close()
        self.by_name.pop(peer.username, None)
