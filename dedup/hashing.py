"""I/O: reading files for comparison — both-ends partial keys, whole small files, streaming digests.

Files are read with `readinto` into bounded, reused buffers (never mmap: a file truncated while it
is read must give an error, not SIGBUS). Each function returns the bytes it read so the pipeline
can report them; a file whose size no longer matches the scan raises `FileChangedError`.
"""

from __future__ import annotations

import errno
import os
from _thread import _local as _thread_local  # threading.local (importing threading: ~1 ms)

import mmh3

from dedup.errors import FileChangedError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol
else:
    Protocol = object  # the protocols below are annotations; at run time, plain classes

EDGE = 4096  # bytes hashed at each end in the partial stage (one page)
WHOLE_LIMIT = 64 * 1024  # files up to this size are read whole, once, in the partial stage
CHUNK = 128 * 1024  # streaming read size: fits in L2, 2.5x faster than 1 MiB (bench large)


class ReadableFile(Protocol):
    """What hashing needs from an open file: the seam tests replace to inject failures."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def close(self) -> None: ...


if TYPE_CHECKING:
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


def open_noatime(path: str) -> int:
    """Open *path* read-only, without blocking, with O_NOATIME where the owner allows it."""
    try:
        return os.open(path, _OPEN_FLAGS)
    except PermissionError:
        # O_NOATIME is refused (EPERM) on files the caller does not own, unless root.
        return os.open(path, _OPEN_FLAGS & ~_NOATIME)


def _open_regular_fd(path: str) -> int:
    fd = open_noatime(path)
    try:
        if not _is_regular(os.fstat(fd).st_mode):
            raise FileChangedError("no longer a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_for_read(path: str) -> ReadableFile:
    """Open *path* read-only without blocking and without touching its atime; raise OSError."""
    return _FdFile(_open_regular_fd(path))


_DEFAULT_OPENER = open_for_read  # the identity the fast path checks (tests may patch the name)


_NOATIME = getattr(os, "O_NOATIME", 0)


def read_small(path: str, size: int) -> bytes:
    """Return the whole content of a file the scan saw as *size* bytes: one open, read, close.

    Reads one byte past *size*, so a file that grew or shrank raises `FileChangedError`. No fstat
    (a tenth of the per-file cost on trees of small files): the scan's lstat said regular file,
    O_NONBLOCK keeps a FIFO swapped in since from blocking the open or the read, and anything
    else swapped in is caught by the size check; the content returned is always the file's.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except PermissionError:
        # O_NOATIME is refused (EPERM) on files the caller does not own, unless root.
        fd = os.open(path, _OPEN_FLAGS & ~_NOATIME)
    data = _read_and_close(fd, size)
    if len(data) != size:
        raise FileChangedError(_changed(size, len(data)))
    return data


def _read_and_close(fd: int, size: int) -> bytes:
    """Read up to *size* + 1 bytes of *fd* (one past the end catches growth), then close it."""
    try:
        data = os.read(fd, size + 1)
        while 0 < len(data) < size:  # a short read before the expected end (FUSE, NFS)
            more = os.read(fd, size + 1 - len(data))
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    return data


def read_whole(path: str, size: int, opener: Opener) -> bytes:
    """Return the whole content of a small file through *opener*; raise `FileChangedError`."""
    if opener is _DEFAULT_OPENER:
        return read_small(path, size)
    f = opener(path)
    try:
        buf = bytearray(size + 1)
        got = read_exact(f, memoryview(buf), size)
    finally:
        f.close()
    if got != size:
        raise FileChangedError(_changed(size, got))
    del buf[size:]
    return bytes(buf)


def _read_whole(path: str, size: int) -> bytes:
    """Return the content of a small regular file, reading one byte past *size* to catch growth."""
    return _read_and_close(_open_regular_fd(path), size)


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
        import hashlib  # lazy: loading OpenSSL costs 4 MB of RSS that mmh3 runs do not need

        return hashlib.sha256()
    if name == "blake2b":
        import hashlib

        return hashlib.blake2b(digest_size=32)
    raise ValueError(f"unknown hash {name!r}")


_local = _thread_local()


def _buffer(size: int) -> memoryview:
    """Return a per-thread reusable buffer of at least *size* bytes (bounded by CHUNK + 1)."""
    try:
        view: memoryview = _local.view
    except AttributeError:
        view = _local.view = memoryview(bytearray(max(CHUNK, WHOLE_LIMIT + 1)))
    if len(view) < size:
        view = _local.view = memoryview(bytearray(size))
    return view[:size]


def read_exact(f: ReadableFile, view: memoryview, expect: int = -1) -> int:
    """Fill *view* from *f* until full or end of file; return the byte count read.

    When a short read leaves exactly *expect* bytes, that is taken as end of file without the
    confirming zero-byte read: Linux returns a short read from a regular file only at its end, and
    this halves the syscalls on small files. Any other short read goes on reading (FUSE, NFS).
    """
    total = len(view)
    got = f.readinto(view) or 0
    while 0 < got < total and got != expect:
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _sha256_digest(data: memoryview) -> bytes:
    import hashlib

    return hashlib.sha256(data).digest()


