"""Known-answer tests for the primitives under enctalk.crypto.

Sources: NIST SP 800-38A appendix F.3.17/F.3.18, RFC 5869 appendix A.1,
RFC 7748 section 6.1, RFC 8032 section 7.1 test 1, RFC 7914 section 11.
"""

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.modes import ModeWithInitializationVector

from enctalk.crypto import aead, kdf
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
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
CFB_CIPHERTEXT = bytes.fromhex(
    "dc7e84bfda79164b7ecd8486985d3860"
    "39ffed143b28b1c832113c6331e5407b"
    "df10132415e54b92a13ed0a8267ae2f9"
    "75a385741ab9cef82031623d55b1e471"
)


def _cfb_cipher() -> Cipher[ModeWithInitializationVector]:
    # The same mode class that the AEAD module selected at import time.
    return Cipher(algorithms.AES(CFB_KEY), aead._CFB(CFB_IV))


def test_cfb128_aes256_encrypt_sp800_38a_f_3_17() -> None:
    encryptor = _cfb_cipher().encryptor()
    ciphertext = encryptor.update(CFB_PLAINTEXT) + encryptor.finalize()
    assert ciphertext == CFB_CIPHERTEXT


def test_cfb128_aes256_decrypt_sp800_38a_f_3_18() -> None:
    decryptor = _cfb_cipher().decryptor()
    plaintext = decryptor.update(CFB_CIPHERTEXT) + decryptor.finalize()
    assert plaintext == CFB_PLAINTEXT


def test_hkdf_sha256_rfc5869_a1() -> None:
    okm = kdf.hkdf(
        input_key=bytes([0x0B] * 22),
        salt=bytes(range(0x00, 0x0D)),
        info=bytes(range(0xF0, 0xFA)),
        length=42,
    )
    assert okm == bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db0"
        "2d56ecc4c5bf34007208d5b887185865"
    )


def test_x25519_rfc7748_section_6_1() -> None:
    alice = X25519PrivateKey.from_private_bytes(
        bytes.fromhex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
        )
    )
    bob = X25519PrivateKey.from_private_bytes(
        bytes.fromhex(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
        )
    )
    alice_public = bytes.fromhex(
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    )
    bob_public = bytes.fromhex(
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    )
    shared = bytes.fromhex(
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    )
    assert x25519_public_bytes(alice) == alice_public
    assert x25519_public_bytes(bob) == bob_public
    assert x25519_shared_secret(alice, bob_public) == shared
    assert x25519_shared_secret(bob, alice_public) == shared


def test_ed25519_rfc8032_test_1() -> None:
    identity = AccountIdentity.from_private_bytes(
        bytes.fromhex(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
        )
    )
    expected_signature = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert identity.public_bytes() == bytes.fromhex(
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert identity.sign(b"") == expected_signature
    verify_signature(identity.public_bytes(), expected_signature, b"")


def test_pbkdf2_sha256_rfc7914_one_iteration() -> None:
    derived = kdf.pbkdf2_sha256(b"passwd", b"salt", 1, 64)
    assert derived == bytes.fromhex(
        "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
    )


def test_pbkdf2_sha256_rfc7914_80000_iterations() -> None:
    derived = kdf.pbkdf2_sha256(b"Password", b"NaCl", 80000, 64)
    assert derived == bytes.fromhex(
        "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
        "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"
    )
