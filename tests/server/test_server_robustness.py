"""Bad input from the network: each case is followed by a check that the
server still serves another client. Real TLS on loopback throughout."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import time
from pathlib import Path

import pytest
from conftest import Clients, make_config
from server_wire import HOST, WireClient, auth_key, client_context, random_key

from enctalk.protocol import PROTOCOL_VERSION, make_request
from server.app import Server

MAX_FRAME = 1024 * 1024


def _assert_served(clients: Clients) -> None:
    other = clients.connect()
    assert other.call("ping")["type"] == "ok"
    other.close()


def _assert_no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert bad == []


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _ping(frame_id: int) -> bytes:
    return _frame(json.dumps({"type": "ping", "id": frame_id}).encode())


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_frame_split_into_single_bytes(clients: Clients) -> None:
    client = clients.connect()
    for byte in _ping(41):
        client.send_raw(bytes([byte]))
    assert client.read_frame()["id"] == 41
    _assert_served(clients)


def test_three_frames_in_one_write(clients: Clients) -> None:
    client = clients.connect()
    client.send_raw(_ping(1) + _ping(2) + _ping(3))
    assert [client.read_frame()["id"] for _ in range(3)] == [1, 2, 3]
    _assert_served(clients)


def test_one_and_a_half_frames_then_rest(clients: Clients) -> None:
    client = clients.connect()
    data = _ping(1) + _ping(2)
    cut = len(_ping(1)) + 5
    client.send_raw(data[:cut])
    assert client.read_frame()["id"] == 1
    time.sleep(0.1)
    client.send_raw(data[cut:])
    assert client.read_frame()["id"] == 2
    _assert_served(clients)


@pytest.mark.parametrize("length", [2**32 - 1, MAX_FRAME + 1])
def test_oversized_length_is_rejected_at_once(clients: Clients, length: int) -> None:
    client = clients.connect()
    rss_before = _rss_kib()
    started = time.monotonic()
    client.send_raw(struct.pack(">I", length))
    frames = client.expect_closed(timeout=3)
    elapsed = time.monotonic() - started
    assert frames[0]["code"] == "frame_too_large"
    assert elapsed < 1.0
    assert _rss_kib() - rss_before < 16 * 1024
    _assert_served(clients)


def test_frame_of_exactly_max_size_is_accepted(clients: Clients) -> None:
    client = clients.connect()
    body = json.dumps({"type": "ping", "id": 9}).encode()
    padded = body[:-1] + b" " * (MAX_FRAME - len(body)) + b"}"
    assert len(padded) == MAX_FRAME
    client.send_raw(_frame(padded))
    assert client.read_frame()["id"] == 9
    _assert_served(clients)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\xff\xfe{}", "invalid_frame"),
        (b"[1, 2]", "invalid_frame"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_frame"),
        (b'{"type": "login", "id": 4, "username": "alice"}', "invalid_frame"),
        (b'{"type": "sync", "id": 5, "after": "zero"}', "invalid_frame"),
        (b'{"type": "ping", "id": "six"}', "invalid_frame"),
        (b'{"id": 7}', "invalid_frame"),
        (b'{"type": "launch", "id": 8}', "unknown_type"),
        (b'{"type": "ping", "type": "ping"}', "invalid_frame"),
    ],
    ids=[
        "invalid-utf8",
        "not-an-object",
        "deep-nesting",
        "missing-field",
        "wrong-type",
        "wrong-id-type",
        "missing-type",
        "unknown-type",
        "duplicate-key",
    ],
)
def test_invalid_body_gets_error_then_close(
    clients: Clients, caplog: pytest.LogCaptureFixture, body: bytes, code: str
) -> None:
    client = clients.connect()
    client.send_raw(_frame(body))
    frames = client.expect_closed(timeout=3)
    assert frames[0]["type"] == "error"
    assert frames[0]["code"] == code
    _assert_served(clients)
    _assert_no_errors_logged(caplog)


def test_request_id_echoed_on_schema_error(clients: Clients) -> None:
    client = clients.connect()
    client.send_raw(_frame(b'{"type": "login", "id": 4, "username": "alice"}'))
    assert client.expect_closed()[0]["id"] == 4


def test_tcp_client_without_tls_closed_at_deadline(clients: Clients) -> None:
    raw = socket.create_connection((HOST, clients.port), timeout=5)
    started = time.monotonic()
    try:
        assert raw.recv(1) == b""
    except ConnectionResetError:
        pass
    elapsed = time.monotonic() - started
    raw.close()
    assert 0.7 < elapsed < 2.5
    _assert_served(clients)


def test_trickling_handshake_closed_at_deadline(clients: Clients) -> None:
    raw = socket.create_connection((HOST, clients.port), timeout=5)
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40
    started = time.monotonic()
    closed_after = None
    for byte in hello:
        try:
            raw.send(bytes([byte]))
        except OSError:
            closed_after = time.monotonic() - started
            break
        raw.settimeout(0.3)
        try:
            if raw.recv(1) == b"":
                closed_after = time.monotonic() - started
                break
        except TimeoutError:
            continue
        except OSError:
            closed_after = time.monotonic() - started
            break
    raw.close()
    assert closed_after is not None
    assert closed_after < 2.5
    _assert_served(clients)


def test_garbage_instead_of_tls_is_closed(clients: Clients) -> None:
    raw = socket.create_connection((HOST, clients.port), timeout=5)
    raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        data = raw.recv(100)
    except ConnectionResetError:
        data = b""
    raw.close()
    assert b"HTTP" not in data
    _assert_served(clients)


def _drop_mid_frame(client: WireClient) -> None:
    client.send_raw(_ping(1)[:5])
    time.sleep(0.05)
    # Close the TCP socket under the TLS layer: no close_notify.
    raw = socket.socket(fileno=client.sock.detach())
    raw.close()


def _reset(client: WireClient) -> None:
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.sock.close()


def _clean_close(client: WireClient) -> None:
    # Send close_notify; unread pushes may make OpenSSL report an error
    # while it waits for the server's close_notify, which is fine here.
    client.sock.settimeout(2)
    try:
        client.sock.unwrap()
    except (ssl.SSLError, OSError):
        pass
    client.sock.close()


@pytest.mark.parametrize(
    "how", [_drop_mid_frame, _reset, _clean_close], ids=["drop", "reset", "clean"]
)
def test_disconnect_is_quiet_and_updates_presence(
    clients: Clients, caplog: pytest.LogCaptureFixture, how: object
) -> None:
    alice = clients.with_device("alice")
    bob = clients.with_device("bob")
    alice.call("add_contact", username="bob")
    how(bob)  # type: ignore[operator]
    assert alice.wait_push("presence")["online"] is False

    cpu_before = time.process_time()
    time.sleep(2.0)
    cpu_used = time.process_time() - cpu_before
    assert cpu_used < 0.3
    _assert_served(clients)
    _assert_no_errors_logged(caplog)


def test_idle_server_uses_no_cpu(clients: Clients) -> None:
    idle = [clients.connect() for _ in range(20)]
    cpu_before = time.process_time()
    time.sleep(2.0)
    assert time.process_time() - cpu_before < 0.3
    assert idle[0].call("ping")["type"] == "ok"


def test_idle_connection_is_closed(data_dir: Path) -> None:
    with Server(make_config(data_dir, idle_timeout=0.5)) as server:
        client = WireClient(server.port)
        started = time.monotonic()
        client.expect_closed(timeout=5)
        assert time.monotonic() - started < 2.0
        client.close()


def test_request_rate_limit(data_dir: Path) -> None:
    config = make_config(data_dir, request_rate=5.0, request_burst=5)
    with Server(config) as server:
        client = WireClient(server.port)
        client.send_raw(b"".join(_ping(index) for index in range(1, 11)))
        replies = [client.read_frame() for _ in range(10)]
        assert [r["id"] for r in replies] == list(range(1, 11))
        limited = [r for r in replies if r["type"] == "error"]
        assert limited
        assert all(r["code"] == "rate_limited" for r in limited)
        assert all(r["retry_after"] >= 1 for r in limited)

        client.send_raw(b"".join(_ping(index) for index in range(11, 60)))
        frames = client.expect_closed(timeout=5)
        assert frames[-1]["code"] == "rate_limited"
        client.close()
        other = WireClient(server.port)
        assert other.call("ping")["type"] == "ok"
        other.close()


def test_connections_per_address_limit(data_dir: Path) -> None:
    config = make_config(data_dir, max_connections_per_address=3)
    with Server(config) as server:
        open_clients = [WireClient(server.port) for _ in range(3)]
        raw = socket.create_connection((HOST, server.port), timeout=5)
        with pytest.raises((ssl.SSLError, OSError)):
            tls = client_context().wrap_socket(raw, server_hostname="localhost")
            tls.recv(1)
        raw.close()
        open_clients[0].close()
        time.sleep(0.2)
        replacement = WireClient(server.port)
        assert replacement.call("ping")["type"] == "ok"
        for client in [*open_clients, replacement]:
            client.close()


def test_pipelined_requests_are_answered_in_order(clients: Clients) -> None:
    alice = clients.register("alice")
    frames = [
        {"type": "list_contacts", "id": 1},
        {"type": "ping", "id": 2},
        {"type": "fetch_backup", "id": 3},
        {"type": "ping", "id": 4},
        {"type": "list_devices", "id": 5},
    ]
    alice.send_raw(b"".join(_frame(json.dumps(f).encode()) for f in frames))
    assert [alice.read_frame()["id"] for _ in frames] == [1, 2, 3, 4, 5]


def test_handler_exception_becomes_internal_error(
    clients: Clients, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server import handlers

    def broken(services: object, request: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setitem(handlers.HANDLERS, "list_contacts", broken)
    alice = clients.register("alice")
    reply = alice.request("list_contacts")
    assert reply["code"] == "internal_error"
    assert "simulated" not in reply["message"]
    assert alice.call("ping")["type"] == "ok"
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1


def test_stop_finishes_request_in_flight(data_dir: Path) -> None:
    # bcrypt at cost 12 takes long enough for the stop to arrive mid-request.
    server = Server(make_config(data_dir, bcrypt_cost=12))
    server.start()
    client = WireClient(server.port)
    client.send_frame(
        make_request(
            "register",
            1,
            username="alice",
            auth_key=auth_key("alice"),
            identity_key=random_key(),
            backup=b"b",
        )
    )
    time.sleep(0.05)
    server.stop()
    frames = client.expect_closed(timeout=5)
    assert [f["type"] for f in frames] == ["ok"], frames
    assert frames[0]["username"] == "alice"
    client.close()


def test_hundred_pipelined_requests_all_answered(data_dir: Path) -> None:
    # More requests than the server queues per connection, in one write,
    # so most of them wait in the frame decoder with no more bytes to come.
    with Server(make_config(data_dir, request_burst=1000)) as server:
        client = WireClient(server.port)
        client.send_raw(b"".join(_ping(index) for index in range(1, 101)))
        replies = [client.read_frame() for _ in range(100)]
        assert [reply["id"] for reply in replies] == list(range(1, 101))
        assert {reply["type"] for reply in replies} == {"ok"}
        client.close()


@pytest.mark.parametrize("limit", ["max_connections", "max_connections_per_address"])
def test_rejected_connection_flood_log_is_bounded(
    data_dir: Path, caplog: pytest.LogCaptureFixture, limit: str
) -> None:
    config = make_config(data_dir, **{limit: 3})
    with Server(config) as server:
        open_clients = [WireClient(server.port) for _ in range(3)]
        caplog.clear()
        with caplog.at_level(logging.INFO):
            for _ in range(300):
                raw = socket.create_connection((HOST, server.port), timeout=5)
                raw.close()
            time.sleep(0.5)
            assert open_clients[0].call("ping")["type"] == "ok"
        rejected = [r for r in caplog.records if "rejected connection" in r.message]
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(rejected) <= 20
        assert len(warnings) <= 20
        assert len(caplog.records) <= 40
        for client in open_clients:
            client.close()


@pytest.mark.parametrize("count", [33, 40, 100])
def test_hello_and_pipelined_pings_in_one_write(data_dir: Path, count: int) -> None:
    hello = {"type": "hello", "id": 0, "version": PROTOCOL_VERSION, "client": "t"}
    data = _frame(json.dumps(hello).encode())
    data += b"".join(_ping(index) for index in range(1, count + 1))
    with Server(make_config(data_dir, request_burst=1000)) as server:
        client = WireClient(server.port, hello=False)
        client.send_raw(data)
        replies = [client.read_frame(timeout=3) for _ in range(count + 1)]
        assert [reply["id"] for reply in replies] == list(range(count + 1))
        assert {reply["type"] for reply in replies} == {"ok"}
        client.close()


def test_pipelined_requests_resume_after_backpressure(data_dir: Path) -> None:
    # The replies, 2000 of about 5.5 KB, overflow the socket buffers of a
    # client that does not read, so the server stops reading above the soft
    # limit while the rest of the requests wait in the socket and OpenSSL.
    count = 2000
    config = make_config(
        data_dir, request_burst=5000, output_soft_limit=64 * 1024, idle_timeout=30.0
    )
    with Server(config) as server:
        client = WireClient(server.port, rcvbuf=4096)
        client.call(
            "register",
            username="alice",
            auth_key=auth_key("alice"),
            identity_key=random_key(),
            backup=b"b" * 4096,
        )
        frames = [
            _frame(json.dumps({"type": "fetch_backup", "id": index}).encode())
            for index in range(100, 100 + count)
        ]
        client.send_raw(b"".join(frames))
        time.sleep(1.0)
        replies = [client.read_frame(timeout=3) for _ in range(count)]
        assert [reply["id"] for reply in replies] == list(range(100, 100 + count))
        assert {reply["type"] for reply in replies} == {"ok"}
        client.close()
