"""The crawl frontier in PostgreSQL at scale, measured without HTTP (issue 16, "scale on paper").

`python -m bench.crawler.pg_scale` (also run by `make bench-crawler`; FANMILL_BENCH_QUICK=1 shrinks it
to 20,000 URLs and 5,000 pages for a smoke run; `--report` re-renders the last figures). Writes the
"crawler-pg-scale" section of bench/RESULTS.md (bench/crawler/pg_report.py). It measures
crawler/state/shared_pg.py as it is (its statements are recorded as PgShared sends them, never
copied), driven the way crawler/engine_worker.py drives it.

1. A throwaway cluster (fixtures/postgres.py, fast=False: fsync, synchronous_commit and
   full_page_writes on, every other setting PostgreSQL's default) with pg_stat_statements and
   auto_explain loaded (ALTER SYSTEM SET shared_preload_libraries, then a restart).
2. The frontier: 1,000,000 URLs over 10,000 hosts (http://h{i}.example/p{j}), added in shuffled
   order through PgShared.add_discovered in batches of 10,000; then VACUUM ANALYZE and CHECKPOINT.
3. W=4 simulated workers, each its own process with its own PgShared connection and worker id,
   run the engine's loop with instant fetches (bench/crawler/pg_workload.py) until 200,000 pages
   are recorded. Measured: pages/s, statements per page (client count, and pg_stat_statements per
   statement: calls, execution time, WAL bytes), WAL bytes per page (pg_current_wal_lsn), table
   and index sizes before and after, live/dead tuples and autovacuum runs sampled every few
   seconds, PostgreSQL server CPU (postmaster + children from /proc) and client CPU per page.
4. EXPLAIN (ANALYZE, BUFFERS) of every statement of one refill + commit + release + idle wait on
   the big table (before and after the run, custom and generic plans); how the claim grows with
   hosts (and live workers, and hosts without work), the lease with URLs per owned host, and
   `outstanding` and `redirects` (a worker's idle wait and start) with the waiting URLs.
5. asyncpg (the crawler's driver) against psycopg 3 (async) on the same loop: PgShared's own
   methods over a psycopg adapter (bench/crawler/pg_psycopg.py), text and binary formats, W=1 and
   W=4, 100,000 URLs, 20,000 pages, a fresh database each run, rounds rotating the order.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import queue
import random
import re
import statistics
import sys
import tempfile
import time
from importlib.metadata import version as version_of
from typing import Any

from bench.crawler.pg_engine_settings import COMMIT_BATCH, DELAY, K_HOSTS, LEASE_SECONDS, WINDOW
from bench.crawler.pg_report import render
from bench.crawler.pg_report_format import exec_ms
from bench.crawler.pg_server_cpu import postmaster_pid, server_cpu
from bench.crawler.pg_synthetic_pages import host_url
from bench.crawler.pg_workload import worker_main
from bench.results import machine_line, write_section
from crawler.state.shared import HostUpdate
from crawler.state.shared_pg import PgShared
from fixtures.postgres import Cluster, start

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


# -- the cluster and small queries -----------------------------------------------------------

def make_cluster() -> Cluster:
    """A durable cluster (fast=False) with pg_stat_statements and auto_explain preloaded."""
    cluster = start(tempfile.mkdtemp(prefix="fanmill-pgscale-"), fast=False)
    try:
        cluster.psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements', 'auto_explain'")
        cluster.stop()
        cluster.start()
        cluster.psql(f"ALTER SYSTEM SET auto_explain.log_min_duration = {SLOW_MS}")
        cluster.psql("SELECT pg_reload_conf()")
    except BaseException:
        cluster.destroy()
        raise
    return cluster


async def connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(url)


async def wal_lsn(conn: Any) -> int:
    return int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


async def table_stats(conn: Any) -> dict[str, dict[str, int]]:
    rows = await conn.fetch(
        """SELECT relname, n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count,
                  n_tup_upd, n_tup_hot_upd, n_tup_ins
           FROM pg_stat_user_tables WHERE relname = ANY($1::text[])""", list(TABLES))
    return {r[0]: dict(r) for r in rows}


async def sizes(conn: Any) -> list[tuple[str, str, int]]:
    """(relation, what, bytes): each table's heap, TOAST and total, and each of its indexes."""
    out = []
    for table in TABLES:
        heap = await conn.fetchval("SELECT pg_relation_size($1::regclass)", table)
        total = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
        out.append((table, "heap", heap))
        for name, size in await conn.fetch(
                """SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x
                   JOIN pg_class i ON i.oid = x.indexrelid
                   WHERE x.indrelid = $1::regclass ORDER BY i.relname""", table):
            out.append((name, "index", size))
        out.append((table, "total (heap + TOAST + indexes)", total))
    return out


