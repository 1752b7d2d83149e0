"""Batch builders for storage tests and benchmarks (test code: not shipped in ``strata``).

The storage engine works on whole batches and never decodes records, so most of its
tests only need *valid* v2 batches: right header, right lengths, right CRC.
:func:`make_batch` writes minimal Kafka records (no key, no headers) with the given
values, which any v2 decoder can read, without depending on the full encoder in
:mod:`strata.client.records`. The cleaner does look at keys, so its tests build keyed
batches with that encoder (:func:`keyed_batch`) and read records back with its decoder.
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
from collections.abc import Iterator
from os import PathLike

from crc32c import crc32c

from strata.client.batch import (
    ATTRIBUTES_OFFSET,
    CRC_OFFSET,
    HEADER_SIZE,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    iter_batches,
)
from strata.client.records import RecordBatchBuilder, decode_batches

__all__ = ["Clock", "keyed_batch", "make_batch", "make_batches", "read_batches", "read_records", "small_tmpfs"]



def _varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def make_batch(
    values: list[bytes],
    *,
    base_offset: int = 0,
    leader_epoch: int = 0,
    timestamp: int = 0,
    timestamp_step: int = 0,
    attributes: int = 0,
) -> bytes:
    """One v2 batch holding ``values`` as records; record *i* has timestamp
    ``timestamp + i * timestamp_step``."""
    assert values, "a batch needs at least one record"
    recs = []
    for i, v in enumerate(values):
        body = b"".join((b"\x00", _varint(i * timestamp_step), _varint(i), _varint(-1),
                         _varint(len(v)), v, _varint(0)))
        recs.append(_varint(len(body)) + body)
    records = b"".join(recs)
    n = len(values)
    max_ts = timestamp + (n - 1) * timestamp_step
    length = HEADER_SIZE - LOG_OVERHEAD + len(records)
    head = bytearray(HEADER_STRUCT.pack(base_offset, length, leader_epoch, 2, 0, attributes, n - 1,
                                  timestamp, max_ts, -1, -1, -1, n))
    crc = crc32c(records, crc32c(head[ATTRIBUTES_OFFSET:]))
    struct.pack_into(">I", head, CRC_OFFSET, crc)
    return bytes(head) + records


def make_batches(specs: list[tuple[int, int]], *, base_offset: int = 0, value_size: int = 8,
                 timestamp: int = 0) -> bytes:
    """Concatenated stamped batches: ``specs`` is ``[(record_count, leader_epoch), ...]``."""
    out = []
    off = base_offset
    for count, epoch in specs:
        out.append(make_batch([bytes([off % 251]) * value_size] * count, base_offset=off,
                              leader_epoch=epoch, timestamp=timestamp))
        off += count
    return b"".join(out)


# ------------------------------------------------------------------ compaction tests


class Clock:
    """An injectable millisecond clock that moves only when told to."""

    def __init__(self, now: int = 1_000_000):
        self.now = now

    def __call__(self) -> int:
        return self.now


def keyed_batch(records: list[tuple[bytes | None, bytes | None]], *, timestamp: int = 1_000_000,
                compression: str | None = None, producer: tuple[int, int, int] | None = None) -> bytes:
    """A producer's batch of ``(key, value)`` records (``value=None``: a tombstone), encoded
    by the client's full encoder; ``producer`` is ``(producer_id, epoch, base_sequence)``."""
    b = RecordBatchBuilder(compression=compression, max_batch_bytes=1 << 30)
    if producer is not None:
        b.set_producer_state(*producer)
    for i, (k, v) in enumerate(records):
        b.append(timestamp + i, k, v, [("h", b"%d" % i)] if i % 2 else None)
    return b.build()


def read_records(log, max_offset: int | None = None) -> list:
    """Every record a consumer reading the whole log gets (control batches skipped)."""
    out = []
    offset = log.log_start_offset
    while (sl := log.read(offset, 1 << 20, max_offset)) is not None:
        for b in decode_batches(sl.read_bytes(), skip_control=True):
            out.extend(b.records)
        offset = sl.next_offset
    return out


def read_batches(log) -> list[tuple]:
    """``(header, bytes)`` of every batch in the log, in order."""
    out = []
    offset = log.log_start_offset
    while (sl := log.read(offset, 1 << 20)) is not None:
        data = sl.read_bytes()
        out.extend((h, data[p : p + h.size]) for p, h in iter_batches(data))
        offset = sl.next_offset
    return out


@contextlib.contextmanager
def small_tmpfs(path: PathLike, size: str) -> Iterator[PathLike]:
    """A tmpfs of ``size`` (``"2m"``) mounted at ``path`` (created), for full-disk tests;
    needs root. Unmounted (lazily) on exit."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
