"""Keys land in the partition Kafka's default partitioner picks.

Checked against the vectors in Kafka's own ``UtilsTest.testMurmur2`` and against
kafka-python's independent murmur2 on random keys.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from strata.client.partitioner import murmur2, partition_for_key, to_positive

# Kafka's clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS.items())
def test_murmur2_matches_kafkas_java_vectors(key, expected):
    assert murmur2(key) == expected


@given(st.binary(max_size=300))
def test_murmur2_matches_kafka_python_on_random_keys(key):
    # kafka-python returns the same 32 bits, unsigned; Java (and Strata) return them signed.
    assert murmur2(key) & 0xFFFFFFFF == kafka_python_murmur2(key)
    assert -(1 << 31) <= murmur2(key) < (1 << 31)


@given(st.binary(max_size=100), st.integers(1, 10_000))
def test_partition_is_kafkas_default_partitioner_choice(key, n):
    expected = (kafka_python_murmur2(key) & 0x7FFFFFFF) % n
    assert partition_for_key(key, n) == expected
    assert partition_for_key(bytearray(key), n) == partition_for_key(memoryview(key), n) == expected


def test_known_keys_land_where_kafka_puts_them():
    # toPositive clears the sign bit; abs() would give a different partition for these.
    assert partition_for_key(b"foobar", 10) == 6  # abs() would say 2
    assert partition_for_key(b"21", 7) == 3  # abs() would say 6
    assert partition_for_key(b"", 3) == (murmur2(b"") & 0x7FFFFFFF) % 3


def test_to_positive_is_not_abs():
    assert to_positive(-1) == 0x7FFFFFFF
    assert to_positive(-(1 << 31)) == 0
    assert to_positive(5) == 5


def test_partition_count_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        partition_for_key(b"k", 0)
