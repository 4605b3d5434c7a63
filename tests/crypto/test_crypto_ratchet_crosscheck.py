"""Cross-check of RatchetSession against the ``doubleratchet`` package (1.x).

The package is configured with this project's choices:

* root chain: HKDF-SHA256 with salt = root key and info ROOT_INFO, which
  is the package's ``kdf_hkdf``;
* message chain: HMAC-SHA256 with 0x02 for the next chain key and 0x01
  for the message key, which is ``kdf_separate_hmacs`` with the constant
  b"\\x02\\x01", because the package's KDF chain keeps the first 32 output
  bytes as the next chain key;
* X25519, MAX_SKIP and MAX_STORED_SKIPPED_KEYS;
* an AEAD adapter that calls :func:`enctalk.crypto.aead.encrypt` with
  RATCHET_MESSAGE_INFO. The package's ``_build_associated_data`` appends
  our encoded header, so both AEAD calls get the same associated data:
  session AD || caller AD || header.

The package's header is a NamedTuple, not bytes, so messages are
converted between ``header || ciphertext`` and ``EncryptedMessage``. The
header fields and the ciphertext bytes pass through unchanged.

What is compared:

* interoperability: our initiator with the package's responder, and the
  package's initiator with our responder, run a scripted exchange with
  out-of-order delivery, each decrypting the other's ciphertexts.
* derived keys: with the same ratchet key pairs fed to both
  implementations, every message is byte-identical. After every step,
  each party's root key, sending and receiving chain keys and stored
  skipped message keys are equal.

NOTE: where ours raises, the package only warns when a header's pn would
skip more than MAX_SKIP keys of the previous chain, so the script stays
within the limits.
"""

import asyncio
import os
from collections.abc import Iterator
from typing import Any, Protocol

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from doubleratchet import AuthenticationFailedException, EncryptedMessage, Header
from doubleratchet import DoubleRatchet as PackageDoubleRatchet
from doubleratchet import aead as package_aead
from doubleratchet.recommended import (
    HashFunction,
    diffie_hellman_ratchet_curve25519,
    kdf_hkdf,
    kdf_separate_hmacs,
)

from enctalk.crypto import aead, ratchet
from enctalk.crypto._encoding import b64decode
from enctalk.crypto.errors import DecryptionError
from enctalk.crypto.keys import x25519_public_bytes
from enctalk.crypto.ratchet import (
    HEADER_SIZE,
    MAX_SKIP,
    MAX_STORED_SKIPPED_KEYS,
    RATCHET_MESSAGE_INFO,
    ROOT_INFO,
    MessageHeader,
    RatchetSession,
)

SESSION_AD = os.urandom(64)
AD = b"EncTalk caller AD"


