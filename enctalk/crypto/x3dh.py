"""X3DH key agreement (Signal's X3DH specification) over X25519.

The responder publishes a prekey bundle: its device identity key IK_B, a
signed prekey SPK_B, optionally a one-time prekey OPK_B, and its account
identity key (AIK) with the AIK's signatures over IK_B and SPK_B. The
initiator verifies both signatures first, makes an ephemeral key EK_A and
computes::

    DH1 = X25519(IK_A, SPK_B)    DH2 = X25519(EK_A, IK_B)
    DH3 = X25519(EK_A, SPK_B)    DH4 = X25519(EK_A, OPK_B)   (if OPK_B is present)
    SK  = HKDF-SHA256(F || DH1 || DH2 || DH3 [|| DH4],
                      salt=32 zero bytes, info="EncTalk_X3DH_v1", L=32)
    AD  = "EncTalk_X3DH_AD_v1" || IK_A || IK_B || AIK_A || AIK_B

where F is 32 0xFF bytes, the X25519 keys (IK, SPK, EK, OPK) are raw
32-byte public keys and the AIKs raw 32-byte Ed25519 public keys, so AD
has a fixed length and parses one way. Unlike Signal, identity keys are X25519 only.
Signing is the job of the separate Ed25519 AIK (see
:mod:`enctalk.crypto.keys`), so the initial message also carries the
initiator's AIK and device signature, which the responder verifies.

The device signature alone does not tie a device key to one account:
anyone can sign a published device key with their own AIK. AD therefore
contains both AIKs, each side taking its own from its own keys. An initial
message whose AIK and device signature were swapped for those of another
account yields a different AD at the responder, and its first ratchet
message fails to authenticate.

The one-time prekey is the only unsigned input. A server that swaps it
still cannot compute SK, because DH1 to DH3 need the identity and signed
prekey private keys.
"""

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from enctalk.crypto._encoding import check_bytes
from enctalk.crypto.errors import CryptoError, PrekeyError
from enctalk.crypto.kdf import hkdf
from enctalk.crypto.keys import (
    PUBLIC_KEY_SIZE,
    DeviceKeys,
    verify_device_key,
    verify_prekey,
    x25519_public_bytes,
    x25519_shared_secret,
)

X3DH_INFO = b"EncTalk_X3DH_v1"
X3DH_AD_LABEL = b"EncTalk_X3DH_AD_v1"
SHARED_KEY_SIZE = 32
ASSOCIATED_DATA_SIZE = len(X3DH_AD_LABEL) + 4 * PUBLIC_KEY_SIZE

_F = b"\xff" * 32
_ZERO_SALT = bytes(32)

# Test hook: the ephemeral key generator, replaced by tests that need
# reproducible handshakes.
_generate_ephemeral = X25519PrivateKey.generate


@dataclass
class PreKeyBundle:
    """The public keys that a device publishes so that others can start sessions."""

    identity_key: bytes  # device X25519 identity public key
    signed_prekey_id: int
    signed_prekey: bytes
    signed_prekey_signature: bytes  # AIK signature, see keys.sign_prekey
    one_time_prekey_id: int | None
    one_time_prekey: bytes | None
    account_identity_key: bytes  # AIK Ed25519 public key
    device_signature: bytes  # AIK signature over identity_key

    @classmethod
    def from_device(
        cls,
        device: DeviceKeys,
        aik_public: bytes,
        one_time_prekey_id: int | None = None,
    ) -> "PreKeyBundle":
        """Build the bundle of a local device, as the server would return it."""
        signed = device.signed_prekey_public()
        one_time_prekey = None
        if one_time_prekey_id is not None:
            private_key = device.one_time_prekey(one_time_prekey_id)
            one_time_prekey = x25519_public_bytes(private_key)
        return cls(
            identity_key=device.identity_public(),
            signed_prekey_id=signed["prekey_id"],
            signed_prekey=signed["public_key"],
            signed_prekey_signature=signed["signature"],
            one_time_prekey_id=one_time_prekey_id,
            one_time_prekey=one_time_prekey,
            account_identity_key=aik_public,
            device_signature=device.device_signature,
        )


@dataclass(frozen=True)
class InitialMessageHeader:
    """The X3DH fields that the initiator sends with its first messages."""

    identity_key: bytes  # initiator's device X25519 identity public key
    ephemeral_key: bytes
    signed_prekey_id: int
    one_time_prekey_id: int | None
    account_identity_key: bytes  # initiator's AIK Ed25519 public key
    device_signature: bytes  # initiator's AIK signature over identity_key


def _shared_key(dh_outputs: list[bytes]) -> bytes:
    return hkdf(_F + b"".join(dh_outputs), _ZERO_SALT, X3DH_INFO, SHARED_KEY_SIZE)


def associated_data(
    initiator_identity_key: bytes,
    responder_identity_key: bytes,
    initiator_aik_public: bytes,
    responder_aik_public: bytes,
) -> bytes:
    """Return the session AD that binds both device identity keys and both AIKs.

    Raises TypeError or ValueError unless every key is 32 bytes.
    """
    keys = {
        "initiator identity key": initiator_identity_key,
        "responder identity key": responder_identity_key,
        "initiator AIK": initiator_aik_public,
        "responder AIK": responder_aik_public,
    }
    for name, key in keys.items():
        check_bytes(key, PUBLIC_KEY_SIZE, name)
    return X3DH_AD_LABEL + b"".join(keys.values())


