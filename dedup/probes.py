"""Middle probes of small files: files over `PROBE_FROM` bytes whose heads match (dedup.heads)
are told apart by `PROBE` bytes from their middle before they are read whole.

/usr/lib has 6,374 small files sharing a head with another of their size (.py files under one
licence header, ELF headers), half of them not duplicates; reading them whole was 24.6 MiB of
the run's 33 MiB beyond the groups' bytes. A probe of 64 bytes at the middle (which beat the
tail, 64 bytes or a page, and a second page from the start) rules out most: 3,880 probes save
7.9 MiB. Warm, the head stage probes through the descriptors it holds (`probe_spans`);
otherwise the probes are jobs of their own (`split_by_probes`), so bytes_read does not depend on
the page cache.

Files over `PREFIX` bytes sharing a head (and a middle) are then told apart by the rest of their
first `PREFIX` bytes, and only the files sharing those read the rest: same-size files that differ
mostly differ early. /usr/lib has 2,165 small files over 1 KiB sharing head (and middle) with
another of their size, but unique; of the 1,191 over 2 KiB, 991 differ from all the others
before byte 1024 (bench/dedup/bytesplit.py). Read whole they were 16.4 MiB of the run's 26.7 MiB
beyond the groups' bytes; a prefix, then the rest, 4.7 MiB. No byte is read twice: the rest
starts at `PREFIX` (`read_rest`, `read_rests`), and a class of the rest stage is proven by its
head and prefix (compared as bytes) and its rest's digest (or bytes, with --verify).

Each span is one more read of each duplicate: the pyenv tree (mostly duplicates) reads 36,000
prefixes. A second span (bytes 1 to 8 KiB, before the rest) saved 0.7 MiB more on /usr/lib for
14,500 more reads on the pyenv tree (+14,400 syscalls by strace -c; +1.8% CPU, within the noise,
measured in-process): dropped.
"""

from __future__ import annotations

import os
from array import array
from itertools import islice

from dedup import hashing
from dedup.jobs import BATCH_FILES, bounded_map
from dedup.model import FileProblem
from dedup.walk import describe_os_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    # Not at run time: concurrent.futures imports logging, 7.6 ms of every command-line run
    # (python -X importtime), for a name only the annotations use.
    from concurrent.futures import Executor

    Preadv = Callable[[int, tuple[bytearray], int, int], int]
    Span = Callable[[int], tuple[int, int]]

PROBE = 64
PROBE_FROM = 2048  # at most this size, a probe saves less than its read costs
HEAD = 64  # dedup.heads.HEAD (defined here: dedup.heads imports this module)
PREFIX = 1024  # files over this size sharing head (and middle) compare their first PREFIX bytes


def middle(size: int) -> tuple[int, int]:
    """The middle probe of a file of *size* bytes: (offset, length)."""
    return size // 2, PROBE


def prefix(size: int) -> tuple[int, int]:
    """The rest of the first `PREFIX` bytes, after the head: (offset, length)."""
    return HEAD, PREFIX - HEAD


def spans(size: int) -> tuple[Span, ...]:
    """The spans read, in order, of files of *size* bytes sharing a head, before the rest
    (from `rest_from`)."""
    if size > PROBE_FROM:
        return (middle, prefix)
    return (prefix,) if size > PREFIX else ()


def rest_from(size: int) -> int:
    """Where the last read of files of *size* bytes sharing all their `spans` starts."""
    return PREFIX if size > PREFIX else 0


def probe_spans(fds: list[int], paths: list[str], shared: Iterable[list[int]], span: tuple[int, int],
                nowait: int, failed: list[FileProblem], preadv: Preadv,
                refused: Callable[[OSError], int], into: memoryview | None = None
                ) -> tuple[list[list[int]], int, int, bool]:
    """Read *span* (offset, length) of each open file of *shared* (lists of positions sharing
    what was read so far) through *preadv* (page cache only while *nowait*; *refused* maps its
    refusal to new flags), into *into* if given (at least the span's length); return (the lists
    of positions whose span another shares, two or more each, in order; bytes read; the flags
    to read with from now on; whether the page cache served every read)."""
    at, length = span
    buf = bytearray(length) if into is None else into[:length]
    bufs = (buf,)
    keep: list[list[int]] = []
    read = 0
    cached = True
    for ks in shared:
        probes: dict[bytes, list[int]] = {}
        for k in ks:
            try:
                try:
                    got = preadv(fds[k], bufs, at, nowait)
                except BlockingIOError:
                    cached = False
                    got = preadv(fds[k], bufs, at, 0)
                except OSError as exc:
                    nowait = refused(exc)
                    got = preadv(fds[k], bufs, at, 0)
                if 0 < got < length and nowait:
                    # A span across two pages, the first cached and not the second: a
                    # page-cache-only read stops at the gap (it is not a shorter file). The rest
                    # is read blocking, not read twice.
                    cached = False
                    got += preadv(fds[k], (memoryview(buf)[got:],), at + got, 0)
                if got != length:
                    raise hashing.FileChangedError(f"now {at + got} bytes or fewer")
            except OSError as exc:
                failed.append(FileProblem(paths[k], describe_os_error(exc)))
                continue
            read += length
            probes.setdefault(bytes(buf), []).append(k)
        keep += (same for same in probes.values() if len(same) > 1)
    return keep, read, nowait, cached


