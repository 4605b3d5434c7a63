"""A real server subprocess on loopback, and helpers to drive clients.

Every wait is bounded: the server must print ``listening on`` within
:data:`START_TIMEOUT` seconds, and each CLI run has a timeout.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from enctalk.client.events import Event

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
CLI_TIMEOUT = 60.0
PASSWORD_ALICE = "violet lantern meadow"
PASSWORD_BOB = "copper kettle horizon"

_LISTENING = re.compile(r"listening on (\S+):(\d+)")
_FINGERPRINT = re.compile(r"(SHA256:[0-9A-F:]{95})")


class ServerProcess:
    """``run_server.py`` in a subprocess, with its output in a log file."""

    def __init__(self, data_dir: Path, config: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.config = config
        self.log_path = log_path
        self.port = 0
        self.fingerprint = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "run_server.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--config",
                str(self.config),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[offset:].decode("utf-8", "replace")
            match = _LISTENING.search(text)
            if match:
                self.port = int(match.group(2))
                fingerprint = _FINGERPRINT.search(text)
                self.fingerprint = fingerprint.group(1) if fingerprint else ""
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{text}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start within {START_TIMEOUT} s")

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Return a factory of started servers, each with its own data directory."""
    config = tmp_path / "server.toml"
    config.write_text("bcrypt_cost = 4\n")
    servers: list[ServerProcess] = []

    def make(name: str = "server", port: int = 0) -> ServerProcess:
        server = ServerProcess(
            tmp_path / f"{name}-data", config, tmp_path / f"{name}.log"
        )
        server.port = port
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server()


class Cli:
    """Runs ``run_client.py`` with one profile directory."""

    def __init__(self, profile: Path, server: ServerProcess, password: str) -> None:
        self.profile = profile
        self.server = server
        self.password = password

    def run(
        self,
        *args: str,
        password: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        timeout: float = CLI_TIMEOUT,
        accept_new_server: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        environment = dict(os.environ)
        environment.pop("ENCTALK_PASSWORD", None)
        environment.pop("ENCTALK_NEW_PASSWORD", None)
        if stdin is None:
            environment["ENCTALK_PASSWORD"] = password or self.password
        environment.update(env or {})
        return subprocess.run(
            [
                sys.executable,
                str(ROOT / "run_client.py"),
                "--profile",
                str(self.profile),
                "--server",
                self.server.address,
                *(["--accept-new-server"] if accept_new_server else []),
                *args,
            ],
            cwd=ROOT,
            env=environment,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def wait_for_event(
    events: queue.Queue[Event],
    predicate: Callable[[Event], bool],
    timeout: float = 20.0,
    seen: list[Event] | None = None,
) -> Event:
    """Return the first event matching ``predicate``; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching event within {timeout} s")
        try:
            event = events.get(timeout=remaining)
        except queue.Empty:
            continue
        if seen is not None:
            seen.append(event)
        if predicate(event):
            return event
