"""Writing a compacted record log: the new file, written aside and synced before it is renamed in.

Compaction always fsyncs the new file and its directory before and after the swap, whatever the
durability setting, because a rename of an unsynced file can leave an empty file after a power loss.
The writes go to a helper thread (_ChunkWriter) so encoding the next chunk overlaps them.

PersistentLRU's compaction copies its live records (copy_compacted): each record's key and value
bytes go from the old file's map to the new file unchanged, behind a new header (the sequence numbers
start again at the new file's first_seq, so the header and both CRCs change). The new body CRC is
carried over from the old one, not computed from the bytes: CRC32 is linear, so for the same bytes
under two seeds, crc32(D, a) ^ crc32(D, b) depends only on a ^ b and len(D) (_crc_shift). A value
damaged on disk therefore stays detectably damaged in the new file (its CRC still fails, at the next
read or open), and the copy needs no verification pass over the values: measured on the bench's
first compaction (20,000 live records, 42 MiB), verify + re-encode cost 35 ms of CRCs, the carry 22.
The header and the key are checked against the index before the copy, as a read checks them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cache import records as fmt
from cache.crc import crc32 as _crc32
from cache.errors import CorruptStoreError, StoreWriteError

try:  # the copy loop of copy_compacted, compiled (setup.py); the loop there is its reference
    from cache._ccompact import copy_puts as _copy_puts
except ImportError:  # pragma: no cover - built by every install with a C compiler
    _copy_puts = None

_CHUNK = 4 << 20
_SLACK = 64 << 10  # a chunk's buffer holds _CHUNK plus this: a record up to it always fits
_FILE_MODE = 0o600
_HEAD_SIZE = fmt.RECORD_HEADER_SIZE
_pack_fields = struct.Struct("<BQII").pack  # the fields of a record header that head_crc covers
_pack_crcs = struct.Struct("<II").pack
_unpack_head = struct.Struct("<IIBQII").unpack_from
_PUT, _MORE = fmt.PUT, fmt.MORE
_MASK = 0xFFFFFFFF
_ZEROS = memoryview(bytes(64 << 10))
_ZEROS_LEN = len(_ZEROS)


def _crc_shift(delta: int, n: int) -> int:
    """Return crc32(D, a) ^ crc32(D, b) for any *n* bytes D, where *delta* is a ^ b.

    zlib's crc32(D, s) is ~f(D, ~s), f affine in its register: the two differ by delta times x^(8n)
    modulo the CRC polynomial, which is ~crc32(n zeros, ~delta). Checked against direct CRCs by
    tests/cache/test_compact_copy.py.
    """
    crc = ~delta & _MASK
    while n > _ZEROS_LEN:
        crc = _crc32(_ZEROS, crc)
        n -= _ZEROS_LEN
    return ~_crc32(_ZEROS[:n], crc) & _MASK


def fsync_dir(path: str) -> None:
    """fsync the directory holding *path* (a rename or a creation in it is then durable)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_fd_all(fd: int, data: bytes | bytearray) -> None:
    view, done = memoryview(data), 0
    while done < len(data):
        done += os.write(fd, view[done:])


