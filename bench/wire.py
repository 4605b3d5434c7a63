"""Blocking and non-blocking wire clients for the benchmarks.

The load generator speaks the EncTalk protocol directly with random
ciphertext, so what it measures is the server's relay path (framing,
schema checks, SQLite commit, fan-out), not the client's cryptography.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from typing import Any

from enctalk.crypto.keys import AccountIdentity, sign_device_key, sign_prekey
from enctalk.protocol import (
    PROTOCOL_VERSION,
    FrameDecoder,
    encode_frame,
    make_request,
)

READ_SIZE = 65536


def client_context() -> ssl.SSLContext:
    """Return a TLS 1.3 context that skips verification (loopback benchmarks)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class BlockingPeer:
    """One TLS connection used step by step during set-up."""

    def __init__(self, port: int, context: ssl.SSLContext, timeout: float = 30.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.decoder = FrameDecoder()
        self.next_id = 1
        self.pushes: list[dict[str, Any]] = []
        self.read_frame()  # the server's hello
        self.sock.sendall(
            encode_frame(
                make_request("hello", version=PROTOCOL_VERSION, client="bench")
            )
        )

    def read_frame(self) -> dict[str, Any]:
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                return frame
            data = self.sock.recv(READ_SIZE)
            if not data:
                raise ConnectionError("server closed the connection")
            self.decoder.receive_data(data)

    def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        frame_id = self.next_id
        self.next_id += 1
        self.sock.sendall(encode_frame(make_request(kind, frame_id, **fields)))
        while True:
            frame = self.read_frame()
            if frame.get("id") == frame_id:
                if frame["type"] == "error":
                    raise RuntimeError(f"{kind} failed: {frame['code']}")
                return frame
            self.pushes.append(frame)

    def close(self) -> None:
        self.sock.close()


def register_with_device(peer: BlockingPeer, username: str) -> tuple[str, int]:
    """Register ``username`` with one device; return its token and device id."""
    aik = AccountIdentity.generate()
    reply = peer.request(
        "register",
        username=username,
        auth_key=os.urandom(32),
        identity_key=aik.public_bytes(),
        backup=os.urandom(120),
    )
    device_key = os.urandom(32)
    prekey = os.urandom(32)
    device = peer.request(
        "register_device",
        name="bench",
        identity_key=device_key,
        signature=sign_device_key(aik, device_key),
        signed_prekey={
            "id": 1,
            "key": prekey,
            "signature": sign_prekey(aik, 1, prekey),
        },
        one_time_prekeys=[{"id": n, "key": os.urandom(32)} for n in range(1, 21)],
    )
    return str(reply["token"]), int(device["device_id"])


def now() -> float:
    return time.perf_counter()
