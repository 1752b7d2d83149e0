"""Record batch compression codecs, numbered as Kafka numbers them.

A v2 batch compresses everything after its 61-byte header as one blob; the codec id
lives in the low three bits of ``attributes``. ``none`` and ``gzip`` need only the
standard library. ``zstd`` (package ``zstandard``) and ``lz4`` (package ``lz4``) are
the optional ``strata[compression]`` extra, imported on first use so that a client
that never meets them does not pay for them. Snappy is not supported: Kafka's Java
client writes it in xerial's framing, and no dependency of Strata provides it.

Decompression is always bounded: a batch is attacker-controlled input on both the
broker and the client, and a few kilobytes of zstd can expand to gigabytes. Every
decoder stops at ``max_size`` bytes and raises :class:`CorruptBatchError`.
"""

from __future__ import annotations

import importlib
import threading
import zlib
from enum import IntEnum
from types import ModuleType
from typing import Any, cast

from strata.client.batch import CorruptBatchError


class Codec(IntEnum):
    """Compression codec ids, as stored in a batch's attributes (Kafka's numbering)."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


#: Bound on a batch's decompressed size unless the caller passes its own.
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024

# Which package provides which optional codec, for imports and error messages.
_PACKAGES = {Codec.LZ4: ("lz4.frame", "lz4"), Codec.ZSTD: ("zstandard", "zstandard"),
             Codec.SNAPPY: ("cramjam", "cramjam")}

#: Kafka's Java client frames snappy data as xerial's snappy-java stream does: this magic,
#: a version and a compatible version (two int32), then blocks of ``int32 length | raw snappy``.
#: librdkafka and the others read and write it too; a raw snappy body is accepted on read.
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + b"\x00\x00\x00\x01\x00\x00\x00\x01"
_XERIAL_BLOCK = 32 * 1024

# Output is pulled from streaming decompressors in pieces of this size, so that the
# bound is checked as the data grows instead of after it has all been allocated.
_CHUNK = 256 * 1024

# zstandard's (de)compressor objects must not be shared between threads.
_local = threading.local()


class CodecUnavailableError(RuntimeError):
    """A codec that this installation cannot run: its package is missing or it is unsupported.

    Distinct from :class:`CorruptBatchError`: the batch may be fine, and installing the
    named package fixes it.
    """

    def __init__(self, codec: Codec, message: str):
        self.codec = codec
        super().__init__(message)


def codec_from_name(name: str | int | Codec | None) -> Codec:
    """Turn a user's ``compression_type`` ("zstd", "gzip", None, 4, ...) into a :class:`Codec`."""
    if name is None:
        return Codec.NONE
    if isinstance(name, int):
        try:
            return Codec(name)
        except ValueError:
            raise ValueError(f"unknown compression codec id {name} (Kafka uses 0-4)") from None
    try:
        return Codec[name.strip().upper()]
    except KeyError:
        valid = ", ".join(c.name.lower() for c in Codec)
        raise ValueError(f"unknown compression type {name!r}; choose one of {valid}") from None


def _import(codec: Codec) -> ModuleType:
    """Import the package behind ``codec`` or say which one to install."""
    module, package = _PACKAGES[codec]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CodecUnavailableError(
            codec,
            f"{codec.name.lower()} compression needs the {package!r} package, which is not "
            f"installed: pip install {package}  (or: pip install 'strata[compression]')",
        ) from None


def is_available(codec: Codec | int) -> bool:
    """Whether batches with this codec can be written and read here."""
    codec = Codec(codec)
    if codec in _PACKAGES:
        try:
            _import(codec)
        except CodecUnavailableError:
            return False
    return True


def available_codecs() -> list[Codec]:
    """The codecs this installation can use, e.g. for a CLI's help text."""
    return [c for c in Codec if is_available(c)]


def _cached(key: tuple[Any, ...], factory: Any) -> Any:
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    obj = cache.get(key)
    if obj is None:
        obj = cache[key] = factory()
    return obj


def compress(
    codec: Codec | int, data: bytes | bytearray | memoryview, level: int | None = None
) -> bytes:
    """Compress a batch body. ``level`` is the codec's own level; ``None`` is its default.

    lz4 is written as LZ4 frames with independent blocks, the format Kafka's Java client
    reads (it cannot follow linked blocks).
    """
    if codec == Codec.NONE:
        return bytes(data)
    if codec == Codec.GZIP:
        c = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)
        return c.compress(data) + c.flush()
    if codec == Codec.ZSTD:
        zstd = _import(Codec.ZSTD)
        lvl = 3 if level is None else level
        cctx = _cached(("zc", lvl), lambda: zstd.ZstdCompressor(level=lvl))
        return cast(bytes, cctx.compress(data))
    if codec == Codec.LZ4:
        lz4f = _import(Codec.LZ4)
        return cast(
            bytes,
            lz4f.compress(
                data,
                compression_level=0 if level is None else level,
                block_linked=False,
                store_size=False,
            ),
        )
    if codec == Codec.SNAPPY:
        snappy = _import(Codec.SNAPPY).snappy
        mv = memoryview(data)
        out = [_XERIAL_HEADER]
        for i in range(0, len(mv), _XERIAL_BLOCK):
            block = bytes(snappy.compress_raw(mv[i : i + _XERIAL_BLOCK]))
            out.append(len(block).to_bytes(4, "big"))
            out.append(block)
        return b"".join(out)
    raise ValueError(f"unknown compression codec id {codec}")