def stat_label(query: str) -> str:
    """A short name for one of PgShared's statements (as sent, or as pg_stat_statements shows it,
    constants replaced by $n)."""
    q = re.sub(r"\s+", " ", query).strip()
    rules = [
        ("FOR UPDATE SKIP LOCKED", "claim_hosts: UPDATE hosts … SKIP LOCKED"),
        ("CROSS JOIN LATERAL", "lease_urls: UPDATE urls → fetching"),
        ("SELECT ceil((SELECT count(*) FROM (", "share: fair-share count"),
        (re.compile(r"^UPDATE urls SET status = (\$\d+|'discovered') WHERE origin = ANY"),
         "claim/release: fetching → discovered"),
        ("INSERT INTO urls", "record (links): INSERT urls ON CONFLICT"),
        ("UPDATE urls SET depth", "record (links): move up depth"),
        ("INSERT INTO hosts", "record (links): INSERT hosts ON CONFLICT"),
        ("EXISTS (SELECT 1 FROM urls", "outstanding: sweep"),
        ("SELECT count(*) FROM urls WHERE status IN", "outstanding: counts"),
        ("AND owner IS NULL", "record (links): mark hosts due"),
        ("FOR SHARE", "record: token check FOR SHARE"),
        ("WHERE url = ANY($1::text[]) AND", "record: lease links of owned hosts"),
        ("SET status = t.s", "record: UPDATE urls results"),
        ("INSERT INTO contents", "record: INSERT contents"),
        ("pages = pages +", "record: UPDATE workers pages"),
        ("SET lease_until = $2, next_send", "renew: UPDATE hosts"),
        ("due_at = (SELECT min", "release: free hosts, due_at recomputed"),
        ("GREATEST(h.next_send, t.ns)", "release: UPDATE hosts politeness"),
        ("FROM contents WHERE seq", "contents_since"),
        ("redirect_to", "redirects"),
        ("UPDATE workers SET seen = $1 WHERE id", "renew: UPDATE workers seen"),
        ("left_at = $1", "leave"),
        ("INSERT INTO workers", "join"),
        ("to_regclass", "open: schema check"),
        ("pg_catalog.pg_class", "open: schema check"),
        ("typeinfo_tree", "asyncpg: type introspection"),
        ("set_config", "driver: session settings"),
    ]
    for needle, label in rules:
        if needle.search(q) if isinstance(needle, re.Pattern) else needle in q:
            return label
    if q.upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
        return q.split()[0].upper().rstrip(";")
    return q[:60]