class RootChainKDF(kdf_hkdf.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return ROOT_INFO


class MessageChainKDF(kdf_separate_hmacs.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256


class ProjectAEAD(package_aead.AEAD):
    @staticmethod
    async def encrypt(plaintext: bytes, key: bytes, associated_data: bytes) -> bytes:
        return aead.encrypt(key, plaintext, associated_data, RATCHET_MESSAGE_INFO)

    @staticmethod
    async def decrypt(ciphertext: bytes, key: bytes, associated_data: bytes) -> bytes:
        try:
            return aead.decrypt(key, ciphertext, associated_data, RATCHET_MESSAGE_INFO)
        except DecryptionError:
            raise AuthenticationFailedException("tag mismatch") from None


class PackageRatchet(PackageDoubleRatchet):
    @staticmethod
    def _build_associated_data(associated_data: bytes, header: Header) -> bytes:
        encoded = MessageHeader(
            header.ratchet_pub,
            header.previous_sending_chain_length,
            header.sending_chain_length,
        ).encode()
        return associated_data + encoded


class ScriptedCurve25519(diffie_hellman_ratchet_curve25519.DiffieHellmanRatchet):
    """X25519 ratchet whose key pairs come from a list set by the test."""

    private_keys: Iterator[bytes] = iter(())

    @staticmethod
    def _generate_priv() -> bytes:
        return next(ScriptedCurve25519.private_keys)


def _package_config(dh_class: type) -> dict[str, Any]:
    return {
        "diffie_hellman_ratchet_class": dh_class,
        "root_chain_kdf": RootChainKDF,
        "message_chain_kdf": MessageChainKDF,
        "message_chain_constant": b"\x02\x01",
        "dos_protection_threshold": MAX_SKIP,
        "max_num_skipped_message_keys": MAX_STORED_SKIPPED_KEYS,
        "aead": ProjectAEAD,
    }


class Peer(Protocol):
    def encrypt(self, plaintext: bytes) -> bytes: ...
    def decrypt(self, message: bytes) -> bytes: ...
    def keys(self) -> dict[str, Any]: ...


class OurPeer:
    """RatchetSession, created at the first send or receive like the package's."""

    def __init__(
        self,
        shared_key: bytes,
        remote_signed_prekey: bytes | None = None,
        own_signed_prekey: X25519PrivateKey | None = None,
    ) -> None:
        self._shared_key = shared_key
        self._remote_signed_prekey = remote_signed_prekey
        self._own_signed_prekey = own_signed_prekey
        self._session: RatchetSession | None = None

    def _get_session(self) -> RatchetSession:
        if self._session is None:
            if self._remote_signed_prekey is not None:
                self._session = RatchetSession.initiator(
                    self._shared_key, self._remote_signed_prekey, SESSION_AD
                )
            else:
                assert self._own_signed_prekey is not None
                self._session = RatchetSession.responder(
                    self._shared_key, self._own_signed_prekey, SESSION_AD
                )
        return self._session

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._get_session().encrypt(plaintext, AD)

    def decrypt(self, message: bytes) -> bytes:
        return self._get_session().decrypt(message, AD)

    def keys(self) -> dict[str, Any]:
        state = self._get_session().to_dict()

        def optional(text: str | None) -> bytes | None:
            return None if text is None else b64decode(text)

        return {
            "root_key": b64decode(state["root_key"]),
            "send_chain_key": optional(state["send_chain_key"]),
            "recv_chain_key": optional(state["recv_chain_key"]),
            "skipped": {
                (b64decode(dh), n, b64decode(key)) for dh, n, key in state["skipped"]
            },
        }


class PackagePeer:
    """The package's DoubleRatchet behind the same interface as OurPeer."""

    def __init__(
        self,
        shared_key: bytes,
        dh_class: type,
        remote_signed_prekey: bytes | None = None,
        own_signed_prekey: X25519PrivateKey | None = None,
    ) -> None:
        self._shared_key = shared_key
        self._config = _package_config(dh_class)
        self._remote_signed_prekey = remote_signed_prekey
        self._own_signed_prekey = own_signed_prekey
        self._ratchet: PackageRatchet | None = None

    def encrypt(self, plaintext: bytes) -> bytes:
        if self._ratchet is None:
            assert self._remote_signed_prekey is not None
            self._ratchet, message = asyncio.run(
                PackageRatchet.encrypt_initial_message(
                    shared_secret=self._shared_key,
                    recipient_ratchet_pub=self._remote_signed_prekey,
                    message=plaintext,
                    associated_data=SESSION_AD + AD,
                    **self._config,
                )
            )
        else:
            message = asyncio.run(
                self._ratchet.encrypt_message(plaintext, SESSION_AD + AD)
            )
        header = message.header
        encoded = MessageHeader(
            header.ratchet_pub,
            header.previous_sending_chain_length,
            header.sending_chain_length,
        ).encode()
        return encoded + message.ciphertext

    def decrypt(self, message: bytes) -> bytes:
        header = MessageHeader.decode(message)
        converted = EncryptedMessage(
            header=Header(header.dh_public, header.pn, header.n),
            ciphertext=message[HEADER_SIZE:],
        )
        if self._ratchet is None:
            assert self._own_signed_prekey is not None
            self._ratchet, plaintext = asyncio.run(
                PackageRatchet.decrypt_initial_message(
                    shared_secret=self._shared_key,
                    own_ratchet_priv=self._own_signed_prekey.private_bytes_raw(),
                    message=converted,
                    associated_data=SESSION_AD + AD,
                    **self._config,
                )
            )
            return plaintext
        return asyncio.run(self._ratchet.decrypt_message(converted, SESSION_AD + AD))

    def keys(self) -> dict[str, Any]:
        assert self._ratchet is not None
        model = self._ratchet.model
        chains = model.diffie_hellman_ratchet.symmetric_key_ratchet
        return {
            "root_key": model.diffie_hellman_ratchet.root_chain.key,
            "send_chain_key": chains.sending_chain and chains.sending_chain.key,
            "recv_chain_key": chains.receiving_chain and chains.receiving_chain.key,
            "skipped": {
                (entry.ratchet_pub, entry.index, entry.message_key)
                for entry in model.skipped_message_keys
            },
        }


# (party, action, label): "send" encrypts a new message, "recv" delivers the
# message with that label. Covers both directions, several DH steps, skipped
# keys in the current chain and in a previous chain.
SCRIPT = [
    ("A", "send", "a0"),
    ("A", "send", "a1"),
    ("A", "send", "a2"),
    ("B", "recv", "a0"),
    ("B", "recv", "a2"),
    ("B", "send", "b0"),
    ("B", "send", "b1"),
    ("A", "recv", "b1"),
    ("A", "recv", "b0"),
    ("A", "send", "a3"),
    ("B", "recv", "a3"),
    ("B", "recv", "a1"),
    ("B", "send", "b2"),
    ("A", "recv", "b2"),
    ("A", "send", "a4"),
    ("A", "send", "a5"),
    ("A", "send", "a6"),
    ("B", "recv", "a6"),
    ("B", "recv", "a4"),
    ("B", "send", "b3"),
    ("A", "recv", "b3"),
    ("B", "recv", "a5"),
]


def _run_script(alice: Peer, bob: Peer) -> dict[str, bytes]:
    peers = {"A": alice, "B": bob}
    sent: dict[str, bytes] = {}
    for party, action, label in SCRIPT:
        if action == "send":
            sent[label] = peers[party].encrypt(label.encode())
        else:
            assert peers[party].decrypt(sent[label]) == label.encode(), label
    return sent


def _handshake() -> tuple[bytes, X25519PrivateKey]:
    return os.urandom(32), X25519PrivateKey.generate()


def test_our_initiator_talks_to_package_responder() -> None:
    shared_key, signed_prekey = _handshake()
    alice = OurPeer(shared_key, remote_signed_prekey=x25519_public_bytes(signed_prekey))
    bob = PackagePeer(
        shared_key,
        diffie_hellman_ratchet_curve25519.DiffieHellmanRatchet,
        own_signed_prekey=signed_prekey,
    )
    _run_script(alice, bob)


def test_package_initiator_talks_to_our_responder() -> None:
    shared_key, signed_prekey = _handshake()
    alice = PackagePeer(
        shared_key,
        diffie_hellman_ratchet_curve25519.DiffieHellmanRatchet,
        remote_signed_prekey=x25519_public_bytes(signed_prekey),
    )
    bob = OurPeer(shared_key, own_signed_prekey=signed_prekey)
    _run_script(alice, bob)


def test_package_rejects_our_tampered_message() -> None:
    shared_key, signed_prekey = _handshake()
    alice = OurPeer(shared_key, remote_signed_prekey=x25519_public_bytes(signed_prekey))
    bob = PackagePeer(
        shared_key,
        diffie_hellman_ratchet_curve25519.DiffieHellmanRatchet,
        own_signed_prekey=signed_prekey,
    )
    message = bytearray(alice.encrypt(b"hello"))
    message[-1] ^= 1
    with pytest.raises(AuthenticationFailedException):
        bob.decrypt(bytes(message))


def test_both_implementations_derive_identical_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared_key, signed_prekey = _handshake()
    signed_public = x25519_public_bytes(signed_prekey)
    ratchet_keys = [X25519PrivateKey.generate() for _ in range(12)]

    ours_iter = iter(ratchet_keys)
    monkeypatch.setattr(ratchet, "_generate_key_pair", lambda: next(ours_iter))
    ScriptedCurve25519.private_keys = iter(k.private_bytes_raw() for k in ratchet_keys)

    our_peers = {
        "A": OurPeer(shared_key, remote_signed_prekey=signed_public),
        "B": OurPeer(shared_key, own_signed_prekey=signed_prekey),
    }
    package_peers = {
        "A": PackagePeer(
            shared_key, ScriptedCurve25519, remote_signed_prekey=signed_public
        ),
        "B": PackagePeer(
            shared_key, ScriptedCurve25519, own_signed_prekey=signed_prekey
        ),
    }
    sent: dict[str, bytes] = {}
    for party, action, label in SCRIPT:
        ours, theirs = our_peers[party], package_peers[party]
        if action == "send":
            message = ours.encrypt(label.encode())
            assert theirs.encrypt(label.encode()) == message, label
            sent[label] = message
        else:
            assert ours.decrypt(sent[label]) == label.encode()
            assert theirs.decrypt(sent[label]) == label.encode()
        our_keys, package_keys = ours.keys(), theirs.keys()
        for name in ("root_key", "send_chain_key", "recv_chain_key", "skipped"):
            assert our_keys[name] == package_keys[name], (label, name)
