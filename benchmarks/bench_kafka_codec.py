"""What the Kafka codec costs on the broker's hot paths, in microseconds per operation.

* Produce request decode with 1 MiB of records (one partition; and 100 partitions of
  ~10 KiB): the body alone (``read_message`` over the frame), and the whole connection
  path (``receive_data`` + ``next_event``, which includes the one copy of the frame out
  of the receive buffer). Records come out as views into the frame: the benchmark checks
  that no byte of them was copied by the decoder.
* Fetch response encode with 100 partitions whose records are file-slice parts
  (``send_response``: header, body, size prefix; the parts are passed through, never read).
* For scale: a Fetch request with 100 partitions decoded, a Metadata response with 100
  topics x 10 partitions encoded.

    .venv/bin/python -m benchmarks.bench_kafka_codec                 # a few seconds
    .venv/bin/python -m benchmarks.bench_kafka_codec --quick         # a smoke run
    .venv/bin/python -m benchmarks.bench_kafka_codec --kafka-python  # add kafka-python 3 as a reference
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from strata.broker.frontends.kafka.codec import KafkaServerConnection, encode_request
from strata.broker.frontends.kafka.codec import messages as m
from strata.broker.frontends.kafka.codec.compiler import encode_body, read_message


@dataclass(frozen=True, slots=True)
class FilePart:
    """Stands in for a segment-file slice: only ``size`` is read by the codec."""

    size: int


def best_us(fn: Callable[[], object], min_seconds: float) -> float:
    """CPU microseconds per call of ``fn``: the best of several timed batches.

    CPU time of this thread (``time.thread_time``), not wall time, so that other
    processes competing for the cores do not count against the codec.
    """
    n = 1
    while True:  # size a batch to ~10 ms
        t0 = time.thread_time()
        for _ in range(n):
            fn()
        if time.thread_time() - t0 > 0.01:
            break
        n *= 2
    best = float("inf")
    deadline = time.thread_time() + min_seconds
    runs = 0
    while runs < 3 or time.thread_time() < deadline:
        t0 = time.thread_time()
        for _ in range(n):
            fn()
        best = min(best, (time.thread_time() - t0) / n)
        runs += 1
    return best * 1e6


def produce(partitions: int, total_bytes: int) -> m.ProduceRequest:
    each = total_bytes // partitions
    return m.ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout_ms=30_000,
        topic_data=[
            m.ProduceRequest.TopicProduceData(
                name="events",
                partition_data=[
                    m.ProduceRequest.PartitionProduceData(index=i, records=bytes([i % 256]) * each)
                    for i in range(partitions)
                ],
            )
        ],
    )


def fetch_response(partitions: int, part_size: int) -> m.FetchResponse:
    return m.FetchResponse(
        responses=[
            m.FetchResponse.FetchableTopicResponse(
                topic="events",
                partitions=[
                    m.FetchResponse.PartitionData(
                        partition_index=i,
                        high_watermark=1_000_000 + i,
                        last_stable_offset=1_000_000 + i,
                        log_start_offset=0,
                        aborted_transactions=None,
                        records=FilePart(part_size),
                    )
                    for i in range(partitions)
                ],
            )
        ]
    )


def fetch_request(partitions: int) -> m.FetchRequest:
    return m.FetchRequest(
        replica_id=-1,
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=50 << 20,
        topics=[
            m.FetchRequest.FetchTopic(
                topic="events",
                partitions=[
                    m.FetchRequest.FetchPartition(
                        partition=i, fetch_offset=1000 * i, partition_max_bytes=1 << 20
                    )
                    for i in range(partitions)
                ],
            )
        ],
    )


def metadata_response(topics: int, partitions: int) -> m.MetadataResponse:
    meta = m.MetadataResponse
    return meta(
        brokers=[
            meta.MetadataResponseBroker(node_id=i, host=f"broker-{i}", port=9092) for i in range(3)
        ],
        cluster_id="strata-1-2-3",
        controller_id=1,
        topics=[
            meta.MetadataResponseTopic(
                name=f"topic-{t}",
                partitions=[
                    meta.MetadataResponsePartition(
                        partition_index=p,
                        leader_id=p % 3,
                        leader_epoch=7,
                        replica_nodes=[0, 1, 2],
                        isr_nodes=[0, 1, 2],
                    )
                    for p in range(partitions)
                ],
            )
            for t in range(topics)
        ],
    )


def produce_cases(min_seconds: float, kp: Any) -> list[tuple[str, float, float | None]]:
    rows = []
    for partitions in (1, 100):
        for version in (8, 9):
            request = produce(partitions, 1 << 20)
            frame = b"".join(bytes(p) for p in encode_request(request, version, 1, "bench"))
            body = memoryview(encode_body(request, version))
            decoded = read_message(m.ProduceRequest, version, body)
            views = [p.records for t in decoded.topic_data for p in t.partition_data]
            assert all(v.obj is body.obj for v in views), "records were copied"

            def connection_path(frame: bytes = frame) -> object:
                conn = KafkaServerConnection()
                conn.receive_data(frame)
                return conn.next_event()

            label = f"Produce v{version} decode, 1 MiB in {partitions} partition(s)"
            body_us = best_us(
                lambda v=version, b=body: read_message(m.ProduceRequest, v, b), min_seconds
            )
            ref = None
            if kp is not None:
                data = bytes(body)
                ref = best_us(
                    lambda v=version, d=data: kp.ProduceRequest.decode(d, version=v), min_seconds
                )
            rows.append((label + " (body)", body_us, ref))
            rows.append((label + " (connection)", best_us(connection_path, min_seconds), None))
    return rows


def fetch_cases(min_seconds: float) -> list[tuple[str, float, float | None]]:
    rows = []
    conn = KafkaServerConnection()
    for version in (11, 12):
        request = fetch_request(100)
        conn.receive_data(b"".join(bytes(p) for p in encode_request(request, version, 1, "bench")))
        event = conn.next_event()
        response = fetch_response(100, 1 << 20)
        parts = conn.send_response(event, response)  # type: ignore[arg-type]
        assert sum(isinstance(p, FilePart) for p in parts) == 100
        rows.append(
            (
                f"Fetch v{version} response encode, 100 partitions of file parts",
                best_us(lambda e=event, r=response: conn.send_response(e, r), min_seconds),  # type: ignore[misc]
                None,
            )
        )
        body = memoryview(encode_body(request, version))
        rows.append(
            (
                f"Fetch v{version} request decode, 100 partitions",
                best_us(lambda v=version, b=body: read_message(m.FetchRequest, v, b), min_seconds),
                None,
            )
        )
    meta = metadata_response(100, 10)
    for version in (8, 12):
        rows.append(
            (
                f"Metadata v{version} response encode, 100 topics x 10 partitions",
                best_us(lambda v=version: encode_body(meta, v), min_seconds),
                None,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument(
        "--kafka-python", action="store_true", help="add kafka-python 3 as a reference"
    )
    args = parser.parse_args()
    min_seconds = 0.05 if args.quick else 0.5
    kp = None
    if args.kafka_python:
        import kafka.protocol.producer as kp
    rows = produce_cases(min_seconds, kp) + fetch_cases(min_seconds)
    width = max(len(r[0]) for r in rows)
    print(f"{'operation':<{width}}  {'us/op':>9}" + ("  kafka-python us/op" if kp else ""))
    for label, us, ref in rows:
        line = f"{label:<{width}}  {us:>9.1f}"
        if kp is not None and ref is not None:
            line += f"  {ref:>19.1f}"
        print(line)


if __name__ == "__main__":
    main()
