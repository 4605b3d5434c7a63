"""The client's connection thread: TLS 1.3, frames, requests and pushes.

One daemon thread owns the socket. It connects, exchanges ``hello``, then
runs a ``select`` loop over the non-blocking TLS socket and a wake-up
socket pair. The loop writes queued frames, reads and decodes frames,
matches each reply to its request by ``id``, hands pushes to a callback,
and sends ``ping`` every :data:`PING_INTERVAL` seconds. When the connection
drops it reconnects after a capped exponential backoff with jitter
(1, 2, 4 ... :data:`MAX_BACKOFF` seconds), failing every request that was
waiting. Other threads call :meth:`Connection.request`, which blocks up to
its timeout; nothing here ever runs caller code on the caller's thread.

Callbacks (``on_push``, ``on_state``) run on the connection thread and
must not block on a request; the client core queues them to its worker.
"""

from __future__ import annotations

import itertools
import logging
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from enctalk.client.errors import CONNECTION_FAILED, TIMEOUT, ClientError
from enctalk.client.trust import ServerTrust, connection_error
from enctalk.protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    PROTOCOL_VERSION,
    FrameDecoder,
    ProtocolError,
    encode_frame,
    make_request,
    validate_error,
    validate_push,
    validate_reply,
)

logger = logging.getLogger(__name__)

PING_INTERVAL = 20.0
# A connection that receives nothing for this long is taken as dead,
# because the server replies to each ping sent every PING_INTERVAL.
RECEIVE_TIMEOUT = 50.0
CONNECT_TIMEOUT = 10.0
MIN_BACKOFF = 1.0
MAX_BACKOFF = 30.0
READ_SIZE = 65536
CLIENT_NAME = "enctalk-client/0.1"

# Connection states reported to on_state.
CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
OFFLINE = "offline"

PushHandler = Callable[[str, dict[str, Any]], None]
StateHandler = Callable[[str, dict[str, Any]], None]


class _ConnectionLost(Exception):
    """The socket closed or failed; the thread reconnects."""


@dataclass
class _Pending:
    kind: str
    done: threading.Event = field(default_factory=threading.Event)
    reply: dict[str, Any] | None = None
    error: ClientError | None = None


