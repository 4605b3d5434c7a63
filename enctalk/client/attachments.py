"""Audio messages: encrypted attachment upload, download and their references.

Sending encrypts the WAV file once under a fresh key with
``seal_attachment``, uploads the ciphertext in CHUNK_SIZE requests, then
queues an end-to-end message of ``kind: "audio"`` whose payload contains
the *reference*: attachment id, key material, ciphertext size, duration
and the SHA-256 of the plaintext. The server sees only the ciphertext.

Each chunk is its own request made without the client's lock, so other
traffic (text messages, pushes, pings) goes on between chunks. When the
connection drops, the transfer waits for the client to reconnect and
resume its session, asks the server what it has (upload) or uses the
partial file's length (download), and continues from there. A download is
decrypted and checked against the reference's size and hash before it is
written, to a temporary name first, so only a complete, verified file
ever appears under its final name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enctalk.client import audio, groups
from enctalk.client import errors as codes
from enctalk.client.errors import ClientError
from enctalk.client.events import DELIVERY_UPDATED
from enctalk.client.history import SENDING, HistoryEntry
from enctalk.crypto import session as e2e
from enctalk.crypto.aead import MAC_SIZE
from enctalk.crypto.errors import CryptoError

if TYPE_CHECKING:
    from enctalk.client.core import Client
    from enctalk.client.messaging import SendResult

logger = logging.getLogger(__name__)

AUDIO_KIND = "audio"
CHUNK_SIZE = 256 * 1024
# A transfer gives up after this many reconnects in a row without progress.
MAX_TRANSFER_RETRIES = 5
ATTACHMENT_AD_LABEL = b"EncTalk_attachment_ad_v1"
AUDIO_DIR_NAME = "audio"
PARTIAL_SUFFIX = ".part"
ATTACHMENT_PROGRESS = "attachment_progress"
_RETRYABLE = frozenset({codes.CONNECTION_FAILED, codes.TIMEOUT, "busy"})
_REFERENCE_FIELDS = {
    "attachment_id": str,
    "key": str,
    "size": int,
    "duration": float,
    "sha256": str,
    "name": str,
}

Progress = Callable[[int, int], None]


def attachment_associated_data(attachment_id: str) -> bytes:
    """Return the AD that binds attachment ciphertext to its server id."""
    return ATTACHMENT_AD_LABEL + b"\x00" + attachment_id.encode("ascii")


def audio_dir(client: Client) -> Path:
    """Return the profile folder for audio files, creating it."""
    path = client.profile.directory / AUDIO_DIR_NAME
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def check_reference(value: Any) -> dict[str, Any]:
    """Return a validated copy of an audio payload's attachment reference.

    Raises ValueError when a field is missing or of the wrong type.
    """
    if not isinstance(value, dict):
        raise ValueError("audio attachment reference is not an object")
    reference: dict[str, Any] = {}
    for name, kind in _REFERENCE_FIELDS.items():
        item = value.get(name)
        if kind is float and isinstance(item, int) and not isinstance(item, bool):
            item = float(item)
        if not isinstance(item, kind) or isinstance(item, bool):
            raise ValueError(f"audio attachment field {name!r} is invalid")
        reference[name] = item
    if len(bytes.fromhex(reference["sha256"])) != hashlib.sha256().digest_size:
        raise ValueError("audio attachment hash has the wrong length")
    if reference["size"] <= MAC_SIZE:
        raise ValueError("audio attachment size is too small")
    return reference


def public_reference(reference: dict[str, Any]) -> dict[str, Any]:
    """Return the reference without its key, for events and printing."""
    return {name: value for name, value in reference.items() if name != "key"}


def _emit_progress(
    client: Client,
    message_id: str,
    direction: str,
    done: int,
    total: int,
    progress: Progress | None,
) -> None:
    if progress is not None:
        progress(done, total)
    client._emit(
        ATTACHMENT_PROGRESS,
        message_id=message_id,
        direction=direction,
        done=done,
        total=total,
    )


def _retry_after_failure(client: Client, exc: ClientError, retries: int) -> int:
    """Wait for a resumed session after a dropped connection; return the count.

    A ``rate_limited`` reply (a long file is more chunks than the server's
    request burst) waits the server's ``retry_after`` and is not counted.
    """
    if exc.code == "rate_limited":
        time.sleep(max(exc.retry_after or 1, 1))
        return retries
    if exc.code not in _RETRYABLE or retries >= MAX_TRANSFER_RETRIES:
        raise exc
    logger.info("attachment transfer interrupted (%s); resuming", exc.code)
    time.sleep(0.2)
    client.wait_ready()
    return retries + 1


def upload(
    client: Client,
    attachment_id: str,
    ciphertext: bytes,
    message_id: str,
    progress: Progress | None = None,
) -> None:
    """Upload ``ciphertext`` from where the server's copy ends."""
    total = len(ciphertext)
    offset = 0
    retries = 0
    while offset < total:
        try:
            if retries:
                status = client._request(
                    "attachment_status", attachment_id=attachment_id
                )
                offset = int(status["received"])
                if offset >= total:
                    break
            chunk = ciphertext[offset : offset + CHUNK_SIZE]
            reply = client._request(
                "attachment_upload",
                attachment_id=attachment_id,
                offset=offset,
                data=chunk,
            )
        except ClientError as exc:
            retries = _retry_after_failure(client, exc, retries)
            continue
        offset = int(reply["received"])
        retries = 0
        _emit_progress(client, message_id, "up", offset, total, progress)


