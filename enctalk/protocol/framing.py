"""Length-prefixed JSON frames, without any I/O.

A frame is a 4-byte big-endian unsigned length N followed by N bytes of
UTF-8 JSON holding one object, with 1 <= N <= the maximum frame size.
:class:`FrameDecoder` takes bytes as they arrive (``receive_data``) and
hands out parsed objects (``next_frame``), returning ``None`` while a
frame is incomplete. The length is checked as soon as its four bytes are
in, so an oversized frame is rejected before its body is buffered.

Worst-case cost: the buffer holds at most one maximum-size frame plus one
read's worth of bytes, and parsing is linear in the frame size.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from enctalk.protocol import errors
from enctalk.protocol.errors import ProtocolError

HEADER_SIZE = 4
DEFAULT_MAX_FRAME_SIZE = 1024 * 1024
MAX_NESTING_DEPTH = 32

_HEADER = struct.Struct(">I")


def encode_frame(
    frame: dict[str, Any], max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """Serialize ``frame`` as compact JSON behind its 4-byte length.

    Raises :class:`ProtocolError` (``frame_too_large``) when the JSON is
    longer than ``max_frame_size`` bytes, so no peer is sent a frame it
    must reject.
    """
    body = json.dumps(
        frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")
    if len(body) > max_frame_size:
        raise ProtocolError(
            errors.FRAME_TOO_LARGE,
            f"frame of {len(body)} bytes exceeds the maximum of {max_frame_size}",
        )
    return _HEADER.pack(len(body)) + body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _nesting_depth(value: Any) -> int:
    """Return the container depth of a parsed JSON value, iteratively."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_body(body: bytes) -> dict[str, Any]:
    """Parse one frame body into a JSON object.

    Raises :class:`ProtocolError` with ``invalid_frame`` for invalid UTF-8,
    invalid JSON, duplicate keys, NaN or Infinity, a value other than an
    object, or nesting deeper than :data:`MAX_NESTING_DEPTH`. The stream
    stays in sync after such an error because the length was valid.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(errors.INVALID_FRAME, "frame is not valid UTF-8") from exc
    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_object,
            parse_constant=_reject_constant,
        )
    except RecursionError as exc:
        raise ProtocolError(
            errors.INVALID_FRAME,
            f"JSON nesting is deeper than {MAX_NESTING_DEPTH} levels",
        ) from exc
    except ValueError as exc:
        # json.JSONDecodeError is a ValueError, and so are the hooks' errors
        # and the int-to-str digit limit.
        raise ProtocolError(
            errors.INVALID_FRAME, f"frame is not valid JSON: {exc}"
        ) from exc
    if not isinstance(value, dict):
        raise ProtocolError(errors.INVALID_FRAME, "frame is not a JSON object")
    if _nesting_depth(value) > MAX_NESTING_DEPTH:
        raise ProtocolError(
            errors.INVALID_FRAME,
            f"JSON nesting is deeper than {MAX_NESTING_DEPTH} levels",
        )
    return value


class FrameDecoder:
    """Incremental decoder of length-prefixed JSON frames.

    Never blocks and never touches a socket. After a fatal
    :class:`ProtocolError` (a bad length) the decoder is unusable, because
    the frame boundaries are lost; after a non-fatal one (a bad body) the
    next frame can still be read.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 1:
            raise ValueError("max_frame_size must be at least 1 byte")
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._expected: int | None = None
        self._broken = False

    @property
    def buffered(self) -> int:
        """Number of bytes received but not yet returned as frames."""
        return len(self._buffer)

    @property
    def in_frame(self) -> bool:
        """True while part of a frame has arrived and the rest has not."""
        return bool(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the peer."""
        if self._broken:
            raise ProtocolError(
                errors.INVALID_FRAME, "stream is out of sync", fatal=True
            )
        self._buffer += data
        self._check_header()

    def _check_header(self) -> None:
        if self._expected is not None or len(self._buffer) < HEADER_SIZE:
            return
        (length,) = _HEADER.unpack_from(self._buffer)
        if length == 0:
            self._broken = True
            raise ProtocolError(
                errors.INVALID_FRAME, "frame length is zero", fatal=True
            )
        if length > self.max_frame_size:
            self._broken = True
            raise ProtocolError(
                errors.FRAME_TOO_LARGE,
                f"frame length {length} exceeds the maximum of "
                f"{self.max_frame_size} bytes",
                fatal=True,
            )
        self._expected = length

    def next_frame(self) -> dict[str, Any] | None:
        """Return the next complete frame, or ``None`` if more data is needed."""
        if self._broken:
            raise ProtocolError(
                errors.INVALID_FRAME, "stream is out of sync", fatal=True
            )
        self._check_header()
        if self._expected is None:
            return None
        end = HEADER_SIZE + self._expected
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[HEADER_SIZE:end])
        del self._buffer[:end]
        self._expected = None
        return parse_body(body)
