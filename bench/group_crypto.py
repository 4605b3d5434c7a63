"""The sender's cost of one group message, by group size.

:func:`measure_sender_cost` works at the crypto layer, with the calls
that ``enctalk.client.messaging`` makes for a group message: seal the
payload once (``seal_payload``), then for each member device build the
envelope's associated data and call ``encrypt_for_device``. The first
message runs X3DH to every device; later ones use the sessions it made.
Until a member device replies over its pairwise session, the sender's
envelopes to it stay PREKEY_MESSAGE envelopes, which carry the X3DH
header. Group messages get no receipts, so a member who never posts
keeps it that way. Each size is measured in both forms, and the sizes of
one ``group_send`` frame are built from the same real envelopes.

:func:`measure_client` times :meth:`Client.send_group_text` of a real
client against a running server, which adds the bundle fetch, the
request and the vault saves to the cryptography.

Every loop is bounded by :data:`MAX_ENVELOPES_PER_SIZE` envelopes and
:data:`MAX_SECONDS_PER_SIZE` seconds per group size.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enctalk.client.core import Client
from enctalk.crypto import session as e2e
from enctalk.crypto.keys import AccountIdentity, DeviceKeys
from enctalk.crypto.x3dh import PreKeyBundle
from enctalk.protocol import encode_frame, make_request

GROUP_SIZES = (1, 10, 30, 100, 300)
MAX_ENVELOPES_PER_SIZE = 6000
MAX_SECONDS_PER_SIZE = 10.0
MAX_ROUNDS = 200
MIN_ROUNDS = 3
KEY_MATERIAL_SIZE = 64
OWNER = "teacher"
OWNER_DEVICE = 1
TEXT = "Homework for Thursday: exercises 4 to 9 on page 112."
PASSWORD = "violet lantern meadow"
# Sends timed after the first one to a group of the real client.
CLIENT_SENDS = 5


@dataclass
class _Recipient:
    username: str
    device_id: int
    aik: AccountIdentity
    device: DeviceKeys
    bundle: PreKeyBundle


@dataclass
class SenderCost:
    """Milliseconds per group message and bytes of one frame, for one size."""

    devices: int
    first_ms: float
    steady_ms: float
    replied_ms: float
    rounds: int
    payload_size: int
    prekey_envelope_size: int
    ratchet_envelope_size: int
    prekey_frame_size: int
    ratchet_frame_size: int


def _recipients(count: int) -> list[_Recipient]:
    result = []
    for index in range(count):
        aik = AccountIdentity.generate()
        device = DeviceKeys.generate(aik, one_time_count=1)
        bundle = PreKeyBundle.from_device(device, aik.public_bytes(), 1)
        # Usernames as long as the fan-out benchmark's (11 characters).
        result.append(_Recipient(f"member{index:05d}", 2, aik, device, bundle))
    return result


def _plaintext(group_id: str, epoch: int, message_id: str) -> bytes:
    """Return the payload JSON that the client seals for a group text."""
    fields: dict[str, Any] = {
        "kind": "text",
        "body": TEXT,
        "sent_at": time.time_ns() // 1_000_000,
        "message_id": message_id,
        "group": group_id,
        "epoch": epoch,
    }
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()


class _Sender:
    """The sending device and its sessions with every member device."""

    def __init__(self, recipients: list[_Recipient]) -> None:
        self.aik = AccountIdentity.generate()
        self.device = DeviceKeys.generate(self.aik, one_time_count=1)
        self.recipients = recipients
        self.sessions: list[e2e.DeviceSession | None] = [None] * len(recipients)
        self.group_id = uuid.uuid4().hex
        self.conversation = "#" + self.group_id
        self.epoch = len(recipients) + 1

    def encrypt(self) -> tuple[str, bytes, list[bytes]]:
        """Seal one message and make every envelope, as the client does."""
        message_id = str(uuid.uuid4())
        payload_ad = e2e.payload_associated_data(
            OWNER, OWNER_DEVICE, self.conversation, message_id
        )
        plaintext = _plaintext(self.group_id, self.epoch, message_id)
        key_material, sealed = e2e.seal_payload(plaintext, payload_ad)
        bodies = []
        for index, recipient in enumerate(self.recipients):
            ad = e2e.message_associated_data(
                OWNER,
                OWNER_DEVICE,
                recipient.username,
                recipient.device_id,
                self.conversation,
                message_id,
            )
            body, session = e2e.encrypt_for_device(
                self.device,
                self.aik.public_bytes(),
                self.sessions[index],
                recipient.bundle if self.sessions[index] is None else None,
                key_material,
                ad,
            )
            self.sessions[index] = session
            bodies.append(body)
        return message_id, sealed, bodies

    def receive_replies(self, message_id: str, bodies: list[bytes]) -> None:
        """Let every member open ``bodies`` and reply once over its session.

        After this the sender's sessions have left the PREKEY_MESSAGE form.
        """
        for index, recipient in enumerate(self.recipients):
            ad = e2e.message_associated_data(
                OWNER,
                OWNER_DEVICE,
                recipient.username,
                recipient.device_id,
                self.conversation,
                message_id,
            )
            opened = e2e.decrypt_envelope(
                recipient.device,
                None,
                bodies[index],
                ad,
                own_aik_public=recipient.aik.public_bytes(),
            )
            reply_id = str(uuid.uuid4())
            reply_ad = e2e.message_associated_data(
                recipient.username,
                recipient.device_id,
                OWNER,
                OWNER_DEVICE,
                self.conversation,
                reply_id,
            )
            reply = e2e.encrypt_envelope(
                opened.session, bytes(KEY_MATERIAL_SIZE), reply_ad
            )
            own = self.sessions[index]
            assert own is not None
            self.sessions[index] = e2e.decrypt_envelope(
                self.device,
                own,
                reply,
                reply_ad,
                own_aik_public=self.aik.public_bytes(),
            ).session

    def frame_size(self, message_id: str, sealed: bytes, bodies: list[bytes]) -> int:
        """Return the bytes of the ``group_send`` frame of one message."""
        envelopes = [
            {
                "username": recipient.username,
                "device_id": recipient.device_id,
                "body": body,
            }
            for recipient, body in zip(self.recipients, bodies, strict=True)
        ]
        frame = make_request(
            "group_send",
            1_000_000,
            message_id=message_id,
            group_id=self.group_id,
            epoch=self.epoch,
            payload=sealed,
            envelopes=envelopes,
        )
        return len(encode_frame(frame))


def _time_rounds(sender: _Sender, rounds: int, deadline: float) -> tuple[float, int]:
    """Return milliseconds per message over up to ``rounds`` messages."""
    done = 0
    started = time.perf_counter()
    while done < rounds and (done < MIN_ROUNDS or time.perf_counter() < deadline):
        sender.encrypt()
        done += 1
    return (time.perf_counter() - started) * 1000 / done, done


def measure_size(devices: int) -> SenderCost:
    """Measure one group size; see the module docstring."""
    sender = _Sender(_recipients(devices))
    deadline = time.perf_counter() + MAX_SECONDS_PER_SIZE
    rounds = max(MIN_ROUNDS, min(MAX_ROUNDS, MAX_ENVELOPES_PER_SIZE // devices))

    started = time.perf_counter()
    first_id, first_sealed, first_bodies = sender.encrypt()
    first_ms = (time.perf_counter() - started) * 1000

    steady_ms, done = _time_rounds(sender, rounds, deadline)
    message_id, sealed, prekey_bodies = sender.encrypt()
    prekey_frame = sender.frame_size(message_id, sealed, prekey_bodies)

    sender.receive_replies(first_id, first_bodies)
    # The first message after a reply starts a new DH ratchet step, so the
    # rounds timed below use only the symmetric chain.
    sender.encrypt()
    replied_ms, _ = _time_rounds(
        sender, rounds, time.perf_counter() + MAX_SECONDS_PER_SIZE / 2
    )
    message_id, sealed, ratchet_bodies = sender.encrypt()
    return SenderCost(
        devices=devices,
        first_ms=first_ms,
        steady_ms=steady_ms,
        replied_ms=replied_ms,
        rounds=done,
        payload_size=len(first_sealed),
        prekey_envelope_size=len(prekey_bodies[0]),
        ratchet_envelope_size=len(ratchet_bodies[0]),
        prekey_frame_size=prekey_frame,
        ratchet_frame_size=sender.frame_size(message_id, sealed, ratchet_bodies),
    )


def measure_sender_cost(sizes: tuple[int, ...] = GROUP_SIZES) -> list[SenderCost]:
    return [measure_size(devices) for devices in sizes]


@dataclass
class ClientCost:
    """Wall-clock milliseconds of a real client's group sends to one group."""

    devices: int
    add_ms: float
    first_send_ms: float
    send_ms: float
    request_ms: float
    saves: float
    save_ms: float


