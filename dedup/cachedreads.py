"""Reads of dedup.heads that ask the page cache first (RWF_NOWAIT), and the blocking head reads
of its I/O pool. Every read of dedup.heads that asks the page cache only goes through `preadv`,
and every open of its files through `open_file`: tests replace them to make those reads miss, or
files change between the listing and the read (dedup.smallfiles and dedup.prefetch ask the page
cache through os.preadv themselves).
"""

from __future__ import annotations

import operator
import os
import stat

from dedup import hashing
from dedup.model import FileProblem
from dedup.probes import HEAD
from dedup.walk import describe_os_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable

# Every open of dedup.heads' files (a name of this module, so tests can replace it).
open_file = hashing.open_noatime
MAX_HEAD = 4096  # open_heads' largest head (dedup/_cheads.c)
MAX_WHOLE = 65536  # read_wholes' largest file (dedup/_cwholes.h)


def chosen(compiled: Callable | None, python: Callable) -> Callable:
    """Return the compiled loop, or its Python twin where it was not built or where a test's
    `open_file` or `preadv` is to see every call."""
    if compiled is not None and preadv is os.preadv and open_file is hashing.open_noatime:
        return compiled
    return python


def read_head(path: str) -> bytes:
    """Return the first `HEAD` bytes of a file of more than `HEAD` bytes (blocking); raise
    OSError, or `FileChangedError` if it has fewer now."""
    fd = open_file(path)
    try:
        data = os.pread(fd, HEAD, 0)
    finally:
        os.close(fd)
    if len(data) != HEAD:
        raise hashing.FileChangedError(f"now {len(data)} bytes or fewer")
    return data


def heads_job(paths: list[str]) -> list[bytes | FileProblem]:
    """The I/O pool's job: the head of each of *paths*, or the problem that stopped its read."""
    out: list[bytes | FileProblem] = []
    for path in paths:
        try:
            out.append(read_head(path))
        except OSError as exc:
            out.append(FileProblem(path, describe_os_error(exc)))
    return out


# Every read that asks the page cache only (RWF_NOWAIT) goes through this name: tests replace
# it to make those reads miss.
preadv = os.preadv


class NotCached(Exception):
    """A read the page cache could not serve at once (RWF_NOWAIT)."""


def pread_cached(fd: int, size: int, offset: int, into: memoryview | None = None) -> bytes:
    """Read up to *size* bytes at *offset* if the page cache holds them, else raise `NotCached`;
    file systems refusing RWF_NOWAIT are read blocking. With *into* (at least *size* bytes),
    the bytes land there and a view of them is returned."""
    if refused[0] or not hashing._RWF_NOWAIT:
        return os.pread(fd, size, offset)
    buf = bytearray(size) if into is None else into[:size]
    try:
        got = preadv(fd, (buf,), offset, hashing._RWF_NOWAIT)
    except BlockingIOError:
        raise NotCached from None
    except OSError as exc:
        nowait_refused(exc)
        return os.pread(fd, size, offset)
    if into is not None:
        return buf[:got]  # type: ignore[return-value]
    del buf[got:]
    return bytes(buf) if got <= HEAD else buf  # type: ignore[return-value]


refused = [False]  # this file system refuses RWF_NOWAIT (tmpfs): no more tries


def nowait_refused(exc: OSError) -> int:
    """Remember that the file system refuses RWF_NOWAIT and return the flags to read with from
    now on (none); raise *exc* if it is another error."""
    if exc.errno not in hashing._NOWAIT_REFUSED:
        raise exc
    refused[0] = True
    return 0


def read_whole(fd: int, size: int, into: memoryview | None = None) -> bytes:
    """The whole content of an open small file (cached or not), one byte past the end read to
    catch growth; raise `FileChangedError` when the size is not *size* any more. With *into*
    (at least *size* + 1 bytes) a cached file is read there, and a view of it returned."""
    try:
        data = pread_cached(fd, size + 1, 0, into)
        if len(data) == size and size % hashing._PAGE:
            return data  # all of it, and its end (the byte past it is on a page read)
        data = bytes(data)
        if len(data) == size:
            data += os.pread(fd, 1, size)  # the byte past the end may be on an uncached page
    except NotCached:
        data = b""
    while len(data) < size:  # partly cached (or shrank): the rest, blocking (not read twice)
        more = os.pread(fd, size + 1 - len(data), len(data))
        if not more:
            break
        data += more
    if len(data) != size:
        raise hashing.FileChangedError(hashing._changed(size, len(data)))
    return data


def read_to_end(fd: int, view: memoryview, got: int) -> int:
    """Fill *view* from offset *got* on with blocking reads until it is full or the file ends;
    return the bytes now in it (a short read before the end: FUSE, NFS; or the page past it)."""
    while got < len(view):
        more = os.preadv(fd, (view[got:],), got)
        if not more:
            break
        got += more
    return got


