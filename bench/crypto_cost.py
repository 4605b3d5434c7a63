"""Client-side cost of one text message: seal, envelope, and the reverse.

Measures the steady state of an established session between two devices
(the X3DH set-up is timed once, separately), with a payload the size of a
short chat line.
"""

from __future__ import annotations

import json
import time
import uuid

from enctalk.crypto.keys import AccountIdentity, DeviceKeys
from enctalk.crypto.session import (
    decrypt_envelope,
    encrypt_envelope,
    message_associated_data,
    open_payload,
    payload_associated_data,
    seal_payload,
    start_session,
)
from enctalk.crypto.x3dh import PreKeyBundle

ROUNDS = 2000


def measure() -> dict[str, float]:
    """Return milliseconds per step, averaged over ``ROUNDS`` messages."""
    alice_aik, bob_aik = AccountIdentity.generate(), AccountIdentity.generate()
    alice = DeviceKeys.generate(alice_aik, one_time_count=1)
    bob = DeviceKeys.generate(bob_aik, one_time_count=1)
    bundle = PreKeyBundle.from_device(bob, bob_aik.public_bytes(), 1)
    started = time.perf_counter()
    outgoing = start_session(alice, alice_aik.public_bytes(), bundle)
    x3dh_ms = (time.perf_counter() - started) * 1000
    incoming = None

    body = {"kind": "text", "body": "see you in the library at 3", "sent_at": 0}
    encrypt_seconds = 0.0
    decrypt_seconds = 0.0
    for _ in range(ROUNDS):
        message_id = str(uuid.uuid4())
        payload_ad = payload_associated_data("alice", 1, "direct:alice:bob", message_id)
        envelope_ad = message_associated_data(
            "alice", 1, "bob", 2, "direct:alice:bob", message_id
        )
        plaintext = json.dumps({**body, "message_id": message_id}).encode()

        started = time.perf_counter()
        key_material, ciphertext = seal_payload(plaintext, payload_ad)
        envelope = encrypt_envelope(outgoing, key_material, envelope_ad)
        encrypt_seconds += time.perf_counter() - started

        started = time.perf_counter()
        result = decrypt_envelope(
            bob, incoming, envelope, envelope_ad, own_aik_public=bob_aik.public_bytes()
        )
        incoming = result.session
        open_payload(result.plaintext, ciphertext, payload_ad)
        decrypt_seconds += time.perf_counter() - started
    return {
        "X3DH session start (once per device pair)": x3dh_ms,
        "encrypt: seal payload + one envelope": encrypt_seconds * 1000 / ROUNDS,
        "decrypt: open envelope + payload": decrypt_seconds * 1000 / ROUNDS,
    }


if __name__ == "__main__":
    for label, value in measure().items():
        print(f"{label}: {value:.3f} ms")
