"""Simulated crawl workers for bench/crawler/pg_scale.py: claim/record cycles through the crawler's
PostgreSQL state (PgShared) without HTTP, one worker per process; and CPU readings from /proc.

One cycle follows crawler/engine_worker.py's `_lease` and `_commit`:
  contents_since(cursor)                        (the engine reads shared digests at every lease)
  claim_hosts(16 - owned, now, lease, delay)    (k as the engine: concurrency 16 / per-host 1)
  host_urls(claimed)                            (the engine learns the claimed hosts' URLs)
  lease_urls(owned, 256, now)
  release(owned hosts that got no URL)          (the engine's _release_idle)
  record_results(one result per leased URL, tokens of the claims, digests of half the pages)
  renew(owned) every RENEW_EVERY seconds        (the heartbeat)
Results: 97% fetched with a ~430-byte JSON record like CrawlRecord.as_dict() and 10 links (9 to
URLs already known, picked at random among the initial frontier, 1 new URL on a random host),
2% failed (no response, no links), 1% retryable (next try in 10 minutes, no record).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

from crawler.state.shared import HostLease, HostUpdate, origin_key

K_HOSTS = 16  # the engine's max(2, ceil(concurrency 16 / per_host 1))
LEASE_LIMIT = 256
LEASE_SECONDS = 30.0  # CrawlConfig.lease
DELAY = 1.0  # CrawlConfig.delay
RENEW_EVERY = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def host_url(host: int, page: int) -> str:
    """The initial frontier's URLs: 100 per host, normalized (with a path)."""
    return f"http://h{host}.example/p{page}"


# -- CPU from /proc -------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on


def server_cpu(postmaster: int) -> float:
    """CPU seconds (user + system) of a PostgreSQL server: the postmaster, its reaped children
    (backends that exited) and its live children (backends, autovacuum, checkpointer, walwriter)."""
    total = 0
    own = _stat_fields(postmaster)
    if own is None:
        return float("nan")
    total += sum(int(v) for v in own[11:15])  # utime stime cutime cstime (fields 14-17)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is not None and int(fields[1]) == postmaster:  # ppid (field 4)
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def postmaster_pid(data_dir: Any) -> int:
    """The postmaster's pid from its data directory."""
    with open(os.path.join(data_dir, "postmaster.pid"), encoding="ascii") as f:
        return int(f.readline())


# -- one worker ------------------------------------------------------------------------------

class _Work:
    """The synthetic pages: records, links, digests."""

    def __init__(self, index: int, seed: int, hosts: int, per_host: int) -> None:
        self.rng = random.Random(seed * 1000 + index)
        self.index = index
        self.hosts = hosts
        self.per_host = per_host
        self.new = 0

    def results(self, leases: list[Any], now: float) -> tuple[list[Any], list[Any], int]:
        rng = self.rng
        results, contents, links_total = [], [], 0
        for lease in leases:
            roll = rng.random()
            if roll < 0.01:
                results.append((lease.url, "retryable", None, [], now + 600.0))
                continue
            depth = lease.depth + 1
            if roll < 0.03:
                record = _record(lease, None, "ConnectError: connection refused", 0, now, rng)
                results.append((lease.url, "failed", record, [], None))
                continue
            links = [(host_url(rng.randrange(self.hosts), rng.randrange(self.per_host)), depth,
                      lease.url) for _ in range(9)]
            self.new += 1
            links.append((f"http://h{rng.randrange(self.hosts)}.example/n{self.index}x{self.new}",
                          depth, lease.url))
            links_total += len(links)
            record = _record(lease, 200, None, len(links), now, rng)
            if rng.random() < 0.5:
                contents.append((lease.url, record["content_hash"], record["simhash"]))
            results.append((lease.url, "fetched", record, links, None))
        return results, contents, links_total


def _record(lease: Any, status: int | None, error: str | None, links: int, now: float,
            rng: random.Random) -> dict[str, Any]:
    ok = status is not None
    return {
        "url": lease.url, "status": status, "depth": lease.depth, "referrer": lease.referrer,
        "content_length": rng.randrange(2_000, 60_000) if ok else 0,
        "content_hash": f"{rng.getrandbits(256):064x}" if ok else None,
        "fetch_time": now, "error": error,
        "content_type": "text/html; charset=utf-8" if ok else None,
        "redirect_to": None, "duplicate_of": None, "links": links, "near_duplicate_of": None,
        "simhash": f"{rng.getrandbits(64):016x}" if ok else None,
        "etag": f'"{rng.getrandbits(32):08x}-{rng.getrandbits(24):06x}"' if ok else None,
        "last_modified": "Sat, 28 Nov 2026 10:00:00 GMT" if ok else None,
    }


