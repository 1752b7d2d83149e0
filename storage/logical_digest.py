"""``logical_digest``: what a compacted log *means*, as one hash, to compare replicas.

Each replica cleans its own log, at its own pace, so two replicas' segment files
differ. What must not differ is what a consumer reading from the start ends up
with: for every key, its latest record (offset, timestamp, value, headers), plus
every record without a key. That is the same before and after any correct cleaning,
and on a replica that never cleaned: compaction only removes records that are not
the latest for their key.

Tombstones are left out. A key whose latest record is a tombstone is absent, whether
the tombstone itself is still on disk or not: when it goes depends on each
replica's own clock (``delete_retention_ms`` after *that* replica first cleaned it),
so replicas may legitimately differ there for a while.

Cost: one CRC-checked read of ``[from_offset, max_offset)`` with every record decoded
(by :mod:`strata.client.records`, not by the cleaner's own code, so the check does
not share the cleaner's bugs), and memory for every distinct key (bounded by
``max_keys``). Meant for tests and audits, on the log's thread.
"""

from __future__ import annotations

import hashlib
import struct

from strata.client.records import decode_batches
from strata.storage.log import Log

__all__ = ["logical_digest"]

_U64 = struct.Struct(">q")


def _record_hash(key: bytes | None, value: bytes | None, timestamp: int,
                 headers: list[tuple[str, bytes | None]]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in (key, value):
        h.update(_U64.pack(-1 if part is None else len(part)))
        if part is not None:
            h.update(part)
    h.update(_U64.pack(timestamp))
    h.update(_U64.pack(len(headers)))
    for hk, hv in headers:
        kb = hk.encode()
        h.update(_U64.pack(len(kb)) + kb + _U64.pack(-1 if hv is None else len(hv)) + (hv or b""))
    return h.digest()


def logical_digest(lg: Log, max_offset: int | None = None, *, from_offset: int | None = None,
                   max_keys: int = 10_000_000) -> str:
    """Hex SHA-256 of the logical content of ``lg`` in ``[from_offset, max_offset)``
    (default: from the log start to the end). Raises ``ValueError`` past ``max_keys``
    distinct keys plus keyless records."""
    start = lg.log_start_offset if from_offset is None else from_offset
    end = lg.log_end_offset if max_offset is None else min(max_offset, lg.log_end_offset)
    latest: dict[bytes, tuple[int, bytes, bool]] = {}
    keyless: list[tuple[int, bytes]] = []
    offset = start
    while offset < end:
        sl = lg.read(offset, 1 << 20, max_offset=end)
        if sl is None:
            break
        for batch in decode_batches(sl.read_bytes(), skip_control=True):
            for r in batch.records:
                if not start <= r.offset < end:
                    continue
                h = _record_hash(r.key, r.value, r.timestamp, r.headers)
                if r.key is None:
                    keyless.append((r.offset, h))
                else:
                    latest[r.key] = (r.offset, h, r.value is None)
            if len(latest) + len(keyless) > max_keys:
                raise ValueError(f"partition {lg.dir}: more than {max_keys} keys; raise max_keys")
        offset = sl.next_offset
    entries = sorted([(o, h) for o, h, tombstone in latest.values() if not tombstone] + keyless)
    out = hashlib.sha256()
    for o, h in entries:
        out.update(_U64.pack(o) + h)
    return out.hexdigest()
