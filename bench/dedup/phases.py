"""The serial edges of a dedup run, per variant: interpreter start (with site), `import dedup.cli`,
`main()`, and the exit after it (the interpreter's shutdown), each timed from outside and inside
the process (CLOCK_MONOTONIC on both sides), alternated over the variants, medians printed.

    flock /tmp/fanmill-bench.lock .venv/bin/python -m bench.dedup.phases /usr/lib \\
        --rounds 11 /tmp/ab/base /tmp/ab/new

A variant is a directory holding a `dedup` package (as bench.dedup.ab's), run as `python -c ...`
from that directory with `sys.argv` set and `main()` called without arguments, as
`python -m dedup -0 -q TREE` calls it. Compare only within one run: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

PYTHON = sys.executable
_CODE = (
    "import os, sys, time\n"
    "t0 = time.clock_gettime(time.CLOCK_MONOTONIC)\n"
    "from dedup.cli import main\n"
    "t1 = time.clock_gettime(time.CLOCK_MONOTONIC)\n"
    "sys.argv = ['dedup', '-0', '-q', *sys.argv[1:]]\n"
    "code = main()\n"
    "sys.stdout.flush()\n"
    "t2 = time.clock_gettime(time.CLOCK_MONOTONIC)\n"
    "os.write(int(os.environ['PHASES_FD']), f'{t0} {t1} {t2}'.encode())\n"
    "raise SystemExit(code)\n"
)
PHASES = ("start", "import", "main", "exit", "total")


def run_once(variant: str, tree: str) -> dict[str, float]:
    """Run one variant on *tree*; return each phase's wall seconds."""
    read, write = os.pipe()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PHASES_FD=str(write))
    with open(os.devnull, "wb") as out:
        started = time.clock_gettime(time.CLOCK_MONOTONIC)
        proc = subprocess.Popen([PYTHON, "-c", _CODE, tree], stdout=out, cwd=variant, env=env,
                                pass_fds=(write,))
        os.close(write)
        _, status, _ = os.wait4(proc.pid, 0)
        ended = time.clock_gettime(time.CLOCK_MONOTONIC)
    with os.fdopen(read, "rb") as marks:
        t0, t1, t2 = map(float, marks.read().split())
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{variant} exited with {os.waitstatus_to_exitcode(status)}")
    return {"start": t0 - started, "import": t1 - t0, "main": t2 - t1, "exit": ended - t2,
            "total": ended - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup.phases",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("tree")
    parser.add_argument("variants", nargs="+", help="directories holding a dedup package")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    variants = [os.path.abspath(v) for v in args.variants]
    tree = os.path.abspath(args.tree)
    for v in variants:
        subprocess.run([PYTHON, "-m", "compileall", "-q", os.path.join(v, "dedup")], check=True,
                       stdout=subprocess.DEVNULL)
        run_once(v, tree)  # warm-up
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants[r % len(variants):] + variants[: r % len(variants)]:
            runs[v].append(run_once(v, tree))
    print("medians (ms):  " + "  ".join(f"{p:>7}" for p in PHASES))
    for v in variants:
        print(f"{v:<30} " + "  ".join(
            f"{1e3 * statistics.median(run[p] for run in runs[v]):7.1f}" for p in PHASES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
