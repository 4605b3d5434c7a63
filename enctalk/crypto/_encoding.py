"""Byte-level helpers shared by the crypto modules.

Binary values in stored state use URL-safe base64 with padding, the same
alphabet as the wire format, and decoding is strict. Length-prefixed
fields use a 4-byte big-endian length so that a concatenation of fields
parses in exactly one way.
"""

import base64
import binascii
import struct
from collections.abc import Mapping

from enctalk.crypto.errors import CryptoError

UINT32_MAX = 0xFFFF_FFFF


def b64encode(data: bytes) -> str:
    """Encode bytes as URL-safe base64 with padding."""
    return base64.urlsafe_b64encode(data).decode("ascii")


def b64decode(text: object, length: int | None = None) -> bytes:
    """Decode strict URL-safe base64, raising CryptoError on invalid input."""
    if not isinstance(text, str):
        raise CryptoError("expected a base64 string")
    if "+" in text or "/" in text:
        raise CryptoError("invalid base64 string: expected the URL-safe alphabet")
    try:
        data = base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CryptoError("invalid base64 string") from None
    if length is not None and len(data) != length:
        raise CryptoError(f"expected {length} bytes, got {len(data)}")
    return data


def uint32(value: int) -> bytes:
    """Encode an unsigned 32-bit integer big-endian."""
    if not 0 <= value <= UINT32_MAX:
        raise ValueError(f"{value} does not fit in an unsigned 32-bit field")
    return struct.pack(">I", value)


def length_prefixed(*fields: bytes) -> bytes:
    """Concatenate fields, each preceded by its 4-byte big-endian length."""
    return b"".join(uint32(len(field)) + field for field in fields)


def check_bytes(value: object, length: int, name: str) -> None:
    """Raise TypeError or ValueError unless value is bytes of the given length."""
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) != length:
        raise ValueError(f"{name} must be {length} bytes, got {len(value)}")


def field_bytes(
    state: Mapping[str, object], key: str, length: int | None = None
) -> bytes:
    """Read a base64 field from a stored-state mapping."""
    if key not in state:
        raise CryptoError(f"stored state is missing {key!r}")
    return b64decode(state[key], length)


def field_optional_bytes(
    state: Mapping[str, object], key: str, length: int | None = None
) -> bytes | None:
    """Read a base64 field that may be null from a stored-state mapping."""
    if state.get(key) is None:
        return None
    return field_bytes(state, key, length)


def field_int(state: Mapping[str, object], key: str, minimum: int = 0) -> int:
    """Read an integer field of at least ``minimum`` from a stored-state mapping."""
    value = state.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise CryptoError(f"stored state has an invalid {key!r}")
    return value


def field_optional_int(state: Mapping[str, object], key: str) -> int | None:
    """Read a non-negative integer field that may be null."""
    if state.get(key) is None:
        return None
    return field_int(state, key)
