"""The mapped tail's A/B: n processes on one file with the zero tail mapped writable, and without.

`python -m bench.cache.tail_ab [--processes 2,4,8] [--ops N] [--rounds R]` plays the bench trace
split over n forked processes (bench/cache/multiproc.py) in alternated pairs: "on" is the code as
it is (cache/growth.py maps the tail with MADV_POPULATE_WRITE), "off" gives the kernel an advice it
refuses, which is the code before that change (each page faulted in one at a time). Prints each
pair's ratio and the medians of ops/s and CPU per operation.
"""

from __future__ import annotations

import os
import shutil

from bench.cache.adapters import CAPACITY
from bench.cache.multiproc import paired_summary, run, split_runs_options

WORK = os.path.join(os.path.dirname(__file__), "..", ".work", "cache", "tail_ab")
REFUSED = 9999  # no such advice: madvise fails with EINVAL and the map is left as mmap made it


def main() -> None:
    """Run the alternated pairs and print the ratios."""
    from cache import growth

    runs = split_runs_options(__doc__.splitlines()[0])
    counts, ops = runs.counts, runs.ops
    advice = growth._POPULATE_WRITE
    got: dict[tuple[int, str], list[dict[str, float]]] = {}
    try:
        for r in range(runs.rounds):
            for n in counts:
                for variant in ("off", "on") if r % 2 == 0 else ("on", "off"):
                    growth._POPULATE_WRITE = advice if variant == "on" else REFUSED
                    shutil.rmtree(WORK, ignore_errors=True)
                    os.makedirs(WORK)
                    fig = run("PersistentLRU", WORK, n, ops, runs.values, CAPACITY, runs.mean_value)
                    got.setdefault((n, variant), []).append(fig)
                    print(f"round {r + 1} {n} processes {variant:3s} {fig['ops_per_s']:9,.0f} ops/s "
                          f"{fig['cpu_us_per_op']:5.1f} us CPU/op lost {fig['lost']} garbage {fig['garbage']}")
    finally:
        growth._POPULATE_WRITE = advice
        shutil.rmtree(WORK, ignore_errors=True)
    for n in counts:
        print(paired_summary(n, "off", "on", got[(n, "off")], got[(n, "on")]))


if __name__ == "__main__":
    main()
