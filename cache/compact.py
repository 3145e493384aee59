"""Writing a compacted record log: the new file, written aside and synced before it is renamed in.

Compaction always fsyncs the new file and its directory before and after the swap, whatever the
durability setting, because a rename of an unsynced file can leave an empty file after a power loss.
The writes go to a helper thread (_ChunkWriter) so encoding the next chunk overlaps them.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterable
from typing import Any

from cache import records as fmt
from cache.errors import StoreWriteError

_CHUNK = 4 << 20
_FILE_MODE = 0o600
_HEAD_SIZE = fmt.RECORD_HEADER_SIZE
_crc32 = zlib.crc32
_pack_fields = struct.Struct("<BQII").pack  # the fields of a record header that head_crc covers
_pack_crcs = struct.Struct("<II").pack


def fsync_dir(path: str) -> None:
    """fsync the directory holding *path* (a rename or a creation in it is then durable)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_fd_all(fd: int, data: bytes) -> None:
    view, done = memoryview(data), 0
    while done < len(data):
        done += os.write(fd, view[done:])


class _ChunkWriter:
    """Writes chunks to *fd* in order from a helper thread, so encoding the next one overlaps it.

    Compaction's writes go to fresh page-cache pages, which cost the kernel far more than the copy
    here; outside the GIL that work runs on another CPU. At most one chunk is in flight.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None

    def _run(self, data: bytes) -> None:
        try:
            _write_fd_all(self._fd, data)
        except OSError as exc:
            self._error = exc

    def write(self, data: bytes) -> None:
        """Wait for the chunk in flight (raising its OSError), then start writing *data*."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(data,), name="fanmill-log-compact")
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



def write_compacted(
    tmp: str, first_seq: int, meta: dict[str, Any], items: Iterable[tuple[int, bytes, bytes]], path: str
) -> tuple[list[tuple[int, int]], int, int]:
    """Write a log holding just *items* to *tmp*, fsynced; return each record's (offset, length),
    the next sequence number and the file's size. On failure *tmp* is removed (StoreWriteError
    naming *path* for an OSError)."""
    header = fmt.encode_header(first_seq, meta)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _FILE_MODE)
    locs: list[tuple[int, int]] = []
    writer = _ChunkWriter(fd)
    try:
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
    return locs, seq, at
