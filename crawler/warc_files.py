"""The files of a WARC directory (I/O): naming, the gzip-member scan, torn-tail repair, and the
payload-digest index rebuilt from the response records already written."""

from __future__ import annotations

import base64
import binascii
import fcntl
import functools
import hashlib
import math
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

FILE_MODE = 0o644  # archives are meant to be shared with replay tools (the umask still applies)
_READ = 1 << 20
EMPTY_SHA1 = hashlib.sha1(b"").digest()  # no revisit for empty payloads


class WarcDamagedError(ValueError):
    """A WARC file in the directory is damaged before its end (not a torn tail a crash leaves)."""


def file_name(prefix: str, now: float, serial: int) -> str:
    """f"{prefix}-{UTC timestamp to the microsecond}-{serial:05d}.warc.gz"."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H%M%S%f")
    return f"{prefix}-{stamp}-{serial:05d}.warc.gz"


def warc_date(when: float) -> str:
    """A WARC-Date with microseconds (WARC 1.1 section 5.4 allows the extra precision)."""
    seconds = math.floor(when)
    micro = round((when - seconds) * 1e6)  # half-even, as datetime.fromtimestamp rounds
    if micro == 1_000_000:
        seconds, micro = seconds + 1, 0
    return f"{_second(seconds)}.{micro:06d}Z"


@functools.lru_cache(maxsize=4)  # a crawl formats the same second for every page in it
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def list_files(directory: str, prefix: str) -> list[tuple[int, str]]:
    """(serial, path) of this writer's files in *directory*, oldest first."""
    pattern = re.compile(re.escape(prefix) + r"-\d{20}-(\d{5,})\.warc\.gz\Z")
    found = []
    for name in os.listdir(directory):
        m = pattern.match(name)
        if m:
            found.append((int(m.group(1)), name, os.path.join(directory, name)))
    found.sort()
    return [(serial, path) for serial, _, path in found]


@dataclass
class Scan:
    """What reading a file's gzip members found: where the last whole member ends, and why the
    reading stopped ("end", "torn": an unfinished member runs to the end of the file, or
    "damaged": bytes that are not gzip)."""

    good_end: int
    size: int
    status: str


def iter_members(f) -> Iterator[tuple[int, bytes] | Scan]:
    """Yield (offset, decompressed bytes) for each whole gzip member of *f*, then one Scan."""
    pos = 0  # file offset where the current member starts
    pending = f.read(_READ)
    while pending:
        inflate = zlib.decompressobj(wbits=31)  # 31: gzip framing, one member at a time
        parts, used = [], 0
        while not inflate.eof:
            if not pending:
                pending = f.read(_READ)
                if not pending:
                    yield Scan(pos, pos + used, "torn")
                    return
            try:
                parts.append(inflate.decompress(pending))
            except zlib.error:
                yield Scan(pos, f.seek(0, os.SEEK_END), "damaged")
                return
            if inflate.eof:
                used += len(pending) - len(inflate.unused_data)
                pending = inflate.unused_data
            else:
                used += len(pending)
                pending = b""
        yield pos, b"".join(parts)
        pos += used
        if not pending:
            pending = f.read(_READ)
    yield Scan(pos, pos, "end")


def _tail_is_zeros(f, start: int) -> bool:
    """True if the file holds only NUL bytes from *start* (what a lost write leaves behind)."""
    f.seek(start)
    while chunk := f.read(_READ):
        if chunk.count(0) != len(chunk):
            return False
    return True


def _index_member(data: bytes, index: dict[bytes, str]) -> None:
    """Add a response record's payload digest to *index* as WarcWriter keeps it: "date
    record-id uri" (the first record of a digest wins)."""
    end = data.find(b"\r\n\r\n")
    if not data.startswith(b"WARC/") or end < 0:
        return
    fields = {}
    for line in data[:end].decode("utf-8", "replace").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    algorithm, _, value = fields.get("warc-payload-digest", "").partition(":")
    if (fields.get("warc-type") != "response" or algorithm.lower() != "sha1"
            or "warc-truncated" in fields):
        return
    try:
        digest = base64.b32decode(value)
    except (binascii.Error, ValueError):
        return  # not one of ours: no revisit can refer to it
    if digest != EMPTY_SHA1:
        index.setdefault(digest, f"{fields.get('warc-date', '')} "
                                 f"{fields.get('warc-record-id', '')} {fields.get('warc-target-uri', '')}")


def repair_and_index(path: str, index: dict[bytes, str]) -> None:
    """Cut a torn last member off *path* (unless another live writer holds it: flock), remove a
    file left without one whole record, and add its response records to *index*.

    A kill -9 leaves a prefix of what was written, so only the last member can be unfinished;
    the crawl state has not marked its URL fetched (flush comes first), so the resumed crawl
    writes it again. Bytes that are not gzip before the end are not a crash's doing: they raise
    WarcDamagedError rather than being cut (a tail of NUL bytes, a lost write, is cut)."""
    with open(path, "rb+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            mine = True
        except BlockingIOError:
            mine = False  # another crawl is writing it: read what is whole, touch nothing
        scan = Scan(0, 0, "end")
        for item in iter_members(f):
            if isinstance(item, Scan):
                scan = item
            else:
                _index_member(item[1], index)
        if not mine or scan.status == "end":
            return
        if scan.status == "damaged" and not _tail_is_zeros(f, scan.good_end):
            raise WarcDamagedError(f"{path}: not gzip at byte {scan.good_end} of {scan.size}")
        f.truncate(scan.good_end)
        empty = scan.good_end == 0
    if empty:
        os.unlink(path)


def create_file(directory: str, prefix: str, now: float, serial: int):
    """Create a new file (never reusing a name) and lock it; return (path, serial, binary file)."""
    while True:
        path = os.path.join(directory, file_name(prefix, now, serial))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:
            serial += 1  # another writer took this name in the same microsecond
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)  # held while writing: a resuming writer leaves it alone
        return path, serial, os.fdopen(fd, "wb", buffering=1 << 16)
