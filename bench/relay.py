"""Relay throughput and delivery latency under a paced load.

N devices in N/2 pairs each send 100-byte ciphertext envelopes to their
partner. Messages leave on a fixed schedule (rate R in total, spread
round-robin over the senders), so a slow server shows up as latency
rather than as a slower send rate. Delivery latency is the time from
writing a ``send`` frame to reading the matching ``message`` push on the
partner's connection; acknowledgement latency is the time to the ``ok``
reply, which the server gives only after the SQLite commit.

Every step is bounded: ``duration`` seconds of sending, then at most
``drain`` seconds of waiting for stragglers.
"""

from __future__ import annotations

import os
import selectors
import ssl
import statistics
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench.wire import READ_SIZE, BlockingPeer, now, register_with_device
from enctalk.protocol import FrameDecoder, encode_frame, make_request

ENVELOPE_SIZE = 100
ACK_EVERY = 16


@dataclass
class Device:
    username: str
    device_id: int
    peer: BlockingPeer
    partner: Device | None = None
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    out: bytearray = field(default_factory=bytearray)
    next_id: int = 1_000_000
    last_seq: int = 0
    unacked: int = 0


@dataclass
class StepResult:
    offered_rate: float
    sent: int
    delivered: int
    elapsed: float
    delivery_ms: list[float]
    ack_ms: list[float]

    @property
    def delivered_rate(self) -> float:
        return self.delivered / self.elapsed if self.elapsed else 0.0

    def percentile(self, values: list[float], fraction: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        index = min(len(ordered) - 1, int(fraction * len(ordered)))
        return ordered[index]

    def row(self) -> dict[str, Any]:
        return {
            "offered_per_s": round(self.offered_rate),
            "delivered_per_s": round(self.delivered_rate),
            "lost": self.sent - self.delivered,
            "p50_ms": round(self.percentile(self.delivery_ms, 0.50), 2),
            "p99_ms": round(self.percentile(self.delivery_ms, 0.99), 2),
            "max_ms": round(max(self.delivery_ms, default=float("nan")), 2),
            "ack_p99_ms": round(self.percentile(self.ack_ms, 0.99), 2),
            "mean_ms": round(statistics.fmean(self.delivery_ms), 2)
            if self.delivery_ms
            else float("nan"),
        }


def connect_pairs(port: int, context: ssl.SSLContext, devices: int) -> list[Device]:
    """Register ``devices`` accounts in pairs that are each other's contacts."""
    tag = uuid.uuid4().hex[:6]
    result: list[Device] = []
    for index in range(devices):
        peer = BlockingPeer(port, context)
        username = f"b{tag}{index:04d}"
        _, device_id = register_with_device(peer, username)
        result.append(Device(username, device_id, peer))
    for index in range(0, devices - 1, 2):
        first, second = result[index], result[index + 1]
        first.peer.request("add_contact", username=second.username)
        first.partner, second.partner = second, first
    for device in result:
        device.peer.request("sync", after=0)
        device.peer.sock.setblocking(False)
    return [device for device in result if device.partner is not None]


class LoadGenerator:
    """Drive the paired devices from one thread with a selector."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices
        self.selector = selectors.DefaultSelector()
        for device in devices:
            self.selector.register(device.peer.sock, selectors.EVENT_READ, device)
        self.sent_at: dict[str, float] = {}
        # Keyed by (username, request id), because every device numbers its
        # requests from the same start.
        self.request_sent_at: dict[tuple[str, int], float] = {}
        self.delivery_ms: list[float] = []
        self.ack_ms: list[float] = []

    def run_step(self, rate: float, duration: float, drain: float) -> StepResult:
        self.sent_at.clear()
        self.request_sent_at.clear()
        self.delivery_ms = []
        self.ack_ms = []
        interval = 1.0 / rate
        start = now()
        end = start + duration
        sent = 0
        next_due = start
        while True:
            current = now()
            if current >= end:
                break
            while next_due <= current and next_due < end:
                self._send(self.devices[sent % len(self.devices)])
                sent += 1
                next_due = start + sent * interval
            self._poll(max(0.0, min(next_due, end) - now()))
        deadline = now() + drain
        while len(self.delivery_ms) < sent and now() < deadline:
            self._poll(0.05)
        elapsed = max(now(), end) - start
        return StepResult(
            rate, sent, len(self.delivery_ms), elapsed, self.delivery_ms, self.ack_ms
        )

    def _send(self, device: Device) -> None:
        assert device.partner is not None
        message_id = str(uuid.uuid4())
        device.next_id += 1
        frame = make_request(
            "send",
            device.next_id,
            message_id=message_id,
            to=device.partner.username,
            payload=os.urandom(ENVELOPE_SIZE),
            envelopes=[
                {
                    "username": device.partner.username,
                    "device_id": device.partner.device_id,
                    "body": os.urandom(ENVELOPE_SIZE),
                }
            ],
        )
        stamp = now()
        self.sent_at[message_id] = stamp
        self.request_sent_at[(device.username, device.next_id)] = stamp
        device.out += encode_frame(frame)
        self._flush(device)

    def _flush(self, device: Device) -> None:
        sock = device.peer.sock
        while device.out:
            try:
                written = sock.send(device.out)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                break
            del device.out[:written]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if device.out else 0)
        self.selector.modify(sock, events, device)

    def _poll(self, timeout: float) -> None:
        for key, mask in self.selector.select(timeout):
            device: Device = key.data
            if mask & selectors.EVENT_WRITE:
                self._flush(device)
            if mask & selectors.EVENT_READ:
                self._read(device)

    def _read(self, device: Device) -> None:
        sock = device.peer.sock
        try:
            while True:
                data = sock.recv(READ_SIZE)
                if not data:
                    raise ConnectionError(f"server closed {device.username}")
                device.decoder.receive_data(data)
                if not sock.pending():
                    break
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        arrived = now()
        while (frame := device.decoder.next_frame()) is not None:
            self._handle(device, frame, arrived)
        if device.unacked >= ACK_EVERY:
            self._ack(device)

    def _handle(self, device: Device, frame: dict[str, Any], arrived: float) -> None:
        kind = frame.get("type")
        if kind == "ok":
            key = (device.username, frame.get("id", -1))
            started = self.request_sent_at.pop(key, None)
            if started is not None:
                self.ack_ms.append((arrived - started) * 1000)
        elif kind == "error":
            raise RuntimeError(f"server error: {frame.get('code')}")
        elif kind in ("message", "receipt"):
            device.last_seq = max(device.last_seq, int(frame["seq"]))
            device.unacked += 1
            if kind == "message":
                started = self.sent_at.pop(frame["message_id"], None)
                if started is not None:
                    self.delivery_ms.append((arrived - started) * 1000)

    def _ack(self, device: Device) -> None:
        device.next_id += 1
        device.out += encode_frame(
            make_request("ack", device.next_id, upto=device.last_seq)
        )
        device.unacked = 0
        self._flush(device)

    def close(self) -> None:
        for device in self.devices:
            device.peer.close()
        self.selector.close()
