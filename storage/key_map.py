"""``KeyOffsetMap``: key -> offset of its latest record, over a log's dirty section, bounded.

The cleaner's first step reads the dirty section and remembers, for every key, the
offset of the last record carrying it; the second step copies the log keeping a
record only if no later offset is mapped for its key. Kafka's ``SkimpyOffsetMap`` and
Redpanda's ``key_offset_map`` do the same with a fixed-size hash of the key, so a
1 MiB key costs what a 1-byte key costs.

Keys are reduced to 16 bytes of BLAKE2b, salted with 16 random bytes chosen per map.
Two distinct keys with the same digest would make the older record of one of them
look superseded by the other's later record, and the cleaner would drop it: a lost
value. With 128-bit digests the chance is about n**2 / 2**129 for n keys in one
pass (below 1e-20 for a billion keys, far below the rate of undetected disk errors),
and the salt, unknown outside the process and new at every pass, means no one can
craft keys that collide on purpose, and two keys that collided once (at that odds)
do not collide again. So the cleaner trusts the digest and does not re-read the key
of a record it drops. Kafka's map (MD5, unsalted) makes the same trade.

The map is a plain ``dict`` (C-speed lookups matter more here than compactness in
pure Python). Its memory bound is enforced by entry count: :data:`BYTES_PER_ENTRY` is
the measured cost of one entry (digest object, offset object, dict slot) including
the moment a dict doubles its table, so ``memory_bytes`` is the most the map ever
holds. That is about 8x what Kafka's 24-byte entries cost: 128 MiB hold ~700,000
keys per pass. A log with more distinct dirty keys is cleaned in several passes.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strata.storage.batch_rewrite import RecordSpan

__all__ = ["BYTES_PER_ENTRY", "DIGEST_BYTES", "KeyOffsetMap"]

DIGEST_BYTES = 16
#: Peak bytes per entry, measured with tracemalloc (``tests/unit/test_storage_cleaner.py``
#: checks it): 49-byte digest + 32-byte int + dict slot, with the table mid-resize.
BYTES_PER_ENTRY = 192


class KeyOffsetMap:
    """At most ``capacity`` keys (``memory_bytes // BYTES_PER_ENTRY``), each with the
    offset of its latest record seen so far.

    The two loops the cleaner runs per record live here, with the digest inlined
    (a call less per record is a few percent of a pass): :meth:`put_records` while
    mapping the dirty section, :meth:`survivors` while copying.
    """

    __slots__ = ("_blake2b", "capacity", "offsets", "salt")

    def __init__(self, memory_bytes: int, *, salt: bytes | None = None):
        if memory_bytes < BYTES_PER_ENTRY:
            raise ValueError(f"a key map needs at least {BYTES_PER_ENTRY} bytes, got {memory_bytes}")
        self.capacity = memory_bytes // BYTES_PER_ENTRY
        self.salt = os.urandom(16) if salt is None else salt
        if len(self.salt) != 16:
            raise ValueError("the salt must be 16 bytes")
        self.offsets: dict[bytes, int] = {}
        self._blake2b = hashlib.blake2b

    def __len__(self) -> int:
        return len(self.offsets)

    def digest(self, key: bytes) -> bytes:
        return self._blake2b(key, digest_size=DIGEST_BYTES, salt=self.salt).digest()

    def put(self, digest: bytes, offset: int) -> bool:
        """Map ``digest`` to ``offset`` (offsets only grow); ``False`` if it is a new key
        and the map is full, in which case nothing changed."""
        offsets = self.offsets
        if digest not in offsets and len(offsets) >= self.capacity:
            return False
        offsets[digest] = offset
        return True

    def put_records(self, base_offset: int, spans: list[RecordSpan], start: int) -> int | None:
        """Map the keyed records of one batch (``spans``, from ``scan_records``) at offsets
        >= ``start``. Returns the offset of the first record that did not fit (the map
        is full; records before it are in), or ``None``."""
        offsets = self.offsets
        capacity = self.capacity
        blake2b, salt = self._blake2b, self.salt
        for span in spans:
            key = span[4]
            off = base_offset + span[2]
            if key is None or off < start:
                continue
            d = blake2b(key, digest_size=DIGEST_BYTES, salt=salt).digest()
            if d not in offsets and len(offsets) >= capacity:
                return off
            offsets[d] = off
        return None

    def survivors(self, base_offset: int, spans: list[RecordSpan], below: int,
                  tombstones_below: int) -> tuple[list[RecordSpan], int]:
        """The records of one batch to keep, and how many tombstones were dropped.

        A keyed record below ``below`` goes when the map holds a later offset for its key,
        or when it is a tombstone below ``tombstones_below``. Records without a key, and
        records at or past ``below`` (not covered by this map), stay.
        """
        get = self.offsets.get
        blake2b, salt = self._blake2b, self.salt
        kept = []
        tombstones = 0
        for span in spans:
            key = span[4]
            off = base_offset + span[2]
            if key is not None and off < below:
                newer = get(blake2b(key, digest_size=DIGEST_BYTES, salt=salt).digest())
                if newer is not None and newer > off:
                    continue
                if span[5] and off < tombstones_below:
                    tombstones += 1
                    continue
            kept.append(span)
        return kept, tombstones
