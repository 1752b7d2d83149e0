"""Kafka's key partitioner: murmur2 as the Java client computes it.

A keyed record must land in the same partition it would in Kafka, so that a topic
moved between Kafka and Strata, or written by a mix of clients, keeps each key in one
partition (and so in order). Kafka's ``DefaultPartitioner`` (and the built-in
partitioner since 3.3) picks ``toPositive(murmur2(keyBytes)) % numPartitions``, where
``murmur2`` is MurmurHash2 (32-bit, seed ``0x9747b28c``) with Java's signed 32-bit
arithmetic, and ``toPositive`` clears the sign bit (it is *not* ``abs``).
"""

from __future__ import annotations

import struct

__all__ = ["murmur2", "partition_for_key", "to_positive"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes | bytearray | memoryview) -> int:
    """MurmurHash2 of ``data`` as Kafka's ``Utils.murmur2``: a signed 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n_words = length >> 2
    m = _M
    mask = _MASK
    # Four bytes at a time, little-endian, as Java assembles them from the byte array.
    for k in struct.unpack_from(f"<{n_words}I", data):
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    # The 1-3 trailing bytes, in Java's fall-through switch order.
    tail = length & 3
    if tail:
        i = n_words << 2
        if tail == 3:
            h ^= data[i + 2] << 16
        if tail >= 2:
            h ^= data[i + 1] << 8
        h ^= data[i]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(n: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit of a 32-bit int (not ``abs``)."""
    return n & 0x7FFFFFFF


def partition_for_key(key: bytes | bytearray | memoryview, num_partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record with this (serialized) key."""
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, got {num_partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions
