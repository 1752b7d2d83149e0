"""Splitting a Kafka byte stream into frames: ``int32 size | size bytes``, in either direction.

Sans-I/O (h11's shape): bytes go in with :meth:`FrameReader.receive_data`, whole frames
come out of :meth:`FrameReader.next_frame`. Every frame handed out is a view of a buffer
nothing will write to again, so a ``memoryview`` into it (a Produce request's records)
stays valid for as long as the handler keeps it, whatever arrives next. Copies are kept
to what the stream's chunking forces: a frame that arrived inside one ``bytes`` chunk is
a view of that chunk; a frame that ends a buffer of several chunks takes that buffer
over; only a frame followed by more data in a shared buffer is copied out of it.

Bounds: the size prefix is checked as soon as its 4 bytes are in, before anything of the
body is buffered; a negative size or one above ``max_frame_bytes`` fails the reader for
good (the stream cannot be resynchronised). A large frame (64 KiB and more) is assembled
in a buffer of its own, allocated at its final size once 64 KiB of it has arrived, so it
is copied once, not once per growth of a shared buffer, and a peer must actually send
data before the reader commits memory to its announced size. The reader buffers only
what it is given: the caller applies backpressure (stops reading the socket) when
:attr:`FrameReader.buffered` is high.
"""

from __future__ import annotations

import struct
from enum import Enum
from typing import Final, Literal, TypeAlias

from strata.broker.frontends.kafka.codec.exceptions import (
    FrameTooLarge,
    FramingError,
    InvalidFrameSize,
    TruncatedFrame,
)
from strata.broker.frontends.kafka.codec.types import Buffer

#: Kafka's default ``socket.request.max.bytes`` (100 MiB).
DEFAULT_MAX_FRAME_BYTES: Final = 104_857_600
#: Frames at least this large are assembled in a buffer of their own.
LARGE_FRAME_BYTES: Final = 64 << 10
#: Consumed bytes at the front of the shared buffer are dropped once there are this many
#: and they are at least half of it: copying stays linear in the bytes received.
_COMPACT_BYTES: Final = 64 << 10
_I32 = struct.Struct(">i")


class Signal(Enum):
    """What a reader returns when it has no frame to hand out."""

    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Signal.NEED_DATA
#: The peer closed the stream at a frame boundary.
CLOSED: Final = Signal.CLOSED
NextFrame: TypeAlias = memoryview | Literal[Signal.NEED_DATA, Signal.CLOSED]


class FrameReader:
    """Turns received bytes into frame bodies (the bytes after the size prefix)."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if not 0 < max_frame_bytes <= 0x7FFFFFFF:
            raise ValueError("max_frame_bytes must be in [1, 2**31)")
        self.max_frame_bytes = max_frame_bytes
        #: Received bytes not handed out yet start at ``_pos``: the caller's ``bytes``
        #: while nothing else arrived, else a ``bytearray`` collecting the pieces.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._big: bytearray | None = None
        self._big_filled = 0
        self._eof = False
        self._error: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out as frames."""
        return len(self._buf) - self._pos + self._big_filled

    @property
    def failed(self) -> bool:
        return self._error is not None

    def receive_data(self, data: Buffer) -> None:
        """Bytes from the stream; ``b""`` means the peer closed it."""
        if self._error is not None:
            return
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("receive_data() after the end of the stream")
        if self._big is not None:
            room = len(self._big) - self._big_filled
            with memoryview(data) as view:
                n = min(room, view.nbytes)
                self._big[self._big_filled : self._big_filled + n] = view[:n]
                self._big_filled += n
                if n == view.nbytes:
                    return
                data = bytes(view[n:])
        buf = self._buf
        if self._pos == len(buf):
            # Nothing pending: keep the caller's bytes as they are (immutable, so frames
            # can be handed out as views of them without a copy).
            self._buf = data if type(data) is bytes else bytearray(data)
            self._pos = 0
            return
        if isinstance(buf, bytes):
            pending = bytearray(memoryview(buf)[self._pos :])
            self._buf, self._pos = pending, 0
        else:
            pending = buf
            if self._pos >= _COMPACT_BYTES and self._pos * 2 >= len(pending):
                del pending[: self._pos]
                self._pos = 0
        pending += data

    def next_frame(self) -> NextFrame:
        """The next frame's body, ``NEED_DATA``, or ``CLOSED`` after a clean end of stream."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except FramingError as exc:
            self._error = exc
            self._buf = b""
            self._pos = 0
            self._big = None
            self._big_filled = 0
            raise

    def _need_more(self) -> NextFrame:
        if not self._eof:
            return NEED_DATA
        if self.buffered:
            raise TruncatedFrame(
                f"the stream ended inside a frame ({self.buffered} bytes of it received)"
            )
        return CLOSED

    def _next(self) -> NextFrame:
        if self._big is not None:
            if self._big_filled < len(self._big):
                return self._need_more()
            frame = memoryview(self._big).toreadonly()
            self._big = None
            self._big_filled = 0
            return frame
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 4:
            return self._need_more()
        (size,) = _I32.unpack_from(buf, pos)
        if size < 0:
            raise InvalidFrameSize(f"negative frame size {size}")
        if size > self.max_frame_bytes:
            raise FrameTooLarge(
                f"frame of {size} bytes exceeds the limit of {self.max_frame_bytes}"
            )
        have = avail - 4
        if have >= size:
            end = pos + 4 + size
            if type(buf) is bytes:
                self._pos = end
                return memoryview(buf)[pos + 4 : end]
            if end == len(buf):  # the last frame received: the frame takes the buffer over
                self._buf = b""
                self._pos = 0
                return memoryview(buf).toreadonly()[pos + 4 : end]
            self._pos = end
            with memoryview(buf) as view:
                return memoryview(bytes(view[pos + 4 : end]))
        if size >= LARGE_FRAME_BYTES and have >= LARGE_FRAME_BYTES:
            big = bytearray(size)
            with memoryview(buf) as view:
                big[:have] = view[pos + 4 : pos + avail]
            self._big, self._big_filled = big, have
            self._pos = len(buf)
        return self._need_more()