async def statements(conn: Any) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT query, calls, total_exec_time, rows, wal_bytes, shared_blks_hit, shared_blks_read,
                  shared_blks_dirtied
           FROM pg_stat_statements
           WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())""")
    merged: dict[str, dict[str, Any]] = {}
    for r in rows:
        q = r["query"]
        if any(s in q for s in ("pg_stat", "pg_current_wal", "pg_relation_size", "pg_index",
                                "pg_total_relation_size", "EXPLAIN")):
            continue  # the bench's own queries
        label = stat_label(q)
        m = merged.setdefault(label, dict(label=label, calls=0, ms=0.0, rows=0, wal=0, hit=0,
                                          read=0, dirtied=0))
        m["calls"] += r["calls"]
        m["ms"] += r["total_exec_time"]
        m["rows"] += r["rows"]
        m["wal"] += int(r["wal_bytes"])
        m["hit"] += r["shared_blks_hit"]
        m["read"] += r["shared_blks_read"]
        m["dirtied"] += r["shared_blks_dirtied"]
    return sorted(merged.values(), key=lambda m: -m["ms"])


# -- loading the frontier --------------------------------------------------------------------

async def load(url: str, hosts: int, per_host: int, seed: int) -> dict[str, Any]:
    """The frontier through PgShared.add_discovered, shuffled (a crawl finds a host's URLs over
    time, not all together), in batches of LOAD_BATCH; the schema is made by PgShared.open."""
    shared = await PgShared.open(url, "bench-loader")
    urls = [host_url(h, p) for h in range(hosts) for p in range(per_host)]
    random.Random(seed).shuffle(urls)
    t = time.perf_counter()
    cpu = time.process_time()
    for i in range(0, len(urls), LOAD_BATCH):
        await shared.add_discovered([(u, 0, None) for u in urls[i:i + LOAD_BATCH]])
    out = dict(urls=len(urls), seconds=time.perf_counter() - t, client_cpu=time.process_time() - cpu)
    await shared.close()
    return out


async def settle(conn: Any) -> None:
    """VACUUM ANALYZE the crawl tables and CHECKPOINT: every measured run starts alike."""
    for table in TABLES:
        await conn.execute(f"VACUUM (ANALYZE) {table}")
    await conn.execute("CHECKPOINT")


# -- running workers -------------------------------------------------------------------------

async def run_workers(cluster: Cluster, url: str, driver: str, workers: int, target: int,
                      hosts: int, per_host: int, sample: bool = False) -> dict[str, Any]:
    """W worker processes (spawned) on *url* until *target* pages are recorded; the figures.
    The server's CPU, WAL and statistics are read between go and the moment every worker is
    done with its cycles, before any of them releases, leaves or disconnects."""
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    go, finish, ready, out = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
    procs = []
    for i in range(workers):
        spec = dict(url=url, index=i, driver=driver, seed=SEED, hosts=hosts, per_host=per_host,
                    target=target)
        p = ctx.Process(target=worker_main, args=(spec, counter, go, finish, ready, out),
                        daemon=True)
        p.start()
        procs.append(p)
    results: list[dict[str, Any]] = []

    def said(what: str, timeout: float) -> bool:
        """One message from a worker: True when it is *what*; raise when a worker failed."""
        try:
            kind, _index = ready.get(timeout=timeout)
        except queue.Empty:
            if not all(p.is_alive() for p in procs):
                _drain(out, results)
                raise RuntimeError("a worker process died:\n" + "\n".join(
                    r.get("error", "") for r in results)) from None
            return False
        if kind == "failed":
            time.sleep(0.5)
            _drain(out, results)
            raise RuntimeError("a worker failed:\n" + "\n".join(
                r.get("error", "") for r in results))
        return kind == what

    try:
        got, deadline = 0, time.monotonic() + 120
        while got < workers:
            got += said("ready", 0.1)
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not connect in 120 s")
        conn = await connect(url)
        postmaster = postmaster_pid(cluster.data_dir)
        if sample:
            await conn.execute("SELECT pg_stat_statements_reset()")
        stats0, wal0, srv0 = await table_stats(conn), await wal_lsn(conn), server_cpu(postmaster)
        samples = []
        t0 = time.perf_counter()
        go.set()
        next_sample, done = 0.0, 0
        while done < workers:
            now = time.perf_counter() - t0
            if sample and now >= next_sample:
                next_sample += SAMPLE_EVERY
                samples.append(dict(t=now, pages=counter.value, stats=await table_stats(conn),
                                    wal=await wal_lsn(conn) - wal0,
                                    server_cpu=server_cpu(postmaster) - srv0))
            done += said("done", 0)
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - t0
        srv1, wal1 = server_cpu(postmaster), await wal_lsn(conn)
        stats1 = await table_stats(conn)
        stmts = await statements(conn) if sample else []
        await conn.close()
        finish.set()
        deadline = time.monotonic() + 120
        while len(results) < workers:
            _drain(out, results)
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not finish in 120 s")
            await asyncio.sleep(0.05)
    finally:
        go.set()
        finish.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError("a worker failed:\n" + "\n".join(errors))
    wall = max(r["wall"] for r in results)
    pages = sum(r["pages"] for r in results)
    return dict(driver=driver, workers=workers, wall=wall, elapsed=elapsed, pages=pages,
                cycles=sum(r["cycles"] for r in results), results=results,
                client_cpu=sum(r["cpu"] for r in results), gen=sum(r["gen"] for r in results),
                server_cpu=srv1 - srv0, wal=wal1 - wal0, stats0=stats0, stats1=stats1,
                samples=samples, statements=stmts,
                loadavg=open("/proc/loadavg").read().split()[:3])


def _drain(out: Any, results: list[dict[str, Any]]) -> None:
    while True:
        try:
            results.append(out.get_nowait())
        except queue.Empty:
            return


# -- plans -----------------------------------------------------------------------------------

def _literal(value: Any) -> str:
    """An SQL literal of a statement argument (for EXECUTE, which takes no bind parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        def element(v: Any) -> str:
            if v is None:
                return "NULL"
            text = str(v) if not isinstance(v, float) else repr(v)
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        value = "{" + ",".join(element(v) for v in value) + "}"
    return "'" + str(value).replace("'", "''") + "'"


class ExplainConn:
    """An asyncpg connection that, before each statement PgShared sends, runs EXPLAIN (ANALYZE,
    BUFFERS) of it with the same arguments inside a savepoint it rolls back, then the statement.

    Each statement is explained twice: with its arguments (the custom plan, as a prepared
    statement's first 5 executions get) and as a generic plan (PREPARE, plan_cache_mode =
    force_generic_plan, EXPLAIN EXECUTE with the arguments as literals): after 5 executions the
    server may keep a generic plan for a prepared statement, and the workers' connections show it
    does for the claim and the lease (pg_prepared_statements)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.plans: list[tuple[str, str]] = []  # (label, custom plan text)
        self.generic: list[tuple[str, str]] = []  # (label, generic plan text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def transaction(self) -> Any:
        return self._conn.transaction()

    async def _explain(self, sql: str, args: tuple[Any, ...]) -> None:
        label = stat_label(sql)
        for generic in (False, True):
            savepoint = self._conn.transaction()
            await savepoint.start()
            try:
                if generic:
                    await self._conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                    await self._conn.execute("PREPARE bench_generic AS " + sql)
                    try:
                        rows = await self._conn.fetch(
                            "EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_generic"
                            + ("(" + ", ".join(_literal(a) for a in args) + ")" if args else ""))
                    finally:
                        await self._conn.execute("DEALLOCATE bench_generic")
                else:
                    rows = await self._conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
            finally:
                await savepoint.rollback()
            (self.generic if generic else self.plans).append(
                (label, "\n".join(r[0] for r in rows)))

    async def execute(self, sql: str, *args: Any) -> Any:
        await self._explain(sql, args)
        return await self._conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        await self._explain(sql, args)
        return await self._conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        await self._explain(sql, args)
        return await self._conn.fetchrow(sql, *args)


async def explain_cycle(url: str, hosts: int, per_host: int) -> dict[str, list[tuple[str, str]]]:
    """The plans of a worker's statements as a worker of its own: a refill (contents_since, claim
    of K_HOSTS, a lease of LEASE_ROOM), a commit of COMMIT_BATCH results, a second lease (the
    claimed hosts' URLs partly in flight), the release, an idle wait's `outstanding`, and the
    start's `redirects`. Its changes are kept (one batch of pages recorded)."""
    from bench.crawler.pg_synthetic_pages import SyntheticPages

    shared = await PgShared.open(url, "bench-explain")
    await shared.join(time.time())
    conn = shared._conn = ExplainConn(shared._conn)
    now = time.time()
    await shared.contents_since(0)
    claimed = await shared.claim_hosts(K_HOSTS, now, LEASE_SECONDS, DELAY)
    origins = [h.origin for h in claimed]
    leases = await shared.lease_urls(origins, LEASE_ROOM, now)
    results, contents, _links = SyntheticPages(99, SEED, hosts, per_host).results(
        leases[:COMMIT_BATCH], time.time())
    tokens = {h.origin: h.token for h in claimed}
    await shared.record_results(results, tokens, contents, time.time())
    await shared.lease_urls(origins, LEASE_ROOM, time.time())
    t = time.time()
    await shared.release([HostUpdate(h.origin, h.token, t) for h in claimed], t)
    await shared.outstanding(time.time())
    await shared.redirects()
    await shared.leave(time.time())
    await shared.close()
    return dict(custom=conn.plans, generic=conn.generic)


def slow_plans(cluster: Cluster, offset: int) -> list[dict[str, Any]]:
    """auto_explain's entries (statements slower than SLOW_MS) in the server log after *offset*:
    duration, statement label and the plan the server really ran (generic or custom)."""
    with open(cluster.log_file, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        lines = f.read().splitlines()
    out: list[dict[str, Any]] = []
    entry: dict[str, Any] | None = None
    for line in lines:
        m = re.search(r"LOG:  duration: ([\d.]+) ms  plan:", line)
        if m:
            entry = dict(ms=float(m.group(1)), text=[])
            out.append(entry)
        elif entry is not None and (line.startswith(("\t", " ")) or not line[:4].isdigit()):
            entry["text"].append(line)
        else:
            entry = None
    for e in out:
        text = "\n".join(e.pop("text"))
        e["label"] = stat_label(text.split("Query Text:", 1)[-1])
        e["plan"] = text
    return out


# -- how the claim, the lease and the frontier-wide statements grow -------------------------------

RUNS, STEADY = 25, 10  # executions of a statement; the median is taken over the last STEADY
SLOW_RUNS, SLOW_STEADY = 7, 5  # for statements that read the whole table


class RecordingConn:
    """An asyncpg connection that keeps the (sql, args) of every statement sent through it."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.sent.append((sql, args))
        return await self._conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self.sent.append((sql, args))
        return await self._conn.fetchrow(sql, *args)

    async def execute(self, sql: str, *args: Any) -> Any:
        self.sent.append((sql, args))
        return await self._conn.execute(sql, *args)


async def _recorded(shared: PgShared, method: str,
                    *args: Any) -> tuple[Any, list[tuple[str, tuple[Any, ...]]]]:
    """Call PgShared's *method* with *args*; its result and the statements it sent."""
    recording = shared._conn = RecordingConn(shared._conn)
    try:
        got = await getattr(shared, method)(*args)
    finally:
        shared._conn = recording._conn
    return got, recording.sent


async def _timed_statement(conn: Any, sql: str, args: tuple[Any, ...]) -> tuple[float, list[Any]]:
    async with conn.transaction():
        t = time.perf_counter()
        rows = await conn.fetch(sql, *args)
        return time.perf_counter() - t, rows


async def _explained(conn: Any, sql: str, args: tuple[Any, ...]) -> str:
    tr = conn.transaction()
    await tr.start()
    try:
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
    finally:
        await tr.rollback()
    return "\n".join(r[0] for r in rows)


async def _live_workers(conn: Any, n: int, me: str) -> None:
    """*n* live workers in the workers table, *me* one of them."""
    await conn.execute("DELETE FROM workers WHERE id <> $1", me)
    await conn.execute("UPDATE workers SET seen = $1 WHERE id = $2", time.time() + 3600, me)
    await conn.execute(
        """INSERT INTO workers (id, started, seen)
           SELECT 'other-' || g, $1::float8, $1::float8 + 3600 FROM generate_series(1, $2) AS g""",
        time.time(), n - 1)


def _now_at(args: tuple[Any, ...], i: int) -> tuple[Any, ...]:
    """*args* with the current time at index *i*."""
    return (*args[:i], time.time(), *args[i + 1:])


def _summary(times: list[float], steady: int) -> dict[str, float]:
    return dict(median_ms=statistics.median(times[-steady:]) * 1000, first_ms=times[0] * 1000)


async def claim_scaling(cluster: Cluster, counts: tuple[int, ...]) -> list[dict[str, Any]]:
    """The crawler's claim (k=K_HOSTS, by a worker owning nothing) against N due, free hosts with
    4 live workers; at the largest N also with 200 live workers, and with only CLAIM_SPARSE of the
    hosts holding work (the others drained: no due time), with 4 and 200 workers. The statement is
    the one PgShared.claim_hosts sends (recorded), executed RUNS times on one prepared statement,
    the claimed hosts freed (not timed, due time kept) after each; median of the last STEADY;
    EXPLAIN ANALYZE of it."""
    out = []
    me = "bench-claim"
    for n in counts:
        name = f"claim_{n}"
        url = cluster.create_database(name)
        shared = await PgShared.open(url, me)
        conn = await connect(url)
        await conn.execute(
            """INSERT INTO hosts (origin, due_at) SELECT 'http://c' || g || '.example', 0
               FROM generate_series(1, $1) AS g""", n)
        await settle(conn)
        await shared.join(time.time())
        await _live_workers(conn, CLAIM_WORKERS[0], me)
        claimed, sent = await _recorded(shared, "claim_hosts", K_HOSTS, time.time(),
                                        LEASE_SECONDS, DELAY)
        claim_sql = sent[0][0]
        await conn.execute("UPDATE hosts SET owner = NULL, lease_until = NULL "
                           "WHERE origin = ANY($1::text[])", [h.origin for h in claimed])
        cases = [(CLAIM_WORKERS[0], 1.0)]
        if n == counts[-1]:
            cases += [(w, share) for share in (1.0, CLAIM_SPARSE) for w in CLAIM_WORKERS
                      if (w, share) != cases[0]]
        for workers, with_work in cases:
            if with_work < 1:
                # keep every 1/with_work-th host due, the others drained (hosts_due stays small)
                await conn.execute(
                    r"UPDATE hosts SET due_at = NULL WHERE substring(origin from 'c(\d+)')::int "
                    "% $1 <> 0 AND due_at IS NOT NULL", round(1 / with_work))
                await conn.execute("VACUUM (ANALYZE) hosts")
            await _live_workers(conn, workers, me)
            times, got = [], set()
            for _ in range(RUNS):
                now = time.time()
                args = (me, now + LEASE_SECONDS, now, K_HOSTS, DELAY, LEASE_SECONDS)
                took, rows = await _timed_statement(conn, claim_sql, args)
                times.append(took)
                got.add(len(rows))
                await conn.execute("UPDATE hosts SET owner = NULL, lease_until = NULL "
                                   "WHERE origin = ANY($1::text[])", [r[0] for r in rows])
            now = time.time()
            plan = await _explained(conn, claim_sql, (me, now + LEASE_SECONDS, now, K_HOSTS,
                                                      DELAY, LEASE_SECONDS))
            with_work_n = await conn.fetchval("SELECT count(*) FROM hosts WHERE due_at IS NOT NULL")
            out.append(dict(n=n, workers=workers, with_work=with_work_n,
                            hosts_claimed=sorted(got), exec_ms=exec_ms(plan), plan=plan,
                            **_summary(times, STEADY)))
            _log(f"claim: {n:,} hosts, {with_work_n:,} with work, {workers} workers: "
                 f"{out[-1]['median_ms']:.2f} ms")
        out[-1]["sql"] = claim_sql
        await shared.close()
        await conn.close()
        cluster.drop_database(name)
    return out


async def lease_scaling(cluster: Cluster, per_host: tuple[int, ...]) -> list[dict[str, Any]]:
    """The crawler's lease as a refill sends it: K_HOSTS owned hosts × M due URLs each, room
    LEASE_ROOM (PgShared passes a share of max(16, ceil(room / hosts)) per host), in a urls table
    that also holds LEASE_BACKGROUND fetched URLs of other hosts. The statement PgShared sends
    (recorded), RUNS executions (the leased URLs put back, not timed), median of the last STEADY;
    then the same lease with nothing due: every URL of the owned hosts retryable in 10 minutes
    (what each refill reads while an owned host's URLs wait for a retry). EXPLAIN ANALYZE of
    both."""
    out = []
    me = "bench-lease"
    for m in per_host:
        name = f"lease_{m}"
        url = cluster.create_database(name)
        shared = await PgShared.open(url, me)
        conn = await connect(url)
        await conn.execute(
            """INSERT INTO urls (url, origin, depth, status)
               SELECT 'http://l' || h || '.example/p' || p, 'http://l' || h || '.example', p % 5,
                      'discovered'
               FROM generate_series(0, $2 - 1) AS h, generate_series(0, $1 - 1) AS p""",
            m, K_HOSTS)
        await conn.execute("""INSERT INTO hosts (origin, due_at)
                              SELECT 'http://l' || h || '.example', 0
                              FROM generate_series(0, $1 - 1) AS h""", K_HOSTS)
        # URLs already fetched on other hosts: a big table, as in a crawl under way
        await conn.execute(
            """INSERT INTO urls (url, origin, depth, status, record)
               SELECT 'http://f' || g / 100 || '.example/p' || g % 100,
                      'http://f' || g / 100 || '.example', 1, 'fetched', repeat('x', 400)
               FROM generate_series(0, $1 - 1) AS g""", LEASE_BACKGROUND)
        await settle(conn)
        await shared.join(time.time())
        claimed = await shared.claim_hosts(K_HOSTS, time.time(), 3600, DELAY)
        origins = [h.origin for h in claimed]
        assert len(origins) == K_HOSTS, len(origins)
        first, sent = await _recorded(shared, "lease_urls", origins, LEASE_ROOM, time.time())
        lease_sql, lease_args = sent[0]
        expect = len(first)
        await conn.execute("UPDATE urls SET status = 'discovered' WHERE status = 'fetching'")

        row: dict[str, Any] = dict(m=m, share=lease_args[4], limit=lease_args[3])
        times, depths = [], set()
        for _ in range(RUNS):
            took, rows = await _timed_statement(conn, lease_sql, _now_at(lease_args, 2))
            times.append(took)
            assert len(rows) == expect, (len(rows), expect)
            depths.add(max(r[1] for r in rows))
            await conn.execute("UPDATE urls SET status = 'discovered' WHERE status = 'fetching'")
        await conn.execute("VACUUM urls")
        plan = await _explained(conn, lease_sql, _now_at(lease_args, 2))
        row["due"] = dict(rows=expect, max_depth=sorted(depths), exec_ms=exec_ms(plan), plan=plan,
                          **_summary(times, STEADY))
        await conn.execute(
            """UPDATE urls SET status = 'retryable', next_try = $2
               WHERE origin = ANY($1::text[])""", origins, time.time() + 600)
        await conn.execute("VACUUM (ANALYZE) urls")
        times = []
        for _ in range(RUNS):
            took, rows = await _timed_statement(conn, lease_sql, _now_at(lease_args, 2))
            times.append(took)
            assert not rows, len(rows)
        plan = await _explained(conn, lease_sql, _now_at(lease_args, 2))
        row["none_due"] = dict(exec_ms=exec_ms(plan), plan=plan, **_summary(times, STEADY))
        _log(f"lease: {m:,} per host: {row['due']['median_ms']:.1f} ms for {expect:,}, "
             f"{row['none_due']['median_ms']:.1f} ms for none")
        out.append(row)
        await shared.close()
        await conn.close()
        cluster.drop_database(name)
    return out


async def frontier_scaling(cluster: Cluster, counts: tuple[int, ...]) -> list[dict[str, Any]]:
    """`outstanding` (sent at every idle wait of every worker) and `redirects` (at every worker's
    start) against N waiting URLs over N / 100 due hosts, with N / 4 fetched URLs (a ~450-byte
    record each) beside them: SLOW_RUNS calls each through PgShared, median of the last
    SLOW_STEADY; EXPLAIN ANALYZE of the statements they send."""
    out = []
    for n in counts:
        name = f"frontier_{n}"
        url = cluster.create_database(name)
        shared = await PgShared.open(url, "bench-frontier")
        conn = await connect(url)
        await conn.execute(
            """INSERT INTO urls (url, origin, depth, status)
               SELECT 'http://w' || g / 100 || '.example/p' || g % 100,
                      'http://w' || g / 100 || '.example', 1, 'discovered'
               FROM generate_series(0, $1 - 1) AS g""", n)
        await conn.execute(
            """INSERT INTO urls (url, origin, depth, status, record)
               SELECT 'http://d' || g / 100 || '.example/p' || g % 100,
                      'http://d' || g / 100 || '.example', 1, 'fetched',
                      '{"url":"http://d' || g || '.example/",' || repeat('x', 400)
                      || ',"redirect_to":null}'
               FROM generate_series(0, $1 / 4 - 1) AS g""", n)
        await conn.execute("""INSERT INTO hosts (origin, due_at)
                              SELECT 'http://w' || h || '.example', 0
                              FROM generate_series(0, $1 / 100 - 1) AS h""", n)
        await settle(conn)
        row: dict[str, Any] = dict(n=n)
        for which in ("outstanding", "redirects"):
            args = (time.time(),) if which == "outstanding" else ()
            times = []
            for _ in range(SLOW_RUNS):
                t = time.perf_counter()
                await getattr(shared, which)(*args)
                times.append(time.perf_counter() - t)
            _got, sent = await _recorded(shared, which, *args)
            plan = await _explained(conn, sent[0][0], sent[0][1])
            row[which] = dict(exec_ms=exec_ms(plan), plan=plan, **_summary(times, SLOW_STEADY))
        _log(f"frontier: {n:,} waiting: outstanding {row['outstanding']['median_ms']:.0f} ms, "
             f"redirects {row['redirects']['median_ms']:.0f} ms")
        out.append(row)
        await shared.close()
        await conn.close()
        cluster.drop_database(name)
    return out


# -- asyncpg against psycopg -----------------------------------------------------------------

async def drivers(cluster: Cluster) -> list[dict[str, Any]]:
    """Each (driver, W) on a fresh database of DRV_HOSTS x PER_HOST URLs, DRV_PAGES pages;
    ROUNDS rounds, the order rotated each round."""
    configs = [(d, w) for w in (1, W) for d in DRIVERS]
    runs = []
    for rnd in range(ROUNDS):
        order = configs[rnd % len(configs):] + configs[:rnd % len(configs)]
        if rnd % 2:
            order.reverse()
        for driver, workers in order:
            name = f"drv_{rnd}_{driver.replace('-', '_')}_{workers}"
            url = cluster.create_database(name)
            await load(url, DRV_HOSTS, PER_HOST, SEED)
            conn = await connect(url)
            await settle(conn)
            await conn.close()
            run = await run_workers(cluster, url, driver, workers, DRV_PAGES, DRV_HOSTS, PER_HOST)
            run["round"] = rnd
            runs.append(run)
            _log(f"round {rnd} {driver} W={workers}: {run['pages'] / run['wall']:,.0f} pages/s, "
                 f"client {(run['client_cpu'] - run['gen']) / run['pages'] * 1e6:,.0f} µs/page, "
                 f"server {run['server_cpu'] / run['pages'] * 1e6:,.0f} µs/page")
            cluster.drop_database(name)
    return runs


# -- the whole run ---------------------------------------------------------------------------

WORK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".work",
                    "crawler-pg-scale")


def _log(msg: str) -> None:
    print(f"[pg_scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def scale_run(cluster: Cluster, name: str) -> dict[str, Any]:
    """Load the frontier into a fresh database, W workers until PAGES pages, the figures."""
    url = cluster.create_database(name)
    cluster.psql("CREATE EXTENSION pg_stat_statements", name)
    postmaster = postmaster_pid(cluster.data_dir)
    conn = await connect(url)
    _log(f"{name}: loading {HOSTS * PER_HOST:,} URLs over {HOSTS:,} hosts")
    wal0, srv0 = await wal_lsn(conn), server_cpu(postmaster)
    part: dict[str, Any] = dict(load=await load(url, HOSTS, PER_HOST, SEED))
    await asyncio.sleep(0.5)  # the loader's backend has exited: its CPU is in the postmaster's
    part["load"].update(wal=await wal_lsn(conn) - wal0, server_cpu=server_cpu(postmaster) - srv0)
    _log(f"{name}: loaded in {part['load']['seconds']:.1f} s; VACUUM ANALYZE, CHECKPOINT")
    await settle(conn)
    part["sizes0"] = await sizes(conn)
    part["plans0"] = await explain_cycle(url, HOSTS, PER_HOST)
    await settle(conn)
    await conn.close()
    _log(f"{name}: {W} workers until {PAGES:,} pages")
    part["loadavg_run_start"] = open("/proc/loadavg").read().split()[:3]
    log_at = cluster.log_file.stat().st_size
    run = await run_workers(cluster, url, "asyncpg", W, PAGES, HOSTS, PER_HOST, sample=True)
    part["run"] = run
    part["loadavg_run_end"] = open("/proc/loadavg").read().split()[:3]
    part["slow"] = slow_plans(cluster, log_at)
    _log(f"{name}: {run['pages']:,} pages in {run['wall']:.1f} s: "
         f"{run['pages'] / run['wall']:,.0f} pages/s, server "
         f"{run['server_cpu'] / run['pages'] * 1e6:,.0f} µs/page")
    conn = await connect(url)
    part["sizes1"] = await sizes(conn)
    part["status"] = {r[0]: r[1] for r in await conn.fetch(
        "SELECT status, count(*) FROM urls GROUP BY status")}
    part["hosts_left"] = await conn.fetchval(
        "SELECT count(*) FROM hosts WHERE due_at IS NOT NULL")
    part["record_bytes"] = float(await conn.fetchval(
        "SELECT avg(octet_length(record)) FROM urls WHERE status = 'fetched'"))
    await conn.close()
    part["plans1"] = await explain_cycle(url, HOSTS, PER_HOST)
    cluster.drop_database(name)
    return part


async def measure(cluster: Cluster) -> dict[str, Any]:
    """Every figure of the section, as one JSON-able dict."""
    import crawler

    fig: dict[str, Any] = dict(quick=QUICK, hosts=HOSTS, per_host=PER_HOST, target=PAGES, w=W,
                               loadavg=open("/proc/loadavg").read().split()[:3],
                               lease_room=LEASE_ROOM, claim_sparse=CLAIM_SPARSE,
                               lease_background=LEASE_BACKGROUND)
    fig["commit"] = _git_head(os.path.dirname(os.path.dirname(crawler.__file__)))
    fig["settings"] = {k: cluster.psql(f"SHOW {k}") for k in (
        "server_version", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers",
        "max_wal_size", "checkpoint_timeout", "autovacuum_naptime", "wal_compression",
        "shared_preload_libraries", "jit")}
    fig["versions"] = {p: version_of(p) for p in ("asyncpg", "psycopg", "uvloop")}
    fig["drv"] = dict(hosts=DRV_HOSTS, per_host=PER_HOST, pages=DRV_PAGES, rounds=ROUNDS)
    fig["run"] = await scale_run(cluster, "scale")
    _log("claim, lease, outstanding and redirects scaling")
    fig["claim_scaling"] = await claim_scaling(cluster, CLAIM_HOSTS)
    fig["lease_scaling"] = await lease_scaling(cluster, LEASE_PER_HOST)
    fig["frontier_scaling"] = await frontier_scaling(cluster, WAITING)
    _log(f"drivers: {ROUNDS} round(s)")
    fig["drivers"] = await drivers(cluster)
    fig["commit_end"] = _git_head(os.path.dirname(os.path.dirname(crawler.__file__)))
    return fig


def _git_head(repo: str) -> dict[str, Any]:
    """The commit the crawler's code is at, and whether crawler/ differs from it."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                              check=False).stdout.strip()

    return dict(head=git("rev-parse", "--short", "HEAD"),
                crawler_dirty=bool(git("status", "--porcelain", "--", "crawler")))


CODE_PATHS = ("crawler/state", "crawler/engine.py", "crawler/engine_worker.py",
              "crawler/engine_hosts.py", "crawler/engine_state.py")


def _same_code(repo: str, a: str, b: str) -> bool:
    """Whether commits *a* and *b* differ in the code the bench runs only by docstrings and
    comments (the modules' syntax trees, docstrings dropped, are equal)."""
    import ast
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                              check=True).stdout

    def tree(commit: str, path: str) -> str:
        mod = ast.parse(git("show", f"{commit}:{path}"))
        for node in ast.walk(mod):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                body.pop(0)
        return ast.dump(mod)

    try:
        changed = git("diff", "--name-only", a, b, "--", *CODE_PATHS).split()
        return all(p.endswith(".py") and tree(a, p) == tree(b, p) for p in changed)
    except (subprocess.CalledProcessError, SyntaxError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Measure (or, with --report, re-render the last figures) and write the section."""
    args = sys.argv[1:] if argv is None else argv
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, "figures-quick.json" if QUICK else "figures.json")
    if "--report" in args:
        with open(path, encoding="utf-8") as f:
            fig = json.load(f)
    else:
        cluster = make_cluster()
        try:
            fig = asyncio.run(measure(cluster))
        finally:
            cluster.destroy()
        fig["machine"] = machine_line()
        with open(path, "w", encoding="utf-8") as f:
            json.dump(fig, f, indent=1, default=str)
    start, end = fig.get("commit", {}), fig.get("commit_end", {})
    if start.get("head") and end.get("head") and start["head"] != end["head"]:
        import crawler

        fig["code_same"] = _same_code(os.path.dirname(os.path.dirname(crawler.__file__)),
                                      start["head"], end["head"])
    markdown = render(fig)
    write_section("crawler-pg-scale", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
