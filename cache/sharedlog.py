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
Records are applied by cache/follow.py.

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
import mmap
import os
import platform
import struct
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cache import records as fmt
from cache import shared
from cache.errors import CorruptStoreError, StoreWriteError
from cache.follow import Index, apply_checked, apply_published
from cache.growth import SharedGrowingMap
from cache.log import Durability, RecordLog
from cache.replay import ReplayReport, replay_records
from cache.shared import COMPACTING, DIRTY, END, REQUEST, SNAPSHOT, SOLE, SharedFile

_WRITING = (1 << 64) - 1  # DIRTY while a writer holds the lock: it may store anywhere past end
_FINISH = struct.Struct("<QQQQQQI").pack_into  # END, NEXT_SEQ, DIRTY, then the snapshot: one store
_SNAP3 = struct.Struct("<QQQ").pack
_read_fields = struct.Struct("<QQQQQ").unpack_from
_set_field = struct.Struct("<Q").pack_into
_read_u64 = struct.Struct("<Q").unpack_from
_SNAP = struct.Struct("<QQQI")
_LOOK_AHEAD = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")  # see _follow_unlocked
_flock = fcntl.flock
_LOCK_EX, _LOCK_UN, _LOCK_EX_NB = fcntl.LOCK_EX, fcntl.LOCK_UN, fcntl.LOCK_EX | fcntl.LOCK_NB
_LOCK_TRIES = 512  # see _lock_following
_yield = os.sched_yield
_crc32 = __import__("zlib").crc32
_OPEN: weakref.WeakSet[SharedRecordLog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A forked child inherits each open's file description, and with it the parent's lock ownership:
    # flock would not exclude parent and child. Give each open in the child locks of its own.
    for log in list(_OPEN):
        if not log.closed and log._shared is not None and log._shared.fd >= 0:
            was_sole, log.sole = log.sole, False  # the parent stays sole until the child asks
            log._shared.reopen_after_fork()
            log._bind()
            if was_sole:
                log.on_shared()


os.register_at_fork(after_in_child=_after_fork_in_child)


class SharedRecordLog(SharedGrowingMap, RecordLog):
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
        self.sole = False
        sh.set(SOLE, 0)
        sh.set(REQUEST, 0)  # a joiner that sets it again now only waits for the next unlock
        sh.share()
        self.finish()  # publishes end, next_seq and the snapshot, then unlocks
        self.on_shared()

    def _load(self, scan: bool) -> None:
        """Open PATH (the current generation) and replay it: whole and checked (*scan*), or up to `end`."""
        self.forget_recent()
        if self._fd >= 0:
            self._unmap()
            os.close(self._fd)
            self._fd = -1
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise StoreWriteError(f"{self.path}: cannot open: {exc.strerror}") from exc
        head = os.pread(self._fd, fmt.min_header_size() + fmt.MAX_META_SIZE, 0)
        try:
            header = fmt.decode_header(head)
        except fmt.FormatError as err:
            raise CorruptStoreError(self.path, err.detail, err.offset) from None
        self.meta, self.first_seq = header.meta, header.first_seq
        sh = self._shared
        assert sh is not None
        if scan:
            # A dead compactor's new file, whole and fsynced but unpublished: read it as a first open.
            self.report.records = 0
            self._replay(header.size, os.fstat(self._fd).st_size, self._on_record, False)
            self._map(os.fstat(self._fd).st_size)
            sh.write(self.first_seq, self.end, self.next_seq, _WRITING)
            return
        gen, end, next_seq, _dirty, _comp = sh.read()
        if header.first_seq != gen:
            raise CorruptStoreError(
                self.path, f"the log's generation {header.first_seq} is not the shared header's {gen}"
            )
        # A whole file read at once (an open, another generation) is checked record by record, as
        # a first open checks it; only what other processes append later is followed unchecked.
        # Read in place from the map (apply_checked): following the bench trace's compacted
        # generation (20,000 records, 42 MiB) 273 -> 165 ms, a joining open of the 127 MiB file before
        # it 1.72 -> 0.92 s (medians of 3 alternated runs).
        self._map(os.fstat(self._fd).st_size)
        if end <= self._mapped:
            good_end, seq, wrong = apply_checked(self._mm, header.size, end, gen, self._index)
        else:
            good_end, seq = replay_records(
                self._fd, self.path, header.size, end, gen, self._on_record, False, ReplayReport()
            )
            wrong = None
        if wrong is not None or good_end != end or seq != next_seq:
            raise CorruptStoreError(
                self.path, f"published record damaged or cut short: {wrong or f'seq {seq} expected'}", good_end
            )
        self.end, self.next_seq = end, next_seq

    def _repair_compaction(self, new_gen: int) -> None:
        """Finish (or undo) the compaction of a process that died between its rename and publication."""
        sh = self._shared
        assert sh is not None
        with open(self.path, "rb") as f:
            head = f.read(fmt.min_header_size() + fmt.MAX_META_SIZE)
        try:
            renamed = fmt.decode_header(head).first_seq == new_gen
        except fmt.FormatError:
            renamed = False
        if renamed:
            self._on_reset()
            self._load(scan=True)
        else:
            try:
                os.unlink(self.path + ".compact")
            except FileNotFoundError:
                pass
            sh.set(COMPACTING, 0)
            if self._fd < 0:
                self._load(scan=False)

    # -- the protocol --------------------------------------------------------------------------

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

    def _lock_following(self, mm: mmap.mmap) -> None:
        """Take the writer lock; while another process holds it, replay what it publishes meanwhile.

        Whatever this process replays while it waits, it need not replay while holding the lock:
        measured with 8 processes, a plain blocking wait left the holder replaying everyone's records
        of the wait inside the critical section. After _LOCK_TRIES tries it blocks in the kernel.
        Fewer tries were measured on 2 cores shared with other work (interleaved runs, median
        ops/s): 16 beat 512 in one series (36k/23k at 4 processes, 21k/14k at 8), 512 beat 8 in a
        later one (46k/33k, 24k/20k; 6 and 5 rounds of 6); the load of the machine decides, so 512
        stays.
        """
        lfd = self._lfd
        for _ in range(_LOCK_TRIES):
            _yield()  # let the holder run (on a busy machine it may be waiting for this CPU)
            if _read_u64(mm, END)[0] != self.end:
                self._follow_unlocked(mm)
            try:
                _flock(lfd, _LOCK_EX_NB)
                return
            except BlockingIOError:
                pass
        _flock(lfd, _LOCK_EX)

    def _follow_unlocked(self, mm: mmap.mmap) -> bool:
        """Replay what is published, before taking the lock; True if this index is then current.

        Published records never change, and the snapshot (gen, end, next_seq) carries a CRC, so a
        read torn by a concurrent finish() is detected and skipped. Only on x86-64, whose stores are
        seen in the order they were made (a record's bytes before the snapshot that publishes them);
        elsewhere the whole catch-up runs under the lock. "Current" means: holding every record the
        snapshot, read during this call, publishes (so every write acknowledged before the call).
        """
        snap = mm[SNAPSHOT : SNAPSHOT + 28]
        gen, end, next_seq, crc = _SNAP.unpack(snap)
        if gen != self.first_seq or crc != _crc32(snap[:24]):
            return False
        if end > self.end:
            self._follow(end, next_seq, strict=False)
        return end == self.end

    def follow_published(self) -> bool:
        """Without the writer lock: catch up with what is published; True if this index is current.

        A read that finds its key absent in a current index is a miss every process agrees on: it
        needs no lock (a miss writes nothing). False where the look-ahead is off (not x86-64), or
        when only the lock can tell (a new generation, a torn read of the snapshot).
        """
        return self._look_ahead and self._follow_unlocked(self._smm)

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
        if self._flush_header:
            self._smm.flush()  # the published end survives power loss too
        _flock(self._lfd, _LOCK_UN)

    def _follow(self, stop: int, next_seq: int, strict: bool = True) -> None:
        """Apply the records between this process's end and *stop* (cache/follow.py).

        Not *strict* (a lock-free look ahead of `begin`): stop quietly where the records stop making
        sense; the locked catch-up goes on from there.
        """
        start = self.end
        if stop > self._mapped:
            self._map(os.fstat(self._fd).st_size)
        if stop <= self._mapped:
            pos, seq = apply_published(self._mm, start, stop, 0, self.next_seq, self._index)
        else:
            data = os.pread(self._fd, stop - start, start)
            pos, seq = apply_published(data, 0, len(data), start, self.next_seq, self._index)
            pos += start
        if strict and (pos != stop or seq != next_seq):
            raise CorruptStoreError(self.path, f"published record damaged or cut short (seq {seq} expected)", pos)
        self.end, self.next_seq = pos, seq

    # -- compaction and closing ----------------------------------------------------------------

    def rewrite(self, items: Iterable[tuple[int, bytes, bytes]]) -> list[tuple[int, int]]:
        """Compact under the writer lock (held by the caller) and publish the new generation."""
        with self._new_generation():
            return super().rewrite(items)

    def copy_live(
        self, bounds_key: bytes, locations: list[tuple[int, int, bytes]]
    ) -> list[tuple[int, int, bytes]]:
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

    def lock_key(self, key: bytes) -> None:
        """Block until this open holds the cross-process lock of *key*."""
        assert self._shared is not None
        self._shared.lock_key(key)

    def unlock_key(self, key: bytes) -> None:
        """Release the cross-process lock of *key*."""
        if self._shared is not None and self._shared.fd >= 0:
            self._shared.unlock_key(key)
