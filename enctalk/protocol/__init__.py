"""The EncTalk wire protocol, without any I/O.

``framing`` turns bytes into JSON objects and back, ``schema`` checks each
frame type's fields, ``errors`` lists the stable error codes and ``names``
defines canonical usernames. Client and server both use this package.
"""

from enctalk.protocol import errors
from enctalk.protocol.errors import ProtocolError
from enctalk.protocol.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    HEADER_SIZE,
    MAX_NESTING_DEPTH,
    FrameDecoder,
    encode_frame,
)
from enctalk.protocol.names import InvalidUsername, canonical_username
from enctalk.protocol.schema import (
    PROTOCOL_VERSION,
    b64,
    make_error,
    make_push,
    make_reply,
    make_request,
    request_id,
    validate_error,
    validate_push,
    validate_reply,
    validate_request,
)

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "HEADER_SIZE",
    "MAX_NESTING_DEPTH",
    "PROTOCOL_VERSION",
    "FrameDecoder",
    "InvalidUsername",
    "ProtocolError",
    "b64",
    "canonical_username",
    "encode_frame",
    "errors",
    "make_error",
    "make_push",
    "make_reply",
    "make_request",
    "request_id",
    "validate_error",
    "validate_push",
    "validate_reply",
    "validate_request",
]
