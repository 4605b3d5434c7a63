"""Known-answer tests of the primitives, runnable inside a built executable.

Each check computes a published test vector with the same functions the
client uses and compares it with the published answer. Sources: NIST SP
800-38A F.3.17 and F.3.18 (CFB128-AES256), RFC 5869 A.1 (HKDF-SHA256),
RFC 7748 section 6.1 (X25519), RFC 8032 section 7.1 test 1 (Ed25519),
RFC 7914 section 11 (PBKDF2-HMAC-SHA256, 1 iteration). No I/O: the caller
prints the result.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from enctalk.crypto import aead, kdf
from enctalk.crypto.errors import CryptoError
from enctalk.crypto.keys import (
    AccountIdentity,
    verify_signature,
    x25519_public_bytes,
    x25519_shared_secret,
)

CFB_KEY = bytes.fromhex(
    "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
)
CFB_IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
CFB_PLAINTEXT = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)
CFB_CIPHERTEXT = bytes.fromhex(
    "dc7e84bfda79164b7ecd8486985d386039ffed143b28b1c832113c6331e5407b"
    "df10132415e54b92a13ed0a8267ae2f975a385741ab9cef82031623d55b1e471"
)
HKDF_OKM = bytes.fromhex(
    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
    "34007208d5b887185865"
)
X25519_ALICE_PRIVATE = bytes.fromhex(
    "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
)
X25519_ALICE_PUBLIC = bytes.fromhex(
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
)
X25519_BOB_PUBLIC = bytes.fromhex(
    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
)
X25519_SHARED = bytes.fromhex(
    "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
)
ED25519_PRIVATE = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
)
ED25519_PUBLIC = bytes.fromhex(
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
)
ED25519_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
PBKDF2_DERIVED = bytes.fromhex(
    "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
    "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
)


def _check_cfb() -> bool:
    cipher = Cipher(algorithms.AES(CFB_KEY), aead._CFB(CFB_IV))
    encryptor = cipher.encryptor()
    ciphertext = encryptor.update(CFB_PLAINTEXT) + encryptor.finalize()
    decryptor = cipher.decryptor()
    plaintext = decryptor.update(CFB_CIPHERTEXT) + decryptor.finalize()
    return ciphertext == CFB_CIPHERTEXT and plaintext == CFB_PLAINTEXT


def _check_hkdf() -> bool:
    okm = kdf.hkdf(
        input_key=bytes([0x0B] * 22),
        salt=bytes(range(0x00, 0x0D)),
        info=bytes(range(0xF0, 0xFA)),
        length=42,
    )
    return okm == HKDF_OKM


def _check_x25519() -> bool:
    alice = X25519PrivateKey.from_private_bytes(X25519_ALICE_PRIVATE)
    return (
        x25519_public_bytes(alice) == X25519_ALICE_PUBLIC
        and x25519_shared_secret(alice, X25519_BOB_PUBLIC) == X25519_SHARED
    )


def _check_ed25519() -> bool:
    identity = AccountIdentity.from_private_bytes(ED25519_PRIVATE)
    if identity.public_bytes() != ED25519_PUBLIC:
        return False
    if identity.sign(b"") != ED25519_SIGNATURE:
        return False
    try:
        verify_signature(ED25519_PUBLIC, ED25519_SIGNATURE, b"")
    except CryptoError:
        return False
    return True


def _check_pbkdf2() -> bool:
    return kdf.pbkdf2_sha256(b"passwd", b"salt", 1, 64) == PBKDF2_DERIVED


def _check_aead_round_trip() -> bool:
    key = bytes(range(32))
    sealed = aead.encrypt(key, b"self-test", b"ad", b"EncTalk_selftest_v1")
    return aead.decrypt(key, sealed, b"ad", b"EncTalk_selftest_v1") == b"self-test"


CHECKS: tuple[tuple[str, Callable[[], bool]], ...] = (
    ("AES-256-CFB128 (NIST SP 800-38A F.3.17, F.3.18)", _check_cfb),
    ("HKDF-SHA256 (RFC 5869 A.1)", _check_hkdf),
    ("X25519 (RFC 7748 6.1)", _check_x25519),
    ("Ed25519 (RFC 8032 7.1 test 1)", _check_ed25519),
    ("PBKDF2-HMAC-SHA256 (RFC 7914 11)", _check_pbkdf2),
    ("AEAD encrypt and decrypt", _check_aead_round_trip),
)


def run_known_answer_tests() -> list[tuple[str, str | None]]:
    """Run every check; return (name, None) on a pass, (name, reason) on a failure."""
    results: list[tuple[str, str | None]] = []
    for name, check in CHECKS:
        try:
            passed = check()
        except Exception as exc:  # Any failure inside a primitive is a result.
            results.append((name, f"{type(exc).__name__}: {exc}"))
            continue
        results.append((name, None if passed else "wrong result"))
    return results
