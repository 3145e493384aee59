"""The log's checksum alone, and the whole trace in one process under a counter (issue 17; measure only).

`python -m bench.cache.crc_speed crc [--rounds R]` times one record's three CRCs as the log writes
them (the 24-byte header fields, the key, then the value chained on the key's CRC) over the bench
trace's values (256-4096 bytes), with the standard library's zlib.crc32, isal's and cache.crc's
(zlib-ng's where installed), alternated; prints the median ns a record per implementation.
On the 2-core bench machine (session 14, --rounds 5): zlib 1,752, isal 1,466, zlib-ng 458.

`python -m bench.cache.crc_speed play --ops N [--exclusive]` plays the first N operations of the
bench trace on one PersistentLRU in this process (cache-aside, as bench/cache/__main__.py), no
timing of its own: for a counter that does not depend on the machine's load, e.g.

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \\
        bench/.venv-cache/bin/python -m bench.cache.crc_speed play --ops 100000

minus the same with --ops 0 (the trace's generation), divided by N: instructions an operation.
`--opens K` plays the operations round robin on K opens of one file: each operation runs the shared
protocol and follows the K - 1 others' records, as K processes do, without their contention.
Session 15 (20,000 operations, minus --ops 0): 56.9k instructions an operation with 2 opens and
77.9k with 4 at the session's start (97b2b00); 20.4k with one (the sole open) and 114.0k with 8 after
df1f69f (74.8k with 4): each record followed costs ~9.7k instructions in this round robin (a new
key's decode, the put's eviction, the per-call look-ahead).
The same 100,000 operations on 4 opens cost 22 us of CPU an operation (`perf stat`), as much as 4
real processes do in bench/cache/multiproc.py (21-22 us): on 2 cores the multi-process CPU is the
work of following, not lock contention. After df1f69f, 3704ea9 and 1dcd265: 55.7k at 2 opens,
73.4k at 4 (-5.8%); after ce5b3e0 (decode_key) 72.2k at 4 (-7.3%).
Session 14, 47ab3c5 (zlib) against c054bc5 (zlib-ng), each checkout's cache/ first on the path:
24.6k -> 20.7k with the shared default, 24.2k -> 20.3k with --exclusive.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import tempfile
import time
import zlib

from bench.cache.adapters import CAPACITY
from bench.cache.workload import make_trace

_FIELDS = struct.Struct("<BQII").pack


def time_crcs(rounds: int) -> dict[str, float]:
    """Return the median ns of one record's three CRCs for each implementation present."""
    from cache import crc

    impls = {"zlib": zlib.crc32, "cache.crc (" + crc.IMPLEMENTATION + ")": crc.crc32}
    try:
        from isal import isal_zlib

        impls["isal"] = isal_zlib.crc32
    except ImportError:
        pass
    values = make_trace().values
    keys = [str(i).encode() for i in range(len(values))]
    fields = [_FIELDS(1, i, len(k), len(v)) for i, (k, v) in enumerate(zip(keys, values, strict=True))]
    got: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, f in impls.items():
            start = time.perf_counter_ns()
            for _ in range(10):
                for h, k, v in zip(fields, keys, values, strict=True):
                    f(v, f(k, f(h)))
            got[name].append((time.perf_counter_ns() - start) / (10 * len(values)))
    return {name: statistics.median(ns) for name, ns in got.items()}


def play(n_ops: int, exclusive: bool, opens: int = 1) -> None:
    """Play the first *n_ops* trace operations on PersistentLRU in this process: on one open, or
    round robin on *opens* opens of one file (each operation follows the others' records, as n
    processes do, without their contention)."""
    from cache import PersistentLRU

    trace = make_trace()
    values = trace.values
    with tempfile.TemporaryDirectory(prefix="crc_speed.") as work:
        lrus = [PersistentLRU(os.path.join(work, "play.lru"), capacity=CAPACITY, serializer="bytes",
                              exclusive=exclusive) for _ in range(opens)]
        calls = [(lru.get, lru.__setitem__) for lru in lrus]
        for i, (key, is_get) in enumerate(trace.ops[:n_ops]):
            get, put = calls[i % opens]
            if not is_get or get(key) is None:
                put(key, values[key % len(values)])
        for lru in lrus:
            lru.close()


def main() -> None:
    """Run the CRC timing or the trace player."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    crc = sub.add_parser("crc", help="time one record's three CRCs per implementation")
    crc.add_argument("--rounds", type=int, default=7)
    player = sub.add_parser("play", help="play the trace in this process (for callgrind)")
    player.add_argument("--ops", type=int, default=100_000)
    player.add_argument("--exclusive", action="store_true")
    player.add_argument("--opens", type=int, default=1, help="opens of the file, round robin")
    args = parser.parse_args()
    if args.what == "crc":
        for name, ns in time_crcs(args.rounds).items():
            print(f"{name}: {ns:.0f} ns a record (three CRCs)")
    else:
        play(args.ops, args.exclusive, args.opens)


if __name__ == "__main__":
    main()
