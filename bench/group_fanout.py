"""Group fan-out throughput and delivery latency under a paced load.

One sender device posts ``group_send`` frames to a group at a fixed
rate, and every member device reads its ``message`` push on its own TLS
connection and acknowledges it. Payload and envelopes are random bytes
of the sizes that real sealing and real Double Ratchet envelopes have,
as ``bench.group_crypto`` measures them. The server therefore stores,
encodes and relays what it would for real clients, and the generator
does not pay for the cryptography.

Delivery latency is the time from writing the ``group_send`` frame to
reading the push on a member's connection, per member device. Both
stamps come from ``time.perf_counter`` in this one process. Completion
latency is the same up to the last member device of a message. Every
step is bounded in messages and seconds, and then waits at most
``drain`` seconds for stragglers.

All connections are served by one thread, so a push is read after the
pushes of the member devices ahead of it in the same ``select`` pass,
and that serial reading is part of every latency measured here.
"""

from __future__ import annotations

import base64
import os
import selectors
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.wire import READ_SIZE, BlockingPeer, now, register_with_device
from enctalk.crypto.grouplog import ADD, CREATE, GroupState, sign_op
from enctalk.crypto.keys import AccountIdentity, sign_device_key, sign_prekey
from enctalk.protocol import FrameDecoder, encode_frame, make_request


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


@dataclass
class Member:
    """A registered account with one device, not connected."""

    username: str
    device_id: int
    token: str


@dataclass
class Owner:
    """The sending account; its AIK signs the group operations."""

    username: str
    device_id: int
    aik: AccountIdentity
    peer: BlockingPeer


@dataclass
class Group:
    group_id: str
    epoch: int
    members: list[Member]


@dataclass
class Connection:
    """One logged-in device connection driven by the load generator."""

    username: str
    peer: BlockingPeer
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    out: bytearray = field(default_factory=bytearray)
    next_id: int = 1_000_000
    last_seq: int = 0
    acked_seq: int = 0


def register_members(port: int, context: ssl.SSLContext, count: int) -> list[Member]:
    """Register ``count`` accounts with one device each, then disconnect them."""
    tag = uuid.uuid4().hex[:6]
    members = []
    for index in range(count):
        peer = BlockingPeer(port, context)
        username = f"m{tag}{index:04d}"
        token, device_id = register_with_device(peer, username)
        peer.close()
        members.append(Member(username, device_id, token))
    return members


def register_owner(port: int, context: ssl.SSLContext) -> Owner:
    """Register the sending account and keep its connection and AIK."""
    peer = BlockingPeer(port, context)
    username = "owner" + uuid.uuid4().hex[:6]
    aik = AccountIdentity.generate()
    peer.request(
        "register",
        username=username,
        auth_key=os.urandom(32),
        identity_key=aik.public_bytes(),
        backup=os.urandom(120),
    )
    device_key, prekey = os.urandom(32), os.urandom(32)
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
    return Owner(username, int(device["device_id"]), aik, peer)


def create_group(owner: Owner, name: str, members: list[Member]) -> Group:
    """Create a group by signed operations and add ``members`` one by one."""
    group_id = uuid.uuid4().hex
    state = GroupState.empty(group_id)
    steps = [(CREATE, "", name)] + [(ADD, member.username, "") for member in members]
    for action, target, value in steps:
        unsigned = state.next_op(
            owner.username, action, target, value, time=time.time_ns() // 1_000_000
        )
        op = sign_op(owner.aik, unsigned)
        owner.peer.request("group_op", op=op.to_wire())
        state = state.apply(op)
    return Group(group_id, state.epoch, members)


