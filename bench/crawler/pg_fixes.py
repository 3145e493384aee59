"""Bench-only fixes of crawler/state/shared_pg.py, to measure what they would give
(bench/crawler/pg_scale.py's second run and its driver comparison). The crawler does not use them;
the crawler's code is not changed.

1. `ORIGIN_INDEX`: `host_urls` (which the engine calls after every claim) selects every URL of the
   claimed hosts by origin, and urls has no index on origin that holds fetched URLs
   (urls_origin_due is partial: waiting and in-flight URLs only), so each call is a sequential
   scan of the whole urls table.
2. `PgSharedFixed._add`: shared_pg.py inserts host rows and marks due every host of every link
   sent, known URLs included, so a link to an already fetched URL makes its drained host due
   again; the next claim takes it, finds nothing to lease and releases it. Here only the hosts of
   URLs the INSERT really added (`RETURNING origin`) are inserted and marked due. The statements
   are shared_pg.py's, with that one change (copied: they do not follow later edits there).
"""

from __future__ import annotations

from typing import Any

from crawler.state.shared import origin_key
from crawler.state.shared_pg import PgShared, _best_depths

ORIGIN_INDEX = "CREATE INDEX urls_origin ON urls (origin)"


class PgSharedFixed(PgShared):
    """PgShared whose link insertion marks due only the hosts of URLs it inserted."""

    @staticmethod
    async def _add(conn: Any, found: list[tuple[str, int, str | None]], now: float) -> None:
        if not found:
            return
        rows = _best_depths(found)
        urls = [r[0] for r in rows]
        depths = [r[1] for r in rows]
        origins = [origin_key(u) for u in urls]
        inserted = await conn.fetch(
            """INSERT INTO urls (url, origin, depth, referrer, status)
               SELECT u, o, d, r, 'discovered'
               FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) AS t(u, o, d, r)
               ON CONFLICT (url) DO NOTHING
               RETURNING origin""", urls, origins, depths, [r[2] for r in rows])
        await conn.execute(
            """UPDATE urls SET depth = t.d, referrer = t.r
               FROM unnest($1::text[], $2::int[], $3::text[]) AS t(u, d, r)
               WHERE urls.url = t.u AND t.d < urls.depth
               AND urls.status IN ('discovered', 'retryable')""", urls, depths, [r[2] for r in rows])
        hosts = sorted({r[0] for r in inserted})
        if hosts:
            await conn.execute(
                """INSERT INTO hosts (origin, due_at) SELECT unnest($1::text[]), 0
                   ON CONFLICT (origin) DO NOTHING""", hosts)
            await conn.execute(
                """UPDATE hosts SET due_at = 0 WHERE origin = ANY($1::text[])
                   AND (due_at IS NULL OR due_at > $2) AND owner IS NULL""", hosts, now)


def fix(shared: PgShared) -> PgShared:
    """The same object, with the fixed link insertion."""
    shared.__class__ = PgSharedFixed
    return shared
