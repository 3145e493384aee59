"""Child process of the kill -9 tests: applies a seeded workload and acknowledges each op on stdout.

Usage: python crash_child.py PATH SEED N CAPACITY DURABILITY MIX
Prints "ack I" after operation I has returned (so it is acknowledged), flushing each line.
"""

from __future__ import annotations

import sys

from cache import PersistentLRU
from tests.cache.lru_model import apply, workload


def main() -> None:
    path, seed, n, capacity, durability, mix = sys.argv[1:7]
    ops = workload(int(seed), int(n), mix=mix)
    lru = PersistentLRU(
        path, capacity=int(capacity), serializer="bytes", durability=durability,
        compact_min_bytes=2048,  # compact often, so kills land inside compactions too
    )
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for i, op in enumerate(ops):
        apply(lru, op)
        out.write(f"ack {i}\n")
        out.flush()
    out.write("done\n")
    out.flush()


if __name__ == "__main__":
    main()
