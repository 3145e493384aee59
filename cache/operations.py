"""How PersistentLRU's operations take their locks: the thread lock, and the writer lock of a shared file.

A mixin of PersistentLRU (the attributes are PersistentLRU's). A shared open runs each operation
between the shared log's begin() and finish() (cache/sharedlog.py), except what needs no writer
lock: a get's miss in an index caught up with what is published, and the read of a hit's value.
`key_lock` is the cross-process lock memoize uses to compute a missing value once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from cache.encoding import Serializer, encode_key
from cache.errors import CacheError, SerializationError
from cache.index import MISSING
from cache.sharedlog import SharedRecordLog

_LOCK_SPINS = 20


class Operations:
    """The locking of PersistentLRU's operations (a mixin)."""

    path: str
    _lock: threading.RLock
    _log: Any
    _begin: Callable[[], bool] | None
    _finish: Callable[[], None]
    _follow_published: Callable[[], bool]
    _newest: Any
    _lookup: Callable[[Any], Any]
    _touch: Callable[[bytes], None] | None
    _move_to_end: Callable[[Any], None]
    _log_read: Callable[[int, int, bytes], bytes]
    _recent_get: Callable[[int], Any]
    _loads: Callable[[bytes], Any]
    _serializer: Serializer
    _hits: int
    _misses: int

    def _load_error(self, exc: Exception) -> SerializationError:
        """The SerializationError for the serializer's failure *exc* to load a value."""
        return SerializationError(f"{self.path}: cannot deserialize value with {self._serializer.name}: {exc!r}")

    def _check_open(self) -> None:
        if self._log.closed:
            raise CacheError(f"{self.path}: the cache is closed")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the thread lock and, when shared, the writer lock with the index caught up."""
        with self._lock:
            if self._begin is None:
                yield
                return
            self._check_open()
            if self._begin():
                self._newest = MISSING
            try:
                yield
            finally:
                self._finish()

    def _get_shared(self, key: Any, default: Any) -> Any:
        """get() under the per-operation protocol of a shared file (the thread lock held).

        The writer lock covers only what orders this read among every process's operations: the
        lookup and the touch. A miss found in an index caught up with what is published needs no
        writer lock at all (it writes nothing, and every write acknowledged before it began is in
        the index); the value of a hit is read, verified and deserialized after the lock is
        released (records never change once published, and this process's map of the file only
        changes under its thread lock).
        """
        log = self._log
        if log.closed:
            raise CacheError(f"{self.path}: the cache is closed")
        try:
            entry = self._lookup(key)
        except TypeError:
            encode_key(key)  # raises the clear TypeError for an unsupported key type
            raise
        if entry is None:
            # Only a miss needs the published snapshot first (a hit is decided under the lock,
            # after begin() caught up): saves the snapshot's read and CRC on most gets.
            seen = log.end
            current = self._follow_published()
            if log.end != seen:
                self._newest = MISSING
            if current and self._lookup(key) is None:
                self._misses += 1
                return default
        if self._begin():  # the writer lock, and the other processes' records replayed
            self._newest = MISSING
        try:
            entry = self._lookup(key)
            if entry is None:
                self._misses += 1
                return default
            offset, length, kbytes = entry[0]
            touch = self._touch
            if touch is not None and key != self._newest:
                touch(kbytes)  # acknowledged in the log before it counts in memory
                self._move_to_end(key)
                self._newest = key
        finally:
            self._finish()
        view = self._recent_get(offset)  # the log's remembered values first, as get() does
        if view is None:
            view = self._log_read(offset, length, kbytes)
        try:
            value = self._loads(view)
        except Exception as exc:
            raise self._load_error(exc) from exc
        self._hits += 1
        return value

    @contextlib.contextmanager
    def key_lock(self, key: Any) -> Iterator[None]:
        """Hold a lock named by *key* across every process sharing the file (not across threads).

        Released by the kernel if this process dies. memoize uses it so that one process computes
        a missing value while the others wait. A single owner (exclusive=True) needs no lock.
        """
        kbytes = encode_key(key)
        log = self._log
        if not isinstance(log, SharedRecordLog):
            yield
            return
        self._check_open()
        log.lock_key(kbytes)
        try:
            yield
        finally:
            log.unlock_key(kbytes)

    def _wait_for_lock(self) -> None:
        # Contended: give the GIL away a few times before sleeping on the lock. A thread asleep on
        # the lock turns every release into a wake-up of another CPU; the holder (usually between
        # two bytecodes of a short critical section) lets go within a GIL switch. bench/cache's
        # 4-thread run measured about 15% more throughput this way.
        lock = self._lock
        for _ in range(_LOCK_SPINS):
            time.sleep(0)
            if lock.acquire(False):
                return
        lock.acquire()