def open_heads_python(paths: list[str], flags: int, nowait: int, head: int, fds: list[int]
                      ) -> tuple[list[list[int]], list[tuple[int, str]], bool, int]:
    """Open every file of one same-size group and read its first *head* bytes (RWF_NOWAIT while
    *nowait*: a miss is read again blocking; a regular file's refusal turns it off); append a
    descriptor per path to the caller's *fds*, which closes what is in it whatever happens (the
    files sharing no head are closed here: -1 in *fds*); return (the classes of positions
    sharing a head, by when each head's second file came; the failures as (position, error
    text); whether a read missed the page cache; the RWF_NOWAIT flag from now on).
    dedup/_cheads.c `open_heads` is this, compiled; this one runs where it was not built, or
    when a test's `open_file` or `preadv` is to see every call. (An interrupt between an open's
    return and its descriptor's store in *fds* leaks that descriptor: Python cannot close that
    gap; the compiled loop has none.)"""
    if not 0 < head <= MAX_HEAD:
        raise ValueError("head out of range")
    firsts: dict[bytes, int] = {}  # a head -> the first position holding it
    shared: dict[int, list[int]] = {}  # that position -> every position with its head
    failures: list[tuple[int, str]] = []
    missed = False
    buf = bytearray(head)
    bufs = (buf,)
    read = preadv
    base = len(fds)
    for k, path in enumerate(paths):
        fds.append(-1)
        try:
            fd = _open(path, flags)
            fds[base + k] = fd
            try:
                got = read(fd, bufs, 0, nowait)
            except BlockingIOError:
                if not nowait:
                    raise
                missed = True
                got = read(fd, bufs, 0, 0)
            except OSError as exc:
                if not nowait:
                    raise
                nowait = refused_by(fd, exc, nowait)
                got = read(fd, bufs, 0, 0)
            if got != head:
                raise hashing.FileChangedError(f"now {got} bytes or fewer")
        except OSError as exc:
            failures.append((k, describe_os_error(exc)))
            fd = fds[base + k]
            if fd >= 0:  # opened, then failed: nothing more is read from it
                fds[base + k] = -1  # before the close: never closed twice
                os.close(fd)
            continue
        first = firsts.setdefault(bytes(buf), k)
        if first != k:
            ks = shared.get(first)
            if ks is None:
                shared[first] = [first, k]
            else:
                ks.append(k)
    for first in firsts.values():
        if first not in shared:  # no other file has its head: not read again
            fd = fds[base + first]
            fds[base + first] = -1
            os.close(fd)
    return list(shared.values()), failures, missed, nowait


def _open(path: str, flags: int) -> int:
    """Open *path* as the compiled loops do: with *flags*, retried without O_NOATIME when refused
    (the owner's alone); through `open_file` when a test replaced it."""
    if open_file is not hashing.open_noatime:
        return open_file(path)
    try:
        return os.open(path, flags)
    except PermissionError:
        noatime = flags & hashing._NOATIME
        if not noatime:
            raise
        return os.open(path, flags & ~noatime)


def refused_by(fd: int, exc: OSError, nowait: int) -> int:
    """Return the RWF_NOWAIT flag to read with after a page-cache-only read of *fd* failed with
    *exc*: 0 (remembered: `nowait_refused`) if its file system refuses the flag, *nowait* if
    *fd* is no regular file (a directory refuses it too: not the file system's answer); raise
    *exc* for any other error. Read *fd* blocking either way."""
    if exc.errno not in hashing._NOWAIT_REFUSED:
        raise exc
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = False
    return nowait_refused(exc) if regular else nowait


def read_wholes_python(paths: list[str], size: int, flags: int, nowait: int
                       ) -> tuple[list[list[int]], list[tuple[int, str]], int] | None:
    """Read every file of one group of files of *size* bytes whole, one byte past the end too
    (growth), each opened, read and closed (RWF_NOWAIT while *nowait*); return None at the first
    read the page cache cannot serve (the group left untouched), else (the classes of two or
    more positions with equal bytes, by first position; the failures as (position, error
    text); the RWF_NOWAIT flag from now on). dedup/_cwholes.h `read_wholes` is this, compiled;
    this one runs where it was not built, or when a test's `open_file` or `preadv` is to see
    every call. (An interrupt between an open's return and its try leaks that descriptor:
    Python cannot close that gap; the compiled loop has none.)"""
    size = operator.index(size)
    if not 0 <= size <= MAX_WHOLE:
        raise ValueError("size out of range")
    view = hashing._buffer(size + 1)
    bufs = (view,)
    data = view[:size]
    read = preadv
    firsts: dict[bytes, list[int]] = {}  # the bytes -> every position holding them
    failures: list[tuple[int, str]] = []
    for k, path in enumerate(paths):
        try:
            fd = _open(path, flags)
            try:
                try:
                    got = read(fd, bufs, 0, nowait)
                except BlockingIOError:
                    if not nowait:
                        raise
                    return None
                except OSError as exc:
                    if not nowait:
                        raise
                    nowait = refused_by(fd, exc, nowait)
                    got = read(fd, bufs, 0, 0)
                if got <= size and (got < size or size % hashing._PAGE == 0):
                    got = read_to_end(fd, view, got)  # short, or the byte past the end unread
            finally:
                os.close(fd)
            if got != size:
                raise hashing.FileChangedError(hashing._changed(size, got))
        except OSError as exc:
            failures.append((k, describe_os_error(exc)))
            continue
        firsts.setdefault(bytes(data), []).append(k)
    return [ks for ks in firsts.values() if len(ks) > 1], failures, nowait
