"""The selectors event loop: one thread owns every socket.

The loop thread accepts connections, runs the non-blocking TLS handshake
(with a deadline), reads and decodes frames, and does all writes.
Requests that block (bcrypt, SQLite) run in a ``ThreadPoolExecutor``; a
worker posts its result to a queue and wakes the loop through a socket
pair. ``send`` and ``ack`` go instead to the commit writer
(``server.writer``), which commits them in batches and posts each batch's
outcomes the same way. Replies leave in request order: a connection has at
most one request in flight, except that consecutive requests for the
commit writer may all be in flight at once, because it returns each
connection's outcomes in submission order. Later requests wait in a bounded queue.

Backpressure: above ``output_soft_limit`` queued bytes the loop stops
reading from a connection, and above ``output_hard_limit`` it drops the
connection. A connection is registered for ``EVENT_WRITE`` only while it
has output (or OpenSSL needs to write to finish a read), so an idle loop
sleeps in ``select``. Timers are checked every :data:`TICK_SECONDS`.

Cost per event: a read pass reads at most :data:`READ_BUDGET` bytes from
one connection before serving the others.
"""

from __future__ import annotations

import functools
import logging
import queue
import selectors
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from enctalk.protocol import (
    PROTOCOL_VERSION,
    FrameDecoder,
    ProtocolError,
    encode_frame,
    errors,
    make_error,
    make_push,
    make_reply,
    request_id,
    validate_request,
)
from server.connection import HANDSHAKE, OPEN, Connection, PendingRequest
from server.handlers import (
    ANONYMOUS_REQUESTS,
    Outcome,
    Request,
    Revocation,
    Services,
    Session,
    dispatch,
)
from server.handlers.base import MS_PER_DAY, now_ms
from server.logutil import LogLimiter
from server.writer import BATCHED_REQUESTS, CommitWriter

logger = logging.getLogger(__name__)

SERVER_NAME = "enctalk-server/0.1"
TICK_SECONDS = 0.25
RECV_SIZE = 16 * 1024
READ_BUDGET = 256 * 1024
WRITE_CHUNK = 64 * 1024
ACCEPT_BATCH = 64
ACCEPT_PAUSE_SECONDS = 1.0
# Requests of one connection waiting behind the one in flight; past this
# the loop stops reading from the connection until the queue drains.
MAX_PENDING_REQUESTS = 32
# Requests of one connection at the commit writer at once.
MAX_BATCHED_IN_FLIGHT = 32
# Frames over the rate limit in a row before the connection is closed.
RATE_LIMIT_STRIKES = 20
CLOSE_FLUSH_SECONDS = 2.0
STOP_JOBS_SECONDS = 30.0
STOP_FLUSH_SECONDS = 1.0

