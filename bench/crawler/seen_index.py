"""The seen-URL check at 200,000 URLs: the crawler's exact in-memory index (a dict) against an mmh3
Bloom filter in front of it and against SQLite's primary-key index (where the state keeps them)."""

from __future__ import annotations

import gc
import sqlite3
import statistics
import sys
import time
import tracemalloc

import mmh3

N = 200_000
BITS_PER_URL, HASHES = 10, 7  # about 1% false positives


class BloomFilter:
    """k bit positions from two mmh3 halves (Kirsch–Mitzenmacher double hashing)."""

    def __init__(self, n: int) -> None:
        self.size = n * BITS_PER_URL
        self.bits = bytearray(self.size // 8 + 1)

    def _positions(self, key: str) -> list[int]:
        a, b = mmh3.hash64(key, signed=False)
        return [(a + i * b) % self.size for i in range(HASHES)]

    def add(self, key: str) -> None:
        """Set the key's bits."""
        for p in self._positions(key):
            self.bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, key: str) -> bool:
        return all(self.bits[p >> 3] >> (p & 7) & 1 for p in self._positions(key))


def _urls(n: int, salt: str) -> list[str]:
    return [f"http://127.0.1.{i % 20 + 1}:8080/s{i % 3}/{salt}{i}.html" for i in range(n)]


def _per_lookup(fn, keys: list[str]) -> float:
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for k in keys:
            fn(k)
        times.append((time.perf_counter() - t) / len(keys))
    return statistics.median(times) * 1e9


def measure() -> str:
    """Nanoseconds per check (hits and misses) and bytes per URL for each index, as markdown."""
    known, unknown = _urls(N, "p"), _urls(20_000, "q")
    gc.collect()
    tracemalloc.start()
    index = {u: 1 for u in known}
    dict_bytes = tracemalloc.get_traced_memory()[0] / N
    tracemalloc.stop()
    bloom = BloomFilter(N)
    for u in known:
        bloom.add(u)
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE urls (url TEXT PRIMARY KEY)")
    db.executemany("INSERT INTO urls VALUES (?)", [(u,) for u in known])
    hits, misses = known[::10], unknown
    q = "SELECT 1 FROM urls WHERE url = ?"
    rows = [
        ("exact dict (the crawler's index)", _per_lookup(index.__contains__, hits),
         _per_lookup(index.__contains__, misses),
         f"{dict_bytes:.0f} + {statistics.mean(map(sys.getsizeof, known)):.0f} (the URL string)"),
        ("mmh3 Bloom filter alone (10 bits/URL, k=7)", _per_lookup(bloom.__contains__, hits),
         _per_lookup(bloom.__contains__, misses), f"{len(bloom.bits) / N:.2f}"),
        ("SQLite primary key (in memory)", _per_lookup(lambda u: db.execute(q, (u,)).fetchone(), hits),
         _per_lookup(lambda u: db.execute(q, (u,)).fetchone(), misses), "on disk"),
    ]
    false_pos = sum(u in bloom for u in unknown) / len(unknown)
    lines = [f"**seen-URL check at {N:,} URLs** (median of 5 passes; ns per check):", "",
             "| index | hit ns | miss ns | memory bytes per URL |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {h:,.0f} | {m:,.0f} | {mem} |" for name, h, m, mem in rows]
    dict_miss, bloom_miss = rows[0][2], rows[1][2]
    verdict = ("does not pay for speed: the dict answers a miss faster than the filter computes its "
               "bit positions" if bloom_miss >= dict_miss else
               "answers a miss faster than the dict, but every hit still needs the exact index")
    lines += ["", f"Bloom false-positive rate measured: {false_pos:.2%}. A Bloom filter in front of "
              f"the dict {verdict}; it would save memory only in front of an on-disk index (SQLite "
              f"primary key, {rows[2][1]:,.0f} ns per hit here, and every lookup would become an "
              "await on the hot path). The crawler keeps the exact dict."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(measure())