def decompress(
    codec: Codec | int,
    data: bytes | bytearray | memoryview,
    max_size: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> bytes:
    """Decompress a batch body, refusing to produce more than ``max_size`` bytes.

    Garbage input and output beyond the bound raise :class:`CorruptBatchError` (without
    an offset: the caller knows which batch it was and adds it). A codec this
    installation lacks raises :class:`CodecUnavailableError`.
    """
    if codec == Codec.NONE:
        if len(data) > max_size:
            raise _too_big(max_size)
        return bytes(data)
    if codec == Codec.GZIP:
        return _gunzip(data, max_size)
    if codec == Codec.ZSTD:
        return _unzstd(data, max_size)
    if codec == Codec.LZ4:
        return _unlz4(data, max_size)
    if codec == Codec.SNAPPY:
        return _unsnappy(data, max_size)
    raise CorruptBatchError(f"unknown compression codec id {codec} in attributes")


def _unsnappy(data: bytes | bytearray | memoryview, max_size: int) -> bytes:
    snappy = _import(Codec.SNAPPY).snappy
    mv = memoryview(data)
    blocks: list[memoryview] = []
    if bytes(mv[: len(_XERIAL_MAGIC)]) == _XERIAL_MAGIC:
        pos = len(_XERIAL_HEADER)
        while pos < len(mv):
            if pos + 4 > len(mv):
                raise CorruptBatchError("snappy (xerial) block length cut short")
            n = int.from_bytes(mv[pos : pos + 4], "big")
            if n < 0 or pos + 4 + n > len(mv):
                raise CorruptBatchError(f"snappy (xerial) block of {n} bytes runs past the data")
            blocks.append(mv[pos + 4 : pos + 4 + n])
            pos += 4 + n
    else:
        blocks.append(mv)
    out = bytearray()
    for b in blocks:
        try:
            # The raw format states its length up front: check the bound before allocating.
            if len(out) + snappy.decompress_raw_len(b) > max_size:
                raise _too_big(max_size)
            out += bytes(snappy.decompress_raw(b))
        except CorruptBatchError:
            raise
        except Exception as exc:  # cramjam raises its own DecompressionError for garbage
            raise CorruptBatchError(f"snappy data does not decompress: {exc}") from None
    return bytes(out)


def _too_big(max_size: int) -> CorruptBatchError:
    return CorruptBatchError(f"decompressed size exceeds the limit of {max_size} bytes")


def _gunzip(data: bytes | bytearray | memoryview, max_size: int) -> bytes:
    out: list[bytes] = []
    total = 0
    rest = bytes(data)
    try:
        # A gzip stream may hold several members back to back; GZIPInputStream reads them all.
        while rest:
            d = zlib.decompressobj(31)
            chunk = d.decompress(rest, max_size - total + 1)
            while True:
                total += len(chunk)
                if total > max_size:
                    raise _too_big(max_size)
                out.append(chunk)
                if not d.unconsumed_tail:
                    break
                chunk = d.decompress(d.unconsumed_tail, max_size - total + 1)
            tail = d.flush(max_size - total + 1) if not d.eof else b""
            total += len(tail)
            if total > max_size:
                raise _too_big(max_size)
            out.append(tail)
            if not d.eof:
                raise CorruptBatchError("gzip data ends before the end of its stream")
            rest = d.unused_data
    except zlib.error as e:
        raise CorruptBatchError(f"gzip data does not decompress: {e}") from None
    return b"".join(out)


def _unzstd(data: bytes | bytearray | memoryview, max_size: int) -> bytes:
    zstd = _import(Codec.ZSTD)
    dctx = _cached(("zd",), zstd.ZstdDecompressor)
    try:
        size = zstd.frame_content_size(data)
        if size >= 0:
            if size > max_size:
                raise _too_big(max_size)
            # Fast path: one frame that states its size. Extra data means more frames: stream.
            try:
                return cast(bytes, dctx.decompress(data, allow_extra_data=False))
            except zstd.ZstdError as e:
                if "unused data" not in str(e):
                    raise
        out: list[bytes] = []
        total = 0
        with dctx.stream_reader(data, read_across_frames=True, closefd=False) as reader:
            while True:
                chunk = reader.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_size:
                    raise _too_big(max_size)
                out.append(chunk)
        return b"".join(out)
    except zstd.ZstdError as e:
        raise CorruptBatchError(f"zstd data does not decompress: {e}") from None


def _unlz4(data: bytes | bytearray | memoryview, max_size: int) -> bytes:
    lz4f = _import(Codec.LZ4)
    out: list[bytes] = []
    total = 0
    rest: bytes | None = bytes(data)
    try:
        while rest:
            d = lz4f.LZ4FrameDecompressor()
            chunk = d.decompress(rest, max_length=_CHUNK)
            while True:
                total += len(chunk)
                if total > max_size:
                    raise _too_big(max_size)
                out.append(chunk)
                if d.eof or d.needs_input:
                    break
                chunk = d.decompress(b"", max_length=_CHUNK)
            if not d.eof:
                raise CorruptBatchError("lz4 data ends before the end of its frame")
            rest = d.unused_data
    except RuntimeError as e:
        raise CorruptBatchError(f"lz4 data does not decompress: {e}") from None
    return b"".join(out)