def connect_members(
    port: int, context: ssl.SSLContext, members: list[Member]
) -> list[Connection]:
    """Resume each member's session, fetch and acknowledge its queue."""
    connections = []
    for member in members:
        peer = BlockingPeer(port, context)
        token = base64.urlsafe_b64decode(member.token)
        peer.request("resume", token=token, device_id=member.device_id)
        last = int(peer.request("sync", after=0)["last"])
        if last:
            peer.request("ack", upto=last)
        peer.pushes.clear()
        peer.sock.setblocking(False)
        connections.append(Connection(member.username, peer, last_seq=last))
        connections[-1].acked_seq = last
    return connections


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile, or NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class FanoutStep:
    """The measurements of one paced step of group messages."""

    devices: int
    offered_rate: float
    sent: int
    completed: int
    delivered: int
    send_seconds: float
    elapsed: float
    delivery_ms: list[float]
    completion_ms: list[float]
    reply_ms: list[float]
    acks: int
    server_cpu: float
    generator_cpu: float

    @property
    def lost(self) -> int:
        return self.sent * self.devices - self.delivered

    def row(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "offered_per_s": round(self.offered_rate),
            "sent_per_s": round(self.sent / self.send_seconds, 1),
            "completed_per_s": round(self.completed / self.elapsed, 1),
            "deliveries_per_s": round(self.delivered / self.elapsed),
            "lost": self.lost,
            "p50_ms": round(percentile(self.delivery_ms, 0.50), 2),
            "p99_ms": round(percentile(self.delivery_ms, 0.99), 2),
            "max_ms": round(max(self.delivery_ms, default=float("nan")), 2),
            "last_p99_ms": round(percentile(self.completion_ms, 0.99), 2),
            "reply_p99_ms": round(percentile(self.reply_ms, 0.99), 2),
            "acks_per_delivery": round(self.acks / self.delivered, 2)
            if self.delivered
            else float("nan"),
            "server_cpu_pct": round(self.server_cpu * 100),
            "generator_cpu_pct": round(self.generator_cpu * 100),
        }


