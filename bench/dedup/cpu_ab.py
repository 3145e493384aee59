"""In-process CPU of dedup variants on one tree, alternated: a steadier figure than bench.dedup.ab
for changes of a few percent on a shared machine.

    flock /tmp/fanmill-bench.lock .venv/bin/python -m bench.dedup.cpu_ab /usr/lib \\
        --rounds 5 /tmp/ab/base /tmp/ab/new

Each variant is a directory holding a `dedup` (and `cache`) package. Every round starts one
process per variant (in the variant's directory, first on sys.path), which runs
`find_duplicates([TREE], ScanOptions(threads=1, io_threads=1))` --runs times (one process, one
thread: no fork, no pool) and reports its least CPU time (time.process_time); the figure is that
minimum, and each variant's ratio to the first is taken round by round (paired). The page cache
is warm after the first run; bytes read are the same in every run (dedup.heads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

_CHILD = """
import sys, time
from dedup import ScanOptions, find_duplicates
tree, runs = sys.argv[1], int(sys.argv[2])
best = float("inf")
for _ in range(runs):
    started = time.process_time()
    find_duplicates([tree], ScanOptions(threads=1, io_threads=1))
    best = min(best, time.process_time() - started)
print(best)
"""


def cpu_of(variant: str, tree: str, runs: int) -> float:
    """Return the least in-process CPU seconds of *runs* scans of *tree* by *variant*."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(variant), PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run([sys.executable, "-c", _CHILD, tree, str(runs)], cwd=variant, env=env,
                         check=True, capture_output=True, text=True)
    return float(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup.cpu_ab", description=__doc__)
    parser.add_argument("tree")
    parser.add_argument("variants", nargs="+", help="directories holding a dedup package")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3,
                        help="scans per process, least CPU kept (default: %(default)s)")
    args = parser.parse_args(argv)
    tree = os.path.abspath(args.tree)
    cpu: dict[str, list[float]] = {v: [] for v in args.variants}
    for r in range(args.rounds):
        order = args.variants[r % len(args.variants):] + args.variants[:r % len(args.variants)]
        for variant in order:
            cpu[variant].append(cpu_of(variant, tree, args.runs))
        print(f"round {r + 1}: " + " ".join(f"{os.path.basename(v.rstrip('/'))}="
                                           f"{cpu[v][-1]:.3f}" for v in args.variants),
              flush=True)
    first = args.variants[0]
    for variant in args.variants[1:]:
        ratios = [b / a for a, b in zip(cpu[first], cpu[variant], strict=True)]
        print(f"paired cpu {variant} / {first}: median {statistics.median(ratios):.3f}, range "
              f"{min(ratios):.3f}-{max(ratios):.3f} ({len(ratios)} pairs); "
              + " ".join(f"{x:.3f}" for x in ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