_LISTENER = "listener"
_WAKE = "wake"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class EventLoop:
    """The server's event loop; :meth:`run` blocks until :meth:`request_stop`.

    Only :meth:`request_stop` may be called from other threads (or from a
    signal handler in the loop's own thread).
    """

    def __init__(
        self,
        services: Services,
        tls_context: ssl.SSLContext,
        listener: socket.socket,
    ) -> None:
        self.services = services
        self.config = services.config
        self.tls_context = tls_context
        self.listener = listener
        self.listener.setblocking(False)
        # NOTE: on Windows DefaultSelector is select(), which CPython builds
        # with a limit of 512 sockets; larger labs need a Linux server.
        self.selector = selectors.DefaultSelector()
        self.executor = ThreadPoolExecutor(
            max_workers=self.config.worker_threads,
            thread_name_prefix="enctalk-worker",
        )
        self.results: queue.SimpleQueue[
            tuple[int | None, Callable[[Any], None], Any]
        ] = queue.SimpleQueue()
        self.writer = CommitWriter(services, self._post_batch)
        self._batched_in_flight = 0
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, _LISTENER)
        self.selector.register(self._wake_reader, selectors.EVENT_READ, _WAKE)
        self.conns: dict[int, Connection] = {}
        self.per_address: Counter[str] = Counter()
        self.online: dict[int, set[Connection]] = {}
        self.contacts: dict[int, set[int]] = {}
        self.by_device: dict[int, set[Connection]] = {}
        self.jobs: dict[int, tuple[Future[None], int | None]] = {}
        self._ready: set[Connection] = set()
        # Connections with frames queued during this pass of the loop, in
        # the order they got them; a dict is an ordered set.
        self._unflushed: dict[Connection, None] = {}
        self._next_conn_id = 1
        self._next_job_id = 1
        self._next_tick = 0.0
        self._next_check = time.monotonic() + self.config.revocation_check_interval
        self._check_running = False
        self._accept_paused_until = 0.0
        self._stop_requested = False
        self._stopping = False
        self._stop_deadline = 0.0
        self._flush_deadline = 0.0
        self._limiter = LogLimiter(logger)
        self._hello = encode_frame(
            make_push(
                "hello",
                version=PROTOCOL_VERSION,
                server=SERVER_NAME,
                max_frame_size=self.config.max_frame_size,
            )
        )

    # Running and stopping

    def request_stop(self) -> None:
        """Ask the loop to stop; safe from any thread and from signal handlers."""
        self._stop_requested = True
        self._wake()

    def run(self) -> None:
        """Serve until stopped, then close every connection and the workers."""
        logger.info("event loop started")
        self.writer.start()
        try:
            while True:
                if self._stop_requested and not self._stopping:
                    self._begin_stop()
                if self._stopping and self._stop_finished():
                    break
                try:
                    self._run_once()
                except Exception:
                    if self._limiter.allow("loop error"):
                        logger.exception("unexpected error in the event loop")
                    time.sleep(0.01)
        finally:
            self._shutdown()
        logger.info("event loop stopped")

    def _run_once(self) -> None:
        timeout = 0.0 if self._ready else TICK_SECONDS
        for key, mask in self.selector.select(timeout):
            if key.data is _LISTENER:
                self._accept()
            elif key.data is _WAKE:
                self._drain_wake()
            else:
                self._guarded(key.data, self._service, key.data, mask)
        self._drain_results()
        ready, self._ready = self._ready, set()
        for conn in ready:
            self._guarded(conn, self._read, conn)
        now = time.monotonic()
        if now >= self._next_tick:
            self._tick(now)
        self._flush_queued()

    def _guarded(
        self, conn: Connection, action: Callable[..., None], *args: Any
    ) -> None:
        try:
            action(*args)
        except Exception:
            logger.exception("connection %d: unexpected error", conn.id)
            self._close(conn, "internal error")
        self._update_events(conn)

    def _begin_stop(self) -> None:
        self._stopping = True
        self._stop_deadline = time.monotonic() + STOP_JOBS_SECONDS
        try:
            self.selector.unregister(self.listener)
        except (KeyError, ValueError):
            pass
        self.listener.close()
        cancelled = 0
        for job_id, (future, conn_id) in list(self.jobs.items()):
            if future.cancel():
                del self.jobs[job_id]
                cancelled += 1
                conn = self.conns.get(conn_id) if conn_id is not None else None
                if conn is not None:
                    conn.in_flight = 0
        for conn in list(self.conns.values()):
            conn.pending.clear()
            conn.continuation = None
            if conn.state == HANDSHAKE:
                self._close(conn, "server stopping")
            else:
                self._update_events(conn)
        logger.info(
            "stopping: %d requests still running, %d queued requests cancelled",
            len(self.jobs),
            cancelled,
        )

    def _stop_finished(self) -> bool:
        now = time.monotonic()
        busy = self.jobs or self._batched_in_flight
        if busy and now < self._stop_deadline:
            return False
        if not self._flush_deadline:
            self._flush_deadline = now + STOP_FLUSH_SECONDS
        if now < self._flush_deadline and any(c.outbuf for c in self.conns.values()):
            return False
        return True

    def _shutdown(self) -> None:
        self._stopping = True
        for conn in list(self.conns.values()):
            self._close(conn, "server stopping")
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.writer.stop()
        if self.listener.fileno() != -1:
            self.listener.close()
        self.selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    # Wake-up and worker jobs

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b"\0")
        except (BlockingIOError, OSError):
            # A full socket pair already contains a pending wake-up.
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _submit(
        self,
        work: Callable[[], Any],
        on_done: Callable[[Any], None],
        conn_id: int | None,
    ) -> None:
        job_id = self._next_job_id
        self._next_job_id += 1
        future = self.executor.submit(self._work, job_id, work, on_done)
        self.jobs[job_id] = (future, conn_id)

    def _work(
        self, job_id: int, work: Callable[[], Any], on_done: Callable[[Any], None]
    ) -> None:
        """Run ``work`` in a worker thread and post its result to the loop."""
        try:
            value = work()
        except Exception:
            logger.exception("background job failed")
            value = None
        self.results.put((job_id, on_done, value))
        self._wake()

    def _submit_request(self, request: Request) -> None:
        if request.kind in BATCHED_REQUESTS:
            self._batched_in_flight += 1
            self.writer.submit(request)
            return
        work = functools.partial(dispatch, self.services, request)
        on_done = functools.partial(self._apply, request)
        self._submit(work, on_done, request.conn_id)

    def _post_batch(self, results: list[tuple[Request, Outcome]]) -> None:
        """Hand a committed batch to the loop; runs in the writer thread."""
        self.results.put((None, self._apply_batch, results))
        self._wake()

    def _apply_batch(self, results: list[tuple[Request, Outcome]]) -> None:
        for request, outcome in results:
            self._batched_in_flight -= 1
            try:
                self._apply(request, outcome)
            except Exception:
                logger.exception(
                    "connection %d: applying a committed %s outcome failed",
                    request.conn_id,
                    request.kind,
                )

    def _drain_results(self) -> None:
        while True:
            try:
                job_id, on_done, value = self.results.get_nowait()
            except queue.Empty:
                return
            if job_id is not None:
                self.jobs.pop(job_id, None)
            try:
                on_done(value)
            except Exception:
                logger.exception("applying a job result failed")

    # Accepting and the TLS handshake

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of file descriptors or buffers: pause, or select would
                # report the listener ready again at once.
                if self._limiter.allow("accept failed"):
                    logger.warning(
                        "accept failed: %s; pausing new connections for %.0f s",
                        _describe(exc),
                        ACCEPT_PAUSE_SECONDS,
                    )
                self.selector.unregister(self.listener)
                self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS
                return
            self._admit(sock, str(address[0]))

    def _admit(self, sock: socket.socket, address: str) -> None:
        if len(self.conns) >= self.config.max_connections:
            if self._limiter.allow("too many connections"):
                logger.warning(
                    "rejected connection from %s: %d connections open",
                    address,
                    len(self.conns),
                )
            sock.close()
            return
        if self.per_address[address] >= self.config.max_connections_per_address:
            if self._limiter.allow("too many connections from one address"):
                logger.warning(
                    "rejected connection from %s: %d connections from this address",
                    address,
                    self.per_address[address],
                )
            sock.close()
            return
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls_sock = self.tls_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        except (ssl.SSLError, OSError) as exc:
            logger.info("rejected connection from %s: %s", address, _describe(exc))
            sock.close()
            return
        now = time.monotonic()
        conn = Connection(
            self._next_conn_id,
            tls_sock,
            address,
            now,
            self.config.handshake_timeout,
            self.config.request_burst,
        )
        self._next_conn_id += 1
        self.conns[conn.id] = conn
        self.per_address[address] += 1
        logger.info("connection %d opened from %s", conn.id, address)
        self._guarded(conn, self._handshake, conn)

    def _handshake(self, conn: Connection) -> None:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            conn.handshake_events = selectors.EVENT_READ
            return
        except ssl.SSLWantWriteError:
            conn.handshake_events = selectors.EVENT_WRITE
            return
        except (ssl.SSLError, OSError) as exc:
            self._close(conn, f"TLS handshake failed: {_describe(exc)}")
            return
        conn.state = OPEN
        conn.decoder = FrameDecoder(self.config.max_frame_size)
        conn.last_frame = time.monotonic()
        logger.debug("connection %d: TLS handshake done", conn.id)
        self._send(conn, self._hello)
        self._ready.add(conn)

    # Reading and frames

    def _reading_allowed(self, conn: Connection) -> bool:
        return (
            conn.state == OPEN
            and not conn.closed
            and conn.closing_reason is None
            and not self._stopping
            and len(conn.outbuf) < self.config.output_soft_limit
            and len(conn.pending) < MAX_PENDING_REQUESTS
        )

    def _service(self, conn: Connection, mask: int) -> None:
        if conn.closed:
            return
        if conn.state == HANDSHAKE:
            self._handshake(conn)
            return
        if mask & selectors.EVENT_READ:
            if conn.write_wants_read:
                self._flush(conn)
            self._read(conn)
        if mask & selectors.EVENT_WRITE and not conn.closed:
            if conn.read_wants_write:
                conn.read_wants_write = False
                self._read(conn)
            self._flush(conn)

    def _read(self, conn: Connection) -> None:
        if conn.closed or conn.decoder is None:
            return
        # Frames left in the decoder while the request queue was full.
        self._take_frames(conn)
        budget = READ_BUDGET
        while budget > 0:
            if conn.closed or not self._reading_allowed(conn):
                return
            try:
                data = conn.sock.recv(RECV_SIZE)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLWantWriteError:
                conn.read_wants_write = True
                return
            except ssl.SSLZeroReturnError:
                self._close(conn, "closed by the client")
                return
            except (ssl.SSLError, OSError) as exc:
                self._close(conn, f"read failed: {_describe(exc)}")
                return
            if not data:
                self._close(conn, "closed by the client")
                return
            budget -= len(data)
            try:
                conn.decoder.receive_data(data)
            except ProtocolError as exc:
                self._reject(conn, exc, None)
                return
            self._take_frames(conn)
        # Budget used up: serve the others first, then come back, because
        # OpenSSL may hold decrypted bytes that select cannot see.
        self._ready.add(conn)

    def _take_frames(self, conn: Connection) -> None:
        """Queue the decoded frames of ``conn`` and start the requests that may run.

        Repeats while starting requests frees room in the queue, because a
        client may pipeline more frames than the queue holds, and frames
        left in the decoder get no socket event to bring them out.
        """
        while self._queue_frames(conn):
            self._pump(conn)
            if len(conn.pending) >= MAX_PENDING_REQUESTS:
                return
        self._pump(conn)

    def _queue_frames(self, conn: Connection) -> int:
        """Move decoded frames into the request queue; return how many."""
        decoder = conn.decoder
        count = 0
        while (
            decoder is not None
            and not conn.closed
            and conn.closing_reason is None
            and len(conn.pending) < MAX_PENDING_REQUESTS
        ):
            try:
                frame = decoder.next_frame()
            except ProtocolError as exc:
                self._reject(conn, exc, None)
                return 0
            if frame is None:
                break
            conn.last_frame = time.monotonic()
            self._accept_frame(conn, frame)
            count += 1
        return count

    def _accept_frame(self, conn: Connection, frame: dict[str, Any]) -> None:
        try:
            kind, frame_id, fields = validate_request(frame)
        except ProtocolError as exc:
            self._reject(conn, exc, request_id(frame))
            return
        if not conn.hello_done:
            if kind != "hello":
                self._reject(
                    conn,
                    ProtocolError(
                        errors.INVALID_FRAME, "The first frame must be hello."
                    ),
                    frame_id,
                )
                return
            if fields["version"] != PROTOCOL_VERSION:
                self._reject(
                    conn,
                    ProtocolError(
                        errors.UNSUPPORTED_VERSION,
                        f"This server speaks protocol version {PROTOCOL_VERSION}, "
                        f"not {fields['version']}; update the client.",
                    ),
                    frame_id,
                )
                return
            conn.hello_done = True
        if not self._take_token(conn):
            conn.strikes += 1
            if conn.strikes > RATE_LIMIT_STRIKES:
                self._reject(
                    conn,
                    ProtocolError(
                        errors.RATE_LIMITED,
                        "Too many requests; closing the connection.",
                    ),
                    frame_id,
                )
                return
            if self._limiter.allow("request rate"):
                logger.info("connection %d: request over the rate limit", conn.id)
            error = make_error(
                frame_id,
                errors.RATE_LIMITED,
                "Too many requests; slow down.",
                retry_after=1,
            )
            conn.pending.append(encode_frame(error))
            return
        conn.strikes = 0
        conn.pending.append(PendingRequest(kind, frame_id, fields))

    def _take_token(self, conn: Connection) -> bool:
        now = time.monotonic()
        conn.tokens = min(
            float(self.config.request_burst),
            conn.tokens + (now - conn.refilled) * self.config.request_rate,
        )
        conn.refilled = now
        if conn.tokens >= 1.0:
            conn.tokens -= 1.0
            return True
        return False

    def _reject(
        self, conn: Connection, exc: ProtocolError, frame_id: int | None
    ) -> None:
        """Send an error frame for a protocol violation, then close."""
        if self._limiter.allow("rejected frame"):
            logger.info(
                "connection %d: rejected frame (%s): %s", conn.id, exc.code, exc.message
            )
        conn.pending.clear()
        self._send(conn, encode_frame(make_error(frame_id, exc.code, exc.message)))
        self._close_after_flush(conn, f"protocol error: {exc.code}")

    def _pump(self, conn: Connection) -> None:
        """Start the queued requests of ``conn`` that may run now, in order."""
        while (
            conn.pending
            and not conn.closed
            and conn.closing_reason is None
            and not self._stopping
        ):
            item = conn.pending[0]
            batched = (
                not isinstance(item, bytes)
                and item.kind in BATCHED_REQUESTS
                and conn.session is not None
            )
            if conn.in_flight and not (
                batched
                and conn.in_flight_batched
                and conn.in_flight < MAX_BATCHED_IN_FLIGHT
            ):
                return
            conn.pending.popleft()
            if isinstance(item, bytes):
                self._send(conn, item)
                continue
            if item.kind in ("hello", "ping"):
                self._send(conn, encode_frame(make_reply(item.frame_id)))
                continue
            if item.kind not in ANONYMOUS_REQUESTS and conn.session is None:
                error = make_error(
                    item.frame_id, errors.NOT_AUTHENTICATED, "Log in first."
                )
                self._send(conn, encode_frame(error))
                continue
            request = Request(
                conn.id,
                conn.address,
                item.kind,
                item.frame_id,
                item.fields,
                conn.session,
            )
            if item.kind == "sync":
                conn.synced = True
                conn.syncing = True
                conn.sync_seq = 0
            conn.in_flight += 1
            conn.in_flight_batched = batched
            self._submit_request(request)

    # Applying results

    def _apply(self, request: Request, outcome: Outcome | None) -> None:
        """Apply a handler's outcome: reply first, then pushes to others."""
        if outcome is None:
            outcome = Outcome(
                reply=make_error(
                    request.frame_id, errors.INTERNAL_ERROR, "The server failed."
                )
            )

        # Update the contact cache before any write, because a failed write
        # closes a connection and its presence change must reach the new
        # contact too.
        for first, second in outcome.new_contacts:
            if first in self.contacts:
                self.contacts[first].add(second)
            if second in self.contacts:
                self.contacts[second].add(first)

        conn = self.conns.get(request.conn_id)
        live = conn is not None and not conn.closed and conn.closing_reason is None
        if conn is not None and live:
            self._apply_to_requester(conn, request, outcome)

        self._deliver(outcome)
        if outcome.revocation is not None:
            self._revoke(outcome.revocation)
        self._unbind_devices(outcome.removed_devices)

        if conn is not None and live:
            self._take_frames(conn)
            self._update_events(conn)

    def _deliver(self, outcome: Outcome) -> None:
        for device_id, seq, data in outcome.queue_pushes:
            self._push_queue_item(device_id, seq, data)
        for device_id, data in outcome.device_frames:
            for target in list(self.by_device.get(device_id, ())):
                self._send(target, data)
        for user_id, data in outcome.user_frames:
            for target in list(self.online.get(user_id, ())):
                self._send(target, data)

    def _unbind_devices(self, device_ids: list[int]) -> None:
        """Keep connections of removed devices logged in, without a device."""
        for device_id in device_ids:
            for target in list(self.by_device.get(device_id, ())):
                session = target.session
                if session is None:
                    continue
                unbound = Session(
                    session.user_id, session.username, None, session.token_hash
                )
                self._set_session(target, unbound, frozenset())

    def _apply_to_requester(
        self, conn: Connection, request: Request, outcome: Outcome
    ) -> None:
        if outcome.session_changed:
            self._set_session(conn, outcome.session, outcome.contact_ids)
        for data in outcome.before:
            self._send(conn, data)
        if request.kind == "sync":
            conn.sync_seq = max(conn.sync_seq, outcome.highest_seq)
        if outcome.continuation is not None:
            conn.continuation = outcome.continuation
            self._continue(conn)
            return
        if outcome.reply is not None:
            try:
                data = encode_frame(outcome.reply, self.config.max_frame_size)
            except ProtocolError:
                logger.error(
                    "connection %d: %s reply exceeds the maximum frame size",
                    conn.id,
                    request.kind,
                )
                data = encode_frame(
                    make_error(
                        request.frame_id,
                        errors.INTERNAL_ERROR,
                        "The reply is too large to send.",
                    )
                )
            self._send(conn, data)
        for data in outcome.after:
            self._send(conn, data)
        conn.in_flight = max(0, conn.in_flight - 1)
        if request.kind == "sync":
            self._finish_sync(conn)

    def _continue(self, conn: Connection) -> None:
        """Run the next part of a long sync once the output has drained."""
        if (
            conn.continuation is not None
            and not conn.closed
            and not self._stopping
            and len(conn.outbuf) < self.config.output_soft_limit
        ):
            request, conn.continuation = conn.continuation, None
            self._submit_request(request)

    def _finish_sync(self, conn: Connection) -> None:
        conn.syncing = False
        deferred, conn.deferred = conn.deferred, []
        conn.deferred_bytes = 0
        for seq, data in deferred:
            if seq > conn.sync_seq:
                self._send(conn, data)

    def _push_queue_item(self, device_id: int, seq: int, data: bytes) -> None:
        for conn in list(self.by_device.get(device_id, ())):
            if not conn.synced:
                # The item stays queued, and the connection's first sync
                # pushes it after the older ones.
                continue
            if conn.syncing:
                # Defer live items until the sync has pushed the older ones,
                # so the device receives its queue in order.
                conn.deferred.append((seq, data))
                conn.deferred_bytes += len(data)
                if conn.deferred_bytes > self.config.output_hard_limit:
                    self._drop_slow(conn)
            else:
                self._send(conn, data)

    # Sessions and presence

    def _set_session(
        self, conn: Connection, session: Session | None, contact_ids: frozenset[int]
    ) -> None:
        old = conn.session
        old_device = old.device_id if old is not None else None
        new_device = session.device_id if session is not None else None
        if new_device != old_device:
            conn.synced = False
        if old is not None and old.device_id is not None:
            devices = self.by_device.get(old.device_id)
            if devices is not None:
                devices.discard(conn)
                if not devices:
                    del self.by_device[old.device_id]
        if old is not None and (session is None or session.user_id != old.user_id):
            self._leave(conn, old)
        conn.session = session
        if session is None:
            return
        if session.device_id is not None:
            self.by_device.setdefault(session.device_id, set()).add(conn)
        if old is None or old.user_id != session.user_id:
            self._join(conn, session, contact_ids)
        elif session.user_id in self.contacts:
            self.contacts[session.user_id] |= contact_ids

    def _join(
        self, conn: Connection, session: Session, contact_ids: frozenset[int]
    ) -> None:
        conns = self.online.setdefault(session.user_id, set())
        first = not conns
        conns.add(conn)
        self.contacts.setdefault(session.user_id, set()).update(contact_ids)
        if first:
            self.services.online.set_online(session.user_id, True)
            self._broadcast_presence(session, True)

    def _leave(self, conn: Connection, session: Session) -> None:
        conns = self.online.get(session.user_id)
        if conns is None:
            return
        conns.discard(conn)
        if conns:
            return
        del self.online[session.user_id]
        self.services.online.set_online(session.user_id, False)
        self._broadcast_presence(session, False)
        self.contacts.pop(session.user_id, None)

    def _broadcast_presence(self, session: Session, online: bool) -> None:
        if self._stopping:
            return
        data = encode_frame(
            make_push("presence", username=session.username, online=online)
        )
        for contact_id in self.contacts.get(session.user_id, ()):
            for target in list(self.online.get(contact_id, ())):
                self._send(target, data)

    def _revoke(self, revocation: Revocation) -> None:
        data = encode_frame(make_push("session_revoked", reason=revocation.reason))
        for conn in list(self.online.get(revocation.user_id, ())):
            session = conn.session
            if session is None or session.token_hash == revocation.keep_token_hash:
                continue
            self._end_session(conn, data, "session revoked")

    def _end_session(self, conn: Connection, push: bytes, reason: str) -> None:
        self._send(conn, push)
        self._set_session(conn, None, frozenset())
        self._close_after_flush(conn, reason)

    def _check_sessions(self) -> None:
        """Start a job that finds live sessions revoked or disabled elsewhere."""
        hashes = list(
            {
                conn.session.token_hash
                for conns in self.online.values()
                for conn in conns
                if conn.session is not None
            }
        )
        if not hashes:
            return
        expiry_ms = int(self.config.session_expiry_days * MS_PER_DAY)
        work = functools.partial(
            self.services.store.revoked_sessions, hashes, now_ms() - expiry_ms
        )
        self._check_running = True
        self._submit(work, self._apply_revoked, None)

    def _apply_revoked(self, revoked: dict[bytes, str] | None) -> None:
        self._check_running = False
        if not revoked:
            return
        for conns in list(self.online.values()):
            for conn in list(conns):
                session = conn.session
                if session is None or session.token_hash not in revoked:
                    continue
                reason = revoked[session.token_hash]
                logger.info(
                    "connection %d: ending session of %s: %s",
                    conn.id,
                    session.username,
                    reason,
                )
                push = encode_frame(make_push("session_revoked", reason=reason))
                self._end_session(conn, push, "session revoked")

    # Writing

    def _send(self, conn: Connection, data: bytes) -> None:
        """Queue an encoded frame for ``conn``; it is written at the end of the pass.

        Writing once per pass puts every frame a connection got in this pass
        (a reply, a batch's pushes) into one TLS write and one system call.
        """
        if conn.closed:
            return
        conn.outbuf += data
        if len(conn.outbuf) > self.config.output_hard_limit:
            self._drop_slow(conn)
            return
        self._unflushed[conn] = None

    def _flush_queued(self) -> None:
        """Write what :meth:`_send` queued in this pass, one write per connection."""
        while self._unflushed:
            # Writing can queue more frames, for instance a presence change
            # when a failed write closes a connection.
            conns = list(self._unflushed)
            self._unflushed.clear()
            for conn in conns:
                if not conn.closed:
                    self._guarded(conn, self._flush_open, conn)

    def _flush_open(self, conn: Connection) -> None:
        if conn.state == OPEN:
            self._flush(conn)

    def _drop_slow(self, conn: Connection) -> None:
        if self._limiter.allow("output hard limit"):
            logger.warning(
                "connection %d: dropped, more than %d bytes queued for a client "
                "that is not reading",
                conn.id,
                self.config.output_hard_limit,
            )
        self._close(conn, "output buffer over the hard limit")

    def _flush(self, conn: Connection) -> None:
        while conn.outbuf and not conn.closed:
            size = conn.write_attempt or min(len(conn.outbuf), WRITE_CHUNK)
            try:
                sent = conn.sock.send(conn.outbuf[:size])
            except ssl.SSLWantWriteError:
                conn.write_attempt = size
                conn.write_wants_read = False
                break
            except ssl.SSLWantReadError:
                conn.write_attempt = size
                conn.write_wants_read = True
                break
            except (ssl.SSLError, OSError) as exc:
                self._close(conn, f"write failed: {_describe(exc)}")
                return
            conn.write_attempt = 0
            conn.write_wants_read = False
            del conn.outbuf[:sent]
        if conn.closed:
            return
        if not conn.outbuf:
            # A fresh bytearray gives back the memory of a large buffer.
            conn.outbuf = bytearray()
            if conn.closing_reason is not None:
                self._close(conn, conn.closing_reason)
                return
        self._continue(conn)

    def _update_events(self, conn: Connection) -> None:
        """Register ``conn`` for exactly the events it is waiting for."""
        if conn.closed:
            return
        wanted = 0
        if conn.state == HANDSHAKE:
            wanted = conn.handshake_events
        else:
            allowed = self._reading_allowed(conn)
            if allowed and conn.paused:
                self._ready.add(conn)
            conn.paused = not allowed
            if allowed or conn.write_wants_read:
                wanted |= selectors.EVENT_READ
            if (conn.outbuf and not conn.write_wants_read) or conn.read_wants_write:
                wanted |= selectors.EVENT_WRITE
        if wanted == conn.events:
            return
        if conn.events == 0:
            self.selector.register(conn.sock, wanted, conn)
        elif wanted == 0:
            self.selector.unregister(conn.sock)
        else:
            self.selector.modify(conn.sock, wanted, conn)
        conn.events = wanted

    # Closing and timers

    def _close_after_flush(self, conn: Connection, reason: str) -> None:
        if conn.closed or conn.closing_reason is not None:
            return
        conn.closing_reason = reason
        conn.close_deadline = time.monotonic() + CLOSE_FLUSH_SECONDS
        conn.pending.clear()
        conn.continuation = None
        if not conn.outbuf:
            self._close(conn, reason)
        else:
            self._update_events(conn)

    def _close(self, conn: Connection, reason: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.events:
            try:
                self.selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.events = 0
        try:
            conn.sock.close()
        except OSError:
            pass
        self.conns.pop(conn.id, None)
        self.per_address[conn.address] -= 1
        if self.per_address[conn.address] <= 0:
            del self.per_address[conn.address]
        self._ready.discard(conn)
        if conn.session is not None:
            self._set_session(conn, None, frozenset())
        conn.outbuf = bytearray()
        conn.pending.clear()
        conn.deferred = []
        conn.decoder = None
        logger.info("connection %d closed: %s", conn.id, reason)

    def _tick(self, now: float) -> None:
        self._next_tick = now + TICK_SECONDS
        idle_timeout = self.config.idle_timeout
        for conn in list(self.conns.values()):
            if conn.state == HANDSHAKE:
                if now >= conn.handshake_deadline:
                    self._close(conn, "TLS handshake timed out")
            elif conn.closing_reason is not None:
                if now >= conn.close_deadline:
                    self._close(conn, f"{conn.closing_reason} (output not flushed)")
            elif (
                now - conn.last_frame > idle_timeout
                and not conn.in_flight
                and not conn.pending
            ):
                self._close(conn, f"no frame for {idle_timeout:g} s")
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            if not self._stopping:
                self.selector.register(self.listener, selectors.EVENT_READ, _LISTENER)
        if now >= self._next_check and not self._check_running and not self._stopping:
            self._next_check = now + self.config.revocation_check_interval
            self._check_sessions()
        self._limiter.report()
