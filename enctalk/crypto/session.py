"""Per-device sessions, envelopes and message payload encryption.

A message is encrypted in two layers. The payload (the JSON message) is
encrypted once under a fresh random key with the AEAD::

    key_material       = payload key (32) || tag of payload_ciphertext (32)
    payload_ciphertext = AEAD(payload key, payload, payload AD,
                              info="EncTalk_payload_v1")

and ``key_material`` goes to every recipient device, and to the sender's
own other devices, inside an envelope encrypted by that device pair's
Double Ratchet. The envelope's associated data (:func:`message_associated_data`)
binds sender and recipient devices, conversation and message id, and the
tag inside ``key_material`` binds the one payload ciphertext.

Envelope wire bytes (integers big-endian)::

    RATCHET_MESSAGE: 0x02 || ratchet message
    PREKEY_MESSAGE:  0x01 || sender device identity key (32) || ephemeral key (32)
                     || signed prekey id (4) || has one-time prekey (1: 0 or 1)
                     || one-time prekey id (4, zero if absent)
                     || sender AIK public (32) || sender device signature (64)
                     || ratchet message

Client use, one :class:`DeviceSession` per remote device, stored in the vault
with :meth:`DeviceSession.to_dict`:

* :func:`start_session` runs X3DH against a fetched :class:`PreKeyBundle`.
  Until the peer's first reply arrives, :func:`encrypt_envelope` makes
  PREKEY_MESSAGE envelopes, so any one of them can open the session.
* :func:`encrypt_envelope` encrypts with an existing session (mutates it).
  :func:`encrypt_for_device` does either, in one call.
* :func:`decrypt_envelope` takes own :class:`DeviceKeys`, the stored
  session for the sending device, or None, and own AIK public key. It
  returns (plaintext, session to store, sender device identity key, sender
  AIK public). A PREKEY_MESSAGE from a new handshake makes a new current
  state. The state it replaces is kept in the same session object, so a
  late message of the old state, or of a handshake both sides started at
  the same time, still decrypts. A PREKEY_MESSAGE of a handshake already
  accepted on this device opens only in the state it made, so a replay
  fails once that state's counter has passed it. On any error nothing
  changes: not the session, not the one-time prekeys, not the recorded
  base keys.

X3DH binds both accounts' AIKs into the session AD, so a PREKEY_MESSAGE
whose AIK and device signature were replaced by another account's does not
decrypt. The returned sender AIK is therefore the one that the sending
device chose, but nothing here ties it to a username. The caller must
compare it with the one on record for the claimed sender account and show
a key-change warning if it differs. A caller that may still reject a
message after it decrypted passes :meth:`DeviceSession.copy` and
:meth:`DeviceKeys.copy` and stores the copies only once it accepts the
message.
"""

import hmac
import logging
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

from enctalk.crypto import aead, x3dh
from enctalk.crypto._encoding import (
    b64encode,
    field_bytes,
    field_int,
    field_optional_int,
    length_prefixed,
    uint32,
)
from enctalk.crypto.errors import CryptoError, DecryptionError, SignatureError
from enctalk.crypto.kdf import normalize_username
from enctalk.crypto.keys import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, DeviceKeys
from enctalk.crypto.ratchet import RatchetSession
from enctalk.crypto.x3dh import InitialMessageHeader, PreKeyBundle

logger = logging.getLogger(__name__)

PREKEY_MESSAGE = 0x01
RATCHET_MESSAGE = 0x02

PAYLOAD_INFO = b"EncTalk_payload_v1"
ATTACHMENT_INFO = b"EncTalk_attachment_v1"
MESSAGE_AD_LABEL = b"EncTalk_message_ad_v1"
PAYLOAD_AD_LABEL = b"EncTalk_payload_ad_v1"
KEY_MATERIAL_SIZE = aead.KEY_SIZE + aead.MAC_SIZE

# Ratchet states kept per remote device: the current one plus older ones
# for late messages and for handshakes that both sides started at once.
MAX_SESSION_STATES = 5

