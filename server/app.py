"""The server as an object: prepare, run in a thread or in the foreground, stop.

Tests and benchmarks start a server in-process::

    server = Server(ServerConfig(host="127.0.0.1", port=0, data_dir=tmp))
    port = server.start()          # binds, runs the loop in a thread
    ... connect to 127.0.0.1:port, pin server.fingerprint ...
    server.stop()

``python run_server.py`` does the same in the foreground through
:meth:`Server.serve_forever`.
"""

from __future__ import annotations

import logging
import secrets
import socket
import ssl
import threading
from pathlib import Path
from types import TracebackType

import bcrypt

from enctalk.protocol import b64
from enctalk.protocol.announcement import MAX_SERVER_NAME_LENGTH, Announcement
from server.certs import certificate_fingerprint, ensure_certificate, make_tls_context
from server.config import ServerConfig
from server.discovery import Announcer, discovery_enabled
from server.handlers import OnlineUsers, Services
from server.loop import EventLoop
from server.store import Store

logger = logging.getLogger(__name__)

LISTEN_BACKLOG = 512


def _listen(host: str, port: int) -> socket.socket:
    """Bind a listening socket; ``""`` means every IPv4 and IPv6 address."""
    if host == "" and socket.has_dualstack_ipv6():
        return socket.create_server(
            ("", port),
            family=socket.AF_INET6,
            backlog=LISTEN_BACKLOG,
            dualstack_ipv6=True,
        )
    if host in ("", "0.0.0.0"):  # noqa: S104 - all interfaces on request
        return socket.create_server(
            ("0.0.0.0", port),  # noqa: S104 - the operator asked for all interfaces
            backlog=LISTEN_BACKLOG,
        )
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family = infos[0][0]
    return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)


class Server:
    """One EncTalk server on one data directory.

    :meth:`prepare` makes the data directory, certificate and database and
    binds the port; it blocks for one bcrypt hash. :meth:`start` runs the
    event loop in a background thread and returns the bound port;
    :meth:`serve_forever` runs it in the calling thread. :meth:`stop`
    blocks until in-flight requests have finished and everything is
    closed.
    """

    def __init__(self, config: ServerConfig) -> None:
        config.validate()
        self.config = config
        self.data_dir: Path = config.resolved_data_dir()
        self.cert_file: Path | None = None
        self.key_file: Path | None = None
        self.fingerprint = ""
        self.host = config.host
        self.port = 0
        self.store: Store | None = None
        self._loop: EventLoop | None = None
        self._thread: threading.Thread | None = None

    def prepare(self) -> None:
        """Create the data directory, certificate and database; bind the port."""
        if self._loop is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Bind first, so a port in use leaves no new certificate behind.
        listener = _listen(self.config.host, self.config.port)
        try:
            services, tls_context = self._prepare_services()
        except BaseException:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self._loop = EventLoop(services, tls_context, listener)
        logger.info(
            "server listening on %s:%d, data directory %s",
            self.display_host,
            self.port,
            self.data_dir,
        )

    def _prepare_services(self) -> tuple[Services, ssl.SSLContext]:
        """Load or create the certificate, open the database, build services."""
        if self.config.cert_file is not None and self.config.key_file is not None:
            self.cert_file, self.key_file = self.config.cert_file, self.config.key_file
        else:
            self.cert_file, self.key_file = ensure_certificate(
                self.data_dir, self.config.host
            )
        self.fingerprint = certificate_fingerprint(self.cert_file)
        tls_context = make_tls_context(self.cert_file, self.key_file)
        self.store = Store.open_in(self.data_dir)
        try:
            dummy_key = b64(secrets.token_bytes(32)).encode("ascii")
            cost = self.config.bcrypt_cost
            dummy_hash = bcrypt.hashpw(dummy_key, bcrypt.gensalt(cost))
        except BaseException:
            self.store.close()
            raise
        services = Services(self.config, self.store, OnlineUsers(), dummy_hash)
        return services, tls_context

    @property
    def display_host(self) -> str:
        """The listening host as printed: ``*`` for all interfaces."""
        wildcard = ("", "0.0.0.0")  # noqa: S104 - a comparison, not a bind
        return self.host if self.host not in wildcard else "*"

    def start(self) -> int:
        """Prepare, run the event loop in a background thread; return the port."""
        self.prepare()
        assert self._loop is not None
        self._thread = threading.Thread(
            target=self._run, name="enctalk-loop", daemon=True
        )
        self._thread.start()
        return self.port

    def serve_forever(self) -> None:
        """Prepare and run the event loop in this thread until :meth:`request_stop`."""
        self.prepare()
        self._run()

    def _run(self) -> None:
        assert self._loop is not None
        announcer = self._start_announcer()
        try:
            self._loop.run()
        finally:
            if announcer is not None:
                announcer.stop()
            if self.store is not None:
                self.store.close()
            logger.info("server stopped")

    def _start_announcer(self) -> Announcer | None:
        """Start broadcasting this server on the LAN when ``discovery`` enables it."""
        config = self.config
        if not discovery_enabled(config.discovery, config.host):
            if config.discovery == "on":
                logger.warning(
                    "discovery is on but %s is not announced, because only all "
                    "interfaces or a non-loopback IPv4 address can be",
                    self.display_host,
                )
            return None
        host_name = socket.gethostname()[:MAX_SERVER_NAME_LENGTH] or "enctalk-server"
        name = config.server_name or host_name
        announcement = Announcement(name, self.port, self.fingerprint)
        announcer = Announcer(
            config.host, announcement, config.discovery_port, config.discovery_interval
        )
        announcer.start()
        return announcer

    def request_stop(self) -> None:
        """Ask the server to stop without waiting; safe in signal handlers."""
        if self._loop is not None:
            self._loop.request_stop()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the server started by :meth:`start` and wait for it."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("event loop did not stop within %.0f s", timeout)
            self._thread = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