def read_span(path: str, span: tuple[int, int], opener: Callable[[str], int]) -> bytes:
    """Return the *span* (offset, length) of a file (blocking); raise OSError, or
    `FileChangedError` if it is shorter now."""
    at, length = span
    fd = opener(path)
    try:
        data = _pread_full(fd, length, at, length)
    finally:
        os.close(fd)
    if len(data) != length:
        raise hashing.FileChangedError(f"now {at + len(data)} bytes or fewer")
    return data


def _pread_full(fd: int, n: int, at: int, enough: int) -> bytes:
    """pread up to *n* bytes at *at*, again after a short read (FUSE, NFS) until *enough* are in
    or the file ends."""
    data = os.pread(fd, n, at)
    while 0 < len(data) < enough:
        more = os.pread(fd, n - len(data), at + len(data))
        if not more:
            break
        data += more
    return data


def _probes_job(items: list[tuple[str, int]], opener: Callable[[str], int], at: Span
                ) -> list[bytes | FileProblem]:
    out: list[bytes | FileProblem] = []
    for path, size in items:
        try:
            out.append(read_span(path, at(size), opener))
        except OSError as exc:
            out.append(FileProblem(path, describe_os_error(exc)))
    return out


def split_by_probes(classes: list, paths: list[list[str]], sizes: list[int],
                    pool: Executor | None, window: int, opener: Callable[[str], int],
                    problem: Callable[[FileProblem], None], at: Span = middle
                    ) -> tuple[list[list], int]:
    """Split each class (members of one size sharing a head; *paths*: its members' paths,
    *sizes*: its size) by the span *at*(size) of its members (default: the middle probe), read
    in *pool* when given; return, for each class, its sub-classes of two or more (of the
    class's kind), and the bytes read."""
    every = ((p, size) for ps, size in zip(paths, sizes, strict=True) for p in ps)
    jobs = iter(lambda: list(islice(every, BATCH_FILES)), [])
    if pool is not None:
        results = bounded_map(pool, lambda batch: _probes_job(batch, opener, at), jobs, window)
    else:
        results = (_probes_job(batch, opener, at) for batch in jobs)
    probes = (p for batch in results for p in batch)
    out: list[list] = []
    read = 0
    for cls, size in zip(classes, sizes, strict=True):
        split: dict[bytes, list] = {}
        length = at(size)[1]
        for member in cls:
            probe = next(probes)
            if type(probe) is not bytes:
                problem(probe)  # type: ignore[arg-type]
                continue
            read += length
            split.setdefault(probe, []).append(member)
        out.append([array("I", same) if type(cls) is array else same
                    for same in split.values() if len(same) > 1])
    return out, read


def read_rest(fd: int, size: int, start: int, into: memoryview | None = None) -> bytes:
    """Read bytes *start* to *size* of an open file (blocking), one byte past the end too to
    catch growth; raise `FileChangedError` when its size is not *size* any more. With *into* (at
    least *size* - *start* + 1 bytes) the bytes land there and a view of them is returned."""
    want = size + 1 - start
    if into is None:
        data = _pread_full(fd, want, start, want - 1)
        got = len(data)
    else:
        view = into[:want]
        got = os.preadv(fd, (view,), start)  # one read: its end is the file's (as read_small)
        while 0 < got < want - 1:  # a short read before the end (FUSE, NFS)
            more = os.preadv(fd, (view[got:],), start + got)
            if not more:
                break
            got += more
        data = view[:got]  # type: ignore[assignment]
    if got != size - start:
        raise hashing.FileChangedError(hashing._changed(size, start + got))
    return data


def _rests_job(items: list[tuple[str, int]], opener: Callable[[str], int],
               digest: Callable[[bytes], bytes], keep: bool) -> list:
    out: list = []
    for path, size in items:
        try:
            fd = opener(path)
            try:
                data = read_rest(fd, size, rest_from(size))
            finally:
                os.close(fd)
        except OSError as exc:
            out.append(FileProblem(path, describe_os_error(exc)))
        else:
            out.append((digest(data), data if keep else None))
    return out


def read_rests(classes: list, paths: list[list[str]], sizes: list[int], pool: Executor | None,
               window: int, opener: Callable[[str], int], digest: Callable[[bytes], bytes],
               keep: bool) -> Iterator[list]:
    """Read the rest (from `rest_from` on, to the end) of each member of each class, in *pool*
    when given; yield, class by class, one slot per member: (digest of its rest, its rest if
    *keep* else None) or a `FileProblem` (what `SmallFiles._finish_small` takes)."""
    every = ((p, size) for ps, size in zip(paths, sizes, strict=True) for p in ps)
    jobs = iter(lambda: list(islice(every, BATCH_FILES)), [])
    job = lambda batch: _rests_job(batch, opener, digest, keep)  # noqa: E731
    results = (bounded_map(pool, job, jobs, window) if pool is not None else map(job, jobs))
    slots = (slot for batch in results for slot in batch)
    for cls in classes:
        yield [next(slots) for _ in cls]
