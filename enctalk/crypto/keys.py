"""Account identity key (Ed25519) and device keys (X25519).

The account identity key (AIK) is one Ed25519 key pair per account. It
signs every device identity key and every signed prekey of the account::

    device signature = Ed25519(AIK, DEVICE_SIGNATURE_LABEL || identity public)
    prekey signature = Ed25519(AIK, PREKEY_SIGNATURE_LABEL || uint32_be(id) || public)

The two labels differ and the fields after them have fixed lengths, so a
signature of one kind never verifies as the other. The prekey signature
binds the prekey id, so the server cannot relabel one signed prekey as
another.

A device has an X25519 identity key, signed prekeys (the current one,
rotated every SIGNED_PREKEY_ROTATION_SECONDS, plus retired ones kept for
a grace period so that sessions started from a cached bundle still open)
and one-time prekeys, each used for at most one X3DH handshake. A
handshake that used no one-time prekey is recorded by its base key (the
initiator's ephemeral key) under the signed prekey it used, so that a
replay of its first message is rejected as long as that prekey exists.
"""

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)

from enctalk.crypto._encoding import (
    b64decode,
    b64encode,
    check_bytes,
    field_bytes,
    field_int,
    field_optional_int,
    uint32,
)
from enctalk.crypto.errors import CryptoError, PrekeyError, SignatureError

logger = logging.getLogger(__name__)

PUBLIC_KEY_SIZE = 32
PRIVATE_KEY_SIZE = 32
SIGNATURE_SIZE = 64

DEVICE_SIGNATURE_LABEL = b"EncTalk_device_key_v1"
PREKEY_SIGNATURE_LABEL = b"EncTalk_signed_prekey_v1"

ONE_TIME_PREKEY_COUNT = 100
ONE_TIME_PREKEY_LOW_WATER = 20
SIGNED_PREKEY_ROTATION_SECONDS = 7 * 24 * 3600
# A retired signed prekey stays usable this long, so that a prekey message
# built from a bundle fetched just before a rotation, and queued on the
# server while the device was offline, can still be opened.
SIGNED_PREKEY_GRACE_SECONDS = 30 * 24 * 3600
# Base keys recorded per signed prekey. Handshakes without a one-time
# prekey happen only while the server has none left to hand out, so a
# signed prekey's lifetime should see far fewer than this.
MAX_BASE_KEYS_PER_SIGNED_PREKEY = 1000

_DEVICE_KEYS_FORMAT = 1


class AccountIdentity:
    """An account identity key pair (Ed25519)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key

    @classmethod
    def generate(cls) -> "AccountIdentity":
        """Make a new random account identity key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> "AccountIdentity":
        """Load an account identity key from its 32-byte raw private key."""
        check_bytes(data, PRIVATE_KEY_SIZE, "account identity private key")
        return cls(Ed25519PrivateKey.from_private_bytes(data))

    def private_bytes(self) -> bytes:
        """Return the 32-byte raw private key."""
        return self._private_key.private_bytes_raw()

    def public_bytes(self) -> bytes:
        """Return the 32-byte raw public key."""
        return self._private_key.public_key().public_bytes_raw()

    def sign(self, data: bytes) -> bytes:
        """Sign data with Ed25519 and return the 64-byte signature."""
        return self._private_key.sign(data)


def verify_signature(public: bytes, signature: bytes, data: bytes) -> None:
    """Verify an Ed25519 signature, raising SignatureError if it does not verify."""
    if not isinstance(public, bytes) or len(public) != PUBLIC_KEY_SIZE:
        raise SignatureError("malformed Ed25519 public key")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise SignatureError("malformed Ed25519 signature")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        raise SignatureError("Ed25519 signature does not verify") from None


def _device_signed_data(device_identity_public: bytes) -> bytes:
    check_bytes(device_identity_public, PUBLIC_KEY_SIZE, "device identity key")
    return DEVICE_SIGNATURE_LABEL + device_identity_public


def _prekey_signed_data(prekey_id: int, prekey_public: bytes) -> bytes:
    check_bytes(prekey_public, PUBLIC_KEY_SIZE, "signed prekey")
    return PREKEY_SIGNATURE_LABEL + uint32(prekey_id) + prekey_public


def sign_device_key(aik: AccountIdentity, device_identity_public: bytes) -> bytes:
    """Sign a device's X25519 identity public key with the account identity key."""
    return aik.sign(_device_signed_data(device_identity_public))


