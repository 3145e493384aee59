"""I/O: reading files for comparison — both-ends partial keys, whole small files, streaming digests.

Files are read with `readinto` into bounded, reused buffers (never mmap: a file truncated while it
is read must give an error, not SIGBUS). Each function returns the bytes it read so the pipeline
can report them; a file whose size no longer matches the scan raises `FileChangedError`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from typing import Protocol

import mmh3

from dedup.errors import FileChangedError

EDGE = 4096  # bytes hashed at each end in the partial stage (one page)
WHOLE_LIMIT = 64 * 1024  # files up to this size are read whole, once, in the partial stage
CHUNK = 1024 * 1024  # streaming read size: bounds memory per worker


class ReadableFile(Protocol):
    """What hashing needs from an open file: the seam tests replace to inject failures."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def close(self) -> None: ...


Opener = Callable[[str], ReadableFile]


class _FdFile:
    """A raw file descriptor with the `ReadableFile` methods (cheaper to open than io.FileIO)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def readinto(self, buffer: memoryview, /) -> int:
        return os.readv(self.fd, (buffer,))

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return os.lseek(self.fd, offset, whence)

    def close(self) -> None:
        os.close(self.fd)


# O_NONBLOCK: if a regular file is swapped for a FIFO after the scan, open must not hang.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOATIME", 0)


def open_for_read(path: str) -> ReadableFile:
    """Open *path* read-only without blocking and without touching its atime; raise OSError."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except PermissionError:
        # O_NOATIME is refused (EPERM) on files the caller does not own, unless root.
        fd = os.open(path, _OPEN_FLAGS & ~getattr(os, "O_NOATIME", 0))
    try:
        if not _is_regular(os.fstat(fd).st_mode):
            raise FileChangedError("no longer a regular file")
    except BaseException:
        os.close(fd)
        raise
    return _FdFile(fd)


def _is_regular(mode: int) -> bool:
    return (mode & 0o170000) == 0o100000


class Hasher(Protocol):
    """The incremental-hash interface shared by mmh3 and hashlib objects."""

    def update(self, data: bytes | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


def new_hasher(name: str) -> Hasher:
    """Return a fresh incremental hasher: "mmh3" (128-bit x64), "sha256" or "blake2b" (256-bit)."""
    if name == "mmh3":
        return mmh3.mmh3_x64_128(seed=0)
    if name == "sha256":
        return hashlib.sha256()
    if name == "blake2b":
        return hashlib.blake2b(digest_size=32)
    raise ValueError(f"unknown hash {name!r}")


_local = threading.local()


def _buffer(size: int) -> memoryview:
    """Return a per-thread reusable buffer of at least *size* bytes (bounded by CHUNK + 1)."""
    buf: bytearray | None = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        buf = bytearray(max(size, 64 * 1024))
        _local.buf = buf
    return memoryview(buf)[:size]


def read_exact(f: ReadableFile, view: memoryview) -> int:
    """Fill *view* from *f* until full or end of file; return the byte count read."""
    got = 0
    total = len(view)
    while got < total:
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def partial_digest(path: str, size: int, hash_name: str, opener: Opener) -> tuple[bytes, int]:
    """Return (digest, bytes read) of a file's partial key: whole content if small, else both ends.

    For a file of at most `WHOLE_LIMIT` bytes the digest is of its whole content, so it is final.
    """
    f = opener(path)
    try:
        h = new_hasher(hash_name)
        if size <= WHOLE_LIMIT:
            # Ask for one byte more than expected: a file that grew is detected in the same call.
            view = _buffer(size + 1)
            got = read_exact(f, view)
            if got != size:
                raise FileChangedError(_changed(size, got))
            h.update(view[:size])
            return h.digest(), got
        view = _buffer(EDGE + 1)
        head = read_exact(f, view[:EDGE])
        if head != EDGE:
            raise FileChangedError(_changed(size, head))
        h.update(view[:EDGE])
        f.seek(size - EDGE)
        tail = read_exact(f, view)
        if tail != EDGE:
            raise FileChangedError(_changed(size, size - EDGE + tail))
        h.update(view[:EDGE])
        return h.digest(), head + tail
    finally:
        f.close()


def full_digest(path: str, size: int, hash_name: str, opener: Opener) -> tuple[bytes, int]:
    """Return (digest, bytes read) of a file's whole content, streamed in `CHUNK`-sized reads."""
    f = opener(path)
    try:
        h = new_hasher(hash_name)
        view = _buffer(CHUNK)
        done = 0
        while True:
            n = f.readinto(view)
            if not n:
                break
            done += n
            if done > size:
                raise FileChangedError(_changed(size, done))
            h.update(view[:n])
        if done != size:
            raise FileChangedError(_changed(size, done))
        return h.digest(), done
    finally:
        f.close()


def _changed(expected: int, got: int) -> str:
    verb = "grew" if got > expected else "shrank"
    return f"changed during scan: {verb} (expected {expected} bytes)"
