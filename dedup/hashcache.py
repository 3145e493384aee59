"""I/O: the `--cache` digest store on `cache.PersistentLRU`, keyed by what identifies a content version.

Key: (device, inode, size, mtime_ns, hash name, range). A file rewritten in place changes its
mtime_ns and so misses; a file whose mtime is within `RACY_WINDOW_NS` of the scan start is not
stored, because a write in the same timestamp tick could change it without changing mtime_ns
(git's "racy clean" problem).
"""

from __future__ import annotations

from dedup.errors import HashCacheError
from dedup.model import FileEntry
from dedup.table import NS_MAX, NS_MIN
from dedup.warn import warning

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # DigestCache is an annotation; at run time, a plain class

RACY_WINDOW_NS = 2_000_000_000
# A time the file table clamped (dedup.table.clamp_ns: before 1678, after 2262) stands for many
# times: a digest keyed by it could outlive a change of the file. Such files are never cached.
CLAMPED = frozenset((NS_MIN, NS_MAX))
DEFAULT_CAPACITY = 2_000_000  # entries; about two digests per file of a 1M-file tree


class DigestCache(Protocol):
    """What the pipeline needs from a digest cache (a dict-backed fake fits in tests)."""

    def get(self, entry: FileEntry, hash_name: str, span: str) -> bytes | None: ...
    def put(self, entry: FileEntry, hash_name: str, span: str, digest: bytes, now_ns: int) -> None: ...
    def close(self) -> None: ...


def cache_key(entry: FileEntry, hash_name: str, span: str) -> tuple[int, int, int, int, str, str]:
    """Return the cache key of *entry*'s digest over *span* ("whole", "edges:4096", "full")."""
    return (entry[2], entry[3], entry[1], entry[4], hash_name, span)  # works on plain records too


class HashCache:
    """A `DigestCache` persisted with `cache.PersistentLRU`; raise `HashCacheError` if it cannot open."""

    def __init__(self, path: str, *, capacity: int = DEFAULT_CAPACITY) -> None:
        from cache import (  # lazy: only --cache runs need the cache package
            CacheError,
            PersistentLRU,
        )

        self._errors: tuple[type[BaseException], ...] = (CacheError, OSError)
        try:
            self._lru = PersistentLRU(path, capacity=capacity, serializer="bytes", durability="fast")
        except (CacheError, OSError) as exc:
            raise HashCacheError(f"cannot open hash cache {path!r}: {exc}") from exc
        self._broken = False

    def get(self, entry: FileEntry, hash_name: str, span: str) -> bytes | None:
        """Return the stored digest for *entry* over *span*, or None (also when the store fails)."""
        if self._broken or entry[4] in CLAMPED:
            return None
        try:
            value = self._lru.get(cache_key(entry, hash_name, span))
        except self._errors as exc:
            self._disable(exc)
            return None
        return value if isinstance(value, bytes) else None

    def put(self, entry: FileEntry, hash_name: str, span: str, digest: bytes, now_ns: int) -> None:
        """Store *digest* unless the file changed too recently to trust its mtime."""
        if self._broken or entry[4] > now_ns - RACY_WINDOW_NS or entry[4] in CLAMPED:
            return
        try:
            self._lru[cache_key(entry, hash_name, span)] = digest
        except self._errors as exc:
            self._disable(exc)

    def close(self) -> None:
        """Close the store (flushes batched recency updates)."""
        try:
            self._lru.close()
        except self._errors as exc:
            warning(__name__, "hash cache: close failed: %s", exc)

    def _disable(self, exc: BaseException) -> None:
        # A failing cache must not fail the scan: results stay correct without it, only slower.
        self._broken = True
        warning(__name__, "hash cache disabled for this run: %s", exc)