_INITIAL_HEADER_SIZE = 32 + 32 + 4 + 1 + 4 + 32 + 64
_SESSION_FORMAT = 1


@dataclass(frozen=True)
class Envelope:
    """A decoded envelope: a ratchet message, with the X3DH header if PREKEY."""

    initial: InitialMessageHeader | None
    ratchet_message: bytes

    @property
    def message_type(self) -> int:
        """PREKEY_MESSAGE or RATCHET_MESSAGE."""
        return RATCHET_MESSAGE if self.initial is None else PREKEY_MESSAGE


def encode_envelope(envelope: Envelope) -> bytes:
    """Return the wire bytes of an envelope."""
    initial = envelope.initial
    if initial is None:
        return bytes([RATCHET_MESSAGE]) + envelope.ratchet_message
    one_time_id = initial.one_time_prekey_id
    return b"".join(
        [
            bytes([PREKEY_MESSAGE]),
            initial.identity_key,
            initial.ephemeral_key,
            uint32(initial.signed_prekey_id),
            b"\x00" if one_time_id is None else b"\x01",
            uint32(0 if one_time_id is None else one_time_id),
            initial.account_identity_key,
            initial.device_signature,
            envelope.ratchet_message,
        ]
    )


def decode_envelope(data: bytes) -> Envelope:
    """Parse envelope wire bytes, raising DecryptionError if malformed."""
    if not isinstance(data, bytes) or not data:
        raise DecryptionError
    if data[0] == RATCHET_MESSAGE:
        return Envelope(None, data[1:])
    if data[0] != PREKEY_MESSAGE or len(data) < 1 + _INITIAL_HEADER_SIZE:
        raise DecryptionError

    fields = []
    offset = 1
    for size in (32, 32, 4, 1, 4, 32, 64):
        fields.append(data[offset : offset + size])
        offset += size
    identity, ephemeral, spk_id, has_one_time, one_time_id, aik, signature = fields
    if has_one_time not in (b"\x00", b"\x01"):
        raise DecryptionError
    if has_one_time == b"\x00" and one_time_id != bytes(4):
        raise DecryptionError
    initial = InitialMessageHeader(
        identity_key=identity,
        ephemeral_key=ephemeral,
        signed_prekey_id=int.from_bytes(spk_id, "big"),
        one_time_prekey_id=(
            int.from_bytes(one_time_id, "big") if has_one_time == b"\x01" else None
        ),
        account_identity_key=aik,
        device_signature=signature,
    )
    return Envelope(initial, data[offset:])


@dataclass
class _SessionState:
    ratchet: RatchetSession
    base_key: bytes  # the initiator's X3DH ephemeral public key
    pending_initial: InitialMessageHeader | None  # initiator, before first reply


