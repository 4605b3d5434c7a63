"""Exception types of the crypto layer.

Every failure that the layer reports on purpose is a :class:`CryptoError`.
Callers that only need "it did not work" catch the base class. The
subclasses tell apart the cases a user interface reacts to differently.
Programming errors (a key of the wrong length, a negative count) raise
``ValueError`` or ``TypeError`` instead.
"""


class CryptoError(Exception):
    """Base class of every error that the crypto layer raises on purpose."""


class DecryptionError(CryptoError):
    """Ciphertext failed authentication, was malformed or was a replay.

    The message is always the same, so nothing about the cause reaches a
    log, a user or a peer that could use it as an oracle.
    """

    def __init__(self) -> None:
        super().__init__("decryption failed")


class SignatureError(CryptoError):
    """An Ed25519 signature did not verify, or a public key was malformed."""


class PrekeyError(CryptoError):
    """A prekey id is unknown, or a one-time prekey was already used."""


class BackupError(CryptoError):
    """A key backup could not be opened: wrong password, wrong user or corrupt."""


class VaultError(CryptoError):
    """The local vault could not be opened: wrong password or corrupt file."""


class VaultCorruptError(VaultError):
    """The vault file is damaged, so no password can open it.

    ``reason`` is a short phrase such as ``"truncated to 0 bytes"`` that a user
    interface can show next to the file's path.
    """

    def __init__(self, reason: str, path: object) -> None:
        super().__init__(f"vault file is damaged ({reason}): {path}")
        self.reason = reason