def verify_device_key(
    aik_public: bytes, device_identity_public: bytes, signature: bytes
) -> None:
    """Check that the account identity key signed this device identity key."""
    try:
        data = _device_signed_data(device_identity_public)
    except (TypeError, ValueError):
        raise SignatureError("malformed device identity key") from None
    verify_signature(aik_public, signature, data)


def sign_prekey(aik: AccountIdentity, prekey_id: int, prekey_public: bytes) -> bytes:
    """Sign a signed prekey and its id with the account identity key."""
    return aik.sign(_prekey_signed_data(prekey_id, prekey_public))


def verify_prekey(
    aik_public: bytes, prekey_id: int, prekey_public: bytes, signature: bytes
) -> None:
    """Check that the account identity key signed this prekey under this id."""
    try:
        data = _prekey_signed_data(prekey_id, prekey_public)
    except (TypeError, ValueError):
        raise SignatureError("malformed signed prekey or prekey id") from None
    verify_signature(aik_public, signature, data)


def x25519_public_bytes(private_key: X25519PrivateKey) -> bytes:
    """Return the 32-byte raw public key of an X25519 private key."""
    return private_key.public_key().public_bytes_raw()


def x25519_shared_secret(private_key: X25519PrivateKey, public: bytes) -> bytes:
    """Compute X25519(private_key, public) (RFC 7748).

    Raises CryptoError for a malformed public key or a low-order point,
    which gives an all-zero shared secret.
    """
    if not isinstance(public, bytes) or len(public) != PUBLIC_KEY_SIZE:
        raise CryptoError("malformed X25519 public key")
    try:
        return private_key.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise CryptoError("X25519 public key is a low-order point") from None


class SignedPrekeyPublic(TypedDict):
    """The public half of a signed prekey, as uploaded in a prekey bundle."""

    prekey_id: int
    public_key: bytes
    signature: bytes
    created_at: int


@dataclass
class SignedPrekey:
    """A signed prekey pair with its signature and lifetime (unix seconds)."""

    prekey_id: int
    private_key: X25519PrivateKey
    signature: bytes
    created_at: int
    expires_at: int | None = None  # set when a newer signed prekey replaces it
    # Initiator ephemeral keys of accepted handshakes that used this prekey
    # and no one-time prekey, oldest first.
    base_keys: list[bytes] = field(default_factory=list)

    def public(self) -> SignedPrekeyPublic:
        """Return the bundle fields of this signed prekey."""
        return SignedPrekeyPublic(
            prekey_id=self.prekey_id,
            public_key=x25519_public_bytes(self.private_key),
            signature=self.signature,
            created_at=self.created_at,
        )