def download(
    client: Client,
    reference: dict[str, Any],
    destination: Path,
    message_id: str,
    progress: Progress | None = None,
) -> Path:
    """Fetch, decrypt and verify an audio attachment; write it to ``destination``.

    The ciphertext collects in ``<id>.part`` in the profile, so an
    interrupted download continues from the bytes already there. Raises
    ClientError ``attachment_invalid`` when the file fails decryption or
    does not match the reference's size and hash.
    """
    attachment_id = reference["attachment_id"]
    total = int(reference["size"])
    partial = audio_dir(client) / (attachment_id + PARTIAL_SUFFIX)
    retries = 0
    with open(partial, "ab") as handle:
        offset = handle.tell()
        while offset < total:
            try:
                reply = client._request(
                    "attachment_download",
                    attachment_id=attachment_id,
                    offset=offset,
                    length=min(CHUNK_SIZE, total - offset),
                )
            except ClientError as exc:
                retries = _retry_after_failure(client, exc, retries)
                continue
            handle.write(reply["data"])
            handle.flush()
            offset += len(reply["data"])
            retries = 0
            _emit_progress(client, message_id, "down", offset, total, progress)
    ciphertext = partial.read_bytes()
    plaintext = _open(reference, ciphertext)
    _write_atomically(destination, plaintext)
    partial.unlink()
    return destination


def _open(reference: dict[str, Any], ciphertext: bytes) -> bytes:
    attachment_id = reference["attachment_id"]
    if len(ciphertext) != reference["size"]:
        raise ClientError(
            codes.ATTACHMENT_INVALID,
            f"Attachment {attachment_id} has {len(ciphertext)} bytes, "
            f"not the {reference['size']} bytes its message states.",
        )
    try:
        key = bytes.fromhex(reference["key"])
        plaintext = e2e.open_attachment(
            key, ciphertext, attachment_associated_data(attachment_id)
        )
    except (CryptoError, ValueError) as exc:
        raise ClientError(
            codes.ATTACHMENT_INVALID,
            f"Attachment {attachment_id} failed decryption; it was altered.",
        ) from exc
    if hashlib.sha256(plaintext).hexdigest() != reference["sha256"]:
        raise ClientError(
            codes.ATTACHMENT_INVALID,
            f"Attachment {attachment_id} does not match the hash in its message.",
        )
    return plaintext


def _write_atomically(destination: Path, data: bytes) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}{PARTIAL_SUFFIX}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, destination)


def local_path(client: Client, message_id: str) -> Path:
    """Return where the profile keeps the plaintext of an audio message."""
    return audio_dir(client) / f"{message_id}.wav"