class _CallTimer:
    """A wrapper around one method of an object that adds up its time."""

    def __init__(self, owner: Any, name: str) -> None:
        self.calls = 0
        self.seconds = 0.0
        method = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        # An instance attribute hides the class's method for this one client.
        setattr(owner, name, timed)

    def reset(self) -> None:
        self.calls = 0
        self.seconds = 0.0


def measure_client(
    port: int, directory: Path, groups: list[list[str]]
) -> list[ClientCost]:
    """Per member list, register a new client, make a group and send to it.

    Every member list must name accounts with one device each, so the
    first send runs X3DH to every member device.
    """
    results = []
    for index, members in enumerate(groups):
        client = Client(
            directory / f"client{index}",
            server=f"127.0.0.1:{port}",
            accept_new_server=True,
            timeout=60.0,
        )
        try:
            client.register(OWNER + uuid.uuid4().hex[:6], PASSWORD)
            results.append(_client_group(client, members))
        finally:
            client.close()
    return results


def _client_group(client: Client, members: list[str]) -> ClientCost:
    started = time.perf_counter()
    group_id = client.create_group(f"class of {len(members)}")
    for member in members:
        client.group_add(group_id, member)
    add_ms = (time.perf_counter() - started) * 1000 / len(members)

    started = time.perf_counter()
    _send(client, group_id)
    first_send_ms = (time.perf_counter() - started) * 1000

    requests = _CallTimer(client, "_request")
    saves = _CallTimer(client, "_save")
    send_times, request_times, save_counts = [], [], []
    for _ in range(CLIENT_SENDS):
        requests.reset()
        saves.reset()
        started = time.perf_counter()
        _send(client, group_id)
        send_times.append((time.perf_counter() - started) * 1000)
        request_times.append(requests.seconds * 1000)
        save_counts.append(saves.calls)

    save_times = []
    with client._lock:
        for _ in range(CLIENT_SENDS):
            started = time.perf_counter()
            client._save()
            save_times.append((time.perf_counter() - started) * 1000)
    return ClientCost(
        devices=len(members),
        add_ms=add_ms,
        first_send_ms=first_send_ms,
        send_ms=statistics.median(send_times),
        request_ms=statistics.median(request_times),
        saves=statistics.median(save_counts),
        save_ms=statistics.median(save_times),
    )


def _send(client: Client, group_id: str) -> None:
    result = client.send_group_text(group_id, TEXT, timeout=60.0)
    if result.state != "sent":
        raise RuntimeError(
            f"group message {result.message_id} was not sent "
            f"(state {result.state}): {result.error}"
        )


if __name__ == "__main__":
    for cost in measure_sender_cost():
        print(cost)
