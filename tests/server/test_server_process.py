"""The server as a subprocess: ``python run_server.py --port 0 ...``.

These tests read the printed port and fingerprint, measure the process's
CPU time and RSS from /proc, and stop it with SIGTERM or SIGINT.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from server_wire import (
    ConnectionClosed,
    WireClient,
    auth_key,
    device_fields,
    identity_key,
    new_message_id,
    random_key,
)

from enctalk.protocol import encode_frame, make_request
from server.store import DATABASE_FILE_NAME

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc and sends signals"
)

LISTENING = re.compile(r"^listening on (\S+):(\d+)$")
FINGERPRINT = re.compile(
    r"^certificate fingerprint: (SHA256:(?:[0-9A-F]{2}:){31}[0-9A-F]{2})$"
)


class ServerProcess:
    """A ``run_server.py`` subprocess with its stdout lines and log file."""

    def __init__(self, tmp_path: Path, config_text: str, *args: str) -> None:
        self.data_dir = tmp_path / "data"
        self.config_path = tmp_path / "server.toml"
        self.config_path.write_text(config_text)
        self.log_path = tmp_path / "server.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(REPO_ROOT / "run_server.py"),
                "--port",
                "0",
                "--host",
                "127.0.0.1",
                "--data-dir",
                str(self.data_dir),
                "--config",
                str(self.config_path),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=tmp_path,
        )
        self.lines: list[str] = []
        self.port = 0
        self.fingerprint = ""
        deadline = time.monotonic() + 20
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            line = line.rstrip("\n")
            self.lines.append(line)
            if match := FINGERPRINT.match(line):
                self.fingerprint = match.group(1)
            if match := LISTENING.match(line):
                self.port = int(match.group(2))
                return
        raise AssertionError(f"server did not start: {self.lines} {self.log_text()}")

    def log_text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def proc_status(self, field: str) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc status")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.log.closed:
            return self.process.wait(timeout)
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.log.close()


CONFIG = """
bcrypt_cost = 4
handshake_timeout = 1.0
idle_timeout = 20.0
revocation_check_interval = 0.5
request_rate = 1000.0
request_burst = 1000
"""


@pytest.fixture
def process(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path, CONFIG)
    yield server
    server.stop()


def test_process_prints_port_and_fingerprint(process: ServerProcess) -> None:
    assert process.port > 0
    assert any(line.startswith("data directory: ") for line in process.lines)
    client = WireClient(process.port)
    cert = client.sock.getpeercert(binary_form=True)
    assert cert is not None
    digest = hashlib.sha256(cert).hexdigest().upper()
    assert process.fingerprint.replace(":", "")[6:] == digest
    assert client.call("ping")["type"] == "ok"
    client.close()


def test_process_stops_cleanly_on_sigterm(process: ServerProcess) -> None:
    client = WireClient(process.port)
    client.call("ping")
    assert process.stop(signal.SIGTERM) == 0
    log = process.log_text()
    assert "Traceback" not in log
    assert "event loop stopped" in log
    client.close()


def test_process_stops_cleanly_on_sigint(process: ServerProcess) -> None:
    assert process.stop(signal.SIGINT) == 0
    assert "Traceback" not in process.log_text()


def test_process_rejects_unknown_config_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("max_frame_bytes = 5\n")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_server.py"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "unknown setting 'max_frame_bytes'" in result.stderr
    assert "Traceback" not in result.stderr


def test_process_help_lists_units(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_server.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert "--max-frame-size" in result.stdout
    assert "bytes" in result.stdout
    assert "seconds" in result.stdout


def test_admin_disable_while_server_runs(process: ServerProcess) -> None:
    client = WireClient(process.port)
    client.call(
        "register",
        username="alice",
        auth_key=auth_key("alice"),
        identity_key=random_key(),
        backup=b"b",
    )
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "run_server.py"),
            "admin",
            "--data-dir",
            str(process.data_dir),
            "disable",
            "alice",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    started = time.monotonic()
    revoked = client.wait_push("session_revoked", timeout=5)
    assert "disabled" in revoked["reason"]
    client.expect_closed(timeout=5)
    assert time.monotonic() - started < 5
    client.close()


def test_disconnects_leave_no_traceback_or_busy_loop(process: ServerProcess) -> None:
    clients = [WireClient(process.port) for _ in range(5)]
    clients[0].send_raw(b"\x00\x00\x00\x10{")
    clients[0].sock.detach()
    clients[1].sock.setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
    )
    clients[1].close()
    clients[2].close()
    time.sleep(0.5)
    cpu_before = process.cpu_seconds()
    time.sleep(2.0)
    assert process.cpu_seconds() - cpu_before < 0.2
    assert clients[3].call("ping")["type"] == "ok"
    assert "Traceback" not in process.log_text()
    for client in clients[3:]:
        client.close()


def test_slow_reader_is_dropped_and_memory_bounded(tmp_path: Path) -> None:
    config = CONFIG + "output_soft_limit = 262144\noutput_hard_limit = 1200000\n"
    process = ServerProcess(tmp_path, config)
    try:
        sender = WireClient(process.port)
        sender.call(
            "register",
            username="alice",
            auth_key=auth_key("alice"),
            identity_key=identity_key(),
            backup=b"b",
        )
        sender.call("register_device", **device_fields())
        reader = WireClient(process.port, rcvbuf=4096)
        reader.call(
            "register",
            username="bob",
            auth_key=auth_key("bob"),
            identity_key=identity_key(),
            backup=b"b",
        )
        device = reader.call("register_device", **device_fields())["device_id"]
        reader.call("sync", after=0)
        sender.call("add_contact", username="bob")
        rss_before = process.proc_status("VmRSS")

        payload = os.urandom(300_000)
        sent = 0
        deadline = time.monotonic() + 30
        dropped_after = 0
        while sent < 80 and time.monotonic() < deadline:
            reply = sender.request(
                "send",
                message_id=new_message_id(),
                to="bob",
                payload=payload,
                envelopes=[{"username": "bob", "device_id": device, "body": b"k"}],
            )
            assert reply["type"] == "ok"
            sent += 1
            if not dropped_after and "over the hard limit" in process.log_text():
                dropped_after = sent
        rss_after = process.proc_status("VmRSS")
        log = process.log_text()
        assert "output buffer over the hard limit" in log
        assert 0 < dropped_after < sent
        # 80 messages are 32 MB of base64 frames, and the server keeps none
        # of them in memory for the dropped reader.
        assert (rss_after - rss_before) * 1024 < 16_000_000
        assert sender.call("ping")["type"] == "ok"
        assert "Traceback" not in log
        sender.close()
        reader.close()
    finally:
        process.stop()


def _sender_and_reader(process: ServerProcess) -> tuple[WireClient, int]:
    sender = WireClient(process.port)
    sender.call(
        "register",
        username="alice",
        auth_key=auth_key("alice"),
        identity_key=identity_key(),
        backup=b"b",
    )
    sender.call("register_device", **device_fields())
    reader = WireClient(process.port)
    reader.call(
        "register",
        username="bob",
        auth_key=auth_key("bob"),
        identity_key=identity_key(),
        backup=b"b",
    )
    device = reader.call("register_device", **device_fields())["device_id"]
    sender.call("add_contact", username="bob")
    reader.close()
    return sender, device


def _send_frames(first_id: int, message_ids: list[str], device: int) -> bytes:
    envelopes = [{"username": "bob", "device_id": device, "body": b"k"}]
    return b"".join(
        encode_frame(
            make_request(
                "send",
                first_id + index,
                message_id=message_id,
                to="bob",
                payload=b"ciphertext",
                envelopes=envelopes,
            )
        )
        for index, message_id in enumerate(message_ids)
    )


def _pipeline(client: WireClient, device: int, count: int) -> tuple[int, int]:
    """Write ``count`` sends at once; return the first and the next free id."""
    first_id = client.next_id
    message_ids = [new_message_id() for _ in range(count)]
    client.send_raw(_send_frames(first_id, message_ids, device))
    client.next_id += count
    return first_id, client.next_id


def test_acknowledged_sends_survive_kill(tmp_path: Path) -> None:
    process = ServerProcess(tmp_path, CONFIG)
    sender, device = _sender_and_reader(process)
    acknowledged: list[str] = []
    lost_in_flight = 0
    try:
        for _ in range(5):
            first_id, end_id = _pipeline(sender, device, 100)
            for frame_id in range(first_id, end_id):
                reply = sender.reply_to(frame_id)
                assert reply["type"] == "ok", reply
                acknowledged.append(reply["message_id"])

        # Kill with a full pipeline of sends in flight, after the first of
        # them was acknowledged.
        first_id, end_id = _pipeline(sender, device, 1000)
        acknowledged.append(sender.reply_to(first_id)["message_id"])
        process.process.send_signal(signal.SIGKILL)
        process.process.wait(10)
        for frame_id in range(first_id + 1, end_id):
            try:
                reply = sender.reply_to(frame_id, timeout=2)
            except (ConnectionClosed, TimeoutError):
                lost_in_flight = end_id - frame_id
                break
            assert reply["type"] == "ok", reply
            acknowledged.append(reply["message_id"])
    finally:
        sender.close()
        process.stop()

    database = sqlite3.connect(process.data_dir / DATABASE_FILE_NAME)
    try:
        rows = database.execute(
            "SELECT m.message_id FROM messages m"
            " JOIN queue q ON q.server_seq = m.server_seq WHERE q.device_id = ?",
            (device,),
        ).fetchall()
    finally:
        database.close()
    stored = {row[0] for row in rows}
    assert lost_in_flight > 0
    assert len(acknowledged) > 500
    assert [m for m in acknowledged if m not in stored] == []

    restarted = ServerProcess(tmp_path, CONFIG)
    reader = WireClient(restarted.port)
    try:
        reader.call("login", username="bob", auth_key=auth_key("bob"), device_id=device)
        last = reader.call("sync", after=0)["last"]
        delivered = [p["message_id"] for p in reader.pushes if p["type"] == "message"]
    finally:
        reader.close()
        restarted.stop()
    assert [m for m in acknowledged if m not in delivered] == []
    assert last == len(delivered)


def test_admin_reports_damaged_database_without_traceback(tmp_path: Path) -> None:
    (tmp_path / DATABASE_FILE_NAME).write_bytes(b"not a database " * 400)
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "run_server.py"),
            "admin",
            "--data-dir",
            str(tmp_path),
            "list-users",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "cannot open the EncTalk database" in result.stderr
    assert "Traceback" not in result.stderr


def test_process_help_states_data_dir_default_once() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_server.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    options = result.stdout.split("options:", 1)[1]
    section = options.split("--data-dir DATA_DIR", 1)[1].split("--cert-file")[0]
    assert section.count("default") == 1


def test_port_in_use_fails_once_without_cert(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "run_server.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert result.stderr.count("cannot start the server") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not (data_dir / "server-cert.pem").exists()
    assert not (data_dir / "server-key.pem").exists()
