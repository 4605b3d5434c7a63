"""A raw EncTalk test client: TLS plus frames, with a timeout on every read.

It speaks the wire format directly, so tests can send malformed frames as
easily as good ones. Frames the server pushes while the client waits for a
reply are kept in ``pushes`` for :meth:`WireClient.wait_push`.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
import uuid
from collections import deque
from typing import Any

from enctalk.crypto.keys import AccountIdentity, sign_device_key, sign_prekey
from enctalk.protocol import (
    PROTOCOL_VERSION,
    FrameDecoder,
    encode_frame,
    make_request,
)

HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 5.0
TEST_MAX_FRAME = 16 * 1024 * 1024
DEFAULT_PASSWORD = "password"
# Every test account registers this account identity key (AIK), so that
# device_fields() can sign device keys the server accepts.
TEST_AIK = AccountIdentity.generate()


def client_context(cafile: str | None = None) -> ssl.SSLContext:
    """Return a TLS 1.3 client context trusting ``cafile``, or trusting anything."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if cafile is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cafile)
    return context


class ConnectionClosed(Exception):
    """The server closed the connection."""


class WireClient:
    """One TLS connection to a test server."""

    def __init__(
        self,
        port: int,
        *,
        hello: bool = True,
        cafile: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        rcvbuf: int | None = None,
        source: str | None = None,
    ) -> None:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            # Another loopback address (Linux routes all of 127.0.0.0/8 to
            # lo), so the server gets a second client address.
            raw.bind((source, 0))
        raw.settimeout(timeout)
        raw.connect((HOST, port))
        self.timeout = timeout
        self.sock = client_context(cafile).wrap_socket(raw, server_hostname="localhost")
        self.decoder = FrameDecoder(TEST_MAX_FRAME)
        self.pushes: deque[dict[str, Any]] = deque()
        self.next_id = 1
        self.server_hello = self.read_frame()
        if hello:
            reply = self.request("hello", version=PROTOCOL_VERSION, client="tests")
            assert reply["type"] == "ok", reply

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, frame: dict[str, Any]) -> None:
        self.send_raw(encode_frame(frame, TEST_MAX_FRAME))

    def read_frame(self, timeout: float | None = None) -> dict[str, Any]:
        """Return the next frame; raise TimeoutError or ConnectionClosed."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the server in time")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError as exc:
                raise TimeoutError("no frame from the server in time") from exc
            except (ConnectionError, ssl.SSLError) as exc:
                raise ConnectionClosed(str(exc)) from exc
            if not data:
                raise ConnectionClosed("the server closed the connection")
            self.decoder.receive_data(data)

    def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a request and return its reply (``ok`` or ``error``)."""
        frame_id = self.next_id
        self.next_id += 1
        self.send_frame(make_request(kind, frame_id, **fields))
        return self.reply_to(frame_id)

    def reply_to(self, frame_id: int, timeout: float | None = None) -> dict[str, Any]:
        while True:
            frame = self.read_frame(timeout)
            if frame.get("id") == frame_id:
                return frame
            self.pushes.append(frame)

    def call(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a request and return its ``ok`` reply; fail on an error."""
        reply = self.request(kind, **fields)
        assert reply["type"] == "ok", reply
        return reply

    def wait_push(self, kind: str, timeout: float | None = None) -> dict[str, Any]:
        """Return the first pushed frame of ``kind``, waiting for it if needed."""
        for frame in list(self.pushes):
            if frame["type"] == kind:
                self.pushes.remove(frame)
                return frame
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            frame = self.read_frame(max(0.01, deadline - time.monotonic()))
            if frame["type"] == kind:
                return frame
            self.pushes.append(frame)

    def expect_closed(self, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        """Read until the server closes; return the frames that came first."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames.append(self.read_frame(max(0.01, deadline - time.monotonic())))
            except ConnectionClosed:
                return frames


def auth_key(name: str, password: str = DEFAULT_PASSWORD) -> bytes:
    """Return a deterministic 32-byte auth key for tests."""
    return (name + ":" + password).encode("utf-8").ljust(32, b"#")[:32]


def random_key() -> bytes:
    return os.urandom(32)


def new_message_id() -> str:
    return str(uuid.uuid4())


def identity_key() -> bytes:
    """Return the public AIK that test accounts register."""
    return TEST_AIK.public_bytes()


def signed_prekey_fields(
    prekey_id: int = 1, aik: AccountIdentity = TEST_AIK
) -> dict[str, Any]:
    """Return a signed prekey ``{id, key, signature}`` with a random key."""
    key = random_key()
    return {"id": prekey_id, "key": key, "signature": sign_prekey(aik, prekey_id, key)}


def device_fields(
    prekeys: int = 5, first_id: int = 1, aik: AccountIdentity = TEST_AIK
) -> dict[str, Any]:
    """Return the fields of a register_device request with random keys.

    The device key and signed prekey are signed by ``aik``.
    """
    device_key = random_key()
    return {
        "name": "lab pc",
        "identity_key": device_key,
        "signature": sign_device_key(aik, device_key),
        "signed_prekey": signed_prekey_fields(1, aik),
        "one_time_prekeys": [
            {"id": first_id + index, "key": random_key()} for index in range(prekeys)
        ],
    }
