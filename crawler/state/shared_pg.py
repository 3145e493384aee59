"""The shared protocol (shared.py) on PostgreSQL, through asyncpg: workers on many machines.

Claims are one `UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED LIMIT k) RETURNING` (the
pattern of pgqueuer, procrastinate and graphile-worker): concurrent claimers skip each other's rows
instead of waiting. Batches go in as arrays (`unnest`), one statement per kind of row.

Lock order, so that workers never wait on each other in a cycle: link URLs are inserted with
`ON CONFLICT DO NOTHING` (takes no lock on a known row) before a worker updates its own URLs; a
host is marked due only when it is not due already, and a host someone owns is always due (it was
claimed because it was), so a worker never locks a host another worker owns. A deadlock or
serialization failure is still retried, as PostgreSQL's documentation advises.

The hot rows stay few: the partial indexes hold only URLs waiting or in flight and hosts with work;
autovacuum runs on these tables at 2-5% dead rows instead of 20% (dead tuples are what slows claims
in PostgreSQL queues).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from crawler.errors import StateError
from crawler.state.pg_sql import (
    ADD_URLS,
    CLAIM,
    DUE_OF,
    LEASE,
    SCHEMA,
    SCHEMA_VERSION,
    SHARE,
    best_depths,
    safe_url,
    update_arrays,
)
from crawler.state.shared import (
    HostLease,
    HostUpdate,
    Outstanding,
    Recorded,
    Result,
    origin_key,
    per_host_share,
    tally,
)
from crawler.state.sqlite import Lease, record_text

RETRIES = 5  # attempts of a transaction that hit a deadlock or a serialization failure


class PgShared:
    """Shared crawl state in a PostgreSQL database; open with `await PgShared.open(url, worker)`."""

    def __init__(self, conn: Any, worker: str, url: str) -> None:
        self._conn = conn
        self.worker = worker
        self._url = url
        self._lock = asyncio.Lock()  # one statement at a time on the connection

    @classmethod
    async def open(cls, url: str, worker: str) -> PgShared:
        """Connect and create the schema if missing (one creator at a time)."""
        try:
            import asyncpg
        except ImportError as exc:
            raise StateError("a PostgreSQL state needs asyncpg (pip install asyncpg)") from exc
        try:
            conn = await asyncpg.connect(url, timeout=15, command_timeout=120)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError,
                asyncpg.InterfaceError, ValueError) as exc:
            raise StateError(f"cannot connect to PostgreSQL at {safe_url(url)}: "
                             f"{exc.__class__.__name__}: {exc}") from exc
        try:
            # The schema statements run only when the schema is missing: CREATE INDEX takes a
            # lock on the table that conflicts with a running worker's row locks, taken in
            # another order (a worker joining a crawl deadlocked with one claiming hosts).
            version = await _schema_version(conn)
            if version is None:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(4645421)")  # "FML"
                    version = await _schema_version(conn)  # another creator may have won
                    if version is None:
                        await conn.execute(SCHEMA)
                        await conn.execute("INSERT INTO fanmill_meta VALUES ('schema', $1)",
                                           str(SCHEMA_VERSION))
                        version = str(SCHEMA_VERSION)
            if int(version) != SCHEMA_VERSION:
                raise StateError(f"{safe_url(url)}: crawl schema version {version}, this "
                                 f"fanmill knows {SCHEMA_VERSION}")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, worker, url)

    async def close(self) -> None:
        """Close the connection (quietly if PostgreSQL already went away)."""
        try:
            await asyncio.wait_for(self._conn.close(), 5)
        except Exception:
            self._conn.terminate()

    async def _run(self, work: Any) -> Any:
        """Run *work(conn)* in one transaction, retrying deadlocks; a lost server is a StateError."""
        import asyncpg

        async with self._lock:
            for attempt in range(RETRIES):
                try:
                    async with self._conn.transaction():
                        return await work(self._conn)
                except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                    if attempt == RETRIES - 1:
                        raise
                    await asyncio.sleep(0.01 * (attempt + 1))
                except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                        asyncpg.exceptions.AdminShutdownError,
                        asyncpg.exceptions.CannotConnectNowError) as exc:
                    raise StateError(f"lost the PostgreSQL crawl state at {safe_url(self._url)}: "
                                     f"{exc.__class__.__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    async def join(self, now: float) -> None:
        """Register this worker."""
        await self._run(lambda c: c.execute(
            """INSERT INTO workers (id, started, seen) VALUES ($1, $2, $2)
               ON CONFLICT (id) DO UPDATE SET seen = excluded.seen, left_at = NULL""",
            self.worker, now))

    async def _add(self, conn: Any, found: list[tuple[str, int, str | None]], now: float,
                   lease: set[str] = frozenset()) -> list[Lease]:
        """Insert URLs; those in *lease* of hosts this worker owns go in leased (written once
        here and once with their result, not also by a lease UPDATE); return those leases."""
        if not found:
            return []
        rows = best_depths(found)
        urls = [r[0] for r in rows]
        depths = [r[1] for r in rows]
        origins = [origin_key(u) for u in urls]
        inserted = await conn.fetch(
            ADD_URLS, urls, origins, depths, [r[2] for r in rows], [u in lease for u in urls],
            self.worker, now)
        # a waiting URL found at a smaller depth moves up (a plain UPDATE locks only what it changes)
        await conn.execute(
            """UPDATE urls SET depth = t.d, referrer = t.r
               FROM unnest($1::text[], $2::int[], $3::text[]) AS t(u, d, r)
               WHERE urls.url = t.u AND t.d < urls.depth
               AND urls.status IN ('discovered', 'retryable')""", urls, depths, [r[2] for r in rows])
        # only the hosts of URLs really added become due: a link to a known URL (most links)
        # would make a drained host due again, for a claim that finds nothing to lease
        hosts = sorted({r[0] for r in inserted})
        if hosts:
            await conn.execute(
                """INSERT INTO hosts (origin, due_at) SELECT unnest($1::text[]), 0
                   ON CONFLICT (origin) DO NOTHING""", hosts)
            await conn.execute(
                """UPDATE hosts SET due_at = 0 WHERE origin = ANY($1::text[])
                   AND (due_at IS NULL OR due_at > $2) AND owner IS NULL""", hosts, now)
        return [Lease(r[1], r[2], r[3], 0) for r in inserted if r[4] == "fetching"]

    async def add_discovered(self, found: list[tuple[str, int, str | None]]) -> None:
        """Add (url, depth, referrer) rows."""
        found = list(found)
        await self._run(lambda c: self._add(c, found, time.time()))

    async def claim_hosts(self, k: int, now: float, lease: float, delay: float) -> list[HostLease]:
        """Lease up to *k* due hosts that are free or whose lease expired, in one statement."""
        if k <= 0:
            return []

        async def work(conn: Any) -> list[HostLease]:
            rows = await conn.fetch(CLAIM, self.worker, now + lease, now, k, delay, lease)
            if rows:
                await conn.execute(
                    """UPDATE urls SET status = 'discovered'
                       WHERE origin = ANY($1::text[]) AND status = 'fetching'""",
                    [r[0] for r in rows])
            return [HostLease(r[0], r[1], r[2], r[3], r[4],
                              None if r[7] is None else (r[5], r[6], r[7], r[8])) for r in rows]

        return await self._run(work)

    async def share(self, now: float, lease: float, owned: int) -> int:
        """This worker's fair share of the hosts with work: all of them over the live workers
        (counted up to what shows that *owned* + 64 is within the share)."""
        return await self._run(lambda c: c.fetchval(SHARE, now, lease, owned))

    async def lease_urls(self, origins: list[str], limit: int, now: float) -> list[Lease]:
        """Lease up to *limit* due URLs (smallest depth first) of *origins* still owned."""
        if not origins or limit <= 0:
            return []

        async def work(conn: Any) -> list[Lease]:
            rows = await conn.fetch(LEASE, origins, self.worker, now, limit,
                                    per_host_share(limit, len(origins)))
            return [Lease(r[0], r[1], r[2], r[3]) for r in rows]

        return await self._run(work)

    async def record_results(self, results: list[Result], tokens: dict[str, int],
                             contents: list[tuple[str, str | None, str | None]],
                             now: float, lease: list[str] = ()) -> Recorded:
        """Store the results of hosts whose token still matches, their links and digests."""

        async def work(conn: Any) -> Recorded:
            outcome = Recorded()
            origins = sorted({origin_key(r[0]) for r in results})
            if origins:
                # FOR SHARE: a claimer (SKIP LOCKED) cannot take these hosts until this commits
                held = await conn.fetch(
                    """SELECT origin, owner, token FROM hosts WHERE origin = ANY($1::text[])
                       ORDER BY origin FOR SHARE""", origins)
                mine = {r[0] for r in held if r[1] == self.worker and r[2] == tokens.get(r[0])}
                outcome.lost = set(origins) - mine
            kept = [r for r in results if origin_key(r[0]) not in outcome.lost]
            outcome.refused = len(results) - len(kept)
            # the URLs to lease are new links of these results, mostly: inserted leased
            wanted = set(lease)
            leased = await self._add(conn, [link for r in kept for link in r[3]], now, wanted)
            inserted = {x.url for x in leased}
            left = sorted(url for url in wanted if url not in inserted)
            kept_urls = {r[0] for r in kept}
            # one found and fetched within this batch is recorded just below: not a lease
            outcome.leased = [x for x in leased if x.url not in kept_urls]
            if kept:
                kept.sort(key=lambda r: r[0])
                await conn.execute(
                    """UPDATE urls SET status = t.s, record = t.rec, next_try = t.nt,
                           attempts = urls.attempts + 1
                       FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[])
                            AS t(u, s, rec, nt)
                       WHERE urls.url = t.u""",
                    [r[0] for r in kept], [r[1] for r in kept],
                    [record_text(r[2]) for r in kept], [r[4] for r in kept])
            mine_contents = [c for c in contents if c[0] in kept_urls]
            if mine_contents:
                await conn.execute(
                    """INSERT INTO contents (url, content_hash, simhash)
                       SELECT * FROM unnest($1::text[], $2::text[], $3::text[])""",
                    *map(list, zip(*mine_contents, strict=True)))
            pages, errors = tally(kept)
            await conn.execute(
                "UPDATE workers SET seen = $1, pages = pages + $2, errors = errors + $3 "
                "WHERE id = $4", now, pages, errors, self.worker)
            if left:  # known already (another worker found them first, or a sitemap did)
                rows = await conn.fetch(
                    """UPDATE urls SET status = 'fetching'
                       WHERE url = ANY($1::text[]) AND status = 'discovered'
                       AND origin IN (SELECT origin FROM hosts WHERE origin = ANY($2::text[])
                                      AND owner = $3 AND lease_until >= $4)
                       RETURNING url, depth, referrer, attempts""",
                    left, sorted({origin_key(u) for u in left}), self.worker, now)
                outcome.leased += [Lease(r[0], r[1], r[2], r[3]) for r in rows]
            return outcome

        return await self._run(work)

    async def renew(self, updates: list[HostUpdate], now: float, lease: float) -> set[str]:
        """Extend leases and store politeness; return the hosts this worker no longer owns."""

        async def work(conn: Any) -> set[str]:
            kept = set()
            if updates:
                rows = await conn.fetch(
                    """UPDATE hosts AS h SET lease_until = $2,
                           next_send = GREATEST(h.next_send, t.ns),
                           crawl_delay = coalesce(t.cd, h.crawl_delay)
                       FROM unnest($3::text[], $4::bigint[], $5::float8[], $6::float8[])
                            AS t(o, tok, ns, cd)
                       WHERE h.origin = t.o AND h.owner = $1 AND h.token = t.tok
                       RETURNING h.origin""",
                    self.worker, now + lease, *update_arrays(updates))
                kept = {r[0] for r in rows}
                await self._store_robots(conn, [u for u in updates if u.origin in kept])
            await conn.execute("UPDATE workers SET seen = $1 WHERE id = $2", now, self.worker)
            return {u.origin for u in updates} - kept

        return await self._run(work)

    @staticmethod
    async def _store_robots(conn: Any, updates: list[HostUpdate]) -> None:
        rows = [(u.origin, *u.robots) for u in updates if u.robots is not None]
        if rows:
            await conn.executemany(
                """UPDATE hosts SET robots_status = $2, robots_body = $3, robots_at = $4,
                   robots_reason = $5 WHERE origin = $1""", rows)

    async def release(self, updates: list[HostUpdate], now: float) -> None:
        """Give hosts back, their in-flight URLs due again and their due time recomputed."""
        if not updates:
            return

        async def work(conn: Any) -> None:
            rows = await conn.fetch(
                """UPDATE hosts AS h SET next_send = GREATEST(h.next_send, t.ns),
                       crawl_delay = coalesce(t.cd, h.crawl_delay)
                   FROM unnest($2::text[], $3::bigint[], $4::float8[], $5::float8[])
                        AS t(o, tok, ns, cd)
                   WHERE h.origin = t.o AND h.owner = $1 AND h.token = t.tok
                   RETURNING h.origin""", self.worker, *update_arrays(updates))
            owned = sorted(r[0] for r in rows)
            await self._store_robots(conn, [u for u in updates if u.origin in set(owned)])
            await conn.execute(
                """UPDATE urls SET status = 'discovered'
                   WHERE origin = ANY($1::text[]) AND status = 'fetching'""", owned)
            await conn.execute(
                f"""UPDATE hosts SET owner = NULL, lease_until = NULL, due_at = {DUE_OF}
                    WHERE origin = ANY($1::text[])""", owned)

        await self._run(work)

    async def contents_since(self, cursor: int) -> tuple[list[tuple[str, str | None, str | None]], int]:
        """Content digests added after *cursor*, and the new cursor."""
        rows = await self._run(lambda c: c.fetch(
            "SELECT seq, url, content_hash, simhash FROM contents WHERE seq > $1 ORDER BY seq",
            cursor))
        return [(r[1], r[2], r[3]) for r in rows], (rows[-1][0] if rows else cursor)

    async def redirects(self) -> list[tuple[str, str]]:
        """(url, target) of recorded redirects whose target was first found through them."""
        rows = await self._run(lambda c: c.fetch(
            """SELECT u.url, t.url FROM urls AS u JOIN urls AS t
               ON t.url = (u.record::json ->> 'redirect_to') AND t.referrer = u.url
               WHERE u.record LIKE '%"redirect_to":"%'"""))
        return [tuple(r) for r in rows]

    async def outstanding(self, now: float) -> Outstanding:
        """URLs due or in flight in the whole crawl, the earliest retry, free due hosts."""
        # EXISTS, not count(*): every idle worker asks, and counting a million-URL frontier cost
        # half a second a call (bench/crawler/pg_scale.py)
        row = await self._run(lambda c: c.fetchrow(
            """SELECT EXISTS (SELECT 1 FROM urls WHERE status IN ('discovered', 'fetching'))::int,
                      (SELECT min(next_try) FROM urls WHERE status = 'retryable'),
                      EXISTS (SELECT 1 FROM hosts WHERE due_at <= $1
                              AND (owner IS NULL OR lease_until < $1))::int""", now))
        if row[0] and not row[2]:
            # A link inserted while its host was being released can leave the host free with a
            # waiting URL and no due time (READ COMMITTED: neither saw the other's change).
            # Workers with nothing to do sweep for such hosts.
            await self._run(lambda c: c.execute(
                """UPDATE hosts SET due_at = 0 WHERE due_at IS NULL AND owner IS NULL
                   AND EXISTS (SELECT 1 FROM urls WHERE urls.origin = hosts.origin
                               AND urls.status = 'discovered')"""))
        return Outstanding(row[0], row[1], row[2])

    async def leave(self, now: float) -> None:
        """Mark this worker gone."""
        await self._run(lambda c: c.execute(
            "UPDATE workers SET seen = $1, left_at = $1 WHERE id = $2", now, self.worker))

    async def forget(self, worker: str, now: float) -> None:
        """*worker* died: its leases end now (taken over at the next claim), and it is gone."""

        async def work(conn: Any) -> None:
            await conn.execute(
                "UPDATE hosts SET lease_until = $2 WHERE owner = $1 AND lease_until >= $2",
                worker, now)
            await conn.execute(
                "UPDATE workers SET left_at = $2 WHERE id = $1 AND left_at IS NULL", worker, now)

        await self._run(work)

    async def status(self, now: float) -> dict[str, Any]:
        """Progress across workers."""

        async def work(conn: Any) -> dict[str, Any]:
            counts = {r[0]: r[1] for r in await conn.fetch(
                "SELECT status, count(*) FROM urls GROUP BY status")}
            hosts = await conn.fetchrow(
                """SELECT count(*), count(*) FILTER (WHERE owner IS NOT NULL AND lease_until >= $1)
                   FROM hosts""", now)
            workers = [dict(r) for r in await conn.fetch(
                "SELECT id, started, seen, pages, errors, left_at FROM workers ORDER BY started")]
            return {"urls": counts, "hosts": hosts[0], "hosts_leased": hosts[1],
                    "workers": workers}

        return await self._run(work)


async def _schema_version(conn: Any) -> str | None:
    """The crawl schema's version in this database, or None if it has none yet."""
    # pg_class read with a fresh snapshot, not to_regclass: the catalog cache it reads can miss
    # a table another session created while this one waited for the schema lock
    if not await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c
                              JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
                              WHERE c.relname = 'fanmill_meta' AND n.nspname = current_schema())"""):
        return None
    return await conn.fetchval("SELECT value FROM fanmill_meta WHERE key = 'schema'")
