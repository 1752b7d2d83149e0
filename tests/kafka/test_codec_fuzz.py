"""Fuzzing both connection roles: whatever bytes arrive, the codec returns events or raises
:class:`KafkaCodecError` (never another exception), and never holds more than a frame.

Inputs are arbitrary bytes, and valid frames (drawn from the declarations' strategies)
mutated the ways a broken or hostile peer would: a flipped byte, a lie about the
version or the frame size, a negative array length, a bad tagged-field size, a cut.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from strata.broker.frontends.kafka.codec import (
    CLOSED,
    NEED_DATA,
    KafkaClientConnection,
    KafkaCodecError,
    KafkaServerConnection,
    encode_request,
    encode_response,
)
from strata.broker.frontends.kafka.codec import messages as m
from strata.broker.frontends.kafka.codec.schema import Struct
from tests.kafka.strategies import message_strategy

MAX_FRAME = 1 << 16
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _cases(registry: dict) -> list[tuple[type[Struct], int]]:
    return [
        (cls, v)
        for cls in registry.values()
        for v in range(cls.__kafka_api__.versions.low, cls.__kafka_api__.versions.high + 1)
    ]


REQUEST_CASES = _cases(m.REQUESTS)
RESPONSE_CASES = _cases(m.RESPONSES)


@st.composite
def request_frames(draw: st.DrawFn) -> bytes:
    cls, version = draw(st.sampled_from(REQUEST_CASES))
    body = draw(message_strategy(cls, version))
    cid = draw(st.integers(0, (1 << 31) - 1))
    return b"".join(bytes(p) for p in encode_request(body, version, cid, "fuzz"))


@st.composite
def mutated(draw: st.DrawFn, frames: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(frames))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["flip", "version", "size", "negative", "varint", "insert", "cut"])
        )
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "version" and len(data) >= 8:
            data[6:8] = struct.pack(">h", draw(st.integers(-(1 << 15), (1 << 15) - 1)))
        elif kind == "size" and len(data) >= 4:
            data[0:4] = struct.pack(">i", draw(st.integers(-(1 << 31), (1 << 31) - 1)))
        elif kind == "negative":
            data[i : i + 4] = struct.pack(">i", draw(st.integers(-(1 << 31), -1)))
        elif kind == "varint":  # a long or huge unsigned varint: tag counts, sizes, compact lengths
            data[i : i + 1] = bytes(draw(st.lists(st.integers(0x80, 0xFF), min_size=1, max_size=6)))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "cut":
            del data[i:]
    return bytes(data)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def _drive_server(data: bytes, cuts: list[int], eof: bool) -> None:
    conn = KafkaServerConnection(max_frame_bytes=MAX_FRAME)
    for chunk in [*_chunks(data, cuts), *([b""] if eof else [])]:
        conn.receive_data(chunk)
        assert conn.buffered <= MAX_FRAME + 4 + len(chunk)
        while True:
            try:
                ev = conn.next_event()
            except KafkaCodecError as exc:
                event(type(exc).__name__)
                if not exc.answerable:
                    return
                assert exc.header is not None
                continue
            if ev is NEED_DATA or ev is CLOSED:
                break
            event("request")
            assert ev.size <= MAX_FRAME


@FUZZ
@given(
    data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 400), max_size=5), eof=st.booleans()
)
def test_arbitrary_bytes_only_give_events_or_codec_errors(
    data: bytes, cuts: list[int], eof: bool
) -> None:
    _drive_server(data, cuts, eof)


@FUZZ
@given(
    frames=st.lists(mutated(request_frames()), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 5000), max_size=4),
    eof=st.booleans(),
)
def test_mutated_requests_only_give_events_or_codec_errors(
    frames: list[bytes], cuts: list[int], eof: bool
) -> None:
    _drive_server(b"".join(frames), cuts, eof)


@FUZZ
@given(frame=request_frames())
def test_valid_requests_always_decode(frame: bytes) -> None:
    conn = KafkaServerConnection(max_frame_bytes=1 << 20)
    conn.receive_data(frame)
    ev = conn.next_event()
    assert ev is not NEED_DATA and ev is not CLOSED
    assert conn.next_event() is NEED_DATA


@st.composite
def answered_requests(draw: st.DrawFn) -> tuple[KafkaClientConnection, bytes]:
    """A client with one request in flight, and a mutated frame answering it."""
    cls, version = draw(st.sampled_from(RESPONSE_CASES))
    request_cls = m.REQUESTS[cls.__kafka_api__.api_key]
    client = KafkaClientConnection(max_frame_bytes=MAX_FRAME)
    request = request_cls(acks=1) if request_cls is m.ProduceRequest else request_cls()
    client.send_request(request, version)
    body = draw(message_strategy(cls, version))
    frame = b"".join(bytes(p) for p in encode_response(body, version, 0))
    return client, draw(mutated(st.just(frame)))


@FUZZ
@given(case=answered_requests(), cuts=st.lists(st.integers(0, 5000), max_size=4))
def test_mutated_responses_only_give_responses_or_codec_errors(
    case: tuple[KafkaClientConnection, bytes], cuts: list[int]
) -> None:
    client, data = case
    for chunk in [*_chunks(data, cuts), b""]:
        client.receive_data(chunk)
        try:
            while client.next_response() not in (NEED_DATA, CLOSED):
                event("response")
        except KafkaCodecError as exc:
            event(type(exc).__name__)
            return
