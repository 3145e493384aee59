"""PersistentLRU: a crash-safe, exact LRU mapping on the record log.

Every operation appends a record before it returns: a put writes the value; a hit writes a small
touch record, so the recency order after a crash is the one the process last acknowledged, reads
included. Evictions write nothing: the bounds in force are themselves a record (BOUNDS, written when
they change), and replay evicts exactly as the process did, since eviction is a pure function of the
order and the bounds. That keeps a put to one record (bench/cache: the batch of put + deletes was the
largest Python cost of a put). Values live in the log, not in memory;
the in-memory index (a RecencyOrder) holds where each record lies, as a tuple (offset, length, key
bytes) that a compaction replaces (cache/index.py). See cache/log.py for what each
durability setting guarantees.

Shared by processes (the default): every operation runs between the shared log's begin() (the writer
lock, then the records other processes appended, replayed into this index) and finish() (publish,
unlock); see cache/sharedlog.py, and cache/operations.py for what needs no writer lock. Since
every process replays every record in the log's order, each index is the one a single process doing
all the operations would hold: exact recency, exact bounds.
exclusive=True is the single owner of the file instead (no lock per operation). A shared open that
finds nobody else present is the file's sole open: it runs as the single owner does until another
open asks to join (cache/sole.py).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from cache import records as fmt
from cache import sole
from cache.encoding import (
    BytesSerializer,
    Serializer,
    direct_dumps,
    direct_loads,
    encode_key,
    get_serializer,
    load_value,
)
from cache.errors import CacheError, ForeignFileError, SerializationError, ValueTooLargeError
from cache.follow import Index
from cache.index import MISSING, IndexReplay
from cache.log import Durability, RecordLog
from cache.operations import Operations
from cache.order import RecencyOrder
from cache.sharedlog import SharedRecordLog

_APP = "PersistentLRU"
# Keys that decode_key(encode_key(key)) gives back as they are (not bool, not a subclass, not a
# tuple that may hold either): a shared open may remember them by their bytes (_remember_key).
_PLAIN_KEYS = frozenset({int, str, bytes})


def _nothing() -> None:
    pass


def _nothing_with(_arg: Any) -> None:
    pass


def _not_current() -> bool:
    return False


class PersistentLRU(Operations, IndexReplay, MutableMapping[Any, Any]):
    """A persistent least-recently-used mapping, bounded by entries and/or bytes, safe under kill -9.

    Usage::

        with PersistentLRU("app.lru", capacity=10_000) as lru:
            lru["k"] = value            # acknowledged (in the file) when it returns
            lru["k"]; lru.get("k")      # a hit counts as use, and so does an overwrite
            "k" in lru                  # does not count as use
            list(lru)                   # keys from least to most recently used

    Keys: str, bytes, int or tuples of those. Values: pickle (default; the file must then be trusted
    like code), "json" or "bytes". Thread-safe, and shared by processes: any number of opens of one
    path, in any processes, see each other's acknowledged writes and share one recency order and one
    set of bounds. `exclusive=True` makes this open the file's only one (faster: no lock per
    operation; any other open then raises StoreLockedError); `readonly=True` is a snapshot that never
    writes, where reads do not move entries. The bounds are stored in the file: reopening without
    capacity and max_bytes keeps them; reopening with others applies the new ones (evicting the
    least recent entries if they shrank).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        capacity: int | None = None,
        *,
        max_bytes: int | None = None,
        durability: Durability = "process",
        serializer: str | Serializer = "pickle",
        salvage: bool = False,
        readonly: bool = False,
        exclusive: bool = False,
        on_evict: Callable[[Any], None] | None = None,
        compact_min_bytes: int = 8 << 20,
        _reserve: Callable[[int, int, int], None] = os.posix_fallocate,
    ) -> None:
        """Open or create the cache file at *path*; see the class docstring for the parameters."""
        RecencyOrder(capacity, max_bytes)  # validate the bounds before touching any file
        if capacity is None and max_bytes is None and not readonly and not os.path.exists(path):
            raise ValueError("give capacity (entries) and/or max_bytes, or the cache never evicts")
        self._order = RecencyOrder(None, None)  # replay applies the bounds recorded in the file
        self._lookup = self._order.lookup
        self._serializer = get_serializer(serializer)
        self._loads = direct_loads(self._serializer)
        self._dumps = direct_dumps(self._serializer)
        self._raw_bytes = type(self._serializer).dumps is BytesSerializer.dumps
        self._move_to_end = self._order.move_to_end
        self._newest: Any = MISSING  # the most recently used key when known, else MISSING
        self._lock = threading.RLock()
        self._on_evict = on_evict
        self._compact_min = compact_min_bytes
        self._hits = self._misses = self._evictions = self._compactions = 0
        self._live = 0  # bytes of live put records in the file, header included
        self._pending_touches: list[bytes] = []
        self._fast = durability == "fast"
        self._meta = {"app": _APP, "serializer": self._serializer.name}
        self._keys: dict[bytes, Any] = {}  # decoded keys by their bytes (see _key_of)
        self._order_touch = self._order.move_to_end
        self._opened = False
        self.path = os.fspath(path)  # before the log: replay errors name the file
        self._is_shared = not readonly and not exclusive
        if self._is_shared:
            self._log: RecordLog = SharedRecordLog(
                path, meta=self._meta, on_record=self._replay_record,
                index=Index(self._keys, self._key_of, self._order.move_to_end, self._apply,
                            self._apply_put, self._order.entries, self._order, self),
                on_reset=self._reset,
                durability=durability, salvage=salvage, reserve=_reserve,
            )
        else:
            self._log = RecordLog(
                path, meta=self._meta, on_record=self._replay_record, durability=durability,
                readonly=readonly, salvage=salvage, reserve=_reserve,
            )
        self.path = self._log.path
        self._log_read = self._log.read
        self._recent_get = self._log.recent_get
        # The protocol around each operation (None for a single owner, a read-only view, or the
        # sole open of a shared file until another open asks to join: cache/shared.py).
        self._begin: Callable[[], bool] | None = None
        self._finish: Callable[[], None] = _nothing
        self._follow_published: Callable[[], bool] = _not_current  # set with _begin
        self._stop_watch = threading.Event()
        self._watcher: threading.Thread | None = None
        if self._is_shared:
            self._watcher = sole.attach(self, self._log, self._lock,  # type: ignore[arg-type]
                                        self._stop_watch)
        # How a hit is recorded: a touch record now ("process", "fsync"), a batched one ("fast"),
        # or not at all (a read-only view does not move entries).
        self._touch: Callable[[bytes], None] | None = (
            None if readonly else self._queue_touch if self._fast else self._log.append_touch
        )
        if self._fast and self._is_shared:
            # A pending touch moves its key only once written, after the other processes' records
            # before it (_flush_touches): every process's order stays the file's order.
            self._move_to_end = _nothing_with
        try:
            self._check_meta()
            self._live += self._header_size()
            self._opened = True
            with self._locked():
                self._open_bounds(capacity, max_bytes, readonly)
        except BaseException:
            sole.stop_watching(self._watcher, self._stop_watch)
            self._log.close()
            raise

    # -- opening -------------------------------------------------------------------------------

    def _check_meta(self) -> None:
        meta = self._log.meta
        if meta.get("app") != _APP:
            raise ForeignFileError(self.path, f"a record log of {meta.get('app')!r}, not a PersistentLRU")
        if meta.get("serializer") != self._serializer.name:
            raise CacheError(
                f"{self.path}: written with serializer {meta.get('serializer')!r}, "
                f"opened with {self._serializer.name!r}"
            )

    # -- the mapping ---------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, MISSING)
        if value is MISSING:
            raise KeyError(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        """Return the value of *key* and mark it most recently used, or *default* (a miss)."""
        # The hot path of the cache, measured by bench/cache: kept flat on purpose (a direct index
        # lookup, the verified read, one deserialization, one touch append, one move in the order).
        lock = self._lock
        if not lock.acquire(False):
            self._wait_for_lock()
        try:
            if self._begin is not None:
                return self._get_shared(key, default)
            try:
                entry = self._lookup(key)
            except TypeError:
                encode_key(key)  # raises the clear TypeError for an unsupported key type
                raise
            if entry is None:
                if self._log.closed:
                    raise CacheError(f"{self.path}: the cache is closed")
                self._misses += 1
                return default
            offset, length, kbytes = entry[0]
            # The log's remembered values first (cache/reads.py), without a call: 72% of the bench
            # trace's hits end here.
            view = self._recent_get(offset)
            if view is None:
                view = self._log_read(offset, length, kbytes)  # raises CacheError once closed
            try:
                value = self._loads(view)
            except Exception as exc:
                raise self._load_error(exc) from exc
            touch = self._touch
            if touch is not None and key != self._newest:
                touch(kbytes)  # acknowledged in the log before it counts in memory
                self._move_to_end(key)
                self._newest = key
            self._hits += 1
            return value
        finally:
            lock.release()

    def peek(self, key: Any, default: Any = None) -> Any:
        """Return the value of *key* without counting a use or a hit, or *default*."""
        with self._locked():
            try:
                offset, length, kbytes = self._order.peek(key)
            except KeyError:
                return default
            return load_value(self._serializer, self._read(offset, length, kbytes), self.path)

    def __setitem__(self, key: Any, value: Any) -> None:
        kbytes = encode_key(key)
        try:
            # Serializer "bytes" stores bytes as they are: no call (about 0.4 us of a put).
            vbytes = value if self._raw_bytes and type(value) is bytes else self._dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"cannot serialize {type(value).__name__} with {self._serializer.name}: {exc}"
            ) from exc
        weight = len(kbytes) + len(vbytes)
        lock = self._lock
        if not lock.acquire(False):
            self._wait_for_lock()
        begin = self._begin
        try:
            log = self._log
            if log.closed:
                raise CacheError(f"{self.path}: the cache is closed")
            if begin is not None and begin():
                self._newest = MISSING
        except BaseException:
            lock.release()
            raise
        try:
            order = self._order
            if self._pending_touches and self._is_shared:
                self._flush_touches()  # shared "fast": their moves come before this put's evictions
            max_bytes = order.max_bytes
            if max_bytes is not None and weight > max_bytes:
                raise ValueTooLargeError(f"an entry of {weight} bytes exceeds max_bytes={max_bytes}")
            # the keys as they were put, for the callback (load_evicting below evicts these)
            victims = order.evictions_for(key, weight) if self._on_evict is not None else ()
            if self._pending_touches:  # "fast": the pending touches go first, in the same write
                offset, length = log.append_touches(self._pending_touches, (fmt.PUT, kbytes, vbytes))
                self._pending_touches.clear()
            else:
                offset, length = log.append(fmt.PUT, kbytes, vbytes)
            # Applied as replay applies the record (cache/index.py), by the same call: the evictions
            # are the ones every process following the log makes, by construction. One call instead
            # of evictions_for, remove and load: about 0.6 us less a put.
            old, gone = order.load_evicting(key, (offset, length, kbytes), weight)
            live = self._live + length
            if old is not None:
                live -= old[1]
            if gone:  # replay re-derives these from the recorded bounds: nothing to write
                for payload in gone:
                    live -= payload[1]
                self._evictions += len(gone)
            self._newest = key
            self._live = live
            dead = log.end - live
            if dead > self._compact_min and dead > 2 * live:
                self._compact_held()
        finally:
            if begin is not None:
                self._finish()
            lock.release()
        if begin is not None and type(key) in _PLAIN_KEYS:
            self._remember_key(kbytes, key)
        if victims:
            self._notify(victims)

    def __delitem__(self, key: Any) -> None:
        with self._locked():
            self._check_open()
            self._flush_touches()
            kbytes = self._order.peek(key)[2]
            self._log.append(fmt.DELETE, kbytes)
            self._live -= self._order.remove(key)[1]
            self._newest = MISSING
            self._maybe_compact()

    def __contains__(self, key: object) -> bool:
        with self._locked():
            try:
                return key in self._order
            except TypeError:
                return False

    def __len__(self) -> int:
        with self._locked():
            return len(self._order)

    def __iter__(self) -> Iterator[Any]:
        """Iterate a snapshot of the keys from least to most recently used (the eviction order)."""
        with self._locked():
            if self._pending_touches and self._is_shared:
                self._flush_touches()  # shared "fast": the order shown includes this process's reads
            return iter(list(self._order))

    def clear(self) -> None:
        """Remove every entry with one record, then compact the file down to its header."""
        with self._locked():
            self._check_open()
            self._log.append(fmt.CLEAR, b"")
            self._pending_touches.clear()
            self._order.clear()
            self._newest = MISSING
            self._live = self._header_size()
            self._compact_held()

    # -- bounds, compaction, statistics --------------------------------------------------------

    def _read(self, offset: int, length: int, kbytes: bytes) -> bytes:
        self._check_open()
        return self._log.read(offset, length, kbytes)

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Write pending touches, close the file and release the writer lock; safe to call twice."""
        sole.stop_watching(self._watcher, self._stop_watch)  # not holding the lock: it may want it
        with self._lock:
            if self._log.closed:
                return
            try:
                if self._pending_touches:
                    with self._locked():
                        self._flush_touches()
            finally:
                self._log.close()

    @property
    def closed(self) -> bool:
        """True once close() has run."""
        return self._log.closed

    def __enter__(self) -> PersistentLRU:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._log.closed else f"{len(self._order)} entries"
        return f"<PersistentLRU {self.path!r} [{state}, capacity={self._order.capacity}, max_bytes={self._order.max_bytes}]>"