async def _worker(spec: dict[str, Any], counter: Any, go: Any, finish: Any,
                  ready: Any) -> dict[str, Any]:
    from bench.crawler.pg_psycopg import open_shared

    index = spec["index"]
    worker = f"bench-{os.getpid()}-{index}"
    shared, conn = await open_shared(spec["url"], worker, spec["driver"], spec["fixed"])
    await shared.join(time.time())
    work = _Work(index, spec["seed"], spec["hosts"], spec["per_host"])
    ready.put(("ready", index))
    while not go.is_set():
        await asyncio.sleep(0.005)
    target = spec["target"]
    owned: dict[str, HostLease] = {}
    got_any: dict[str, bool] = {}
    cursor = 0
    ops = dict.fromkeys(("contents_since", "claim_hosts", "host_urls", "lease_urls", "release",
                         "record_results", "renew"), 0.0)
    calls = dict.fromkeys(ops, 0)
    st = dict(cycles=0, pages=0, links=0, claims=0, empty_claims=0, claimed_nothing_waiting=0, lost=0, refused=0,
              idle_cycles=0, gen=0.0)
    statements0 = conn.statements
    cpu0, wall0 = time.process_time(), time.perf_counter()
    last_renew = time.monotonic()
    perf = time.perf_counter

    async def timed(name: str, coro: Any) -> Any:
        t = perf()
        try:
            return await coro
        finally:
            ops[name] += perf() - t
            calls[name] += 1

    while counter.value < target:
        st["cycles"] += 1
        _rows, cursor = await timed("contents_since", shared.contents_since(cursor))
        now = time.time()
        wanted = K_HOSTS - len(owned)
        claimed = []
        if wanted > 0:
            claimed = await timed("claim_hosts", shared.claim_hosts(wanted, now, LEASE_SECONDS,
                                                                    DELAY))
            if claimed:
                known = await timed("host_urls", shared.host_urls([h.origin for h in claimed]))
                waiting = {origin_key(u) for u, _d, status in known if status == "discovered"}
                st["claimed_nothing_waiting"] += sum(h.origin not in waiting for h in claimed)
            for host in claimed:
                owned[host.origin] = host
                got_any[host.origin] = False
            st["claims"] += len(claimed)
        leases = await timed("lease_urls", shared.lease_urls(list(owned), LEASE_LIMIT, now))
        leased_hosts = {origin_key(lease.url) for lease in leases}
        for key in leased_hosts:
            got_any[key] = True
        idle = [key for key in owned if key not in leased_hosts]
        if idle:
            t = time.time()
            await timed("release", shared.release(
                [HostUpdate(key, owned[key].token, t) for key in idle], t))
            for key in idle:
                st["empty_claims"] += not got_any.pop(key)
                del owned[key]
        if leases:
            t = time.process_time()  # CPU, not wall: 4 processes share 2 cores
            results, contents, links = work.results(leases, time.time())
            st["gen"] += time.process_time() - t
            tokens = {key: host.token for key, host in owned.items()}
            outcome = await timed("record_results", shared.record_results(
                results, tokens, contents, time.time()))
            st["lost"] += len(outcome.lost)
            st["refused"] += outcome.refused
            st["pages"] += len(results) - outcome.refused
            st["links"] += links
            with counter.get_lock():
                counter.value += len(results) - outcome.refused
        elif not claimed:
            st["idle_cycles"] += 1
            await asyncio.sleep(0.02)
        if time.monotonic() - last_renew >= RENEW_EVERY and owned:
            last_renew = time.monotonic()
            t = time.time()
            lost = await timed("renew", shared.renew(
                [HostUpdate(key, host.token, t) for key, host in owned.items()], t,
                LEASE_SECONDS))
            for key in lost:
                owned.pop(key, None)
            st["lost"] += len(lost)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    statements = conn.statements - statements0
    # generic or custom plans: what the server did with this connection's prepared statements
    plans = [tuple(r) for r in await conn.fetch(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")]
    # the parent reads the server's CPU and WAL while every backend is still there
    ready.put(("done", index))
    while not finish.is_set():
        await asyncio.sleep(0.005)
    t = time.time()
    if owned:
        await shared.release([HostUpdate(key, host.token, t) for key, host in owned.items()], t)
    await shared.leave(t)
    await shared.close()
    return dict(st, index=index, cpu=cpu, wall=wall, statements=statements, ops=ops, calls=calls,
                new_urls=work.new, plans=plans)


def worker_main(spec: dict[str, Any], counter: Any, go: Any, finish: Any, ready: Any,
                out: Any) -> None:
    """A worker process: connect, say ready, wait for *go*, run cycles until *counter* reaches the
    target, say done, wait for *finish*, release its hosts, leave, put its figures on *out*.
    uvloop's loop, as `crawl` uses."""
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    try:
        with runner:
            out.put(runner.run(_worker(spec, counter, go, finish, ready)))
    except BaseException as exc:  # the parent reports it
        import traceback

        out.put({"index": spec["index"], "error": f"{exc!r}\n{traceback.format_exc()}"})
        ready.put(("failed", spec["index"]))