class Connection:
    """A self-reconnecting connection to one server.

    :meth:`start` starts the thread and returns at once;
    :meth:`wait_connected` blocks until the first ``hello`` exchange
    succeeds or fails. :meth:`request` is thread-safe and blocks up to its
    timeout for the reply. After a certificate error the thread stops
    instead of retrying, because retrying cannot fix it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        trust: ServerTrust,
        *,
        on_push: PushHandler,
        on_state: StateHandler,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.host = host
        self.port = port
        self._trust = trust
        self._on_push = on_push
        self._on_state = on_state
        self._connect_timeout = connect_timeout
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._outgoing: list[bytes] = []
        self._closing = threading.Event()
        self._attempt_done = threading.Event()
        self._connected = False
        self._last_error: ClientError | None = None
        self._max_frame_size = DEFAULT_MAX_FRAME_SIZE
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._thread = threading.Thread(
            target=self._run, name=f"enctalk-connection-{host}:{port}", daemon=True
        )

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def last_error(self) -> ClientError | None:
        return self._last_error

    def start(self) -> None:
        self._thread.start()

    def wait_connected(self, timeout: float) -> None:
        """Block until connected; raise the first attempt's error or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._connected:
            remaining = deadline - time.monotonic()
            if self._attempt_done.is_set() and self._last_error is not None:
                raise self._last_error
            if remaining <= 0:
                raise ClientError(
                    TIMEOUT,
                    f"Timed out after {timeout:g} s connecting to {self._address}.",
                )
            self._attempt_done.wait(min(remaining, 0.05))

    @property
    def _address(self) -> str:
        from enctalk.client.address import format_server_address

        return format_server_address(self.host, self.port)

    def close(self) -> None:
        """Stop the thread and fail every waiting request; idempotent."""
        self._closing.set()
        self._wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._fail_pending("The connection was closed.")
        for sock in (self._wake_read, self._wake_write):
            try:
                sock.close()
            except OSError:
                pass

    def request(self, kind: str, timeout: float, **fields: Any) -> dict[str, Any]:
        """Send a request and return the validated fields of its ``ok`` reply.

        Raises ClientError with the server's error code for an error reply,
        ``connection_failed`` when not connected or the connection drops,
        and ``timeout`` when no reply comes within ``timeout`` seconds.
        """
        if not self._connected:
            raise self._offline_error()
        pending, frame_id = self._enqueue(kind, fields)
        if not pending.done.wait(timeout):
            with self._lock:
                self._pending.pop(frame_id, None)
            raise ClientError(
                TIMEOUT,
                f"The server {self._address} did not answer '{kind}' "
                f"within {timeout:g} s.",
            )
        if pending.error is not None:
            raise pending.error
        assert pending.reply is not None
        return pending.reply

    def send_nowait(self, kind: str, **fields: Any) -> None:
        """Queue a request without waiting for its reply (``ack``, ``ping``)."""
        if self._connected:
            self._enqueue(kind, fields, track=False)

    def _offline_error(self) -> ClientError:
        if self._last_error is not None:
            return ClientError(self._last_error.code, self._last_error.message)
        return ClientError(CONNECTION_FAILED, f"Not connected to {self._address}.")

    def _enqueue(
        self, kind: str, fields: dict[str, Any], track: bool = True
    ) -> tuple[_Pending, int]:
        frame_id = next(self._ids)
        try:
            data = encode_frame(
                make_request(kind, frame_id, **fields), self._max_frame_size
            )
        except ProtocolError as exc:
            raise ClientError(exc.code, f"The '{kind}' request is too large.") from exc
        pending = _Pending(kind)
        with self._lock:
            self._pending[frame_id] = pending if track else _Pending(kind)
            self._outgoing.append(data)
        self._wake()
        return pending, frame_id

    def _wake(self) -> None:
        try:
            self._wake_write.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    def _fail_pending(self, reason: str) -> None:
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
            self._outgoing.clear()
        for item in pending:
            item.error = ClientError(CONNECTION_FAILED, reason)
            item.done.set()

    # The connection thread.

    def _run(self) -> None:
        attempt = 0
        while not self._closing.is_set():
            self._on_state(CONNECTING if attempt == 0 else RECONNECTING, {})
            try:
                tls, decoder = self._connect()
            except ClientError as exc:
                self._last_error = exc
                self._attempt_done.set()
                if exc.code.startswith("certificate_"):
                    # A warning, because the front end reports the error itself.
                    logger.warning("stopped connecting to %s: %s", self._address, exc)
                    self._on_state(OFFLINE, {"error": exc.message, "code": exc.code})
                    return
                delay = min(MAX_BACKOFF, MIN_BACKOFF * 2**attempt)
                delay *= random.uniform(0.8, 1.2)
                attempt += 1
                logger.info(
                    "connecting to %s failed (%s); retrying in %.1f s",
                    self._address,
                    exc.message,
                    delay,
                )
                self._on_state(
                    RECONNECTING,
                    {"retry_in": round(delay, 1), "error": exc.message},
                )
                self._closing.wait(delay)
                continue

            attempt = 0
            self._last_error = None
            self._connected = True
            self._attempt_done.set()
            logger.info("connected to %s", self._address)
            self._on_state(CONNECTED, {})
            try:
                self._serve(tls, decoder)
            except _ConnectionLost as exc:
                logger.info("connection to %s lost: %s", self._address, exc)
                self._last_error = ClientError(
                    CONNECTION_FAILED, f"The connection to {self._address} was lost."
                )
            finally:
                self._connected = False
                self._fail_pending(f"The connection to {self._address} was lost.")
                try:
                    tls.close()
                except OSError:
                    pass
        self._on_state(OFFLINE, {})

    def _connect(self) -> tuple[ssl.SSLSocket, FrameDecoder]:
        context = self._trust.context(self.host, self.port)
        try:
            raw = socket.create_connection(
                (self.host, self.port), timeout=self._connect_timeout
            )
        except OSError as exc:
            raise connection_error(self.host, self.port, exc) from exc
        # A large frame goes out in several TLS records; with Nagle's
        # algorithm the last one can wait for the server's delayed ACK.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = context.wrap_socket(raw, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            raise self._trust.diagnose_verify_failure(
                self.host, self.port, self._connect_timeout
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise connection_error(self.host, self.port, exc) from exc
        try:
            self._trust.check_peer(
                self.host, self.port, tls.getpeercert(binary_form=True)
            )
            decoder = self._exchange_hello(tls)
        except BaseException:
            tls.close()
            raise
        tls.setblocking(False)
        return tls, decoder

    def _exchange_hello(self, tls: ssl.SSLSocket) -> FrameDecoder:
        """Send our ``hello`` and read the server's, in blocking mode."""
        decoder = FrameDecoder()
        try:
            tls.sendall(
                encode_frame(
                    make_request(
                        "hello", 0, version=PROTOCOL_VERSION, client=CLIENT_NAME
                    )
                )
            )
            got_hello = got_reply = False
            while not (got_hello and got_reply):
                frame = decoder.next_frame()
                if frame is None:
                    data = tls.recv(READ_SIZE)
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    decoder.receive_data(data)
                    continue
                kind = frame.get("type")
                if kind == "hello" and "id" not in frame:
                    _, fields = validate_push(frame)
                    self._max_frame_size = fields["max_frame_size"]
                    got_hello = True
                elif kind == "ok" and frame.get("id") == 0:
                    got_reply = True
                elif kind == "error":
                    error = validate_error(frame)
                    raise ClientError(
                        error["code"],
                        f"The server {self._address} rejected the connection: "
                        f"{error['message']}",
                    )
                else:
                    raise ProtocolError("invalid_frame", f"unexpected {kind!r} frame")
        except ProtocolError as exc:
            raise ClientError(
                CONNECTION_FAILED,
                f"The server {self._address} broke the protocol: {exc.message}.",
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            raise connection_error(self.host, self.port, exc) from exc
        decoder.max_frame_size = max(self._max_frame_size, DEFAULT_MAX_FRAME_SIZE)
        return decoder

    def _serve(self, tls: ssl.SSLSocket, decoder: FrameDecoder) -> None:
        out = bytearray()
        last_sent = last_received = time.monotonic()
        while not self._closing.is_set():
            with self._lock:
                for data in self._outgoing:
                    out += data
                self._outgoing.clear()

            now = time.monotonic()
            if now - last_received > RECEIVE_TIMEOUT:
                raise _ConnectionLost(f"nothing received for {RECEIVE_TIMEOUT:g} s")
            if now - last_sent >= PING_INTERVAL and not out:
                out += encode_frame(make_request("ping", next(self._ids)))
            wait = max(0.0, min(PING_INTERVAL - (now - last_sent), 1.0))
            if tls.pending():
                wait = 0.0

            readers, writers, _ = select.select(
                [tls, self._wake_read], [tls] if out else [], [], wait
            )
            if self._wake_read in readers:
                try:
                    while self._wake_read.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass

            if tls in readers or tls.pending():
                if self._read(tls, decoder):
                    last_received = time.monotonic()
            if out and (tls in writers or not writers):
                sent = self._write(tls, out)
                if sent:
                    del out[:sent]
                    last_sent = time.monotonic()

    def _read(self, tls: ssl.SSLSocket, decoder: FrameDecoder) -> bool:
        received = False
        while True:
            try:
                data = tls.recv(READ_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                break
            except (OSError, ssl.SSLError) as exc:
                raise _ConnectionLost(str(exc)) from exc
            if not data:
                raise _ConnectionLost("the server closed the connection")
            received = True
            try:
                decoder.receive_data(data)
                while (frame := decoder.next_frame()) is not None:
                    self._dispatch(frame)
            except ProtocolError as exc:
                raise _ConnectionLost(
                    f"invalid frame from server: {exc.message}"
                ) from exc
        return received

    def _write(self, tls: ssl.SSLSocket, out: bytearray) -> int:
        try:
            return tls.send(out[:READ_SIZE])
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return 0
        except (OSError, ssl.SSLError) as exc:
            raise _ConnectionLost(str(exc)) from exc

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        frame_id = frame.get("id")
        if kind in ("ok", "error") and isinstance(frame_id, int):
            with self._lock:
                pending = self._pending.pop(frame_id, None)
            if pending is None:
                return
            try:
                if kind == "ok":
                    pending.reply = validate_reply(pending.kind, frame)
                else:
                    error = validate_error(frame)
                    pending.error = ClientError(
                        error["code"],
                        error["message"],
                        details=error["details"],
                        retry_after=error["retry_after"],
                    )
            except ProtocolError as exc:
                pending.error = ClientError(
                    CONNECTION_FAILED,
                    f"The server sent an invalid reply to '{pending.kind}': "
                    f"{exc.message}.",
                )
            pending.done.set()
            return
        if kind == "error":
            error = validate_error(frame)
            logger.warning("server error without request id: %s", error["code"])
            return
        kind, fields = validate_push(frame)
        self._on_push(kind, fields)