def _blake2b_digest(data: memoryview) -> bytes:
    import hashlib

    return hashlib.blake2b(data, digest_size=32).digest()


# One-shot digests of an in-memory buffer: half the cost of a hasher object on small files.
# mmh3's own function, not a wrapper: one Python call less per small file.
ONE_SHOT = {"mmh3": mmh3.mmh3_x64_128_digest, "sha256": _sha256_digest, "blake2b": _blake2b_digest}


def partial_digest(path: str, size: int, hash_name: str, opener: Opener) -> tuple[bytes, int]:
    """Return (digest, bytes read) of a file's partial key: whole content if small, else both ends.

    For a file of at most `WHOLE_LIMIT` bytes the digest is of its whole content, so it is final.
    """
    if size <= WHOLE_LIMIT and opener is _DEFAULT_OPENER:
        # Fast path for the default opener: ~1.5 µs less Python per file on trees of small files.
        data = _read_whole(path, size)
        if len(data) != size:
            raise FileChangedError(_changed(size, len(data)))
        return ONE_SHOT[hash_name](data), size
    f = opener(path)
    try:
        if size <= WHOLE_LIMIT:
            # Ask for one byte more than expected: a file that grew is detected in the same call.
            view = _buffer(size + 1)
            got = read_exact(f, view, size)
            if got != size:
                raise FileChangedError(_changed(size, got))
            return ONE_SHOT[hash_name](view[:size]), got
        h = new_hasher(hash_name)
        view = _buffer(EDGE + 1)
        head = read_exact(f, view[:EDGE])
        if head != EDGE:
            raise FileChangedError(_changed(size, head))
        h.update(view[:EDGE])
        f.seek(size - EDGE)
        tail = read_exact(f, view, EDGE)
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
        chunk = len(view)
        while True:
            n = f.readinto(view)
            if not n:
                break
            done += n
            if done > size:
                raise FileChangedError(_changed(size, done))
            h.update(view[:n])
            if n < chunk and done == size:  # at the expected end: see read_exact
                break
        if done != size:
            raise FileChangedError(_changed(size, done))
        return h.digest(), done
    finally:
        f.close()


def _changed(expected: int, got: int) -> str:
    verb = "grew" if got > expected else "shrank"
    return f"changed during scan: {verb} (expected {expected} bytes)"


_PAGE = 4096
_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_NOWAIT_REFUSED = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


def read_small_cached(path: str, size: int) -> bytes | bytearray | int | tuple[int, bytearray]:
    """Return the content of a small file if the page cache holds it, else its open descriptor
    (with the bytes the page cache had, when it held a first part: not read twice).

    One `preadv(RWF_NOWAIT)` of *size* + 1 bytes: a cached file is read here (no thread
    hand-off when the tree is warm); a file not cached (or not wholly) gives back the descriptor,
    for `read_fd_digest` in an I/O thread, and the caller owns it. Growth and shrinking raise
    `FileChangedError` here or there. Where RWF_NOWAIT does not exist every file is "not cached".
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except PermissionError:
        fd = os.open(path, _OPEN_FLAGS & ~_NOATIME)
    if not _RWF_NOWAIT:
        return fd
    buf = bytearray(size + 1)
    try:
        got = os.preadv(fd, (buf,), 0, _RWF_NOWAIT)
    except BlockingIOError:
        return fd
    except OSError as exc:
        if exc.errno not in _NOWAIT_REFUSED:
            os.close(fd)
            raise
        # tmpfs and others refuse RWF_NOWAIT (EOPNOTSUPP): read here, blocking, as read_small.
        data = _read_and_close(fd, size)
        if len(data) != size:
            raise FileChangedError(_changed(size, len(data))) from None
        return data  # type: ignore[return-value]
    except BaseException:
        os.close(fd)
        raise
    if got == size and size % _PAGE == 0 and size:
        # The byte past the end is on a page of its own, maybe not cached: ask without NOWAIT
        # (at the end of an unchanged file this returns at once).
        try:
            more = os.pread(fd, 1, size)
        except BaseException:
            os.close(fd)
            raise
        got += len(more)
    if got < size:  # partly cached (or shrank): the I/O thread reads the rest, blocking
        if got <= 0:
            return fd
        del buf[got:]
        return fd, buf  # type: ignore[return-value]
    os.close(fd)
    if got != size:
        raise FileChangedError(_changed(size, got))
    del buf[size:]
    return buf


def read_fd_rest(fd: int, size: int, have: bytearray) -> bytes | bytearray:
    """Read the rest of a small file whose first bytes are *have* (blocking), then close it."""
    try:
        while len(have) <= size:
            more = os.pread(fd, size + 1 - len(have), len(have))
            if not more:
                break
            have += more
    finally:
        os.close(fd)
    if len(have) != size:
        raise FileChangedError(_changed(size, len(have)))
    return have


def read_fd_whole(fd: int, size: int) -> bytes:
    """Read the whole content of a small file from its descriptor (blocking), then close it."""
    data = _read_and_close(fd, size)
    if len(data) != size:
        raise FileChangedError(_changed(size, len(data)))
    return data
