"""Double Ratchet (Signal's Double Ratchet specification), no header encryption.

Construction::

    KDF_RK(rk, dh_out) = HKDF-SHA256(dh_out, salt=rk, info="EncTalk_ratchet_root_v1",
                                     L=64)  -> (new rk, chain key)
    KDF_CK(ck)         = (HMAC-SHA256(ck, 0x02) as next ck, HMAC-SHA256(ck, 0x01) as mk)
    header  = version (1 byte) || DHs public (32) || pn (uint32 BE) || n (uint32 BE)
    message = header || AEAD(mk, plaintext,
                             AD = session AD || caller AD || header,
                             info="EncTalk_ratchet_msg_v1")

The session AD is fixed for the life of a session and the header has a
fixed length at the end, so the AEAD's associated data parses one way.

Decryption follows the specification's RatchetDecrypt: a stored skipped
message key first, else a DH ratchet step when the header carries a new
remote key, then the symmetric step. At most MAX_SKIP keys are skipped in
one chain, and at most MAX_STORED_SKIPPED_KEYS are stored per session,
oldest evicted first. Decryption works on a copy of the state and commits
only when the message authenticates. A message key is used once: a replay
of the current chain is rejected by its counter, and a replay from an
older chain makes the copy take a DH step that fails authentication.

Encrypting costs two HMACs and one AEAD call. A DH ratchet step adds one
key generation and two X25519 operations.
"""

import hashlib
import hmac
import logging
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from enctalk.crypto import aead
from enctalk.crypto._encoding import (
    UINT32_MAX,
    b64decode,
    b64encode,
    check_bytes,
    field_bytes,
    field_int,
    field_optional_bytes,
    uint32,
)
from enctalk.crypto.errors import CryptoError, DecryptionError
from enctalk.crypto.kdf import hkdf
from enctalk.crypto.keys import (
    PUBLIC_KEY_SIZE,
    x25519_public_bytes,
    x25519_shared_secret,
)

logger = logging.getLogger(__name__)

MAX_SKIP = 1000
MAX_STORED_SKIPPED_KEYS = 2000

ROOT_INFO = b"EncTalk_ratchet_root_v1"
RATCHET_MESSAGE_INFO = b"EncTalk_ratchet_msg_v1"
MESSAGE_VERSION = 1
HEADER_SIZE = 1 + PUBLIC_KEY_SIZE + 4 + 4
CHAIN_KEY_SIZE = 32

_MESSAGE_KEY_INPUT = b"\x01"
_CHAIN_KEY_INPUT = b"\x02"
_STATE_FORMAT = 1

# Test hook: the ratchet key generator, replaced by tests that need
# reproducible sessions.
_generate_key_pair = X25519PrivateKey.generate


class MessageHeader(NamedTuple):
    """The Double Ratchet header: sender's ratchet key, pn and n."""

    dh_public: bytes
    pn: int  # number of messages in the sender's previous sending chain
    n: int  # number of this message in the current sending chain

    def encode(self) -> bytes:
        """Return the fixed-size wire form, version byte first."""
        return (
            bytes([MESSAGE_VERSION]) + self.dh_public + uint32(self.pn) + uint32(self.n)
        )

    @classmethod
    def decode(cls, data: bytes) -> "MessageHeader":
        """Parse the first HEADER_SIZE bytes, raising DecryptionError if malformed."""
        if len(data) < HEADER_SIZE or data[0] != MESSAGE_VERSION:
            raise DecryptionError
        key_end = 1 + PUBLIC_KEY_SIZE
        return cls(
            dh_public=data[1:key_end],
            pn=int.from_bytes(data[key_end : key_end + 4], "big"),
            n=int.from_bytes(data[key_end + 4 : HEADER_SIZE], "big"),
        )


