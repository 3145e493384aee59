"""The head stage of small files: same-size files over `HEAD_FROM` bytes are split by their first
`HEAD` bytes before any is read whole (a mixin of the pipeline's run, as dedup.smallfiles).

On the pyenv tree (97,140 small candidates) reading every small candidate whole read 257 MiB of
files no other file matched; same-size files that differ mostly differ at once (.pyc headers, ELF
headers, license texts of other lengths), so a 64-byte head rules out most of them for 1/100 of
the bytes (bench/RESULTS.md, dedup-real). Heads read from the page cache are read in this thread;
when the first one is not cached, every head is read by the I/O pool, in batches, one open
descriptor per job. The outcome does not depend on threads or on the page cache.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from dedup import hashing
from dedup.grouping import CandidateGroup
from dedup.jobs import BATCH_FILES, IO_DEPTH, batches, bounded_map
from dedup.model import FileProblem
from dedup.walk import describe_os_error

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from dedup.table import FileTable

HEAD = 64  # bytes read first (one page of the disk either way; the rest is rarely needed)
HEAD_FROM = 1024  # files of at most this size are read whole at once: a head saves too little


def read_head(path: str, nowait: bool = False) -> bytes:
    """Return the first `HEAD` bytes of a file of more than `HEAD` bytes (raise OSError, or
    `FileChangedError` if it has fewer now). With *nowait*, raise `BlockingIOError` if the page
    cache does not hold them."""
    try:
        fd = os.open(path, hashing._OPEN_FLAGS)
    except PermissionError:
        fd = os.open(path, hashing._OPEN_FLAGS & ~hashing._NOATIME)
    try:
        if nowait and hashing._RWF_NOWAIT:
            buf = bytearray(HEAD)
            try:
                got = os.preadv(fd, (buf,), 0, hashing._RWF_NOWAIT)
            except OSError as exc:
                if exc.errno not in hashing._NOWAIT_REFUSED:
                    raise
                got = -1  # tmpfs and others refuse RWF_NOWAIT: read blocking, below
            if got == HEAD:
                return bytes(buf)
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


class Heads:
    """`_split_heads` for the pipeline's run; it provides the attributes declared here."""

    io_pool: Executor | None
    opener: hashing.Opener
    io_threads: int
    table: FileTable
    bytes_read: int
    problem: Callable[[FileProblem], None]
    size_of: Callable[[CandidateGroup | array], int]

    def _split_heads(self, groups: list[CandidateGroup | array]) -> list[CandidateGroup | array]:
        """Split groups of files over `HEAD_FROM` bytes by their first `HEAD` bytes (groups of
        smaller files pass as they are); keep the groups' order, forms and member order."""
        if self.opener is not hashing._DEFAULT_OPENER:
            return groups  # a test's opener sees every read: the whole reads alone, as before
        size_of = self.size_of
        wanted = [g for g in groups if size_of(g) > HEAD_FROM]
        if not wanted:
            return groups
        table_path = self.table.path

        def paths_of(group: CandidateGroup | array) -> list[str]:
            if type(group) is array:
                return [table_path(i) for i in group]
            return [record[0] for record in group]

        heads: Iterable[bytes | FileProblem]
        first = paths_of(wanted[0])[0]
        try:
            probe: bytes | FileProblem | None = read_head(first, nowait=True)
        except BlockingIOError:
            probe = None
        except OSError as exc:
            probe = FileProblem(first, describe_os_error(exc))
        if probe is None and self.io_pool is not None:  # not cached: heads from the I/O pool
            every = [p for g in wanted for p in paths_of(g)]
            heads = (h for batch in bounded_map(self.io_pool, _heads_job,
                                                batches(every, BATCH_FILES),
                                                self.io_threads * IO_DEPTH) for h in batch)
        else:
            heads = (h for g in wanted for h in _heads_job(paths_of(g)))
        heads = iter(heads)
        result: list[CandidateGroup | array] = []
        for group in groups:
            if size_of(group) <= HEAD_FROM:
                result.append(group)
                continue
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
                    result.append(array("I", cls) if type(group) is array else cls)
        return result
