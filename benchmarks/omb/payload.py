"""The benchmark payload: a send timestamp for end-to-end latency, then padding.

Layout (big-endian): ``u64 send_time_ns`` (``time.time_ns()``, wall clock so a
consumer in another process could read it too), ``u32 producer_id``,
``u32 sequence``, then filler up to ``messageSize``. The filler is random
bytes, made once, so that no system gets an unfair boost from compressing
zeros (none of the peers compresses by default, but a later Strata run might).
"""

from __future__ import annotations

import os
import struct

_HEADER = struct.Struct(">QII")
HEADER_SIZE = _HEADER.size  # 16


class PayloadFactory:
    """Builds payloads of one size quickly: one header pack and one concatenation each."""

    __slots__ = ("_filler", "size")

    def __init__(self, size: int) -> None:
        if size < HEADER_SIZE:
            raise ValueError(f"payload size must be >= {HEADER_SIZE}, got {size}")
        self.size = size
        self._filler = os.urandom(size - HEADER_SIZE)

    def make(self, send_time_ns: int, producer_id: int, sequence: int) -> bytes:
        return (
            _HEADER.pack(send_time_ns, producer_id & 0xFFFFFFFF, sequence & 0xFFFFFFFF)
            + self._filler
        )


def send_time_ns(payload: bytes) -> int:
    """The send timestamp a payload carries."""
    return int(_HEADER.unpack_from(payload)[0])


def header(payload: bytes) -> tuple[int, int, int]:
    """``(send_time_ns, producer_id, sequence)`` of a payload."""
    send_ns, producer, seq = _HEADER.unpack_from(payload)
    return int(send_ns), int(producer), int(seq)
