"""The head stage of small files: same-size files over `HEAD_FROM` bytes are split by their first
`HEAD` bytes before any is read whole (a mixin of the pipeline's run, as dedup.smallfiles).

On the pyenv tree (97,140 small candidates) reading every small candidate whole read 257 MiB of
files no other file matched; same-size files that differ mostly differ at once (.pyc headers, ELF
headers, license texts of other lengths), so a 64-byte head rules out most of them for 1/100 of
the bytes (bench/RESULTS.md, dedup-real). While the page cache serves the reads, each group is
finished in this thread, every file opened once; from the first head it does not hold on, the
heads of the other groups are read by the I/O pool, in batches, one open descriptor per job, and
the files sharing a head go to the whole-read stage (dedup.smallfiles). The outcome, bytes_read
included, does not depend on threads or on the page cache.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING

from dedup import hashing
from dedup.grouping import CandidateGroup
from dedup.jobs import BATCH_FILES, IO_DEPTH, bounded_map
from dedup.model import FileProblem
from dedup.walk import describe_os_error

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from dedup.options import ScanOptions
    from dedup.table import FileTable

HEAD = 64  # bytes read first (one page of the disk either way; the rest is rarely needed)
HEAD_FROM = 1024  # files of at most this size are read whole at once: a head saves too little
KEEP_OPEN = 64  # files of one group open at once in the warm path (a bigger group: two passes)


def _open(path: str) -> int:
    try:
        return os.open(path, hashing._OPEN_FLAGS)
    except PermissionError:
        return os.open(path, hashing._OPEN_FLAGS & ~hashing._NOATIME)


def read_head(path: str) -> bytes:
    """Return the first `HEAD` bytes of a file of more than `HEAD` bytes (blocking); raise
    OSError, or `FileChangedError` if it has fewer now."""
    fd = _open(path)
    try:
        data = os.pread(fd, HEAD, 0)
    finally:
        os.close(fd)
    if len(data) != HEAD:
        raise hashing.FileChangedError(f"now {len(data)} bytes or fewer")
    return data


def _heads_job(paths: list[str]) -> list[bytes | FileProblem]:
    out: list[bytes | FileProblem] = []
    for path in paths:
        try:
            out.append(read_head(path))
        except OSError as exc:
            out.append(FileProblem(path, describe_os_error(exc)))
    return out


class _NotCached(Exception):
    """A read the page cache could not serve at once (RWF_NOWAIT)."""


def _pread_cached(fd: int, size: int, offset: int) -> bytes:
    """Read up to *size* bytes at *offset* if the page cache holds them, else raise `_NotCached`;
    file systems refusing RWF_NOWAIT are read blocking."""
    buf = bytearray(size)
    if _refused[0] or not hashing._RWF_NOWAIT:
        return os.pread(fd, size, offset)
    try:
        got = os.preadv(fd, (buf,), offset, hashing._RWF_NOWAIT)
    except BlockingIOError:
        raise _NotCached from None
    except OSError as exc:
        if exc.errno not in hashing._NOWAIT_REFUSED:
            raise
        _refused[0] = True
        return os.pread(fd, size, offset)
    del buf[got:]
    return bytes(buf) if got <= HEAD else buf  # type: ignore[return-value]


_refused = [False]  # this file system refuses RWF_NOWAIT (tmpfs): no more tries


def _whole(fd: int, size: int) -> bytes:
    """The whole content of an open small file (cached or not), one byte past the end read to
    catch growth; raise `FileChangedError` when the size is not *size* any more."""
    try:
        data = _pread_cached(fd, size + 1, 0)
        if len(data) == size and size % hashing._PAGE == 0:
            data += os.pread(fd, 1, size)  # the byte past the end may be on an uncached page
    except _NotCached:
        data = b""
    while len(data) < size:  # partly cached (or shrank): the rest, blocking (not read twice)
        more = os.pread(fd, size + 1 - len(data), len(data))
        if not more:
            break
        data += more
    if len(data) != size:
        raise hashing.FileChangedError(hashing._changed(size, len(data)))
    return data


class Heads:
    """`_split_heads` for the pipeline's run; it provides the attributes declared here."""

    io_pool: Executor | None
    opener: hashing.Opener
    io_threads: int
    table: FileTable
    bytes_read: int
    cold: bool | None
    options: ScanOptions
    problem: Callable[[FileProblem], None]
    size_of: Callable[[CandidateGroup | array], int]
    _finish_small: Callable[..., None]

    def _split_heads(self, groups: list[CandidateGroup | array]
                     ) -> tuple[list[CandidateGroup | array], list[CandidateGroup | array]]:
        """Split groups of files over `HEAD_FROM` bytes by their first `HEAD` bytes; return
        (classes already proven, groups still to read whole). Groups of smaller files pass as
        they are. With a warm page cache, a group of at most `KEEP_OPEN` files is finished here:
        each file opened once, its head read, and only the files whose head another shares read
        whole from the same descriptor."""
        if self.opener is not hashing._DEFAULT_OPENER:
            return [], groups  # a test's opener sees every read: the whole reads alone, as before
        size_of = self.size_of
        table_path = self.table.path

        def paths_of(group: CandidateGroup | array) -> list[str]:
            if type(group) is array:
                return [table_path(i) for i in group]
            return [record[0] for record in group]

        wanted: list[CandidateGroup | array] = []
        rest: list[CandidateGroup | array] = []
        for group in groups:
            (wanted if size_of(group) > HEAD_FROM else rest).append(group)
        if not wanted:
            return [], groups
        done: list[CandidateGroup | array] = []
        later: list[CandidateGroup | array] = []
        warm = self.cold is not True
        for group in wanted:
            if warm and len(group) <= KEEP_OPEN:
                warm = self._finish_warm(group, paths_of(group), done)
            else:
                later.append(group)
        if not later:
            return done, rest
        heads: Iterable[bytes | FileProblem]
        if self.io_pool is not None and not warm:  # not cached: heads from the I/O pool
            # Paths are built batch by batch, as jobs are submitted, not all at once.
            every = (p for g in later for p in paths_of(g))
            jobs = iter(lambda: list(islice(every, BATCH_FILES)), [])
            heads = (h for batch in bounded_map(self.io_pool, _heads_job, jobs,
                                                self.io_threads * IO_DEPTH) for h in batch)
        else:
            heads = (h for g in later for h in _heads_job(paths_of(g)))
        heads = iter(heads)
        for group in later:
            classes: dict[bytes, list] = {}
            for member in group:
                head = next(heads)
                if type(head) is not bytes:
                    self.problem(head)  # type: ignore[arg-type]
                    continue
                self.bytes_read += HEAD
                same = classes.get(head)
                if same is None:
                    classes[head] = [member]
                else:
                    same.append(member)
            for cls in classes.values():
                if len(cls) > 1:
                    rest.append(array("I", cls) if type(group) is array else cls)
        return done, rest

    def _finish_warm(self, group: CandidateGroup | array, paths: list[str],
                     done: list[CandidateGroup | array]) -> bool:
        """Finish one group in this thread (heads, then whole reads of the files sharing one);
        return False when a read was not served by the page cache (the rest go to the pool)."""
        size = self.size_of(group)
        digest = hashing.ONE_SHOT[self.options.hash_name]
        verify = self.options.verify
        fds = [-1] * len(paths)
        slots: list = [None] * len(paths)
        cached = True
        try:
            classes: dict[bytes, list[int]] = {}
            for k, path in enumerate(paths):
                try:
                    fd = fds[k] = _open(path)
                    try:
                        head = _pread_cached(fd, HEAD, 0)
                    except _NotCached:
                        cached = False
                        head = os.pread(fd, HEAD, 0)
                    if len(head) != HEAD:
                        raise hashing.FileChangedError(f"now {len(head)} bytes or fewer")
                except OSError as exc:
                    slots[k] = FileProblem(path, describe_os_error(exc))
                    continue
                self.bytes_read += HEAD
                classes.setdefault(head, []).append(k)
            keep: list[int] = []
            for ks in classes.values():
                if len(ks) > 1:
                    keep.extend(ks)
            keep.sort()
            for k in keep:
                try:
                    data = _whole(fds[k], size)
                except OSError as exc:
                    slots[k] = FileProblem(paths[k], describe_os_error(exc))
                    continue
                slots[k] = (digest(data), data if verify else None)
        finally:
            for fd in fds:
                if fd >= 0:
                    os.close(fd)
        members = [group[k] for k, slot in enumerate(slots) if slot is not None]
        if type(group) is array:
            members = array("I", members)  # type: ignore[assignment]
        self._finish_small(members, size, [slot for slot in slots if slot is not None], done)
        if not cached:
            self.cold = True
        elif self.cold is None:
            self.cold = False
        return cached
