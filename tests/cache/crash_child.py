"""Child process of the kill -9 tests: applies a seeded workload and acknowledges each op on stdout.

Usage: python crash_child.py PATH SEED N CAPACITY DURABILITY MIX [STOP]
Prints "ack I" after operation I has returned (so it is acknowledged), flushing each line. With
STOP, it stops after acknowledging op STOP and blocks reading stdin until the parent kills it (or
closes the pipe): the parent's kill then lands at op STOP at the latest, however fast this process
runs. Without STOP it applies all N ops and prints "done".
"""

from __future__ import annotations

import os
import sys

from cache import PersistentLRU
from tests.cache.lru_model import apply, workload


def main() -> None:
    """Apply the workload, acknowledging each op; stop and wait at STOP if given."""
    path, seed, n, capacity, durability, mix = sys.argv[1:7]
    stop = int(sys.argv[7]) if len(sys.argv) > 7 else None
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
        if i == stop:
            sys.stdin.read()  # nothing more is written: wait for the kill
            os._exit(1)  # the parent went away without killing: leave the file as a kill would
    out.write("done\n")
    out.flush()


if __name__ == "__main__":
    main()
