"""Frame encoder and decoder, driven with byte strings and no network."""

from __future__ import annotations

import json
import struct

import pytest

from enctalk.protocol import FrameDecoder, ProtocolError, encode_frame, errors
from enctalk.protocol.framing import MAX_NESTING_DEPTH


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_encode_frame_round_trip() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_frame({"type": "ping", "id": 1, "text": "hi 😀"}))
    assert decoder.next_frame() == {"type": "ping", "id": 1, "text": "hi 😀"}
    assert decoder.next_frame() is None


def test_encode_frame_rejects_oversized_frame() -> None:
    with pytest.raises(ProtocolError) as caught:
        encode_frame({"type": "ping", "pad": "x" * 100}, max_frame_size=50)
    assert caught.value.code == errors.FRAME_TOO_LARGE


def test_decoder_handles_one_byte_writes() -> None:
    data = encode_frame({"type": "ping", "id": 3})
    decoder = FrameDecoder()
    frames = []
    for index in range(len(data)):
        decoder.receive_data(data[index : index + 1])
        frame = decoder.next_frame()
        if frame is not None:
            frames.append(frame)
    assert frames == [{"type": "ping", "id": 3}]


def test_decoder_handles_three_frames_in_one_write() -> None:
    data = b"".join(encode_frame({"type": "ping", "id": n}) for n in range(3))
    decoder = FrameDecoder()
    decoder.receive_data(data)
    ids = []
    while (frame := decoder.next_frame()) is not None:
        ids.append(frame["id"])
    assert ids == [0, 1, 2]
    assert decoder.buffered == 0


def test_decoder_handles_frame_and_a_half() -> None:
    first = encode_frame({"type": "ping", "id": 1})
    second = encode_frame({"type": "ping", "id": 2})
    half = len(second) // 2
    decoder = FrameDecoder()
    decoder.receive_data(first + second[:half])
    assert decoder.next_frame() == {"type": "ping", "id": 1}
    assert decoder.next_frame() is None
    assert decoder.in_frame
    decoder.receive_data(second[half:])
    assert decoder.next_frame() == {"type": "ping", "id": 2}


@pytest.mark.parametrize("length", [2**32 - 1, 1025])
def test_decoder_rejects_oversized_length_from_header(length: int) -> None:
    decoder = FrameDecoder(max_frame_size=1024)
    with pytest.raises(ProtocolError) as caught:
        decoder.receive_data(struct.pack(">I", length))
    assert caught.value.code == errors.FRAME_TOO_LARGE
    assert caught.value.fatal
    assert decoder.buffered == 4


def test_decoder_accepts_exactly_maximum_length() -> None:
    body = json.dumps({"type": "ping"}).encode()
    body += b" " * (1024 - len(body))
    decoder = FrameDecoder(max_frame_size=1024)
    decoder.receive_data(raw_frame(body))
    assert decoder.next_frame() == {"type": "ping"}


def test_decoder_rejects_zero_length() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError) as caught:
        decoder.receive_data(b"\x00\x00\x00\x00")
    assert caught.value.fatal


def test_decoder_is_unusable_after_fatal_error() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    with pytest.raises(ProtocolError):
        decoder.receive_data(struct.pack(">I", 11))
    with pytest.raises(ProtocolError):
        decoder.receive_data(encode_frame({"type": "ping"}))


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe{}",
        b'"just a string"',
        b"[1, 2]",
        b"{not json",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": 1, "a": 2}',
        b'{"a": ' + b"1" * 5000 + b"}",
    ],
)
def test_decoder_rejects_invalid_body_and_stays_in_sync(body: bytes) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(raw_frame(body) + encode_frame({"type": "ping"}))
    with pytest.raises(ProtocolError) as caught:
        decoder.next_frame()
    assert caught.value.code == errors.INVALID_FRAME
    assert not caught.value.fatal
    assert decoder.next_frame() == {"type": "ping"}


def test_decoder_rejects_deep_nesting_without_recursion_error() -> None:
    body = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    decoder = FrameDecoder(max_frame_size=len(body))
    decoder.receive_data(raw_frame(body))
    with pytest.raises(ProtocolError) as caught:
        decoder.next_frame()
    assert caught.value.code == errors.INVALID_FRAME


def test_decoder_nesting_limit_boundary() -> None:
    def nested(depth: int) -> bytes:
        # The outer object counts as the first level.
        return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    decoder = FrameDecoder()
    decoder.receive_data(raw_frame(nested(MAX_NESTING_DEPTH)))
    assert decoder.next_frame() is not None
    decoder.receive_data(raw_frame(nested(MAX_NESTING_DEPTH + 1)))
    with pytest.raises(ProtocolError):
        decoder.next_frame()
