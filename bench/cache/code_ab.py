"""Two versions of cache/ side by side: n processes on one file, alternated pairs (issue 17).

`python -m bench.cache.code_ab A_DIR B_DIR [--processes 1,2,4,8] [--ops N] [--rounds R] [--exclusive]`
plays the bench trace split over n forked processes (bench/cache/multiproc.py) with the `cache` package of
A_DIR and of B_DIR (checkouts of the repository, e.g. `git worktree add --detach /tmp/a COMMIT`),
each run in a fresh interpreter whose `cache` is that directory's (checked, and printed). Within a
round the two run back to back, in an order that alternates by round. Prints every run, then per
process count the medians of ops/s and CPU per operation and each pair's ratio B/A: the machine is
shared and noisy, so only paired ratios and their spread say whether B differs from A.

Run for issue 17 (2-core shared machine, load average 1.6-2.0 from other sessions), 43c6a3b against
35642b5 (GC-free index payloads, the leaner follow loop, keys remembered by their bytes), --processes
1,2,4,8 --ops 100000 --rounds 10: B/A x1.020 at 1 process (pairs 0.73-1.63: the noise of one run),
x1.129 at 2 (0.88-1.32), x1.059 at 4 (0.85-1.30), x1.077 at 8 (0.90-1.21); CPU per op 20.9 -> 18.8,
26.5 -> 25.7, 33.6 -> 30.7 us at 2/4/8; 0 lost, 0 garbage.

`--exclusive` opens with exclusive=True (the single owner), one process only. The same code,
--processes 1 --rounds 16 (load average ~1): x1.195 shared default (pairs 0.75-1.64, CPU per op
8.0 -> 6.8 us), x1.039 with --exclusive (0.78-1.33, 8.5 -> 8.0 us): no single-process loss.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from bench.cache.multiproc import paired_summary

# What one run does, in a fresh interpreter whose first path entry is the version's directory.
_CHILD = """
import json, os, statistics, sys
import cache
from bench.cache.adapters import CAPACITY
from bench.cache import multiproc
from bench.cache.multiproc import run
from bench.cache.workload import make_trace


def open_exclusive(path, capacity, mean_value):
    # The single owner (exclusive=True: a second open is refused), defined here so that an
    # older checkout's bench/ runs it too.
    lru = cache.PersistentLRU(os.path.join(path, "exclusive.lru"), capacity=capacity,
                              serializer="bytes", exclusive=True)
    return lru.get, lru.__setitem__, lru.close


multiproc.OPENERS["PersistentLRU exclusive"] = open_exclusive
n, n_ops, work, opener = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
trace = make_trace()
fig = run(opener, work, n, trace.ops[:n_ops], trace.values, CAPACITY,
          statistics.fmean(len(v) for v in trace.values))
fig["cache_file"] = cache.__file__
print(json.dumps(fig))
"""


def run_version(directory: str, n: int, n_ops: int, opener: str = "PersistentLRU") -> dict[str, float]:
    """Run the split trace with *directory*'s cache package and return multiproc's figures."""
    with tempfile.TemporaryDirectory(prefix="code_ab.") as work:
        env = {**os.environ, "PYTHONPATH": directory}
        out = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(n_ops), work, opener], cwd=directory, env=env,
                             check=True, capture_output=True, text=True).stdout
    fig: dict[str, float] = json.loads(out.splitlines()[-1])
    where = os.path.realpath(str(fig.pop("cache_file")))
    if not where.startswith(os.path.realpath(directory) + os.sep):
        raise SystemExit(f"code_ab: the run of {directory} imported cache from {where}")
    return fig


def main() -> None:
    """Run the alternated pairs and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--processes", default="1,2,4,8")
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--exclusive", action="store_true",
                        help="open with exclusive=True (the single owner; --processes 1 only)")
    args = parser.parse_args()
    opener = "PersistentLRU exclusive" if args.exclusive else "PersistentLRU"
    if args.exclusive and args.processes != "1":
        parser.error("--exclusive: one process only (a second open of the file is refused)")
    counts = [int(x) for x in args.processes.split(",")]
    got: dict[tuple[int, str], list[dict[str, float]]] = {}
    for r in range(args.rounds):
        for n in counts:
            for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                fig = run_version(args.a if name == "A" else args.b, n, args.ops, opener)
                got.setdefault((n, name), []).append(fig)
                print(f"round {r + 1} {n} processes {name} {fig['ops_per_s']:9,.0f} ops/s "
                      f"{fig['cpu_us_per_op']:5.1f} us CPU/op lost {fig['lost']} garbage {fig['garbage']}",
                      flush=True)
    print(f"A = {args.a}, B = {args.b}; {opener}; {args.ops:,} operations, {args.rounds} rounds")
    for n in counts:
        print(paired_summary(n, "A", "B", got[(n, "A")], got[(n, "B")]))


if __name__ == "__main__":
    main()
