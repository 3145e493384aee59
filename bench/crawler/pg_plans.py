"""The plans of PgShared's statements: EXPLAIN of one worker cycle, auto_explain's slow ones."""

from __future__ import annotations

import re
import time
from typing import Any

from bench.crawler.pg_engine_settings import COMMIT_BATCH, DELAY, K_HOSTS, LEASE_SECONDS
from bench.crawler.pg_queries import stat_label
from bench.crawler.pg_scale_settings import LEASE_ROOM, SEED
from bench.crawler.pg_synthetic_pages import SyntheticPages
from crawler.state.shared import HostUpdate
from crawler.state.shared_pg import PgShared
from fixtures.postgres import Cluster


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
