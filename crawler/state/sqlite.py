"""Crawl state (I/O): every URL's status, kept in SQLite so a killed crawl resumes.

The interface is the one DESIGN.md names for the scale path (a PostgreSQL frontier leased with
FOR UPDATE SKIP LOCKED later): add discovered URLs, lease due URLs, record a result with its links,
return expired leases. Nothing else in the crawler speaks SQL.

Statuses: discovered (waiting), fetching (leased until `lease_until`), fetched, failed (final), and
retryable (due again at `next_try`). A result, the links it discovered and its status change
commit in one transaction, so after a crash a URL is either fetched with its links recorded, or
still due and fetched again (at-least-once only for fetches cut off by the crash).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from cache.storage import atransaction, open_store_async

# The origin ("scheme://host[:port]", as str(Origin)) of a normalized URL, which always has a path:
# everything before the first "/" after "scheme://" (position 9 is past "https://"'s slashes).
ORIGIN_SQL = "substr({url}, 1, instr(substr({url}, 9), '/') + 7)"

MIGRATIONS = [
    """
    CREATE TABLE urls (
        url TEXT PRIMARY KEY,
        depth INTEGER NOT NULL,
        referrer TEXT,
        status TEXT NOT NULL CHECK (status IN ('discovered', 'fetching', 'fetched', 'failed', 'retryable')),
        lease_until REAL,
        next_try REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        record TEXT
    );
    CREATE INDEX urls_due ON urls (status, next_try, depth);
    """,
    """
    CREATE TABLE lastmods (url TEXT PRIMARY KEY, lastmod TEXT NOT NULL);
    """,
    # 3: the shared protocol (shared.py): each URL's origin, hosts leased by workers, the workers
    # seen, and the content digests every worker checks its pages against
    f"""
    ALTER TABLE urls ADD COLUMN origin TEXT;
    UPDATE urls SET origin = {ORIGIN_SQL.format(url="url")};
    CREATE INDEX urls_origin_due ON urls (origin, depth)
        WHERE status IN ('discovered', 'retryable', 'fetching');
    CREATE TABLE hosts (
        origin TEXT PRIMARY KEY,
        owner TEXT,
        token INTEGER NOT NULL DEFAULT 0,
        lease_until REAL,
        due_at REAL,
        next_send REAL NOT NULL DEFAULT 0,
        crawl_delay REAL,
        robots_status INTEGER, robots_body BLOB, robots_at REAL, robots_reason TEXT
    );
    INSERT INTO hosts (origin, due_at)
        SELECT origin, min(CASE status WHEN 'retryable' THEN next_try ELSE 0 END) FROM urls
        WHERE status IN ('discovered', 'retryable', 'fetching') GROUP BY origin;
    INSERT OR IGNORE INTO hosts (origin) SELECT DISTINCT origin FROM urls;
    CREATE INDEX hosts_due ON hosts (due_at) WHERE due_at IS NOT NULL;
    CREATE TABLE workers (
        id TEXT PRIMARY KEY, started REAL NOT NULL, seen REAL NOT NULL,
        pages INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0, left_at REAL
    );
    CREATE TABLE contents (
        seq INTEGER PRIMARY KEY, url TEXT NOT NULL, content_hash TEXT, simhash TEXT
    );
    """,
]
Final = Literal["fetched", "failed", "retryable"]

# (url, target) of each recorded redirect whose target was first found through it
REDIRECTS = """SELECT u.url, t.url FROM urls AS u JOIN urls AS t
    ON t.url = json_extract(u.record, '$.redirect_to') AND t.referrer = u.url
    WHERE u.record IS NOT NULL"""


# A batch goes to SQLite as one JSON array read by json_each, not as executemany's one statement
# per row: binding each row needs the GIL back, and with the crawl's thread busy that made a
# commit of 16,000 results take 4 s of wall time (one statement releases the GIL for its whole run)
_ADD_ROWS = f"""INSERT INTO urls (url, depth, referrer, status, origin, lease_until)
    SELECT u, d, r, s, {ORIGIN_SQL.format(url="u")}, l FROM (
        SELECT value ->> 0 AS u, value ->> 1 AS d, value ->> 2 AS r, value ->> 3 AS s,
               value ->> 4 AS l FROM json_each(?) ORDER BY key) WHERE true
    ON CONFLICT (url) DO UPDATE SET depth = excluded.depth, referrer = excluded.referrer
    WHERE excluded.depth < urls.depth AND urls.status IN ('discovered', 'retryable')"""
RECORD_ROWS = """UPDATE urls SET status = t.s, record = t.rec, next_try = t.nt, lease_until = NULL,
        attempts = urls.attempts + t.n
    FROM (SELECT value ->> 0 AS u, value ->> 1 AS s, value ->> 2 AS rec, value ->> 3 AS nt,
                 value ->> 4 AS n FROM json_each(?)) AS t
    WHERE urls.url = t.u"""


def rows_json(rows: Iterable[Any]) -> str:
    """Rows as one JSON array for json_each (compact; non-ASCII escaped, as SQLite reads it)."""
    return json.dumps(list(rows), separators=(",", ":"))


def outcome_rows(results: Iterable[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """url -> [url, status, record text, next_try, attempts] of (url, status, record, links,
    next_try) results, for RECORD_ROWS: a URL twice in a batch keeps its last outcome and counts
    both attempts (as one UPDATE per result did)."""
    outcomes: dict[str, list[Any]] = {}
    for url, status, rec, _links, nt in results:
        seen = outcomes.get(url)
        outcomes[url] = [url, status, record_text(rec), nt, 1 if seen is None else seen[4] + 1]
    return outcomes


def record_text(record: dict[str, Any] | str | None) -> str | None:
    """A record as the state stores it: compact JSON (a text already made passes through)."""
    return record if record is None or isinstance(record, str) else json.dumps(
        record, separators=(",", ":"))


# not frozen: one is made per page, and a frozen dataclass's __init__ costs 5-10x more
@dataclass(slots=True)
class Lease:
    """A URL handed to a worker until `lease_until`."""

    url: str
    depth: int
    referrer: str | None
    attempts: int


class CrawlState:
    """The crawl state of one crawl, in one SQLite file; open with `await CrawlState.open(path)`."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, durability: str = "process") -> CrawlState:
        """Open or create the state file (0600, WAL, migrated) through cache.storage."""
        return cls(await open_store_async(path, migrations=MIGRATIONS, durability=durability))

    async def close(self) -> None:
        """Close the file."""
        await self._conn.close()

    async def add_discovered(self, found: Iterable[tuple[str, int, str | None]]) -> None:
        """Add (url, depth, referrer) rows; a URL already known keeps its status, and a waiting URL
        found again at a smaller depth moves up to it."""
        async with atransaction(self._conn):
            await self._add(found)

    async def _add(self, found: Iterable[tuple[str, int, str | None]]) -> None:
        await self._add_leased(list(found), [], 0.0)

    async def _add_leased(self, found: list[tuple[str, int, str | None]], leased: list[str],
                          lease_until: float) -> None:
        """_add, then lease *leased*: a URL new to the state is stored as leased at once (one
        row write, not an insert and an update); one already known is leased if it waits."""
        if not found and not leased:
            return
        keep = set(leased)
        if found:
            await self._conn.execute(_ADD_ROWS, (rows_json(
                [url, depth, referrer, "fetching", lease_until] if url in keep
                else [url, depth, referrer, "discovered", None] for url, depth, referrer in found),))
        if leased:
            # a leased URL that was known already (found twice in this batch, or by a sitemap)
            # and waits; the rows just inserted as leased do not match
            await self._conn.execute(
                "UPDATE urls SET status = 'fetching', lease_until = ?1 WHERE url IN "
                "(SELECT value FROM json_each(?2)) AND status = 'discovered'",
                (lease_until, rows_json(leased)))

    async def lease_due(self, limit: int, now: float, lease_seconds: float) -> list[Lease]:
        """Lease up to *limit* due URLs (smallest depth first) until now + *lease_seconds*."""
        async with atransaction(self._conn):
            async with self._conn.execute(
                """SELECT url, depth, referrer, attempts FROM urls
                   WHERE status = 'discovered' OR (status = 'retryable' AND next_try <= ?)
                   ORDER BY depth, rowid LIMIT ?""",
                (now, limit),
            ) as cur:
                rows = await cur.fetchall()
            await self._conn.executemany(
                "UPDATE urls SET status = 'fetching', lease_until = ? WHERE url = ?",
                [(now + lease_seconds, row[0]) for row in rows],
            )
        return [Lease(url, depth, referrer, attempts) for url, depth, referrer, attempts in rows]

    async def record_result(
        self, url: str, status: Final, record: dict[str, Any], links: Iterable[tuple[str, int, str | None]] = (),
        next_try: float | None = None,
    ) -> None:
        """Store a fetch's outcome and the links it found, in one transaction (idempotent)."""
        if status == "retryable" and next_try is None:
            raise ValueError("a retryable result needs next_try")
        async with atransaction(self._conn):
            await self._add(links)
            await self._conn.execute(
                """UPDATE urls SET status = ?, record = ?, next_try = ?, lease_until = NULL,
                   attempts = attempts + 1 WHERE url = ?""",
                (status, record_text(record), next_try, url),
            )

    async def record_results(
        self, results: Iterable[tuple[str, Final, dict[str, Any] | str | None, list[tuple[str, int, str | None]], float | None]],
        leased: Iterable[str] = (), lease_until: float = 0.0,
    ) -> None:
        """Store many (url, status, record, links, next_try) outcomes in one transaction (batched);
        a record is a dict or its JSON text already made. URLs in *leased*, found by these results
        and handed to the crawl's memory at once, are stored as leased until *lease_until*."""
        results, leased = list(results), list(leased)
        if not results and not leased:
            return
        if self._conn.in_transaction:
            # A cancellation (Ctrl-C) ended an await while its statement still ran in aiosqlite's
            # thread: a BEGIN whose context manager never entered, or a COMMIT still finishing
            # (read from this thread, in_transaction is then true until it ends, and a ROLLBACK
            # queued behind it failed: "no transaction is active"). Calls run in order on that
            # thread: once a no-op has run, in_transaction is settled.
            await self._conn.execute("SELECT 1")
            if self._conn.in_transaction:
                await self._conn.execute("ROLLBACK")
        outcomes = outcome_rows(results)
        async with atransaction(self._conn):
            await self._add_leased([link for r in results for link in r[3]], leased, lease_until)
            if outcomes:
                await self._conn.execute(RECORD_ROWS, (rows_json(outcomes.values()),))

    async def add_sitemap_entries(self, found: Iterable[tuple[str, int, str | None]],
                                  lastmods: Iterable[tuple[str, str]]) -> None:
        """Add URLs found in sitemaps, and the `lastmod` each sitemap gave, in one transaction."""
        async with atransaction(self._conn):
            await self._add(found)
            await self._conn.executemany(
                """INSERT INTO lastmods (url, lastmod) VALUES (?, ?)
                   ON CONFLICT (url) DO UPDATE SET lastmod = excluded.lastmod""", list(lastmods))

    async def requeue_fetched_before(self, cutoff: float) -> dict[str, Any]:
        """Make every URL fetched before wall time *cutoff* due again (a recrawl); return what
        its last response said: url -> Validators(ETag, Last-Modified, fetch time, hash)."""
        from crawler.recorder import Validators

        async with atransaction(self._conn):
            async with self._conn.execute(
                """SELECT url, json_extract(record, '$.etag'),
                          json_extract(record, '$.last_modified'), json_extract(record, '$.fetch_time'),
                          json_extract(record, '$.content_hash')
                   FROM urls WHERE status = 'fetched' AND record IS NOT NULL
                   AND json_extract(record, '$.fetch_time') < ?""", (cutoff,)) as cur:
                rows = await cur.fetchall()
            await self._conn.executemany(
                "UPDATE urls SET status = 'discovered', attempts = 0, lease_until = NULL "
                "WHERE url = ?", [(row[0],) for row in rows])
        return {row[0]: Validators(*row[1:]) for row in rows}

    async def known(self) -> dict[str, tuple[int, str]]:
        """Every URL the crawl knows, with its depth and status (read once when a crawl resumes)."""
        async with self._conn.execute("SELECT url, depth, status FROM urls") as cur:
            return {url: (depth, status) for url, depth, status in await cur.fetchall()}

    async def seen_content(self) -> list[tuple[str, str | None, str | None]]:
        """(url, content_hash, simhash) of every fetched HTML page that was no exact duplicate."""
        async with self._conn.execute(
            """SELECT url, json_extract(record, '$.content_hash'), json_extract(record, '$.simhash')
               FROM urls WHERE status = 'fetched' AND record IS NOT NULL
               AND json_extract(record, '$.duplicate_of') IS NULL
               AND json_extract(record, '$.status') BETWEEN 200 AND 299
               AND json_extract(record, '$.content_type') LIKE '%html%' ORDER BY rowid"""
        ) as cur:
            return [tuple(row) for row in await cur.fetchall()]

    async def redirects(self) -> list[tuple[str, str]]:
        """(url, target) of every recorded redirect whose target was first found through it
        (a resume rebuilds the hop counts from these)."""
        async with self._conn.execute(REDIRECTS) as cur:
            return [tuple(row) for row in await cur.fetchall()]

    async def next_retry_at(self) -> float | None:
        """The earliest `next_try` of a retryable URL, or None."""
        async with self._conn.execute(
            "SELECT min(next_try) FROM urls WHERE status = 'retryable'"
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def return_expired(self, now: float) -> int:
        """Give leases that expired (a worker died, or the crawl was killed) back; return how many."""
        async with atransaction(self._conn):
            cur = await self._conn.execute(
                "UPDATE urls SET status = 'discovered', lease_until = NULL "
                "WHERE status = 'fetching' AND lease_until < ?",
                (now,),
            )
            return cur.rowcount

    async def counts(self) -> dict[str, int]:
        """Number of URLs per status."""
        async with self._conn.execute("SELECT status, count(*) FROM urls GROUP BY status") as cur:
            return {status: n for status, n in await cur.fetchall()}

    async def records(self) -> list[dict[str, Any]]:
        """Every stored record (for tests and reports)."""
        async with self._conn.execute("SELECT record FROM urls WHERE record IS NOT NULL") as cur:
            return [json.loads(r[0]) for r in await cur.fetchall()]
