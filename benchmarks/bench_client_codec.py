"""How many records one core can put into v2 batches and take out of them.

The client library is pure Python, so its record codec bounds what one producer or
consumer process can move. This measures it: records per second encoded into batches
(``RecordBatchBuilder.append`` + ``build``, compression included) and decoded out of
them (``decode_batch``: CRC, decompression, every record), for 100 B and 1 KiB values,
uncompressed and zstd.

    .venv/bin/python -m benchmarks.bench_client_codec            # a few seconds
    .venv/bin/python -m benchmarks.bench_client_codec --quick    # a smoke run
    .venv/bin/python -m benchmarks.bench_client_codec --kafka-python   # add a reference column

Values are text-like (a JSON-ish event with varying fields), so that zstd has
something realistic to compress; timestamps advance as a fast producer's would (many
records per millisecond).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from strata.client.compression import Codec, is_available
from strata.client.records import RecordBatchBuilder, decode_batch

TS = 1_700_000_000_000


@dataclass(slots=True)
class Result:
    value_size: int
    codec: Codec
    encode_rps: float
    decode_rps: float
    ratio: float
    ref_encode_rps: float | None = None
    ref_decode_rps: float | None = None


def make_values(size: int, count: int, seed: int = 1) -> list[bytes]:
    """Distinct, text-like values of exactly ``size`` bytes."""
    rng = random.Random(seed)
    words = ["click", "view", "purchase", "signup", "logout", "search", "cart", "home"]
    out = []
    for i in range(count):
        s = (
            f'{{"user":{rng.randrange(10**6)},"event":"{rng.choice(words)}",'
            f'"seq":{i},"page":"/p/{rng.randrange(5000)}","v":"'
        )
        while len(s) < size:
            s += rng.choice(words) + str(rng.randrange(100))
        out.append(s[: size - 2].encode() + b'"}')
    return out


def best_rate(fn: Callable[[], int], min_seconds: float) -> float:
    """Items per second of ``fn`` (which returns how many items it did): the best of several runs."""
    best = 0.0
    deadline = time.perf_counter() + min_seconds
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        n = fn()
        rate = n / (time.perf_counter() - t0)
        best = max(best, rate)
        runs += 1
    return best


def encode_all(
    rows: list[tuple[int, bytes, bytes]], codec: Codec, batch_bytes: int, keep: bool = True
) -> list[bytes]:
    """Encode ``rows`` into as many batches as they need.

    With ``keep=False`` each batch is dropped once built, as a producer drops it once
    sent, so the measurement is not about the allocator fetching fresh memory.
    """
    batches = []
    b = RecordBatchBuilder(compression=codec, max_batch_bytes=batch_bytes)
    append = b.append
    for ts, key, value in rows:
        if not append(ts, key, value, None):
            raw = b.build()
            if keep:
                batches.append(raw)
            b = RecordBatchBuilder(compression=codec, max_batch_bytes=batch_bytes)
            append = b.append
            append(ts, key, value, None)
    batches.append(b.build())
    return batches


def decode_all(batches: list[bytes]) -> int:
    n = 0
    for raw in batches:
        n += len(decode_batch(raw).records)
    return n


def kafka_python_rates(
    rows: list[tuple[int, bytes, bytes]], codec: Codec, batch_bytes: int, min_seconds: float
) -> tuple[float, float]:
    from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

    def encode() -> list[bytes]:
        out = []
        b = DefaultRecordBatchBuilder(2, int(codec), False, -1, -1, -1, batch_bytes)
        off = 0
        for ts, key, value in rows:
            if b.append(off, ts, key, value, []) is None:
                out.append(bytes(b.build()))
                b = DefaultRecordBatchBuilder(2, int(codec), False, -1, -1, -1, batch_bytes)
                off = 0
                b.append(off, ts, key, value, [])
            off += 1
        out.append(bytes(b.build()))
        return out

    batches = encode()

    def decode() -> int:
        n = 0
        for raw in batches:
            for _ in DefaultRecordBatch(bytearray(raw)):
                n += 1
        return n

    enc = best_rate(lambda: (encode(), len(rows))[1], min_seconds)
    return enc, best_rate(decode, min_seconds)


def run(quick: bool, reference: bool, batch_bytes: int) -> list[Result]:
    min_seconds = 0.05 if quick else 0.4
    results = []
    for size in (100, 1024):
        count = (20_000 if quick else 100_000) if size == 100 else (5_000 if quick else 30_000)
        values = make_values(size, count)
        # ~1000 records per millisecond: a busy producer's clock.
        rows = [(TS + i // 1000, b"user-%d" % (i % 1000), v) for i, v in enumerate(values)]
        for codec in (Codec.NONE, Codec.ZSTD):
            if not is_available(codec):
                print(f"skipping {codec.name.lower()}: its package is not installed")
                continue
            enc = best_rate(
                lambda c=codec, r=rows: (encode_all(r, c, batch_bytes, keep=False), len(r))[1],
                min_seconds,
            )
            batches = encode_all(rows, codec, batch_bytes)
            assert decode_all(batches) == len(rows)
            dec = best_rate(lambda b=batches: decode_all(b), min_seconds)
            raw_bytes = sum(len(k) + len(v) for _, k, v in rows)
            ratio = raw_bytes / sum(len(b) for b in batches)
            r = Result(size, codec, enc, dec, ratio)
            if reference:
                r.ref_encode_rps, r.ref_decode_rps = kafka_python_rates(
                    rows, codec, batch_bytes, min_seconds
                )
            results.append(r)
    return results


def print_table(results: list[Result], batch_bytes: int) -> None:
    ref = any(r.ref_encode_rps is not None for r in results)
    head = f"{'value':>6} {'codec':>5} {'encode rec/s':>13} {'decode rec/s':>13} {'encode MB/s':>11} {'decode MB/s':>11} {'ratio':>6}"
    if ref:
        head += f" {'kafka-py enc':>13} {'kafka-py dec':>13}"
    print(f"Strata client record codec, one core, batches of up to {batch_bytes} bytes")
    print(head)
    print("-" * len(head))
    for r in results:
        line = (
            f"{r.value_size:>5}B {r.codec.name.lower():>5} {r.encode_rps:>13,.0f} {r.decode_rps:>13,.0f} "
            f"{r.encode_rps * r.value_size / 1e6:>11.1f} {r.decode_rps * r.value_size / 1e6:>11.1f} "
            f"{r.ratio:>6.2f}"
        )
        if ref:
            line += f" {r.ref_encode_rps:>13,.0f} {r.ref_decode_rps:>13,.0f}"
        print(line)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small data, short runs (a smoke test)")
    p.add_argument(
        "--kafka-python", action="store_true", help="also measure kafka-python, for reference"
    )
    p.add_argument(
        "--batch-bytes", type=int, default=1 << 20, help="max batch size (default 1 MiB)"
    )
    args = p.parse_args(argv)
    print_table(run(args.quick, args.kafka_python, args.batch_bytes), args.batch_bytes)


if __name__ == "__main__":
    main()
