"""Chunking speed of the maintained FastCDC packages on one core: pyfastcdc (Cython) and fastcdc.

Boundaries only (what a chunker costs) and boundaries + a 128-bit mmh3 per chunk (what --similar
does), on 256 MiB of seeded random bytes held in memory, one thread. Median of rounds, MB/s =
10^6 bytes per second. Run: `.venv/bin/python -m bench.dedup.cdc_speed`.
"""

from __future__ import annotations

import os
import random
import statistics
import time

import mmh3

AVG = 64 * 1024
DATA_MB = int(os.environ.get("FANMILL_CDC_MB", "256"))


def _data() -> bytes:
    rng = random.Random(19)
    return b"".join(rng.randbytes(1 << 20) for _ in range(DATA_MB))


def pyfastcdc_bounds(data: bytes) -> int:
    from pyfastcdc import FastCDC

    return sum(1 for _ in FastCDC(AVG).cut_buf(data))


def pyfastcdc_hashed(data: bytes) -> int:
    from pyfastcdc import FastCDC

    view = memoryview(data)
    return len([mmh3.mmh3_x64_128_digest(view[c.offset:c.offset + c.length])
                for c in FastCDC(AVG).cut_buf(view)])


def dedup_bounds(data: bytes) -> int:
    from pyfastcdc import FastCDC

    from dedup.similar import AVG_CHUNK, LEVEL, MAX_CHUNK, MIN_CHUNK

    return sum(1 for _ in FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK,
                                  normalized_chunking=LEVEL).cut_buf(data))


def dedup_hashed(data: bytes) -> int:
    from pyfastcdc import FastCDC

    from dedup.similar import AVG_CHUNK, LEVEL, MAX_CHUNK, MIN_CHUNK

    digest = mmh3.mmh3_x64_128_digest
    cdc = FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK, normalized_chunking=LEVEL)
    return len([digest(c.data) for c in cdc.cut_buf(memoryview(data))])


def fastcdc_bounds(data: bytes) -> int:
    from fastcdc import fastcdc

    return sum(1 for _ in fastcdc(data, avg_size=AVG))


def fastcdc_hashed(data: bytes) -> int:
    from fastcdc import fastcdc

    view = memoryview(data)
    return len([mmh3.mmh3_x64_128_digest(view[c.offset:c.offset + c.length])
                for c in fastcdc(data, avg_size=AVG)])


def mmh3_only(data: bytes) -> int:
    view = memoryview(data)
    return len([mmh3.mmh3_x64_128_digest(view[i:i + AVG]) for i in range(0, len(view), AVG)])


CASES = [("pyfastcdc (boundaries)", pyfastcdc_bounds), ("pyfastcdc + mmh3", pyfastcdc_hashed),
         ("pyfastcdc as dedup sets it (boundaries)", dedup_bounds),
         ("pyfastcdc as dedup sets it + mmh3 (dedup --similar)", dedup_hashed),
         ("fastcdc (boundaries)", fastcdc_bounds), ("fastcdc + mmh3", fastcdc_hashed),
         ("mmh3 alone, fixed 64 KiB blocks", mmh3_only)]


def measure(rounds: int = 5) -> list[tuple[str, float, int]]:
    """Return (case, median MB/s, chunks) per case, rounds interleaved."""
    data = _data()
    times: dict[str, list[float]] = {name: [] for name, _ in CASES}
    chunks: dict[str, int] = {}
    for _ in range(rounds):
        for name, fn in CASES:
            started = time.perf_counter()
            chunks[name] = fn(data)
            times[name].append(time.perf_counter() - started)
    return [(name, len(data) / statistics.median(times[name]) / 1e6, chunks[name])
            for name, _ in CASES]


def versions() -> str:
    """Return the package versions measured."""
    from importlib.metadata import version

    return f"pyfastcdc {version('pyfastcdc')}; fastcdc {version('fastcdc')}; mmh3 {version('mmh3')}"


def markdown(rounds: int) -> str:
    """Return the results subsection: MB/s per case on one core."""
    from dedup.similar import AVG_CHUNK, LEVEL, MAX_CHUNK

    lines = [f"**Chunking, one core** — {DATA_MB} MiB of seeded random bytes in memory, avg_size "
             f"64 KiB (dedup: avg = min = {AVG_CHUNK // 1024} KiB, max {MAX_CHUNK // 1024} KiB, "
             f"normalization level {LEVEL}), {rounds} rounds, median; {versions()}.", "",
             "| chunker | MB/s | chunks |", "|---|---:|---:|"]
    lines += [f"| {name} | {mbs:,.0f} | {n:,} |" for name, mbs, n in measure(rounds)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(versions())
    for name, mbs, n in measure(int(os.environ.get("FANMILL_BENCH_ROUNDS", "5"))):
        print(f"{name:34s} {mbs:9.0f} MB/s  {n} chunks")
