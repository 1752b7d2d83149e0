"""Putting cleaned segment files in place of the old ones, so that a crash at any point
leaves either the old segments or the new one, never neither and never both.

The cleaner writes a group's new segment under temporary names
(``<base>.log.<id>.cleaned``, ``.index...``, ``.timeindex...``) and fsyncs it. Then,
on the log's own thread, :func:`swap_steps`:

1. renames the new log file to ``<base>.log.swap`` and fsyncs the directory. **This is
   the commit point**: from here on, recovery finishes the swap; before it, recovery
   deletes the temporary files and the old segments stay;
2. deletes the other old segments of the group (``.log``, ``.index``, ``.timeindex``);
3. renames the new index files over the old ones of ``<base>``, fsyncs the directory;
4. renames ``<base>.log.swap`` over ``<base>.log`` and fsyncs the directory.

:func:`finish_interrupted_swaps` runs first thing on open: every ``*.cleaned`` file
is deleted (its swap never committed); every ``<base>.log.swap`` wins: the segments
whose offsets it covers are deleted, its base's index files too (they may be the old
ones; recovery rebuilds them with a full CRC check), and it is renamed to
``<base>.log``. The old and the new content hold the same batches at the same
offsets, so either is a valid log; the point is that the log never holds both
copies of an offset, and never loses one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from strata.client.batch import HEADER_SIZE, CorruptBatchError, read_header
from strata.storage.checkpoint import fsync_dir
from strata.storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIMEINDEX_SUFFIX,
    LogSegment,
    segment_prefix,
)

__all__ = ["CLEANED_SUFFIX", "SWAP_SUFFIX", "finish_interrupted_swaps", "remove_files", "swap_steps"]

CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"

log = logging.getLogger("strata.storage")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_files(seg: LogSegment) -> None:
    """Close ``seg`` and delete its files, wherever they are named now."""
    seg.close()
    for p in seg.file_paths():
        _unlink(p)


def swap_steps(directory: str, new: LogSegment, replaced: list[LogSegment]) -> Iterator[str]:
    """Replace the segments ``replaced`` (consecutive, the first with ``new``'s base offset)
    by ``new``, whose files carry a temporary suffix and are fsynced.

    A generator: it yields the name of each file operation just done, so that a test
    can stop after any of them and play a crash. Callers that are not tests drain it
    (``for _ in swap_steps(...): pass``). ``new`` is pointed at its final names at the end.
    """
    assert replaced and replaced[0].base_offset == new.base_offset, (new.base_offset, replaced)
    prefix = os.path.join(directory, segment_prefix(new.base_offset))
    log_path, index_path, time_path = prefix + LOG_SUFFIX, prefix + INDEX_SUFFIX, prefix + TIMEINDEX_SUFFIX
    swap_path = log_path + SWAP_SUFFIX
    os.rename(new.log_path, swap_path)
    yield "rename the cleaned log to .swap"
    fsync_dir(directory)
    yield "fsync the directory (commit)"
    for seg in replaced[1:]:
        for p in seg.file_paths():
            _unlink(p)
            yield f"unlink {os.path.basename(p)}"
    os.replace(new.offset_index.path, index_path)
    yield "rename the cleaned offset index into place"
    os.replace(new.time_index.path, time_path)
    yield "rename the cleaned time index into place"
    fsync_dir(directory)
    yield "fsync the directory (indexes)"
    os.replace(swap_path, log_path)
    yield "rename .swap into place"
    fsync_dir(directory)
    new.set_paths(log_path, index_path, time_path)
    yield "fsync the directory (done)"


def _end_offset(path: str, base_offset: int) -> int:
    """The offset after the last whole batch of the file at ``path`` (a header walk)."""
    expected = base_offset
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos + HEADER_SIZE <= size:
            head = os.pread(f.fileno(), HEADER_SIZE, pos)
            try:
                h = read_header(head)
            except CorruptBatchError:
                break
            if h.base_offset != expected or pos + h.size > size:
                break
            expected = h.next_offset
            pos += h.size
    return expected


def finish_interrupted_swaps(directory: str) -> list[int]:
    """Undo what never committed and finish what did (see the module docstring).
    Returns the base offsets of the segments whose swap was finished."""
    names = os.listdir(directory)
    changed = False
    for name in names:
        if name.endswith(CLEANED_SUFFIX):
            _unlink(os.path.join(directory, name))
            changed = True
    finished = []
    bases = sorted(int(n[:20]) for n in names if n.endswith(LOG_SUFFIX) and len(n) == 24 and n[:20].isdigit())
    for name in sorted(names):
        if not (name.endswith(LOG_SUFFIX + SWAP_SUFFIX) and name[:20].isdigit()):
            continue
        base = int(name[:20])
        swap_path = os.path.join(directory, name)
        end = _end_offset(swap_path, base)
        covered = [b for b in bases if base < b < end]
        for b in covered:
            p = os.path.join(directory, segment_prefix(b))
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX):
                _unlink(p + suffix)
        prefix = os.path.join(directory, segment_prefix(base))
        _unlink(prefix + INDEX_SUFFIX)
        _unlink(prefix + TIMEINDEX_SUFFIX)
        os.replace(swap_path, prefix + LOG_SUFFIX)
        finished.append(base)
        changed = True
        log.warning("partition %s: finished the interrupted swap of cleaned segment %d (offsets up to %d; "
                    "replaced %d later segment file(s)); its indexes will be rebuilt",
                    directory, base, end, len(covered))
    if changed:
        fsync_dir(directory)
    return finished
