"""`python -m bench.crawler.workers_cprofile OUT.prof CRAWL_ARGS...`: run the `crawl` command
(crawler.cli.main) under cProfile with the process's CPU clock (time.process_time), not
`python -m cProfile`'s wall clock: a worker waiting on its state or on the other core would
otherwise charge that wait to whatever frame the event loop was under. The process clock also
counts other threads (the SQLite states run their statements in a thread of their own): their CPU
is charged to the frame the main thread is in, mostly the event loop's bottom frame."""

from __future__ import annotations

import cProfile
import sys
import time

from crawler.cli import main


def run(argv: list[str]) -> int:
    """Profile one crawl; write the stats to argv[0]; return the crawl's exit status."""
    out, args = argv[0], argv[1:]
    prof = cProfile.Profile(time.process_time)
    try:
        return prof.runcall(main, args)
    finally:
        prof.dump_stats(out)


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
