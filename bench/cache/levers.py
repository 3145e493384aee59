"""What each remaining cost of the single-process default open weighs on the bench trace.

`python -m bench.cache.levers [--rounds N]` plays the bench trace (cache-aside, one process, the
shared default open, serializer "bytes") in alternated rounds, each time with one cost removed, and
prints the median ops/s against the unchanged code of the same rounds. The variants break promises
(no touch record: recency is lost at a crash; no compaction: the file grows without bound; every
value remembered: memory without bound), so they measure only: they are never an option. Then it
counts the bytes CRC32 runs over (puts, touches, checked reads, compaction's carry) and times this
machine's zlib.crc32 on them (best of 5): a cost no variant removes, since the record format's
checksum is zlib's CRC32 and cache/ uses the standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
import zlib
from collections.abc import Callable
from typing import Any

from bench.cache.adapters import CAPACITY
from bench.cache.workload import make_trace

WORK = os.path.join(os.path.dirname(__file__), "..", ".work", "cache", "levers")
VARIANTS = ("unchanged", "no touch record", "no compaction", "every value remembered")


def _open(variant: str) -> Any:
    """Open a fresh cache as the bench does, with *variant*'s cost removed."""
    from cache import PersistentLRU, reads

    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    reads.RECENT_BYTES = 1 << 40 if variant == "every value remembered" else 8 << 20
    extra = {"compact_min_bytes": 1 << 40} if variant == "no compaction" else {}
    lru = PersistentLRU(os.path.join(WORK, "x.lru"), capacity=CAPACITY, serializer="bytes", **extra)
    if variant == "no touch record":
        lru._touch = lambda _kbytes: None
    return lru


def play(lru: Any, ops: list[tuple[int, bool]], value_for: Callable[[int], bytes]) -> float:
    """Play *ops* cache-aside on *lru* (bench/cache/__main__.py's loop); return the seconds."""
    get, put = lru.get, lru.__setitem__
    start = time.perf_counter()
    for key, is_get in ops:
        if not is_get or get(key) is None:
            put(key, value_for(key))
    return time.perf_counter() - start


def crc_share(ops: list[tuple[int, bool]], value_for: Callable[[int], bytes]) -> tuple[int, int, float]:
    """Return (calls, bytes) of CRC32 in one unchanged run and the seconds zlib takes for them."""
    from cache import compact, log, reads

    calls, sizes = [0], [0]

    def counting(data: Any, value: int = 0) -> int:
        calls[0] += 1
        sizes[0] += len(data)
        return zlib.crc32(data, value)

    for module in (log, reads, compact):
        module._crc32 = counting  # type: ignore[attr-defined]
    try:
        lru = _open("unchanged")
        play(lru, ops, value_for)
        lru.close()
    finally:
        for module in (log, reads, compact):
            module._crc32 = zlib.crc32  # type: ignore[attr-defined]
    mean = max(1, sizes[0] // calls[0])
    block = bytes(mean)
    n, best = 20_000, float("inf")
    for _ in range(5):  # the best of 5, as timeit: the machine is shared
        start = time.perf_counter()
        for _ in range(n):
            zlib.crc32(block, 1)
        best = min(best, time.perf_counter() - start)
    return calls[0], sizes[0], best / n * calls[0]


def main() -> None:
    """Run the variants in alternated rounds and print each one's median against the unchanged."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    rounds = parser.parse_args().rounds
    trace = make_trace()
    got: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        for variant in VARIANTS[r % len(VARIANTS):] + VARIANTS[: r % len(VARIANTS)]:
            lru = _open(variant)
            seconds = play(lru, trace.ops, trace.value_for)
            lru.close()
            got[variant].append(len(trace.ops) / seconds)
    base = got["unchanged"]
    print(f"{len(trace.ops):,} operations, {rounds} alternated rounds")
    for variant in VARIANTS:
        pairs = [ops / b for ops, b in zip(got[variant], base, strict=True)]
        print(f"{variant:24s} median {statistics.median(got[variant]):>9,.0f} ops/s  "
              f"{1e6 / statistics.median(got[variant]):5.2f} us/op  x{statistics.median(pairs):.3f} "
              f"the unchanged code (rounds {min(pairs):.3f}-{max(pairs):.3f})")
    calls, size, seconds = crc_share(trace.ops, trace.value_for)
    print(f"CRC32: {calls:,} calls over {size / 2**20:,.0f} MiB in one run, {seconds * 1e3:.0f} ms of "
          f"zlib {zlib.ZLIB_RUNTIME_VERSION} here ({seconds * 1e6 / len(trace.ops):.2f} us/op; "
          f"{size / seconds / 2**30:.2f} GiB/s)")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