class DeviceSession:
    """The session with one remote device: its keys and its ratchet states.

    ``remote_identity_key`` is the remote device's X25519 identity key and
    ``remote_aik_public`` the Ed25519 AIK of its account. The first state
    is the one that encrypts.
    """

    def __init__(
        self,
        remote_identity_key: bytes,
        remote_aik_public: bytes,
        states: list[_SessionState],
    ) -> None:
        if not states:
            raise ValueError("a session needs at least one ratchet state")
        self.remote_identity_key = remote_identity_key
        self.remote_aik_public = remote_aik_public
        self._states = states

    @property
    def awaiting_reply(self) -> bool:
        """True while this side started the session and has not yet heard back."""
        return self._states[0].pending_initial is not None

    def _is_same_peer(self, identity_key: bytes, aik_public: bytes) -> bool:
        return (
            self.remote_identity_key == identity_key
            and self.remote_aik_public == aik_public
        )

    def _make_current(self, state: _SessionState) -> None:
        others = [s for s in self._states if s is not state]
        self._states = [state, *others][:MAX_SESSION_STATES]

    def _decrypt_ratchet_message(self, message: bytes, associated_data: bytes) -> bytes:
        for state in self._states:
            try:
                plaintext = state.ratchet.decrypt(message, associated_data)
            except DecryptionError:
                continue
            state.pending_initial = None
            self._make_current(state)
            return plaintext
        raise DecryptionError

    def copy(self) -> "DeviceSession":
        """Return an independent copy: decrypting with one leaves the other as is."""
        states = [
            _SessionState(state.ratchet.copy(), state.base_key, state.pending_initial)
            for state in self._states
        ]
        return DeviceSession(self.remote_identity_key, self.remote_aik_public, states)

    def to_dict(self) -> dict[str, Any]:
        """Return the session as a JSON-safe dict (base64 strings)."""
        return {
            "format": _SESSION_FORMAT,
            "remote_identity_key": b64encode(self.remote_identity_key),
            "remote_aik_public": b64encode(self.remote_aik_public),
            "states": [
                {
                    "ratchet": state.ratchet.to_dict(),
                    "base_key": b64encode(state.base_key),
                    "pending_initial": _initial_to_dict(state.pending_initial),
                }
                for state in self._states
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DeviceSession":
        """Load :meth:`to_dict` output, raising CryptoError if it is invalid."""
        if not isinstance(data, dict) or data.get("format") != _SESSION_FORMAT:
            raise CryptoError("unsupported device session state")
        items = data.get("states")
        if not isinstance(items, list) or not items:
            raise CryptoError("stored session has no ratchet states")
        states = []
        for item in items:
            ratchet_state = item.get("ratchet") if isinstance(item, dict) else None
            if not isinstance(ratchet_state, dict):
                raise CryptoError("stored session has an invalid ratchet state")
            states.append(
                _SessionState(
                    ratchet=RatchetSession.from_dict(ratchet_state),
                    base_key=field_bytes(item, "base_key", PUBLIC_KEY_SIZE),
                    pending_initial=_initial_from_dict(item.get("pending_initial")),
                )
            )
        return cls(
            remote_identity_key=field_bytes(
                data, "remote_identity_key", PUBLIC_KEY_SIZE
            ),
            remote_aik_public=field_bytes(data, "remote_aik_public", PUBLIC_KEY_SIZE),
            states=states,
        )


def _initial_to_dict(initial: InitialMessageHeader | None) -> dict[str, Any] | None:
    if initial is None:
        return None
    return {
        "identity_key": b64encode(initial.identity_key),
        "ephemeral_key": b64encode(initial.ephemeral_key),
        "signed_prekey_id": initial.signed_prekey_id,
        "one_time_prekey_id": initial.one_time_prekey_id,
        "account_identity_key": b64encode(initial.account_identity_key),
        "device_signature": b64encode(initial.device_signature),
    }


def _initial_from_dict(data: object) -> InitialMessageHeader | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise CryptoError("stored session has an invalid initial message header")
    return InitialMessageHeader(
        identity_key=field_bytes(data, "identity_key", PUBLIC_KEY_SIZE),
        ephemeral_key=field_bytes(data, "ephemeral_key", PUBLIC_KEY_SIZE),
        signed_prekey_id=field_int(data, "signed_prekey_id"),
        one_time_prekey_id=field_optional_int(data, "one_time_prekey_id"),
        account_identity_key=field_bytes(data, "account_identity_key", PUBLIC_KEY_SIZE),
        device_signature=field_bytes(data, "device_signature", SIGNATURE_SIZE),
    )


def start_session(
    own_device: DeviceKeys,
    own_aik_public: bytes,
    bundle: PreKeyBundle,
    previous: DeviceSession | None = None,
) -> DeviceSession:
    """Run X3DH against a remote device's bundle and return a new session.

    If ``previous`` is the session with the same remote device and account,
    the new state goes in front of its states and ``previous`` is returned.
    Raises SignatureError if the bundle's signatures do not verify, and
    CryptoError if the bundle is malformed.
    """
    shared_key, associated_data, initial = x3dh.initiate(
        own_device, own_aik_public, bundle
    )
    ratchet = RatchetSession.initiator(
        shared_key, bundle.signed_prekey, associated_data
    )
    state = _SessionState(ratchet, initial.ephemeral_key, initial)
    if previous is not None and previous._is_same_peer(
        bundle.identity_key, bundle.account_identity_key
    ):
        previous._make_current(state)
        return previous
    return DeviceSession(bundle.identity_key, bundle.account_identity_key, [state])


def encrypt_envelope(
    session: DeviceSession, plaintext: bytes, associated_data: bytes
) -> bytes:
    """Encrypt plaintext for the session's remote device into envelope bytes."""
    state = session._states[0]
    message = state.ratchet.encrypt(plaintext, associated_data)
    return encode_envelope(Envelope(state.pending_initial, message))


def encrypt_for_device(
    own_device: DeviceKeys,
    own_aik_public: bytes,
    session: DeviceSession | None,
    bundle: PreKeyBundle | None,
    plaintext: bytes,
    associated_data: bytes,
) -> tuple[bytes, DeviceSession]:
    """Encrypt with ``session``, or start one from ``bundle`` if it is None.

    Returns (envelope bytes, session to store).
    """
    if session is None:
        if bundle is None:
            raise ValueError("a prekey bundle is needed to start a session")
        session = start_session(own_device, own_aik_public, bundle)
    return encrypt_envelope(session, plaintext, associated_data), session


class DecryptedEnvelope(NamedTuple):
    """The result of :func:`decrypt_envelope`."""

    plaintext: bytes
    session: DeviceSession  # store this for the sending device
    sender_identity_key: bytes
    sender_aik_public: bytes


def decrypt_envelope(
    own_device: DeviceKeys,
    session: DeviceSession | None,
    envelope: bytes,
    associated_data: bytes,
    *,
    own_aik_public: bytes,
) -> DecryptedEnvelope:
    """Decrypt an envelope from one remote device.

    ``session`` is the stored session with the sending device, or None.
    ``own_aik_public`` is the AIK public key of this device's account, which
    a PREKEY_MESSAGE's X3DH binds into the session AD.
    Raises SignatureError if a PREKEY_MESSAGE carries a device signature
    that its AIK did not make, and DecryptionError for anything else that
    fails: malformed, tampered, replayed, unknown prekey, or a
    RATCHET_MESSAGE without a session. After an error, ``session`` and
    ``own_device`` are unchanged.
    """
    decoded = decode_envelope(envelope)
    initial = decoded.initial
    if initial is None:
        if session is None:
            raise DecryptionError
        plaintext = session._decrypt_ratchet_message(
            decoded.ratchet_message, associated_data
        )
        return DecryptedEnvelope(
            plaintext, session, session.remote_identity_key, session.remote_aik_public
        )

    same_peer = session is not None and session._is_same_peer(
        initial.identity_key, initial.account_identity_key
    )
    if session is not None and same_peer:
        for state in session._states:
            if state.base_key == initial.ephemeral_key:
                # A further message of a handshake that this side already has.
                plaintext = state.ratchet.decrypt(
                    decoded.ratchet_message, associated_data
                )
                session._make_current(state)
                return DecryptedEnvelope(
                    plaintext,
                    session,
                    initial.identity_key,
                    initial.account_identity_key,
                )

    state, plaintext = _accept_handshake(
        own_device, own_aik_public, initial, decoded.ratchet_message, associated_data
    )
    if session is not None and same_peer:
        session._make_current(state)
        result = session
    else:
        result = DeviceSession(
            initial.identity_key, initial.account_identity_key, [state]
        )
    logger.debug("accepted a new session handshake")
    return DecryptedEnvelope(
        plaintext, result, initial.identity_key, initial.account_identity_key
    )


def _accept_handshake(
    own_device: DeviceKeys,
    own_aik_public: bytes,
    initial: InitialMessageHeader,
    ratchet_message: bytes,
    associated_data: bytes,
) -> tuple[_SessionState, bytes]:
    """Run X3DH as responder and decrypt the first message.

    The one-time prekey is consumed, or the base key recorded, only once
    that message has authenticated.
    """
    try:
        shared_key, session_ad = x3dh.compute_responder_key(
            own_device, initial, own_aik_public=own_aik_public
        )
        signed_prekey = own_device.signed_prekey(initial.signed_prekey_id)
    except SignatureError:
        raise
    except CryptoError:
        raise DecryptionError from None
    ratchet = RatchetSession.responder(shared_key, signed_prekey, session_ad)
    plaintext = ratchet.decrypt(ratchet_message, associated_data)
    x3dh.consume_prekeys(own_device, initial)
    return _SessionState(ratchet, initial.ephemeral_key, None), plaintext


def _seal(payload: bytes, associated_data: bytes, info: bytes) -> tuple[bytes, bytes]:
    key = os.urandom(aead.KEY_SIZE)
    ciphertext = aead.encrypt(key, payload, associated_data, info)
    return key + ciphertext[-aead.MAC_SIZE :], ciphertext


def _open(
    key_material: bytes, ciphertext: bytes, associated_data: bytes, info: bytes
) -> bytes:
    if not isinstance(key_material, bytes) or len(key_material) != KEY_MATERIAL_SIZE:
        raise DecryptionError
    if not isinstance(ciphertext, bytes) or len(ciphertext) < aead.MAC_SIZE:
        raise DecryptionError
    key, expected_tag = key_material[: aead.KEY_SIZE], key_material[aead.KEY_SIZE :]
    if not hmac.compare_digest(expected_tag, ciphertext[-aead.MAC_SIZE :]):
        raise DecryptionError
    return aead.decrypt(key, ciphertext, associated_data, info)


def seal_payload(payload: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
    """Encrypt a message payload under a fresh random key.

    Returns (key_material, payload_ciphertext), where key_material is the
    64 bytes ``key || tag`` to send through each device's envelope.
    """
    return _seal(payload, associated_data, PAYLOAD_INFO)


def open_payload(
    key_material: bytes, payload_ciphertext: bytes, associated_data: bytes
) -> bytes:
    """Check the tag in key_material against the ciphertext, then decrypt.

    Raises DecryptionError.
    """
    return _open(key_material, payload_ciphertext, associated_data, PAYLOAD_INFO)


def seal_attachment(data: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
    """Encrypt an attachment under a fresh random key, as :func:`seal_payload`."""
    return _seal(data, associated_data, ATTACHMENT_INFO)


def open_attachment(
    key_material: bytes, ciphertext: bytes, associated_data: bytes
) -> bytes:
    """Decrypt an attachment from :func:`seal_attachment` or raise DecryptionError."""
    return _open(key_material, ciphertext, associated_data, ATTACHMENT_INFO)


def _uint64(value: int, name: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return value.to_bytes(8, "big")


def _text(value: str, name: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str")
    return value.encode("utf-8")


def message_associated_data(
    sender: str,
    sender_device: int,
    recipient: str,
    recipient_device: int,
    conversation: str,
    message_id: str,
) -> bytes:
    """Return the envelope AD that binds devices, conversation and message id.

    Usernames are normalized (NFKC, case folded). Every field is length
    prefixed, so two different tuples never give the same bytes.
    """
    return MESSAGE_AD_LABEL + length_prefixed(
        _text(normalize_username(sender), "sender"),
        _uint64(sender_device, "sender_device"),
        _text(normalize_username(recipient), "recipient"),
        _uint64(recipient_device, "recipient_device"),
        _text(conversation, "conversation"),
        _text(message_id, "message_id"),
    )


def payload_associated_data(
    sender: str, sender_device: int, conversation: str, message_id: str
) -> bytes:
    """Return the payload AD: sender device, conversation and message id.

    The payload is shared by every recipient device, so it cannot name one.
    The per-device envelope AD does.
    """
    return PAYLOAD_AD_LABEL + length_prefixed(
        _text(normalize_username(sender), "sender"),
        _uint64(sender_device, "sender_device"),
        _text(conversation, "conversation"),
        _text(message_id, "message_id"),
    )
