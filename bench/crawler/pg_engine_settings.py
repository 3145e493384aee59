"""The engine's options and pacing as bench/crawler/pg_workload.py's simulated workers run them.

Read from crawler/engine_worker.py where the engine defines them (it is being tuned), so the
simulation follows the engine; imported by pg_workload.py, pg_scale.py and pg_report.py.
"""

from __future__ import annotations

from types import SimpleNamespace

from crawler import engine_worker
from crawler.config import CrawlConfig
from crawler.engine_worker import _WorkerCrawl

CONCURRENCY, PER_HOST = 128, 16  # bench/crawler/workers_throughput.py's options
CONFIG = CrawlConfig(concurrency=CONCURRENCY, per_host=PER_HOST, delay=0.0)
K_HOSTS = max(64, 4 * -(-CONCURRENCY // PER_HOST))  # engine_worker._lease's cap on owned hosts
WINDOW = CONFIG.window
LEASE_SECONDS = CONFIG.lease
DELAY = CONFIG.delay  # --delay 0
# the engine's own pacing, read from its code (it is being tuned): a refill at most every
# REFILL_EVERY s unless the frontier is short of URLs (_hungry); the fair-share check every
# REBALANCE_EVERY s (None: the engine has none)
REFILL_EVERY = getattr(_WorkerCrawl, "REFILL_EVERY", 0.05)
REBALANCE_EVERY = getattr(engine_worker, "REBALANCE_EVERY", None)
COMMIT_BATCH = CONCURRENCY  # results per record_results


def hungry(in_memory: int) -> bool:
    """engine_worker's _hungry under CONFIG."""
    return _WorkerCrawl._hungry(SimpleNamespace(config=CONFIG), in_memory)  # type: ignore[arg-type]


def hungry_below() -> int:
    """The in-memory count below which the engine refills at once."""
    return next(k for k in range(WINDOW + 1) if not hungry(k))
