"""The sizes and settings of bench/crawler/pg_scale.py's run (QUICK: a smoke run), and its log."""

from __future__ import annotations

import os
import sys
import time

from bench.crawler.pg_engine_settings import WINDOW

QUICK = os.environ.get("FANMILL_BENCH_QUICK") == "1"
W = 4
SEED = 16
LOAD_BATCH = 10_000
SAMPLE_EVERY = 3.0
LEASE_ROOM = WINDOW // 2  # a refill's room: the window less what is in memory (< half of it)
if QUICK:
    HOSTS, PER_HOST, PAGES = 200, 100, 5_000
    DRV_HOSTS, DRV_PAGES, ROUNDS = 100, 3_000, 1
    CLAIM_HOSTS = (10_000, 100_000)
    LEASE_PER_HOST = (100, 1_000)
    LEASE_BACKGROUND = 50_000
    WAITING = (10_000, 100_000)
else:
    HOSTS, PER_HOST, PAGES = 10_000, 100, 200_000
    DRV_HOSTS, DRV_PAGES, ROUNDS = 1_000, 20_000, 3
    CLAIM_HOSTS = (10_000, 100_000, 1_000_000)
    LEASE_PER_HOST = (100, 1_000, 10_000)
    LEASE_BACKGROUND = 1_000_000
    WAITING = (100_000, 1_000_000, 3_000_000)
CLAIM_WORKERS = (4, 200)  # live workers in the claim's fair share (the largest N also with 200)
CLAIM_SPARSE = 0.01  # ... and with only this share of its hosts holding work
TABLES = ("urls", "hosts", "contents", "workers")
DRIVERS = ("asyncpg", "psycopg", "psycopg-binary")
SLOW_MS = 100  # auto_explain logs the plan of any statement slower than this


def log(msg: str) -> None:
    """One progress line on stderr, with the time."""
    print(f"[pg_scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