def kdf_rk(root_key: bytes, dh_output: bytes) -> tuple[bytes, bytes]:
    """Return (new root key, new chain key) for one DH ratchet step."""
    derived = hkdf(dh_output, root_key, ROOT_INFO, 2 * CHAIN_KEY_SIZE)
    return derived[:CHAIN_KEY_SIZE], derived[CHAIN_KEY_SIZE:]


def kdf_ck(chain_key: bytes) -> tuple[bytes, bytes]:
    """Return (next chain key, message key) for one symmetric ratchet step."""
    next_chain_key = hmac.digest(chain_key, _CHAIN_KEY_INPUT, hashlib.sha256)
    message_key = hmac.digest(chain_key, _MESSAGE_KEY_INPUT, hashlib.sha256)
    return next_chain_key, message_key


@dataclass
class _State:
    # The secret fields stay out of repr() so that a log line or a traceback
    # that shows the state does not show its keys.
    dh_private: X25519PrivateKey  # DHs
    dh_public: bytes
    remote_dh: bytes | None  # DHr
    root_key: bytes = field(repr=False)
    send_chain_key: bytes | None = field(repr=False)
    recv_chain_key: bytes | None = field(repr=False)
    send_n: int  # Ns
    recv_n: int  # Nr
    previous_send_n: int  # PN


_SkippedKey = tuple[bytes, int]  # (remote ratchet public key, message number)