def _load_x25519(state: dict[str, Any], key: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(field_bytes(state, key, 32))


class DeviceKeys:
    """The private keys of one device: identity key, signed and one-time prekeys.

    Prekey ids count up from 1 and are never reused on one device. All
    methods are pure computations on memory. The caller persists the result
    of :meth:`to_dict` in the vault after every change, in particular after
    :meth:`take_one_time_prekey` and :meth:`record_base_key`, or a used
    one-time prekey or an accepted handshake comes back.
    """

    def __init__(
        self,
        identity_key: X25519PrivateKey,
        device_signature: bytes,
        signed_prekeys: dict[int, SignedPrekey],
        current_signed_prekey_id: int,
        one_time_prekeys: dict[int, X25519PrivateKey],
        next_signed_prekey_id: int,
        next_one_time_prekey_id: int,
    ) -> None:
        if current_signed_prekey_id not in signed_prekeys:
            raise ValueError("the current signed prekey is missing")
        self.identity_key = identity_key
        self.device_signature = device_signature
        self.signed_prekeys = signed_prekeys
        self.current_signed_prekey_id = current_signed_prekey_id
        self.one_time_prekeys = one_time_prekeys
        self._next_signed_prekey_id = next_signed_prekey_id
        self._next_one_time_prekey_id = next_one_time_prekey_id

    @classmethod
    def generate(
        cls,
        aik: AccountIdentity,
        one_time_count: int = ONE_TIME_PREKEY_COUNT,
        now: int | None = None,
    ) -> "DeviceKeys":
        """Make a device identity key signed by the AIK, a signed prekey and
        ``one_time_count`` one-time prekeys.

        ``now`` is the creation time in unix seconds, the current time if None.
        """
        created_at = int(time.time()) if now is None else now
        identity_key = X25519PrivateKey.generate()
        signature = sign_device_key(aik, x25519_public_bytes(identity_key))
        first = cls._make_signed_prekey(aik, 1, created_at)
        device = cls(identity_key, signature, {1: first}, 1, {}, 2, 1)
        device.new_one_time_prekeys(one_time_count)
        return device

    @staticmethod
    def _make_signed_prekey(
        aik: AccountIdentity, prekey_id: int, now: int
    ) -> SignedPrekey:
        private_key = X25519PrivateKey.generate()
        signature = sign_prekey(aik, prekey_id, x25519_public_bytes(private_key))
        return SignedPrekey(prekey_id, private_key, signature, now)

    def identity_public(self) -> bytes:
        """Return the 32-byte X25519 device identity public key."""
        return x25519_public_bytes(self.identity_key)

    def signed_prekey_public(self) -> SignedPrekeyPublic:
        """Return the bundle fields of the current signed prekey."""
        return self.signed_prekeys[self.current_signed_prekey_id].public()

    def signed_prekey(self, prekey_id: int) -> X25519PrivateKey:
        """Return the private key of a current or retired signed prekey.

        Raises PrekeyError if the id is unknown or was pruned.
        """
        record = self.signed_prekeys.get(prekey_id)
        if record is None:
            raise PrekeyError(f"signed prekey {prekey_id} is unknown or expired")
        return record.private_key

    def needs_signed_prekey_rotation(self, now: int) -> bool:
        """Return True once the current signed prekey is due for rotation."""
        current = self.signed_prekeys[self.current_signed_prekey_id]
        return now - current.created_at >= SIGNED_PREKEY_ROTATION_SECONDS

    def rotate_signed_prekey(
        self,
        aik: AccountIdentity,
        now: int,
        grace_seconds: int = SIGNED_PREKEY_GRACE_SECONDS,
    ) -> SignedPrekeyPublic:
        """Replace the current signed prekey and return the new one's bundle fields.

        The replaced prekey stays available until ``now + grace_seconds``.
        Retired prekeys whose grace period has ended are pruned.
        """
        if grace_seconds < 0:
            raise ValueError("grace_seconds must not be negative")
        self.signed_prekeys[self.current_signed_prekey_id].expires_at = (
            now + grace_seconds
        )
        prekey_id = self._next_signed_prekey_id
        self._next_signed_prekey_id += 1
        self.signed_prekeys[prekey_id] = self._make_signed_prekey(aik, prekey_id, now)
        self.current_signed_prekey_id = prekey_id
        self.prune_signed_prekeys(now)
        logger.info("rotated signed prekey, new id %d", prekey_id)
        return self.signed_prekey_public()

    def prune_signed_prekeys(self, now: int) -> list[int]:
        """Delete expired retired signed prekeys and return their ids."""
        expired = [
            prekey_id
            for prekey_id, record in self.signed_prekeys.items()
            if record.expires_at is not None and record.expires_at <= now
        ]
        for prekey_id in expired:
            del self.signed_prekeys[prekey_id]
        return expired

    def new_one_time_prekeys(self, count: int) -> list[tuple[int, bytes]]:
        """Make ``count`` one-time prekeys and return their (id, public key) pairs."""
        if count < 0:
            raise ValueError("count must not be negative")
        created = []
        for _ in range(count):
            prekey_id = self._next_one_time_prekey_id
            self._next_one_time_prekey_id += 1
            private_key = X25519PrivateKey.generate()
            self.one_time_prekeys[prekey_id] = private_key
            created.append((prekey_id, x25519_public_bytes(private_key)))
        return created

    def one_time_prekey(self, prekey_id: int) -> X25519PrivateKey:
        """Return a one-time prekey without removing it, or raise PrekeyError."""
        private_key = self.one_time_prekeys.get(prekey_id)
        if private_key is None:
            raise PrekeyError(f"one-time prekey {prekey_id} is unknown or already used")
        return private_key

    def take_one_time_prekey(self, prekey_id: int) -> X25519PrivateKey:
        """Remove and return a one-time prekey. A second take raises PrekeyError."""
        private_key = self.one_time_prekey(prekey_id)
        del self.one_time_prekeys[prekey_id]
        return private_key

    def base_key_used(self, prekey_id: int, base_key: bytes) -> bool:
        """Return True if :meth:`record_base_key` recorded this pair."""
        record = self.signed_prekeys.get(prekey_id)
        return record is not None and base_key in record.base_keys

    def record_base_key(self, prekey_id: int, base_key: bytes) -> None:
        """Record an accepted handshake that used no one-time prekey.

        Raises PrekeyError if the signed prekey is unknown or was pruned.
        """
        check_bytes(base_key, PUBLIC_KEY_SIZE, "base key")
        record = self.signed_prekeys.get(prekey_id)
        if record is None:
            raise PrekeyError(f"signed prekey {prekey_id} is unknown or expired")
        record.base_keys.append(base_key)
        if len(record.base_keys) > MAX_BASE_KEYS_PER_SIGNED_PREKEY:
            # NOTE: a replay of the evicted handshake's first message is
            # accepted again until this signed prekey is pruned.
            del record.base_keys[0]
            logger.debug("evicted the oldest base key of signed prekey %d", prekey_id)

    def resign(self, aik: AccountIdentity) -> None:
        """Sign the identity key and every signed prekey again under a new AIK."""
        self.device_signature = sign_device_key(aik, self.identity_public())
        for record in self.signed_prekeys.values():
            public = x25519_public_bytes(record.private_key)
            record.signature = sign_prekey(aik, record.prekey_id, public)

    def copy(self) -> "DeviceKeys":
        """Return an independent copy that shares only the immutable key objects.

        Taking a prekey, recording a base key or rotating the signed prekey
        on one leaves the other as is.
        """
        signed_prekeys = {
            prekey_id: replace(record, base_keys=list(record.base_keys))
            for prekey_id, record in self.signed_prekeys.items()
        }
        return DeviceKeys(
            self.identity_key,
            self.device_signature,
            signed_prekeys,
            self.current_signed_prekey_id,
            dict(self.one_time_prekeys),
            self._next_signed_prekey_id,
            self._next_one_time_prekey_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the private state as a JSON-safe dict (base64 strings)."""
        return {
            "format": _DEVICE_KEYS_FORMAT,
            "identity_key": b64encode(self.identity_key.private_bytes_raw()),
            "device_signature": b64encode(self.device_signature),
            "current_signed_prekey_id": self.current_signed_prekey_id,
            "signed_prekeys": [
                {
                    "id": record.prekey_id,
                    "private_key": b64encode(record.private_key.private_bytes_raw()),
                    "signature": b64encode(record.signature),
                    "created_at": record.created_at,
                    "expires_at": record.expires_at,
                    "base_keys": [b64encode(key) for key in record.base_keys],
                }
                for record in self.signed_prekeys.values()
            ],
            "one_time_prekeys": [
                {"id": prekey_id, "private_key": b64encode(key.private_bytes_raw())}
                for prekey_id, key in self.one_time_prekeys.items()
            ],
            "next_signed_prekey_id": self._next_signed_prekey_id,
            "next_one_time_prekey_id": self._next_one_time_prekey_id,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "DeviceKeys":
        """Load :meth:`to_dict` output, raising CryptoError if it is invalid."""
        if not isinstance(state, dict) or state.get("format") != _DEVICE_KEYS_FORMAT:
            raise CryptoError("unsupported device key state")
        signed_prekeys = {}
        for item in _list_of_dicts(state, "signed_prekeys"):
            record = SignedPrekey(
                prekey_id=field_int(item, "id"),
                private_key=_load_x25519(item, "private_key"),
                signature=field_bytes(item, "signature", SIGNATURE_SIZE),
                created_at=field_int(item, "created_at"),
                expires_at=field_optional_int(item, "expires_at"),
                base_keys=_load_base_keys(item),
            )
            signed_prekeys[record.prekey_id] = record
        one_time_prekeys = {
            field_int(item, "id"): _load_x25519(item, "private_key")
            for item in _list_of_dicts(state, "one_time_prekeys")
        }
        try:
            return cls(
                identity_key=_load_x25519(state, "identity_key"),
                device_signature=field_bytes(state, "device_signature", SIGNATURE_SIZE),
                signed_prekeys=signed_prekeys,
                current_signed_prekey_id=field_int(state, "current_signed_prekey_id"),
                one_time_prekeys=one_time_prekeys,
                next_signed_prekey_id=field_int(state, "next_signed_prekey_id"),
                next_one_time_prekey_id=field_int(state, "next_one_time_prekey_id"),
            )
        except ValueError as error:
            raise CryptoError(f"invalid device key state: {error}") from None


def _load_base_keys(item: dict[str, Any]) -> list[bytes]:
    # State written before base keys were recorded has no such field.
    entries = item.get("base_keys", [])
    if not isinstance(entries, list):
        raise CryptoError("stored state has an invalid 'base_keys'")
    return [b64decode(entry, PUBLIC_KEY_SIZE) for entry in entries]


def _list_of_dicts(state: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = state.get(key)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise CryptoError(f"stored state has an invalid {key!r}")
    return items
