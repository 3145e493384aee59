"""fanmill cache: a crash-safe persistent LRU, a memoize decorator, and the shared storage layer."""

from cache.errors import (
    CacheError,
    CorruptStoreError,
    ForeignFileError,
    SchemaVersionError,
    SerializationError,
    StoreLockedError,
    StoreWriteError,
    UnsupportedFilesystemError,
    ValueTooLargeError,
)
from cache.log import Durability
from cache.memoize import memoize
from cache.persistent import PersistentLRU
from cache.stats import CacheInfo, LRUStats

__all__ = [
    "CacheError",
    "CacheInfo",
    "CorruptStoreError",
    "Durability",
    "ForeignFileError",
    "LRUStats",
    "memoize",
    "PersistentLRU",
    "SchemaVersionError",
    "SerializationError",
    "StoreLockedError",
    "StoreWriteError",
    "UnsupportedFilesystemError",
    "ValueTooLargeError",
]
