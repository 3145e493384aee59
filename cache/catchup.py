"""How an open of the shared log catches up with the file: a generation read whole, appends followed.

The mixin SharedRecordLog (cache/sharedlog.py) uses for the replay half of its protocol: `_load`
opens and replays the current generation (checked, as a first open checks it), `_repair_compaction`
finishes a compaction whose process died, `_follow` applies what other processes appended, and the
lock-free look-ahead (`_follow_unlocked`, `follow_published`, `_lock_following`) does that before
and while waiting for the writer lock. The records themselves are applied by cache/follow.py.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from collections.abc import Callable
from typing import Any

from cache import records as fmt
from cache.crc import crc32 as _crc32
from cache.errors import CorruptStoreError, StoreWriteError
from cache.follow import Index, apply_checked, apply_published
from cache.replay import ReplayReport, replay_records
from cache.shared import COMPACTING, END, SNAPSHOT, SharedFile

_WRITING = (1 << 64) - 1  # DIRTY while a writer holds the lock: it may store anywhere past end
_SNAP = struct.Struct("<QQQI")
_read_u64 = struct.Struct("<Q").unpack_from
_flock = fcntl.flock
_LOCK_EX, _LOCK_EX_NB = fcntl.LOCK_EX, fcntl.LOCK_EX | fcntl.LOCK_NB
_LOCK_TRIES = 512  # see _lock_following
_yield = os.sched_yield


class CatchUp:
    """Bring a shared log's open up to date with the file and with what other processes append."""

    # Set up by SharedRecordLog and RecordLog (the open's state, shared with the protocol code).
    path: str
    meta: dict[str, Any]
    first_seq: int
    next_seq: int
    end: int
    report: ReplayReport
    _fd: int
    _mm: Any
    _mapped: int
    _lfd: int
    _shared: SharedFile | None
    _index: Index
    _on_record: Callable[[fmt.Record], None]
    _on_reset: Callable[[], None]

    # -- a whole generation --------------------------------------------------------------------

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
            self._map(os.fstat(self._fd).st_size, self.end)
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
        self._map(os.fstat(self._fd).st_size, end)
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

    # -- following what other processes append ------------------------------------------------

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
            if end <= self._mapped:  # _follow's common case, inline: once an operation per process
                self.end, self.next_seq = apply_published(self._mm, self.end, end, 0, self.next_seq,
                                                          self._index)
            else:
                self._follow(end, next_seq, strict=False)
        return end == self.end

    def follow_published(self) -> bool:
        """Without the writer lock: catch up with what is published; True if this index is current.

        A read that finds its key absent in a current index is a miss every process agrees on: it
        needs no lock (a miss writes nothing). False where the look-ahead is off (not x86-64), or
        when only the lock can tell (a new generation, a torn read of the snapshot).
        """
        return self._look_ahead and self._follow_unlocked(self._smm)

    def _follow(self, stop: int, next_seq: int, strict: bool = True) -> None:
        """Apply the records between this process's end and *stop* (cache/follow.py).

        Not *strict* (a lock-free look ahead of `begin`): stop quietly where the records stop making
        sense; the locked catch-up goes on from there.
        """
        start = self.end
        if stop > self._mapped:
            self._map(os.fstat(self._fd).st_size, stop)
        if stop <= self._mapped:
            pos, seq = apply_published(self._mm, start, stop, 0, self.next_seq, self._index)
        else:
            data = os.pread(self._fd, stop - start, start)
            pos, seq = apply_published(data, 0, len(data), start, self.next_seq, self._index)
            pos += start
        if strict and (pos != stop or seq != next_seq):
            raise CorruptStoreError(self.path, f"published record damaged or cut short (seq {seq} expected)", pos)
        self.end, self.next_seq = pos, seq