def process_cpu_seconds(pid: int) -> float:
    """Return user plus system CPU seconds of process ``pid`` (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: field 14 (utime) and 15 (stime) of proc(5).
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class FanoutGenerator:
    """Drive one sender and many member connections from one thread."""

    def __init__(
        self,
        owner: Owner,
        members: list[Connection],
        payload_size: int,
        envelope_size: int,
        server_pid: int | None,
    ) -> None:
        owner.peer.sock.setblocking(False)
        self.sender = Connection(owner.username, owner.peer)
        self.members = members
        self.payload_size = payload_size
        # One body for every envelope: the server never reads it.
        self.envelope_body = _b64(os.urandom(envelope_size))
        self.server_pid = server_pid
        self.selector = selectors.DefaultSelector()
        for connection in [self.sender, *members]:
            self.selector.register(
                connection.peer.sock, selectors.EVENT_READ, connection
            )
        self.sent_at: dict[str, float] = {}
        self.remaining: dict[str, int] = {}
        self.request_sent_at: dict[int, float] = {}
        self.delivery_ms: list[float] = []
        self.completion_ms: list[float] = []
        self.reply_ms: list[float] = []
        self.acks = 0
        self.last_delivery = 0.0

    def run_step(
        self,
        group: Group,
        rate: float,
        duration: float,
        max_messages: int,
        drain: float,
    ) -> FanoutStep:
        """Send to ``group`` at ``rate`` per second for ``duration`` s at most."""
        envelopes = [
            {
                "username": member.username,
                "device_id": member.device_id,
                "body": self.envelope_body,
            }
            for member in group.members
        ]
        self.sent_at.clear()
        self.remaining.clear()
        self.request_sent_at.clear()
        self.delivery_ms, self.completion_ms, self.reply_ms = [], [], []
        self.acks = 0
        self.last_delivery = 0.0
        server_cpu = self._server_cpu()
        generator_cpu = time.process_time()

        interval = 1.0 / rate
        start = now()
        end = start + duration
        sent = 0
        next_due = start
        while sent < max_messages:
            current = now()
            if current >= end:
                break
            while next_due <= current and sent < max_messages:
                self._send(group, envelopes)
                sent += 1
                next_due = start + sent * interval
            self._poll(max(0.0, min(next_due, end) - now()))
        send_end = now()
        expected = sent * len(group.members)
        deadline = send_end + drain
        while (
            len(self.delivery_ms) < expected or len(self.reply_ms) < sent
        ) and now() < deadline:
            self._poll(0.05)
        # With nothing lost, the step ends at the last delivery; otherwise
        # the time spent waiting for the lost ones counts too.
        finish = now() if self.remaining else self.last_delivery
        elapsed = max(finish, send_end) - start
        wall = now() - start
        return FanoutStep(
            devices=len(group.members),
            offered_rate=rate,
            sent=sent,
            completed=sent - len(self.remaining),
            delivered=len(self.delivery_ms),
            # The last message is due one interval before its slot ends.
            send_seconds=max(send_end - start, sent * interval),
            elapsed=elapsed,
            delivery_ms=self.delivery_ms,
            completion_ms=self.completion_ms,
            reply_ms=self.reply_ms,
            acks=self.acks,
            server_cpu=(self._server_cpu() - server_cpu) / wall,
            generator_cpu=(time.process_time() - generator_cpu) / wall,
        )

    def _server_cpu(self) -> float:
        if self.server_pid is None:
            return 0.0
        return process_cpu_seconds(self.server_pid)

    def _send(self, group: Group, envelopes: list[dict[str, Any]]) -> None:
        sender = self.sender
        message_id = str(uuid.uuid4())
        sender.next_id += 1
        frame = make_request(
            "group_send",
            sender.next_id,
            message_id=message_id,
            group_id=group.group_id,
            epoch=group.epoch,
            payload=_b64(os.urandom(self.payload_size)),
            envelopes=envelopes,
        )
        data = encode_frame(frame)
        stamp = now()
        self.sent_at[message_id] = stamp
        self.remaining[message_id] = len(envelopes)
        self.request_sent_at[sender.next_id] = stamp
        sender.out += data
        self._flush(sender)

    def _flush(self, connection: Connection) -> None:
        sock = connection.peer.sock
        while connection.out:
            try:
                written = sock.send(connection.out)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                break
            del connection.out[:written]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if connection.out else 0)
        self.selector.modify(sock, events, connection)

    def _poll(self, timeout: float) -> None:
        for key, mask in self.selector.select(timeout):
            connection: Connection = key.data
            if mask & selectors.EVENT_WRITE:
                self._flush(connection)
            if mask & selectors.EVENT_READ:
                self._read(connection)

    def _read(self, connection: Connection) -> None:
        sock = connection.peer.sock
        try:
            while True:
                data = sock.recv(READ_SIZE)
                if not data:
                    raise ConnectionError(f"server closed {connection.username}")
                connection.decoder.receive_data(data)
                if not sock.pending():
                    break
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        arrived = now()
        while (frame := connection.decoder.next_frame()) is not None:
            self._handle(connection, frame, arrived)
        if connection.last_seq > connection.acked_seq:
            self._ack(connection)

    def _handle(
        self, connection: Connection, frame: dict[str, Any], arrived: float
    ) -> None:
        kind = frame.get("type")
        if kind == "ok" and connection is self.sender:
            started = self.request_sent_at.pop(frame.get("id", -1), None)
            if started is not None:
                self.reply_ms.append((arrived - started) * 1000)
        elif kind == "error":
            raise RuntimeError(
                f"{connection.username}: server error {frame.get('code')}: "
                f"{frame.get('message')}"
            )
        elif kind == "message":
            connection.last_seq = max(connection.last_seq, int(frame["seq"]))
            message_id = frame["message_id"]
            started = self.sent_at.get(message_id)
            if started is None:
                return
            self.delivery_ms.append((arrived - started) * 1000)
            self.last_delivery = arrived
            left = self.remaining[message_id] - 1
            if left:
                self.remaining[message_id] = left
            else:
                del self.remaining[message_id]
                self.completion_ms.append((arrived - started) * 1000)

    def _ack(self, connection: Connection) -> None:
        """Acknowledge everything read so far, as one cumulative ``ack``."""
        connection.next_id += 1
        connection.out += encode_frame(
            make_request("ack", connection.next_id, upto=connection.last_seq)
        )
        connection.acked_seq = connection.last_seq
        self.acks += 1
        self._flush(connection)

    def close(self) -> None:
        for connection in [self.sender, *self.members]:
            connection.peer.close()
        self.selector.close()
