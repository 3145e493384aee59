"""The SQLite opener: the one place fanmill opens SQLite (the crawler's crawl state).

Durability for SQLite (the same names as the record log's, see cache/log.py):

    "process" (default)  WAL journal, synchronous=NORMAL: a committed transaction survives kill -9 of
                         the process; a power loss may lose the last transactions, never corrupts.
    "fsync"              WAL journal, synchronous=FULL: a committed transaction survives power loss.

On open: the file is created 0600 (and its -wal/-shm, which SQLite creates with the database's
mode); `application_id` marks it as fanmill's, so a foreign SQLite database is refused rather than
migrated; `user_version` is the schema version and `migrations[i]` brings version i to i+1 inside one
BEGIN IMMEDIATE transaction together with the version bump, so a crash mid-migration leaves the old
version whole; `PRAGMA quick_check` (O(pages), unlike integrity_check's index cross-checks) turns a
damaged file into CorruptStoreError. No raw sqlite3 exception escapes from opening.

Limit: SQLite keeps no checksum of row contents, so a byte flipped inside a stored value (not in the
b-tree structure) is not detected, unlike the record log, whose every record carries a CRC32. The
crawl state keeps nothing that cannot be refetched; data that must be proven intact belongs in the
record log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from cache.errors import (
    CorruptStoreError,
    ForeignFileError,
    SchemaVersionError,
    StoreLockedError,
    StoreWriteError,
)

if TYPE_CHECKING:
    import aiosqlite

APPLICATION_ID = 0x464D4C31  # "FML1"
_SYNCHRONOUS = {"process": "NORMAL", "fsync": "FULL"}


def _prepare_file(path: str) -> None:
    """Create the database file 0600 before SQLite does, so it never exists with wider permissions."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise StoreWriteError(f"{path}: directory {directory} does not exist")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)
    except IsADirectoryError:
        raise ForeignFileError(path, "is a directory") from None
    except OSError as exc:
        raise StoreWriteError(f"{path}: cannot create or open: {exc.strerror}") from exc


def _map_error(path: str, exc: sqlite3.Error) -> Exception:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return StoreLockedError(f"{path}: database is locked by another connection ({text})")
    if "not a database" in text:
        return ForeignFileError(path, f"not a SQLite database ({text})")
    if isinstance(exc, sqlite3.DatabaseError):
        return CorruptStoreError(path, text)
    return StoreWriteError(f"{path}: {text}")


def _setup_statements(durability: str, busy_timeout_ms: int) -> list[str]:
    if durability not in _SYNCHRONOUS:
        raise ValueError(f"durability must be one of {sorted(_SYNCHRONOUS)}, not {durability!r}")
    return [
        f"PRAGMA busy_timeout = {int(busy_timeout_ms)}",
        "PRAGMA journal_mode = WAL",
        f"PRAGMA synchronous = {_SYNCHRONOUS[durability]}",
        "PRAGMA foreign_keys = ON",
    ]


def _check_identity(path: str, app_id: int, version: int, tables: int, n_migrations: int) -> None:
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and (tables or version)):
        raise ForeignFileError(path, "a SQLite database that fanmill did not create")
    if version > n_migrations:
        raise SchemaVersionError(
            f"{path}: schema version {version} is newer than this fanmill knows ({n_migrations}); "
            "upgrade fanmill or use another file"
        )


def open_store(
    path: str | os.PathLike[str],
    *,
    migrations: Sequence[str],
    durability: str = "process",
    busy_timeout_ms: int = 5000,
    check: bool = True,
) -> sqlite3.Connection:
    """Open (creating and migrating) fanmill's SQLite file at *path*; autocommit mode, explicit BEGIN."""
    path = os.fspath(path)
    setup = _setup_statements(durability, busy_timeout_ms)
    _prepare_file(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for stmt in setup:
            conn.execute(stmt)
        if check:
            found = conn.execute("PRAGMA quick_check").fetchone()[0]
            if found != "ok":
                raise CorruptStoreError(path, f"quick_check: {found}")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        _check_identity(path, app_id, version, tables, len(migrations))
        for target in range(version + 1, len(migrations) + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                # another process may have migrated while we waited for the write lock
                if conn.execute("PRAGMA user_version").fetchone()[0] >= target:
                    conn.execute("COMMIT")
                    continue
                for statement in _split(migrations[target - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {target}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return conn
    except sqlite3.Error as exc:
        conn.close()
        raise _map_error(path, exc) from exc
    except BaseException:
        conn.close()
        raise


def _split(script: str) -> list[str]:
    """Split a migration script into statements (executescript would COMMIT our transaction)."""
    statements, current = [], ""
    for piece in script.split(";"):
        current += piece
        if sqlite3.complete_statement(current + ";"):
            if current.strip():
                statements.append(current.strip())
            current = ""
        else:
            current += ";"
    if current.strip():
        statements.append(current.strip())
    return statements


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT; ROLLBACK on any exception (and re-raise it)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
    except BaseException:
        _rollback_quietly(conn)
        raise
    conn.execute("COMMIT")


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        pass  # no transaction was open: BEGIN itself failed or never ran


async def open_store_async(
    path: str | os.PathLike[str],
    *,
    migrations: Sequence[str],
    durability: str = "process",
    busy_timeout_ms: int = 5000,
    check: bool = True,
) -> aiosqlite.Connection:
    """The asyncio twin of open_store: same checks and migrations, returns an aiosqlite connection."""
    import aiosqlite

    path = os.fspath(path)
    # Opening, checking and migrating are done once by the same code as open_store, in a worker
    # thread (an integrity check of a big file must not stall the caller's event loop); then
    # aiosqlite opens the now-current file for the caller.
    first = await asyncio.to_thread(open_store, path, migrations=migrations, durability=durability,
                                    busy_timeout_ms=busy_timeout_ms, check=check)
    first.close()
    try:
        conn = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise _map_error(path, exc) from exc
    try:
        for stmt in _setup_statements(durability, busy_timeout_ms):
            await conn.execute(stmt)
    except sqlite3.Error as exc:
        await conn.close()
        raise _map_error(path, exc) from exc
    except BaseException:
        await conn.close()
        raise
    return conn


@contextlib.asynccontextmanager
async def atransaction(conn: Any) -> AsyncIterator[Any]:
    """The asyncio twin of transaction()."""
    # BEGIN is inside the try: a cancellation (Ctrl-C) that lands while BEGIN runs in aiosqlite's
    # thread must still roll back, or the next BEGIN fails with "transaction within a transaction".
    # ROLLBACK is queued after BEGIN on that same thread, so it always sees BEGIN's outcome.
    try:
        await conn.execute("BEGIN IMMEDIATE")
        yield conn
    except BaseException:
        try:
            await conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # no transaction was open
        raise
    await conn.execute("COMMIT")