def _check_one_time_prekey(bundle: PreKeyBundle) -> None:
    if (bundle.one_time_prekey_id is None) != (bundle.one_time_prekey is None):
        raise CryptoError("prekey bundle has a one-time prekey id without a key")
    key = bundle.one_time_prekey
    if key is not None and (not isinstance(key, bytes) or len(key) != PUBLIC_KEY_SIZE):
        raise CryptoError("prekey bundle has a malformed one-time prekey")


def initiate(
    own_device: DeviceKeys, own_aik_public: bytes, bundle: PreKeyBundle
) -> tuple[bytes, bytes, InitialMessageHeader]:
    """Run X3DH as the initiator against a prekey bundle.

    Returns (shared key SK, associated data AD, initial message header).
    Raises SignatureError if the bundle's AIK did not sign its identity key
    and signed prekey, and CryptoError for a malformed bundle.
    """
    verify_device_key(
        bundle.account_identity_key, bundle.identity_key, bundle.device_signature
    )
    verify_prekey(
        bundle.account_identity_key,
        bundle.signed_prekey_id,
        bundle.signed_prekey,
        bundle.signed_prekey_signature,
    )
    _check_one_time_prekey(bundle)

    ephemeral = _generate_ephemeral()
    dh_outputs = [
        x25519_shared_secret(own_device.identity_key, bundle.signed_prekey),
        x25519_shared_secret(ephemeral, bundle.identity_key),
        x25519_shared_secret(ephemeral, bundle.signed_prekey),
    ]
    if bundle.one_time_prekey is not None:
        dh_outputs.append(x25519_shared_secret(ephemeral, bundle.one_time_prekey))

    own_identity = own_device.identity_public()
    header = InitialMessageHeader(
        identity_key=own_identity,
        ephemeral_key=x25519_public_bytes(ephemeral),
        signed_prekey_id=bundle.signed_prekey_id,
        one_time_prekey_id=bundle.one_time_prekey_id,
        account_identity_key=own_aik_public,
        device_signature=own_device.device_signature,
    )
    ad = associated_data(
        own_identity,
        bundle.identity_key,
        own_aik_public,
        bundle.account_identity_key,
    )
    return _shared_key(dh_outputs), ad, header


def compute_responder_key(
    own_device: DeviceKeys,
    initial: InitialMessageHeader,
    *,
    own_aik_public: bytes,
) -> tuple[bytes, bytes]:
    """Run X3DH as the responder without consuming the one-time prekey.

    ``own_aik_public`` is the AIK of this device's account, which goes into
    AD as AIK_B. Returns (SK, AD). Raises SignatureError if the initiator's
    AIK did not sign its identity key, PrekeyError if a referenced prekey
    is unknown or a handshake without a one-time prekey was already
    accepted (see :meth:`DeviceKeys.record_base_key`), and CryptoError for
    a malformed key. The session layer uses this to consume the one-time
    prekey, or record the base key, only after the first message decrypts.
    """
    verify_device_key(
        initial.account_identity_key, initial.identity_key, initial.device_signature
    )
    signed_prekey = own_device.signed_prekey(initial.signed_prekey_id)
    if initial.one_time_prekey_id is None and own_device.base_key_used(
        initial.signed_prekey_id, initial.ephemeral_key
    ):
        raise PrekeyError("this handshake was already accepted")
    dh_outputs = [
        x25519_shared_secret(signed_prekey, initial.identity_key),
        x25519_shared_secret(own_device.identity_key, initial.ephemeral_key),
        x25519_shared_secret(signed_prekey, initial.ephemeral_key),
    ]
    if initial.one_time_prekey_id is not None:
        one_time_prekey = own_device.one_time_prekey(initial.one_time_prekey_id)
        dh_outputs.append(x25519_shared_secret(one_time_prekey, initial.ephemeral_key))
    ad = associated_data(
        initial.identity_key,
        own_device.identity_public(),
        initial.account_identity_key,
        own_aik_public,
    )
    return _shared_key(dh_outputs), ad


def respond(
    own_device: DeviceKeys,
    initial: InitialMessageHeader,
    sender_identity_key: bytes | None = None,
    *,
    own_aik_public: bytes,
) -> tuple[bytes, bytes]:
    """Run X3DH as the responder and consume the one-time prekey.

    Without a one-time prekey, records the base key instead, so that the
    same initial message is accepted only once.

    Returns (SK, AD). ``sender_identity_key``, if given, must equal the
    identity key in the header. ``own_aik_public`` and the exceptions are
    as in :func:`compute_responder_key`.
    """
    if sender_identity_key is not None and sender_identity_key != initial.identity_key:
        raise CryptoError("sender identity key does not match the initial message")
    result = compute_responder_key(own_device, initial, own_aik_public=own_aik_public)
    consume_prekeys(own_device, initial)
    return result


def consume_prekeys(own_device: DeviceKeys, initial: InitialMessageHeader) -> None:
    """Mark an accepted handshake as used, so its initial message opens once.

    Takes the one-time prekey if the handshake used one, else records the
    base key under the signed prekey.
    """
    if initial.one_time_prekey_id is not None:
        own_device.take_one_time_prekey(initial.one_time_prekey_id)
    else:
        own_device.record_base_key(initial.signed_prekey_id, initial.ephemeral_key)
