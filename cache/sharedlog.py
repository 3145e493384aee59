"""The shared record log: one log file, any number of processes, through the protocol of cache/shared.py.

Every operation of the owner (PersistentLRU) runs between `begin()` and `finish()`:

    begin    take the writer lock; follow a compaction (a new generation: reopen the file, replay it
             whole, through `on_reset` then `on_record`), or replay the records other processes
             appended since this one last looked (`on_record`, in order); zero the garbage of a writer
             that died mid-append; mark the header "a writer may be storing past end".
    finish   publish the new end and next sequence number, then release the lock.

So each process's in-memory index is always the one a single process doing every process's operations
in the same order would have: the LRU order and the evictions (a pure function of the order and the
recorded bounds) are exact across processes. `follow_published()` is the lock-free half: catch up
with the published snapshot, and say whether the index is then current (a get's miss needs no more).
Records are applied by cache/follow.py; the replay half (loading a generation, following
appends, the lock-free look-ahead) is cache/catchup.py.

Appends, reads and the format are RecordLog's. What differs: the first open (nobody else present)
recovers the file from its bytes and writes the header; later opens trust the header and replay up to
its end. The file is only ever grown, under the lock (no helper thread: it would race the next
writer), and mapped again rather than resized (mmap.resize truncates, which would SIGBUS the others);
it is cut back only by the last close. A compaction marks the header before its rename and publishes
the new generation after it, so a compactor killed in between is finished by the next writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import struct
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cache import records as fmt
from cache import shared
from cache.catchup import _LOCK_TRIES, _WRITING, CatchUp
from cache.crc import crc32 as _crc32
from cache.follow import Index, apply_published
from cache.growth import SharedGrowingMap
from cache.log import Durability, RecordLog
from cache.shared import COMPACTING, DIRTY, END, REQUEST, SOLE, SharedFile

_FINISH = struct.Struct("<QQQQQQI").pack_into  # END, NEXT_SEQ, DIRTY, then the snapshot: one store
_SNAP3 = struct.Struct("<QQQ").pack
_read_fields = struct.Struct("<QQQQQ").unpack_from
_set_field = struct.Struct("<Q").pack_into
_read_u64 = struct.Struct("<Q").unpack_from
_LOOK_AHEAD = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")  # see _follow_unlocked (cache/catchup.py)
_flock = fcntl.flock
_LOCK_EX, _LOCK_UN, _LOCK_EX_NB = fcntl.LOCK_EX, fcntl.LOCK_UN, fcntl.LOCK_EX | fcntl.LOCK_NB
_OPEN: weakref.WeakSet[SharedRecordLog] = weakref.WeakSet()

try:  # begin, finish and follow_published compiled (setup.py); the methods below are their reference
    from cache import _cshared
except ImportError:  # pragma: no cover - built by every install with a C compiler
    _cshared = None
else:
    _cshared.configure(apply_published, _LOCK_TRIES)


def _after_fork_in_child() -> None:
    # A forked child inherits each open's file description, and with it the parent's lock ownership:
    # flock would not exclude parent and child. Give each open in the child locks of its own.
    for log in list(_OPEN):
        if not log.closed and log._shared is not None and log._shared.fd >= 0:
            log.sole = False  # the parent stays sole until the child asks
            log._prefill_thread = None  # the parent's growth helper (cache/growth.py), not ours
            log._shared.reopen_after_fork()
            log._bind()
            log.on_shared()  # the owner takes the lock per operation, through this child's protocol


os.register_at_fork(after_in_child=_after_fork_in_child)


class SharedRecordLog(CatchUp, SharedGrowingMap, RecordLog):
    """A RecordLog that many processes (and many opens in one) share; see the module docstring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        meta: dict[str, Any],
        on_record: Callable[[fmt.Record], None],
        index: Index,
        on_reset: Callable[[], None],
        durability: Durability = "process",
        salvage: bool = False,
        reserve: Callable[[int, int, int], None] = os.posix_fallocate,
    ) -> None:
        """Open (or create) the shared log at *path*.

        *index* is what following other processes applies their records to (cache/follow.py);
        *on_reset* forgets the index before a full replay.
        """
        path = os.fspath(path)
        # Looked up through the module at each open: the seam tests use to fake a filesystem.
        shared.check_filesystem(path, shared.filesystem_type(os.path.dirname(os.path.abspath(path))))
        self._on_record = on_record
        self._index = index
        self._on_reset = on_reset
        self._shared: SharedFile | None = None
        self.sole = False  # True while this open holds the file alone (see cache/shared.py)
        self.on_shared: Callable[[], None] = lambda: None  # the owner's switch to per-op locking
        super().__init__(path, meta=meta, on_record=on_record, durability=durability, salvage=salvage,
                         reserve=reserve)
        _OPEN.add(self)

    # -- opening -------------------------------------------------------------------------------

    def _lock(self) -> None:
        self._shared = SharedFile(self.path)
        self._bind()

    def _bind(self) -> None:
        """Keep the shared file's descriptor and map at hand for the hot path (again after a fork)."""
        sh = self._shared
        assert sh is not None and sh.mm is not None
        self._lfd, self._smm = sh.fd, sh.mm
        self._flush_header = self.durability == "fsync"
        self._look_ahead = _LOOK_AHEAD
        # Made here, not when the owner needs it: leave_sole() must not fail after it let go.
        self._protocol = (self.begin, self.finish, self.follow_published)
        if _cshared is not None:
            try:
                compiled = _cshared.Protocol(self, sh.lock_path)
            except OSError:  # no descriptor or map left for it: the Python methods do the same
                pass
            else:
                self._protocol = (compiled.begin, compiled.finish, compiled.follow_published)

    def _open(self, meta: dict[str, Any], on_record: Callable[[fmt.Record], None], salvage: bool) -> None:
        sh = self._shared
        assert sh is not None
        sh.lock()
        try:
            alone = sh.alone()
            if alone or not sh.initialised() or sh.get(SOLE):
                # Nobody has the file open (or nobody got to set it up yet, or a sole open died and
                # left the header behind its log): recover it from its own bytes, cutting a torn
                # tail, as a single process does, then publish what was found.
                super()._open(meta, on_record, salvage)
                sh.write(self.first_seq, self.end, self.next_seq, self.end)
                sh.set(SOLE, 0)
                if alone:
                    # Stay the sole open: keep the lock and the presence (see cache/shared.py).
                    sh.set(SOLE, 1)
                    self.sole = True
                    return
            else:
                gen, *_rest, compacting = sh.read()
                self.meta = meta
                if compacting:
                    self._repair_compaction(compacting)
                else:
                    self._load(scan=False)
        finally:
            if not self.sole:
                sh.unlock()

    def join_requested(self) -> bool:
        """True if a sole open is asked to let another open in (read without a lock: a hint)."""
        sh = self._shared
        return sh is not None and sh.mm is not None and sh.get(REQUEST) != 0

    def leave_sole(self) -> None:
        """Stop being the sole open: publish the header, share presence, release the lock.

        The owner calls this holding its thread lock; from then on every operation runs between
        begin() and finish().
        """
        sh = self._shared
        assert sh is not None and self.sole
        self._wait_prefill()  # the sole open's growth helper (cache/growth.py): done before others write
        if self.durability == "fsync":
            os.fsync(self._fd)  # the helper's step: shared opens map it without growing (or syncing) it
        self.sole = False
        sh.set(SOLE, 0)
        sh.set(REQUEST, 0)  # a joiner that sets it again now only waits for the next unlock
        sh.share()
        self.finish()  # publishes end, next_seq and the snapshot, then unlocks
        self.on_shared()

    # -- the protocol --------------------------------------------------------------------------

    def protocol(self) -> tuple[Callable[[], bool], Callable[[], None], Callable[[], bool]]:
        """This open's begin, finish and follow_published: cache/_cshared.c's where it was built.

        The compiled ones do what the methods below do, step for step, and call the same methods
        for everything but the common case (tests/cache/test_cshared.py checks them against these).
        `python -m bench.cache.crc_speed play --opens 2` under callgrind: see cache/_cshared.c.
        """
        return self._protocol

    def begin(self) -> bool:
        """Take the writer lock and catch up with the file; return True if the index changed."""
        # The hot path of every operation: two stores and a load in the shared page, one syscall.
        mm = self._smm
        seen = self.end  # records replayed ahead of the lock change the index too
        if not self._look_ahead:
            _flock(self._lfd, _LOCK_EX)
        else:
            if _read_u64(mm, END)[0] != self.end:
                self._follow_unlocked(mm)
            try:
                _flock(self._lfd, _LOCK_EX_NB)
            except BlockingIOError:
                self._lock_following(mm)
        gen, compacting, end, next_seq, dirty = _read_fields(mm, 8)
        if end == self.end and dirty == end and gen == self.first_seq and not compacting:
            _set_field(mm, DIRTY, _WRITING)
            return end != seen
        return self._catch_up(gen, end, next_seq, dirty, compacting)

    def _catch_up(self, gen: int, end: int, next_seq: int, dirty: int, compacting: int) -> bool:
        sh = self._shared
        assert sh is not None
        try:
            changed = False
            if compacting:
                self._repair_compaction(compacting)
                gen, end, next_seq, dirty, compacting = sh.read()
                changed = True
            if gen != self.first_seq:
                self._on_reset()
                self._load(scan=False)
                changed = True
            elif end != self.end:
                self._follow(end, next_seq)
                changed = True
            if dirty != end:
                self._zero_garbage(end)
            sh.set(DIRTY, _WRITING)
            return changed
        except BaseException:
            sh.unlock()
            raise

    def finish(self) -> None:
        """Publish the end of this process's appends and release the writer lock."""
        end, next_seq, gen = self.end, self.next_seq, self.first_seq
        _FINISH(self._smm, END, end, next_seq, end, gen, end, next_seq, _crc32(_SNAP3(gen, end, next_seq)))
        try:
            if self._flush_header:
                self._smm.flush()  # the published end survives power loss too
        finally:
            _flock(self._lfd, _LOCK_UN)  # a failed flush must not keep the others waiting

    # -- compaction and closing ----------------------------------------------------------------

    def rewrite(self, items: Iterable[tuple[int, bytes, bytes]]) -> list[tuple[int, int]]:
        """Compact under the writer lock (held by the caller) and publish the new generation."""
        with self._new_generation():
            return super().rewrite(items)

    def copy_live(self, bounds_key: bytes, locations: list[Any]) -> list[int]:
        """Compact under the writer lock (held by the caller) and publish the new generation."""
        with self._new_generation():
            return super().copy_live(bounds_key, locations)

    @contextlib.contextmanager
    def _new_generation(self) -> Iterator[None]:
        """Mark the shared header before a compaction's rename, publish the new file after it."""
        sh = self._shared
        assert sh is not None
        sh.set(COMPACTING, self.next_seq)  # the new file's first_seq: its generation
        try:
            yield
        except BaseException:
            if not os.path.exists(self.path + ".compact"):
                sh.set(COMPACTING, 0)  # nothing was renamed: the old generation stands
            raise
        sh.write(self.first_seq, self.end, self.next_seq, _WRITING)

    def close(self) -> None:
        """Close; the last process to close cuts the preallocated tail and retires the header."""
        if self.closed:
            return
        self.closed = True
        self.forget_recent()
        self._wait_prefill()
        sh = self._shared
        try:
            if sh is not None and sh.fd >= 0 and self._fd >= 0 and sh.mm is not None:
                sh.lock()
                try:
                    gen, end, *_rest = sh.read()
                    if self.sole:
                        end = self.end  # a sole open does not keep the header's end up
                    if (sh.initialised() and gen == getattr(self, "first_seq", None) and sh.alone()
                            and not self._broken):
                        self._unmap()
                        os.ftruncate(self._fd, end)
                        if self.durability == "fsync":
                            os.fsync(self._fd)
                        sh.mm[:8] = bytes(8)  # the next first open recovers from the file itself
                finally:
                    sh.unlock()
        finally:
            self._unmap()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if sh is not None:
                sh.close()
            self._lfd = -1  # a late begin() or finish() then fails before it touches the header

    def lock_key(self, key: bytes) -> None:
        """Block until this open holds the cross-process lock of *key*."""
        assert self._shared is not None
        self._shared.lock_key(key)

    def unlock_key(self, key: bytes) -> None:
        """Release the cross-process lock of *key*."""
        if self._shared is not None and self._shared.fd >= 0:
            self._shared.unlock_key(key)
