"""Exceptions of the cache package.

    CacheError                     base of every error this package raises on purpose
    ├── CorruptStoreError          a file is damaged, foreign, or of an unknown format version
    │   └── ForeignFileError       the file is not a fanmill store at all (wrong magic / not SQLite)
    ├── StoreLockedError           an exclusive open holds the store (or one is refused: others have it)
    ├── SchemaVersionError         a SQLite store is newer than the code that opens it
    ├── SerializationError         a value cannot be encoded, or an intact record cannot be decoded
    ├── StoreWriteError            the OS refused a write (disk full, I/O error); nothing was acknowledged
    ├── ValueTooLargeError         one entry is larger than max_bytes (also a ValueError); refused
    └── UnsupportedFilesystemError a shared store on NFS, SMB, FUSE, ...: refused, naming the filesystem

Foreign exceptions (OSError, sqlite3.DatabaseError, pickle.UnpicklingError, ...) are mapped to these at
the seam with `raise ... from exc`, so callers catch one family.
"""

from __future__ import annotations

import os


class CacheError(Exception):
    """Base class of every error raised on purpose by the cache package."""


class CorruptStoreError(CacheError):
    """A store file is damaged or not readable as a store; names the path, the offset and what was wrong."""

    def __init__(self, path: str | os.PathLike[str], detail: str, offset: int | None = None) -> None:
        self.path = os.fspath(path)
        self.detail = detail
        self.offset = offset
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{self.path}: corrupt store{where}: {detail}")


class ForeignFileError(CorruptStoreError):
    """The file exists but is not a fanmill store of the expected kind."""


class StoreLockedError(CacheError):
    """An exclusive open holds the store, or an exclusive open is refused because others have it open."""


class SchemaVersionError(CacheError):
    """A SQLite store was written by a newer fanmill than the one opening it."""


class SerializationError(CacheError):
    """A value could not be serialized, or an intact record could not be deserialized."""


class StoreWriteError(CacheError):
    """The OS refused a write (for example: disk full); the operation was not applied."""


class UnsupportedFilesystemError(CacheError):
    """The file lies on a filesystem (NFS, SMB, FUSE, ...) where shared maps and locks are unreliable."""


class ValueTooLargeError(CacheError, ValueError):
    """One entry is larger than the cache's max_bytes; it was refused, nothing was evicted."""