def _find_writeback() -> Callable[[int, int, int], object]:
    """Return start_writeback(fd, offset, length): Linux's sync_file_range(SYNC_FILE_RANGE_WRITE),
    which starts writing those dirty pages to disk and returns (os has no binding; ctypes releases
    the GIL during the call), or a no-op elsewhere. Only a head start: the fsync still decides."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return lambda fd, offset, length: None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return lambda fd, offset, length: call(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


_SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>
_start_writeback = _find_writeback()


class _ChunkWriter:
    """Writes chunks to *fd* in order from a helper thread, so encoding the next one overlaps it.

    Compaction's writes go to fresh page-cache pages, which cost the kernel far more than the copy
    here; outside the GIL that work runs on another CPU. At most one chunk is in flight. Each chunk's
    writeback to disk is started as soon as it is written, so the final fsync waits for the last
    chunks only: measured on the bench trace's compaction (42 MiB), 178 -> 138 and 161 -> 135 ms
    for the whole copy, fsync included (medians of 5, two alternated series).
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._at = 0  # bytes written so far: where the next chunk goes
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None

    def _run(self, data: bytes | bytearray, at: int) -> None:
        try:
            _write_fd_all(self._fd, data)
            _start_writeback(self._fd, at, len(data))
        except OSError as exc:
            self._error = exc

    def write(self, data: bytes | bytearray) -> None:
        """Wait for the chunk in flight (raising its OSError), then start writing *data*."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(data, self._at), name="fanmill-log-compact")
        self._at += len(data)
        self._thread.start()

    def wait(self) -> None:
        """Wait until every chunk is written; raise the OSError of a failed one."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def stop(self) -> None:
        """Wait for the chunk in flight and forget its outcome (the caller is failing anyway)."""
        try:
            self.wait()
        except OSError:
            pass



class _Chunks:
    """Two buffers a compaction fills in turn: one is written (_ChunkWriter) while the other fills.

    Reused, never resized: a fresh 4 MiB buffer per chunk cost a page fault per page (measured, the
    compiled copy loop's own time in the bench trace's compaction, cProfile: 96 ms with a fresh
    buffer per chunk, 34 ms with these).
    """

    def __init__(self, writer: _ChunkWriter) -> None:
        self._writer = writer
        self._bufs = (bytearray(_CHUNK + _SLACK), bytearray(_CHUNK + _SLACK))
        self._which = 0
        self.buf = self._bufs[0]
        self.fill = 0

    def add(self, data: bytes) -> None:
        """Append *data* (a larger record than a buffer goes as a chunk of its own)."""
        if self.fill + len(data) > len(self.buf):
            self.flush()
            if len(data) > len(self.buf):
                self._writer.write(data)
                return
        self.buf[self.fill : self.fill + len(data)] = data
        self.fill += len(data)

    def flush(self) -> None:
        """Start writing what the buffer holds, and fill the other one from now on."""
        if self.fill:
            # write() waits for the chunk in flight first: the other buffer is then free again.
            self._writer.write(memoryview(self.buf)[: self.fill])
            self._which ^= 1
            self.buf = self._bufs[self._which]
            self.fill = 0