class RatchetSession:
    """One side of a Double Ratchet session between two devices.

    Create it with :meth:`initiator` or :meth:`responder` from an X3DH
    result. The responder can encrypt only after it has decrypted the
    initiator's first message. Methods do no I/O.
    """

    def __init__(
        self,
        state: _State,
        associated_data: bytes,
        skipped: "OrderedDict[_SkippedKey, bytes] | None" = None,
    ) -> None:
        self._state = state
        self._associated_data = associated_data
        self._skipped: OrderedDict[_SkippedKey, bytes] = skipped or OrderedDict()

    @classmethod
    def initiator(
        cls,
        shared_key: bytes,
        remote_signed_prekey_public: bytes,
        associated_data: bytes,
    ) -> "RatchetSession":
        """Start the session of the X3DH initiator (RatchetInitAlice)."""
        check_bytes(shared_key, 32, "shared_key")
        check_bytes(remote_signed_prekey_public, PUBLIC_KEY_SIZE, "signed prekey")
        dh_private = _generate_key_pair()
        dh_output = x25519_shared_secret(dh_private, remote_signed_prekey_public)
        root_key, send_chain_key = kdf_rk(shared_key, dh_output)
        state = _State(
            dh_private=dh_private,
            dh_public=x25519_public_bytes(dh_private),
            remote_dh=remote_signed_prekey_public,
            root_key=root_key,
            send_chain_key=send_chain_key,
            recv_chain_key=None,
            send_n=0,
            recv_n=0,
            previous_send_n=0,
        )
        return cls(state, associated_data)

    @classmethod
    def responder(
        cls,
        shared_key: bytes,
        own_signed_prekey_pair: X25519PrivateKey,
        associated_data: bytes,
    ) -> "RatchetSession":
        """Start the session of the X3DH responder (RatchetInitBob)."""
        check_bytes(shared_key, 32, "shared_key")
        state = _State(
            dh_private=own_signed_prekey_pair,
            dh_public=x25519_public_bytes(own_signed_prekey_pair),
            remote_dh=None,
            root_key=shared_key,
            send_chain_key=None,
            recv_chain_key=None,
            send_n=0,
            recv_n=0,
            previous_send_n=0,
        )
        return cls(state, associated_data)

    @property
    def associated_data(self) -> bytes:
        """The session AD from X3DH.

        It binds both device identity keys and both AIKs, see
        :func:`enctalk.crypto.x3dh.associated_data`.
        """
        return self._associated_data

    def copy(self) -> "RatchetSession":
        """Return an independent copy of this session and its skipped keys."""
        return RatchetSession(
            replace(self._state), self._associated_data, OrderedDict(self._skipped)
        )

    @property
    def can_send(self) -> bool:
        """False for a responder until it has decrypted a first message."""
        return self._state.send_chain_key is not None

    @property
    def skipped_key_count(self) -> int:
        """Number of stored message keys of skipped messages."""
        return len(self._skipped)

    def _message_ad(self, associated_data: bytes, header: bytes) -> bytes:
        if not isinstance(associated_data, bytes):
            raise TypeError("associated_data must be bytes")
        return self._associated_data + associated_data + header

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """Encrypt one message and return ``header || ciphertext || tag``.

        Raises CryptoError if this side cannot send yet (a responder before
        its first decrypt) or the sending chain has reached 2**32 - 1 messages.
        """
        state = self._state
        if state.send_chain_key is None:
            raise CryptoError("the responder cannot send before its first decrypt")
        # Stopping one short of UINT32_MAX keeps send_n, which becomes pn at
        # the next DH ratchet step, inside the header's 32-bit field.
        if state.send_n >= UINT32_MAX:
            raise CryptoError("sending chain exhausted, start a new session")
        header = MessageHeader(state.dh_public, state.previous_send_n, state.send_n)
        header_bytes = header.encode()
        next_chain_key, message_key = kdf_ck(state.send_chain_key)
        ad = self._message_ad(associated_data, header_bytes)
        ciphertext = aead.encrypt(message_key, plaintext, ad, RATCHET_MESSAGE_INFO)
        state.send_chain_key = next_chain_key
        state.send_n += 1
        return header_bytes + ciphertext

    def decrypt(self, message: bytes, associated_data: bytes) -> bytes:
        """Decrypt one message and advance the session only if it authenticates.

        Raises DecryptionError for a malformed, tampered or replayed message
        and for one that would skip more than MAX_SKIP keys in a chain. The
        session is unchanged after any error.
        """
        if not isinstance(message, bytes):
            raise DecryptionError
        header = MessageHeader.decode(message)
        header_bytes = message[:HEADER_SIZE]
        ciphertext = message[HEADER_SIZE:]
        ad = self._message_ad(associated_data, header_bytes)

        skipped_key = (header.dh_public, header.n)
        stored_key = self._skipped.get(skipped_key)
        if stored_key is not None:
            plaintext = aead.decrypt(stored_key, ciphertext, ad, RATCHET_MESSAGE_INFO)
            del self._skipped[skipped_key]
            return plaintext

        state = replace(self._state)
        new_skipped: list[tuple[_SkippedKey, bytes]] = []
        if header.dh_public != state.remote_dh:
            _skip_message_keys(state, header.pn, new_skipped)
            try:
                _dh_ratchet(state, header.dh_public)
            except CryptoError:
                raise DecryptionError from None
        _skip_message_keys(state, header.n, new_skipped)
        if state.recv_chain_key is None:
            raise DecryptionError  # header repeats the signed prekey, no chain yet
        if header.n < state.recv_n:
            raise DecryptionError  # this message key was already used

        next_chain_key, message_key = kdf_ck(state.recv_chain_key)
        plaintext = aead.decrypt(message_key, ciphertext, ad, RATCHET_MESSAGE_INFO)

        state.recv_chain_key = next_chain_key
        state.recv_n += 1
        self._state = state
        self._store_skipped(new_skipped)
        return plaintext

    def _store_skipped(self, new_skipped: list[tuple[_SkippedKey, bytes]]) -> None:
        self._skipped.update(new_skipped)
        evicted = 0
        while len(self._skipped) > MAX_STORED_SKIPPED_KEYS:
            self._skipped.popitem(last=False)
            evicted += 1
        if evicted:
            logger.debug("evicted %d oldest skipped message keys", evicted)

    def to_dict(self) -> dict[str, Any]:
        """Return the session state as a JSON-safe dict (base64 strings).

        Skipped keys are stored oldest first as [remote key, n, message key].
        """
        state = self._state

        def optional(value: bytes | None) -> str | None:
            return None if value is None else b64encode(value)

        return {
            "format": _STATE_FORMAT,
            "dh_private": b64encode(state.dh_private.private_bytes_raw()),
            "remote_dh": optional(state.remote_dh),
            "root_key": b64encode(state.root_key),
            "send_chain_key": optional(state.send_chain_key),
            "recv_chain_key": optional(state.recv_chain_key),
            "send_n": state.send_n,
            "recv_n": state.recv_n,
            "previous_send_n": state.previous_send_n,
            "associated_data": b64encode(self._associated_data),
            "skipped": [
                [b64encode(dh), n, b64encode(key)]
                for (dh, n), key in self._skipped.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RatchetSession":
        """Load :meth:`to_dict` output, raising CryptoError if it is invalid."""
        if not isinstance(data, dict) or data.get("format") != _STATE_FORMAT:
            raise CryptoError("unsupported ratchet session state")
        dh_private = X25519PrivateKey.from_private_bytes(
            field_bytes(data, "dh_private", 32)
        )
        state = _State(
            dh_private=dh_private,
            dh_public=x25519_public_bytes(dh_private),
            remote_dh=field_optional_bytes(data, "remote_dh", PUBLIC_KEY_SIZE),
            root_key=field_bytes(data, "root_key", CHAIN_KEY_SIZE),
            send_chain_key=field_optional_bytes(data, "send_chain_key", CHAIN_KEY_SIZE),
            recv_chain_key=field_optional_bytes(data, "recv_chain_key", CHAIN_KEY_SIZE),
            send_n=_field_send_counter(data, "send_n"),
            recv_n=field_int(data, "recv_n"),
            previous_send_n=_field_send_counter(data, "previous_send_n"),
        )
        skipped: OrderedDict[_SkippedKey, bytes] = OrderedDict()
        entries = data.get("skipped")
        if not isinstance(entries, list):
            raise CryptoError("stored state has an invalid 'skipped'")
        for entry in entries:
            if not isinstance(entry, list) or len(entry) != 3:
                raise CryptoError("stored state has an invalid skipped key")
            dh, n, key = entry
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise CryptoError("stored state has an invalid skipped key")
            skipped[(b64decode(dh, PUBLIC_KEY_SIZE), n)] = b64decode(key, 32)
        return cls(state, field_bytes(data, "associated_data"), skipped)


def _field_send_counter(data: dict[str, Any], key: str) -> int:
    value = field_int(data, key)
    if value > UINT32_MAX:
        raise CryptoError(f"stored state has an invalid {key!r}")
    return value


def _skip_message_keys(
    state: _State, until: int, out: list[tuple[_SkippedKey, bytes]]
) -> None:
    """Derive the keys of messages recv_n .. until-1 of the receiving chain."""
    if state.recv_chain_key is None or state.remote_dh is None:
        return
    if until - state.recv_n > MAX_SKIP:
        raise DecryptionError
    chain_key = state.recv_chain_key
    for n in range(state.recv_n, until):
        chain_key, message_key = kdf_ck(chain_key)
        out.append(((state.remote_dh, n), message_key))
    state.recv_chain_key = chain_key
    state.recv_n = max(state.recv_n, until)


def _dh_ratchet(state: _State, remote_dh: bytes) -> None:
    """Take one DH ratchet step towards a new remote ratchet key."""
    state.previous_send_n = state.send_n
    state.send_n = 0
    state.recv_n = 0
    state.remote_dh = remote_dh
    dh_output = x25519_shared_secret(state.dh_private, remote_dh)
    state.root_key, state.recv_chain_key = kdf_rk(state.root_key, dh_output)
    state.dh_private = _generate_key_pair()
    state.dh_public = x25519_public_bytes(state.dh_private)
    dh_output = x25519_shared_secret(state.dh_private, remote_dh)
    state.root_key, state.send_chain_key = kdf_rk(state.root_key, dh_output)
