"""How the claim, the lease and the frontier-wide statements grow, each statement alone."""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.crawler.pg_engine_settings import DELAY, K_HOSTS, LEASE_SECONDS
from bench.crawler.pg_queries import connect, settle
from bench.crawler.pg_report_format import exec_ms
from bench.crawler.pg_scale_settings import (
    CLAIM_SPARSE,
    CLAIM_WORKERS,
    LEASE_BACKGROUND,
    LEASE_ROOM,
    log,
)
from crawler.state.shared_pg import PgShared
from fixtures.postgres import Cluster

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
            log(f"claim: {n:,} hosts, {with_work_n:,} with work, {workers} workers: "
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
        log(f"lease: {m:,} per host: {row['due']['median_ms']:.1f} ms for {expect:,}, "
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
        log(f"frontier: {n:,} waiting: outstanding {row['outstanding']['median_ms']:.0f} ms, "
             f"redirects {row['redirects']['median_ms']:.0f} ms")
        out.append(row)
        await shared.close()
        await conn.close()
        cluster.drop_database(name)
    return out
