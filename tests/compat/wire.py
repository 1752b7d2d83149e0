"""Raw Kafka requests for the tests: one blocking connection, kafka-python's message classes.

The differential tests and the independent reader need what a client library hides: the
exact request version sent, every error code as the broker put it, and the record batches'
own headers (to see which codec a producer really used). kafka-python 3 encodes and decodes
every Kafka message from Kafka's JSON schemas; this module only frames them on a socket,
one request at a time, each bounded by a timeout.

    with KafkaWire.connect("127.0.0.1:9092") as wire:
        versions = wire.api_versions()                      # {api_key: (min, max)}
        response = wire.send(MetadataRequest(topics=None, allow_auto_topic_creation=False), version=4)
"""

from __future__ import annotations

import itertools
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse

#: A response larger than this is refused (the tests never ask for more).
MAX_RESPONSE_BYTES = 64 << 20
#: Batch attributes, bits 0-2 (Kafka's record batch v2 format).
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def response_class(request: Any) -> Any:
    """kafka-python's response class for a request object (same module, same name)."""
    module = __import__(type(request).__module__, fromlist=["_"])
    return getattr(module, type(request).__name__.removesuffix("Request") + "Response")


class KafkaWire:
    """One connection to one broker; ``send`` writes a request and reads its response."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self._ids = itertools.count(1)

    @classmethod
    def connect(cls, address: str, timeout: float = 30.0) -> KafkaWire:
        """Connect to the first address of a bootstrap list (``host:port[,...]``)."""
        sock = socket.create_connection(split_address(address.split(",")[0]), timeout=timeout)
        sock.settimeout(timeout)
        return cls(sock, timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> KafkaWire:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()

    def send(self, request: Any, version: int) -> Any:
        """Send ``request`` at ``version``; return the decoded response (None for acks=0)."""
        correlation_id = next(self._ids)
        request.API_VERSION = version
        request.with_header(correlation_id=correlation_id, client_id="strata-compat-wire")
        self.sock.sendall(request.encode(header=True, framed=True))
        if not request.expect_response():
            return None
        (size,) = struct.unpack(">i", self._read(4))
        if not 0 < size <= MAX_RESPONSE_BYTES:
            raise ValueError(f"implausible response size {size}")
        payload = self._read(size)
        klass = ApiVersionsResponse if isinstance(request, ApiVersionsRequest) else response_class(request)
        response = klass.decode(payload, version=version, header=True)
        got = response.header.correlation_id
        if got != correlation_id:
            raise ValueError(f"response for correlation id {got}, expected {correlation_id}")
        return response

    def api_versions(self) -> dict[int, tuple[int, int]]:
        """The broker's ApiVersions answer (v0: understood by every broker)."""
        response = self.send(ApiVersionsRequest(), version=0)
        return {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}

    def _read(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = self.sock.recv(n - len(chunks))
            if not chunk:
                raise ConnectionError("connection closed mid-response")
            chunks += chunk
        return bytes(chunks)


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """What the tests read from a stored record batch without decoding its records."""

    base_offset: int
    last_offset: int
    codec: str
    is_control: bool
    producer_id: int
    base_sequence: int


def batch_headers(records: bytes | None) -> Iterator[BatchHeader]:
    """Walk the v2 batches in a fetch response's ``records`` (a partial last one is skipped)."""
    data = records or b""
    pos = 0
    while pos + 61 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, pos)
        if pos + 12 + length > len(data):
            return
        magic = data[pos + 16]
        if magic != 2:
            raise ValueError(f"record batch magic {magic} at offset {base_offset}")
        attributes, last_delta = struct.unpack_from(">hi", data, pos + 21)
        producer_id, _epoch, base_sequence = struct.unpack_from(">qhi", data, pos + 43)
        yield BatchHeader(base_offset, base_offset + last_delta, CODECS.get(attributes & 7, "?"),
                          bool(attributes & 0x20), producer_id, base_sequence)  # fmt: skip
        pos += 12 + length
