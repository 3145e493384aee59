"""The crawler's PostgreSQL state (crawler/state/shared_pg.py, written for asyncpg) on psycopg 3
(async), for the driver comparison in bench/crawler/pg_scale.py; and a statement counter for the
asyncpg connection.

The port is a connection adapter rather than a copy of the SQL: PgShared's own methods run over
`PsycopgConn`, which takes asyncpg's calls (`execute`, `fetch`, `fetchrow`, `fetchval`,
`executemany`, `transaction`) and runs each statement through psycopg with its `$n` placeholders
translated to psycopg's named ones (`$3` -> `%(p3)s`, so a parameter used twice is sent once, as
asyncpg does) and arrays passed as Python lists under the statement's own casts. The translation is
cached per statement text. So the SQL and the Python around it are the crawler's, byte for byte, and
the comparison cannot drift when shared_pg.py changes (it changed while this bench was written).
Deadlock and serialization failures are raised as asyncpg's classes, so PgShared retries them.
"""

from __future__ import annotations

import re
from typing import Any

from crawler.state.shared_pg import PgShared

_PLACEHOLDER = re.compile(r"\$(\d+)")


class CountingConn:
    """An asyncpg connection that counts client round trips: statements, and BEGIN + COMMIT per
    transaction (executemany counts one per row, as the server sees them)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.statements = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def transaction(self) -> Any:
        self.statements += 2
        return self._conn.transaction()

    async def execute(self, sql: str, *args: Any) -> Any:
        self.statements += 1
        return await self._conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.statements += 1
        return await self._conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self.statements += 1
        return await self._conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.statements += 1
        return await self._conn.fetchval(sql, *args)

    async def executemany(self, sql: str, rows: Any) -> Any:
        rows = list(rows)
        self.statements += len(rows)
        return await self._conn.executemany(sql, rows)


class _Translated:
    """One asyncpg statement in psycopg's form, with the names of its parameters."""

    __slots__ = ("sql", "names")

    def __init__(self, sql: str, binary: bool) -> None:
        if "%" in sql:
            sql = sql.replace("%", "%%")  # a literal % (LIKE '%...') is doubled for psycopg
        numbers = sorted({int(n) for n in _PLACEHOLDER.findall(sql)})
        self.sql = _PLACEHOLDER.sub(r"%(p\1)b" if binary else r"%(p\1)s", sql)
        self.names = [f"p{n}" for n in range(1, (numbers[-1] if numbers else 0) + 1)]

    def params(self, args: tuple[Any, ...]) -> dict[str, Any] | None:
        if not self.names:
            return None
        return dict(zip(self.names, args, strict=True))


class PsycopgConn:
    """asyncpg's Connection methods that PgShared calls, on a psycopg AsyncConnection
    (autocommit, so `transaction()` sends BEGIN and COMMIT as asyncpg's does). psycopg prepares a
    statement server-side from its 5th execution (prepare_threshold), asyncpg from its first."""

    def __init__(self, conn: Any, binary: bool = False) -> None:
        self._conn = conn
        self._binary = binary  # parameters and results in binary format (%b, binary cursors)
        self._cache: dict[str, _Translated] = {}
        self.statements = 0

    @classmethod
    async def connect(cls, url: str, binary: bool = False) -> PsycopgConn:
        import psycopg

        return cls(await psycopg.AsyncConnection.connect(url, autocommit=True), binary)

    def _q(self, sql: str) -> _Translated:
        got = self._cache.get(sql)
        if got is None:
            got = self._cache[sql] = _Translated(sql, self._binary)
        return got

    async def _cursor(self, sql: str, args: tuple[Any, ...]) -> Any:
        import asyncpg
        import psycopg

        self.statements += 1
        q = self._q(sql)
        try:
            return await self._conn.execute(q.sql, q.params(args), binary=self._binary)
        except psycopg.errors.DeadlockDetected as exc:
            raise asyncpg.DeadlockDetectedError(str(exc)) from exc
        except psycopg.errors.SerializationFailure as exc:
            raise asyncpg.SerializationError(str(exc)) from exc

    def transaction(self) -> Any:
        self.statements += 2
        return self._conn.transaction()

    async def execute(self, sql: str, *args: Any) -> str:
        cur = await self._cursor(sql, args)
        return cur.statusmessage or ""

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        cur = await self._cursor(sql, args)
        return await cur.fetchall()

    async def fetchrow(self, sql: str, *args: Any) -> tuple[Any, ...] | None:
        cur = await self._cursor(sql, args)
        return await cur.fetchone()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    async def executemany(self, sql: str, rows: Any) -> None:
        rows = list(rows)
        self.statements += len(rows)
        q = self._q(sql)
        async with self._conn.cursor(binary=self._binary) as cur:
            await cur.executemany(q.sql, [q.params(tuple(r)) for r in rows])

    async def close(self) -> None:
        await self._conn.close()

    def terminate(self) -> None:
        pass


async def open_shared(url: str, worker: str, driver: str) -> tuple[PgShared, Any]:
    """PgShared on *driver* ("asyncpg": the crawler's own open; "psycopg": the adapter, on a
    database whose schema exists; "psycopg-binary": the same with binary parameters and results),
    and the counting connection under it."""
    if driver == "asyncpg":
        shared = await PgShared.open(url, worker)
        counting = CountingConn(shared._conn)
        shared._conn = counting
    elif driver in ("psycopg", "psycopg-binary"):
        counting = await PsycopgConn.connect(url, binary=driver == "psycopg-binary")
        shared = PgShared(counting, worker, url)
    else:
        raise ValueError(f"unknown driver {driver!r}")
    return shared, counting