@contextlib.contextmanager
def _new_file(tmp: str, path: str) -> Iterator[_ChunkWriter]:
    """A writer of the new file *tmp*, waited for and fsynced when the block ends; on any failure
    it is stopped and *tmp* removed (an OSError raised as StoreWriteError naming *path*)."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _FILE_MODE)
    writer = _ChunkWriter(fd)
    try:
        yield writer
        writer.wait()
        os.fsync(fd)
    except OSError as exc:
        writer.stop()
        os.close(fd)
        os.unlink(tmp)
        raise StoreWriteError(f"{path}: compaction failed: {exc.strerror or exc}") from exc
    except BaseException:
        writer.stop()
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)


def write_compacted(
    tmp: str, first_seq: int, meta: dict[str, Any], items: Iterable[tuple[int, bytes, bytes]], path: str
) -> tuple[list[tuple[int, int]], int, int]:
    """Write a log holding just *items* to *tmp*, fsynced; return each record's (offset, length),
    the next sequence number and the file's size. On failure *tmp* is removed (StoreWriteError
    naming *path* for an OSError)."""
    header = fmt.encode_header(first_seq, meta)
    locs: list[tuple[int, int]] = []
    with _new_file(tmp, path) as writer:
        pending, pending_size, at, seq = [header], len(header), len(header), first_seq
        for kind, key, value in items:
            # fmt.encode_record, inlined, the value kept apart: the join below copies it once.
            klen, vlen = len(key), len(value)
            if klen > fmt.MAX_KEY_SIZE or vlen > fmt.MAX_VALUE_SIZE:
                fmt.encode_record(kind, seq, key, value)  # raises the clear ValueError
            fields = _pack_fields(kind, seq, klen, vlen)
            head_crc = _crc32(fields)
            pending.append(_pack_crcs(_crc32(value, _crc32(key, head_crc)), head_crc) + fields + key)
            pending.append(value)
            length = _HEAD_SIZE + klen + vlen
            locs.append((at, length))
            pending_size += length
            at += length
            seq += 1
            if pending_size >= _CHUNK:
                writer.write(b"".join(pending))
                pending, pending_size = [], 0
        writer.write(b"".join(pending))
    return locs, seq, at


def copy_compacted(
    tmp: str,
    first_seq: int,
    meta: dict[str, Any],
    bounds_key: bytes,
    src: Any,
    src_fd: int,
    locations: list[Any],
    path: str,
) -> tuple[list[int], int, int]:
    """Write to *tmp*, fsynced, a log holding a BOUNDS record (*bounds_key*), then a copy of each PUT
    record at *locations* ((offset, length, key) in the old file, in that order).

    The records are read from *src* (the old file's map; None, or a location past its end, reads
    from *src_fd*). Return the new offset of each copied record (its length and key stay), the
    next sequence number and the file's size. A header or key that does not match its location raises CorruptStoreError
    naming *path*; on any failure *tmp* is removed.
    """
    header = fmt.encode_header(first_seq, meta)
    bounds = fmt.encode_record(fmt.BOUNDS, first_seq, bounds_key)
    view = memoryview(src) if src is not None else None
    mapped = len(view) if view is not None else 0
    moved: list[int] = []
    append = moved.append
    # the view is released on the way out: the old map is closed after the swap, and no export
    # of it may outlive this
    with _new_file(tmp, path) as writer, view if view is not None else contextlib.nullcontext():
        chunks = _Chunks(writer)
        chunks.add(header + bounds)
        at, seq = len(header) + len(bounds), first_seq + 1
        i, n = 0, len(locations)
        while i < n:
            if _copy_puts is not None and mapped:
                # The compiled loop copies what it can; it stops at a full chunk, or at a record
                # it leaves to the loop below (past the map, larger than the room left, or failing
                # a check: the error is raised there, as without it).
                i, seq, at, chunks.fill = _copy_puts(view, locations, i, seq, at, chunks.buf, chunks.fill,
                                                     moved, _CHUNK)
                if chunks.fill >= _CHUNK:
                    chunks.flush()
                if i >= n:
                    break
            offset, length, kbytes = locations[i]
            i += 1
            if offset + length <= mapped:
                buf: Any = view
                pos = offset
            else:
                buf, pos = os.pread(src_fd, length, offset), 0
                if len(buf) < _HEAD_SIZE:
                    raise CorruptStoreError(path, "record cut short", offset)
            body_crc, head_crc, kind, _seq, klen, vlen = _unpack_head(buf, pos)
            kstart = pos + _HEAD_SIZE
            stop = pos + length
            if (
                klen + vlen + _HEAD_SIZE != length
                or _crc32(buf[pos + 8 : kstart]) != head_crc
                or kind & ~_MORE != _PUT
                or buf[kstart : kstart + klen] != kbytes
            ):
                raise CorruptStoreError(
                    path, "record header damaged, or its length or key differs from the index", offset
                )
            fields = _pack_fields(_PUT, seq, klen, vlen)
            new_head = _crc32(fields)
            # The body CRC carried over to the new seed (see the module docstring; _crc_shift inlined).
            size = klen + vlen
            if size <= _ZEROS_LEN:
                body_crc ^= ~_crc32(_ZEROS[:size], ~(head_crc ^ new_head) & _MASK) & _MASK
            else:
                body_crc ^= _crc_shift(head_crc ^ new_head, size)
            chunks.add(_pack_crcs(body_crc, new_head) + fields + buf[kstart:stop])
            append(at)
            at += length
            seq += 1
            if chunks.fill >= _CHUNK:
                chunks.flush()
        chunks.flush()
    return moved, seq, at