def send_audio(
    client: Client,
    to: str,
    path: Path,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> SendResult:
    """Encrypt and upload a WAV file, then send its reference as a message.

    Blocks through the upload, then waits up to ``timeout`` for the
    server's acknowledgement of the message, like ``send_text``. Raises
    ClientError ``invalid_message`` for a file that is not a WAV file.
    """
    from enctalk.client.core import _group_id, _username
    from enctalk.client.messaging import SendResult

    if to.startswith("#"):
        group_id = _group_id(to)
        name = groups.conversation_of(group_id)
        with client._lock:
            refusal = groups.require_group(client, group_id).post_refusal(
                client._require_username()
            )
        if refusal is not None:
            raise ClientError(codes.NOT_ALLOWED, refusal)
    else:
        name = _username(to)
    try:
        duration = audio.wav_duration(path)
    except (OSError, ValueError) as exc:
        raise ClientError(codes.INVALID_MESSAGE, f"Cannot send {path}: {exc}") from exc
    plaintext = path.read_bytes()
    message_id = str(uuid.uuid4())
    copy = local_path(client, message_id)
    shutil.copyfile(path, copy)

    client.wait_ready()
    reply = client._request(
        "attachment_create", to=name, size=len(plaintext) + MAC_SIZE
    )
    attachment_id = str(reply["attachment_id"])
    key, ciphertext = e2e.seal_attachment(
        plaintext, attachment_associated_data(attachment_id)
    )
    upload(client, attachment_id, ciphertext, message_id, progress)
    reference = {
        "attachment_id": attachment_id,
        "key": key.hex(),
        "size": len(ciphertext),
        "duration": round(duration, 3),
        "sha256": hashlib.sha256(plaintext).hexdigest(),
        "name": path.name[:100],
    }
    body = f"Voice message ({duration:.1f} s)"
    _queue(client, name, message_id, body, reference)
    return _wait_sent(client, message_id, timeout, SendResult)


def _queue(
    client: Client,
    to: str,
    message_id: str,
    body: str,
    reference: dict[str, Any],
) -> None:
    sent_at = int(time.time() * 1000)
    with client._lock:
        state = client._require_state()
        me = client._require_username()
        item = {
            "message_id": message_id,
            "to": to,
            "body": body,
            "sent_at": sent_at,
            "attachment": reference,
        }
        group_id = groups.group_of(to)
        if group_id is not None:
            item["group"] = group_id
        state["outbox"].append(item)
        client._require_history().add(
            HistoryEntry(
                conversation=to,
                kind=AUDIO_KIND,
                direction="out",
                sender=me,
                body=body,
                message_id=message_id,
                server_seq=None,
                server_time=None,
                sent_at=sent_at,
                state=SENDING,
                attachment=reference,
            )
        )
        client._save()
    client._emit(
        DELIVERY_UPDATED, message_id=message_id, conversation=to, state=SENDING
    )
    client._tasks.put(("flush",))


def _wait_sent(
    client: Client, message_id: str, timeout: float | None, result: Any
) -> SendResult:
    deadline = time.monotonic() + (client.timeout if timeout is None else timeout)
    with client._send_done:
        while message_id not in client._send_outcomes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return result(message_id, "queued")  # type: ignore[no-any-return]
            client._send_done.wait(remaining)
        outcome = client._send_outcomes.pop(message_id)
    if isinstance(outcome, ClientError):
        raise outcome
    return outcome


def fetch_audio(
    client: Client,
    message_id: str,
    destination: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """Return the local WAV file of an audio message, downloading it if needed.

    With ``destination`` the file is also copied there (a folder or a
    file name). Raises ClientError ``invalid_message`` when ``message_id``
    is not an audio message in the history.
    """
    with client._lock:
        entry = client._require_history().find(message_id)
    if entry is None or entry.kind != AUDIO_KIND or entry.attachment is None:
        raise ClientError(
            codes.INVALID_MESSAGE, f"Message {message_id} is not an audio message."
        )
    local = local_path(client, message_id)
    if not local.exists():
        client.wait_ready()
        download(client, entry.attachment, local, message_id, progress)
    if destination is None:
        return local
    target = destination / local.name if destination.is_dir() else destination
    _write_atomically(target, local.read_bytes())
    return target


def remove_partial_files(client: Client) -> None:
    """Delete temporary audio files left in the profile (``.part`` files)."""
    folder = client.profile.directory / AUDIO_DIR_NAME
    if not folder.is_dir():
        return
    for path in folder.glob(".*" + PARTIAL_SUFFIX):
        path.unlink(missing_ok=True)


__all__ = [
    "ATTACHMENT_PROGRESS",
    "CHUNK_SIZE",
    "check_reference",
    "download",
    "fetch_audio",
    "public_reference",
    "send_audio",
    "upload",
]
