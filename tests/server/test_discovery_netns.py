"""LAN discovery between network namespaces that each test makes itself.

Every broadcast stays inside private namespaces: the veth pair is created
inside namespace A with its peer directly in namespace B, so it never
appears on this machine's own interfaces, and deleting the namespaces
removes it. The tests need root (``ip netns add``) and are skipped with
the reason when that is not permitted.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO_ROOT

DISCOVERY_PORT = 5444
SERVER_PORT = 5443
START_TIMEOUT = 30.0
SPOOFED_FINGERPRINT = "SHA256:" + ":".join(["AB"] * 32)

# Counts announcements on 0.0.0.0:5444 until a datagram b"stop" arrives.
RAW_LISTENER = """
import json, socket, sys
listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", int(sys.argv[1])))
listener.settimeout(30)
print("ready", flush=True)
count = 0
while True:
    data, source = listener.recvfrom(4096)
    if data == b"stop":
        break
    count += 1
print(count, flush=True)
"""

SEND_DATAGRAM = """
import socket, sys
sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
sender.bind((sys.argv[1], 0))
for _ in range(int(sys.argv[4])):
    sender.sendto(sys.argv[3].encode(), (sys.argv[2], 5444))
    __import__("time").sleep(0.2)
"""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def _must(*args: str) -> None:
    result = _ip(*args)
    assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr}"


@dataclass
class Lan:
    """Two namespaces joined by a veth pair on one private /24."""

    ns_a: str
    ns_b: str
    address_a: str
    address_b: str
    broadcast: str


def _add_namespace(name: str, created: list[str]) -> None:
    result = _ip("netns", "add", name)
    if result.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {result.stderr.strip()}")
    created.append(name)
    _must("-n", name, "link", "set", "lo", "up")


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    for name in created:
        _ip("netns", "del", name)


@pytest.fixture
def lan(namespaces: list[str]) -> Lan:
    tag = uuid.uuid4().hex[:6]
    ns_a, ns_b = f"enctalk-{tag}-a", f"enctalk-{tag}-b"
    _add_namespace(ns_a, namespaces)
    _add_namespace(ns_b, namespaces)
    veth_a, veth_b = f"et{tag}a", f"et{tag}b"
    _must(
        "-n", ns_a, "link", "add", veth_a, "type", "veth", "peer", veth_b, "netns", ns_b
    )
    subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
    lan = Lan(ns_a, ns_b, f"{subnet}.1", f"{subnet}.2", f"{subnet}.255")
    for ns, veth, address in (
        (ns_a, veth_a, lan.address_a),
        (ns_b, veth_b, lan.address_b),
    ):
        _must("-n", ns, "addr", "add", f"{address}/24", "dev", veth)
        _must("-n", ns, "link", "set", veth, "up")
    return lan


class NamespacedServer:
    """``run_server.py`` inside a namespace, with its fingerprint read from stdout."""

    def __init__(self, ns: str, data_dir: Path, *flags: str) -> None:
        self.process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                str(REPO_ROOT / "run_server.py"),
                "--port",
                str(SERVER_PORT),
                "--data-dir",
                str(data_dir),
                "--bcrypt-cost",
                "4",
                *flags,
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.fingerprint = ""
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("certificate fingerprint: "):
                self.fingerprint = line.split(": ", 1)[1].strip()
            if line.startswith("listening on "):
                return
        self.stop()
        pytest.fail(f"server did not start: {self.process.stderr}")

    def stop(self) -> str:
        """Stop the server; return its standard error."""
        self.process.terminate()
        try:
            _stdout, stderr = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _stdout, stderr = self.process.communicate()
        return stderr


def _in_ns(ns: str, *command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *command],
        cwd=REPO_ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _discover(ns: str, seconds: float) -> subprocess.CompletedProcess[str]:
    return _in_ns(
        ns,
        sys.executable,
        str(REPO_ROOT / "run_client.py"),
        "discover",
        "--seconds",
        str(seconds),
    )


def test_discover_lists_server_in_other_namespace(lan: Lan, tmp_path: Path) -> None:
    server = NamespacedServer(
        lan.ns_a,
        tmp_path / "data",
        "--host",
        lan.address_a,
        "--server-name",
        "lab-a",
        "--discovery-interval",
        "0.5",
    )
    try:
        started = time.monotonic()
        result = _discover(lan.ns_b, 3)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    name, address, fingerprint = lines[0].split("\t")
    assert name == "lab-a"
    assert address == f"{lan.address_a}:{SERVER_PORT}"
    assert fingerprint.startswith(server.fingerprint)
    assert elapsed < 10


def test_discover_lists_server_on_all_interfaces(lan: Lan, tmp_path: Path) -> None:
    server = NamespacedServer(
        lan.ns_a,
        tmp_path / "data",
        "--host",
        "0.0.0.0",  # noqa: S104 - all interfaces of namespace A only
        "--discovery-interval",
        "0.5",
    )
    try:
        result = _discover(lan.ns_b, 3)
    finally:
        stderr = server.stop()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    assert f"\t{lan.address_a}:{SERVER_PORT}\t" in lines[0]
    assert "announcing the server on UDP port 5444" in stderr


def test_discover_hears_nothing_with_discovery_off(lan: Lan, tmp_path: Path) -> None:
    server = NamespacedServer(
        lan.ns_a,
        tmp_path / "data",
        "--host",
        lan.address_a,
        "--discovery",
        "off",
        "--discovery-interval",
        "0.2",
    )
    try:
        result = _discover(lan.ns_b, 2)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "No EncTalk server heard" in result.stderr


def test_spoofed_fingerprint_still_meets_certificate_check(
    lan: Lan, tmp_path: Path
) -> None:
    server = NamespacedServer(
        lan.ns_a, tmp_path / "data", "--host", lan.address_a, "--discovery", "off"
    )
    spoofed = json.dumps(
        {
            "app": "enctalk",
            "version": 1,
            "name": "lab-a",
            "port": SERVER_PORT,
            "fingerprint": SPOOFED_FINGERPRINT,
        }
    )
    spoofer = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lan.ns_a,
            sys.executable,
            "-c",
            SEND_DATAGRAM,
            lan.address_a,
            lan.broadcast,
            spoofed,
            "20",
        ]
    )
    try:
        discovered = _discover(lan.ns_b, 2)
        spoofer.wait(timeout=30)
        address = discovered.stdout.split("\t")[1]
        client = [sys.executable, str(REPO_ROOT / "run_client.py")]
        profile = ["--profile", str(tmp_path / "profile"), "--server", address]
        prompted = _in_ns(
            lan.ns_b,
            *client,
            *profile,
            "--password-stdin",
            "login",
            "alice",
            stdin="correct horse battery staple\n",
        )
        pinned_spoof = _in_ns(
            lan.ns_b,
            *client,
            *profile,
            "--server-fingerprint",
            SPOOFED_FINGERPRINT,
            "--password-stdin",
            "login",
            "alice",
            stdin="correct horse battery staple\n",
        )
    finally:
        spoofer.kill()
        server.stop()
    assert SPOOFED_FINGERPRINT in discovered.stdout
    assert server.fingerprint != SPOOFED_FINGERPRINT
    assert prompted.returncode == 6, prompted.stderr
    assert server.fingerprint in prompted.stderr
    assert pinned_spoof.returncode == 6, pinned_spoof.stderr
    assert server.fingerprint in pinned_spoof.stderr


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_loopback_server_sends_no_announcement(
    namespaces: list[str], tmp_path: Path, mode: str
) -> None:
    ns = f"enctalk-{uuid.uuid4().hex[:6]}-lo"
    _add_namespace(ns, namespaces)
    listener = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", RAW_LISTENER, "5444"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listener.stdout is not None
    assert listener.stdout.readline().strip() == "ready"
    server = NamespacedServer(
        ns,
        tmp_path / "data",
        "--host",
        "127.0.0.1",
        "--discovery",
        mode,
        "--discovery-interval",
        "0.2",
    )

    time.sleep(2)
    stderr = server.stop()

    stop = _in_ns(
        ns, sys.executable, "-c", SEND_DATAGRAM, "127.0.0.1", "127.0.0.1", "stop", "1"
    )
    try:
        output, _ = listener.communicate(timeout=30)
    finally:
        listener.kill()

    assert stop.returncode == 0, stop.stderr
    assert output.strip() == "0"
    if mode == "on":
        assert "discovery is on but 127.0.0.1 is not announced" in stderr
    assert "announcing the server" not in stderr
