"""`--warc DIR`: WARC/1.1 (ISO 28500:2017) request, response and revisit records, one gzip member
per record, encoded by crawler/warc_records.py (bench/crawler/warc_costs.py measured it against
FastWARC's and warcio's writers)."""

from __future__ import annotations

import os
import re
import time
from hashlib import sha1 as _sha1

from crawler.warc_files import (
    EMPTY_SHA1,
    create_file,
    list_files,
    repair_and_index,
    warc_date,
)
from crawler.warc_records import GzipRecords, new_record_id, new_record_ids, sha1_label

__all__ = ["IDENTICAL_PAYLOAD", "NOT_MODIFIED", "GZIP_LEVEL", "WarcWriter", "archival_head",
           "new_record_id", "sha1_label"]

IDENTICAL_PAYLOAD = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
NOT_MODIFIED = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
_RESPONSE_TYPE = "Content-Type: application/http; msgtype=response\r\n"
_REQUEST_TYPE = "Content-Type: application/http; msgtype=request\r\n"
# zlib's scale; 6 is zlib's default and ISA-L's level 2, its default (crawler/warc_records.py
# maps it): on HTML either costs less CPU than 9 (warcio's only level) for files within 2% of the
# size (bench/crawler/warc_costs.py). gzip_level= chooses.
GZIP_LEVEL = 6
_FRAMING = re.compile(rb"(?im)^(transfer-encoding|content-length)[ \t]*:")
_CHUNKED = re.compile(rb"(?im)^transfer-encoding[ \t]*:")


def archival_head(head: bytes, payload_length: int) -> bytes:
    """The response head to archive beside a payload that was transfer-decoded.

    The fetcher hands over the payload de-chunked; the chunk framing is gone. warcio digests the
    raw bytes after the HTTP head but de-chunks them for replay when the head says chunked, and
    FastWARC does not de-chunk by default, so a head still saying chunked over a de-chunked body
    would make a record replay misreads, and tools that de-chunk before digesting would disagree
    on its payload digest. So, as Common Crawl does (FastWARC's documentation describes it), the
    framing headers are kept under an X-Crawler- prefix and a Content-Length of the bytes
    archived is added: the block is then an exact HTTP message whose payload is the entity body,
    and every reader computes the same WARC-Payload-Digest from it (section 5.9). Heads without
    a Transfer-Encoding are archived byte for byte."""
    if b"transfer-encoding" not in head.lower() or not _CHUNKED.search(head):  # cheap test first
        return head
    renamed = _FRAMING.sub(lambda m: b"X-Crawler-" + m.group(0), head)
    end = renamed.rfind(b"\r\n\r\n")
    newline, cut = (b"\r\n", end + 2) if end >= 0 else (b"\n", renamed.rfind(b"\n\n") + 1)
    return renamed[:cut] + b"Content-Length: %d" % payload_length + newline + renamed[cut:]


def _check_field(value: str) -> str:
    """A header value must stay on one line (WARC 1.1 section 4: named fields)."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in a WARC field value: {value!r}")
    return value


def _check_target(url: str, ip: str | None) -> None:
    """The URI and the address go into WARC fields: no line break in either."""
    if "\n" in url or "\r" in url or ip and ("\n" in ip or "\r" in ip):
        raise ValueError(f"line break in a WARC field value: {url!r} {ip!r}")


# Exchanges wait in memory until flush() (the engine's group commit) or until their payloads
# pass this many bytes; see WarcWriter.
PENDING_BYTES = 4 << 20


class WarcWriter:
    """Writes WARC/1.1 records, one gzip member per record, into a directory; rotates files.

    An exchange given waits, untouched, for the next flush(), which decides every waiting one
    in order (response, or revisit of an earlier identical payload: the payload-digest index
    is updated as it goes), encodes and writes them, and hands the bytes to the OS; the engine
    flushes before the state marks a URL fetched. Doing all of it in one batch keeps the code
    and tables warm: in a crawl of 1 KB pages, the work done as each page arrived (digest, date,
    record id, index) cost ~11 µs of CPU a page, and ~4 µs once moved into the batch (thread CPU
    of the sink's calls, 4 alternated crawls: the whole path ~33 -> ~28 µs an exchange)."""

    records_class = GzipRecords  # the record encoder (the bench swaps in FastWARC's, warcio's)

    def __init__(self, directory: str, *, max_size: int = 1 << 30, info: dict[str, str],
                 prefix: str = "fanmill", gzip_level: int = GZIP_LEVEL) -> None:
        """Repair the files in *directory* (created if needed), rebuild the payload-digest index
        from their response records, and start a new file that begins with a warcinfo record."""
        os.makedirs(directory, exist_ok=True)
        self.directory, self.max_size, self.prefix = directory, max_size, prefix
        self.gzip_level = gzip_level
        self._info = dict(info)
        # payload SHA-1 -> "date record-id uri" of its response: one str keeps it ~300 B an entry
        self._index: dict[bytes, str] = {}
        files = list_files(directory, prefix)
        for _, path in files:
            repair_and_index(path, self._index)
        self._serial = files[-1][0] if files else 0  # the next file's serial follows the last
        self._file = None
        self._records = self.records_class(gzip_level)
        self._size = 0  # bytes written to the current file (counted: tell() would be a syscall)
        self._pending: list[tuple] = []  # exchanges given but not yet encoded, in order
        self._pending_bytes = 0
        self.path: str | None = None  # the file being written
        self._closed = False
        self._open_next()

    def _open_next(self) -> None:
        """Close the current file and start the next one with its warcinfo record."""
        self._close_file()
        self.path, self._serial, self._file = create_file(
            self.directory, self.prefix, time.time(), self._serial + 1)
        self._size = 0
        fields = {"format": "WARC File Format 1.1",
                  "conformsTo": "https://iipc.github.io/warc-specifications/specifications/"
                                "warc-format/warc-1.1/"}
        fields.update(self._info)
        block = "".join(f"{_check_field(str(k))}: {_check_field(str(v))}\r\n"
                        for k, v in fields.items()).encode("utf-8")
        [info] = self._records.members([(
            "warcinfo", new_record_id(), warc_date(time.time()),
            f"WARC-Filename: {os.path.basename(self.path)}\r\n"
            "Content-Type: application/warc-fields\r\n", block, None)])
        self._file.write(info)
        self._size += len(info)

    def _abandon(self, start: int) -> None:
        """After a failed write: drop the exchange's partial bytes, and go on in a new file."""
        path, file = self.path, self._file
        self._file = None
        try:
            file.close()
        except OSError:
            pass
        try:
            os.truncate(path, start)
        except OSError:
            pass  # the next WarcWriter on this directory cuts the torn member instead

    def _give(self, exchange: tuple, size: int) -> None:
        """Queue an exchange for the next flush; encode the queue now if it holds too much."""
        self._pending.append(exchange)
        self._pending_bytes += size
        if self._pending_bytes >= PENDING_BYTES:
            self._write_pending()

    def write_exchange(self, *, url: str, fetched_at: float, ip: str | None,
                       request_head: bytes, response_head: bytes, payload: bytes,
                       truncated: bool) -> None:
        """Archive a response (or an identical-payload revisit, decided in order at the next
        flush()) and its request record. *payload* is transfer-decoded, not content-decoded."""
        if self._closed:
            raise ValueError("WarcWriter is closed")
        _check_target(url, ip)  # raises now, not at flush, on a line break
        self._give((None, url, fetched_at, ip, request_head, response_head, payload, truncated),
                   len(payload))

    def write_revisit_not_modified(self, *, url: str, fetched_at: float, ip: str | None,
                                   request_head: bytes, response_head: bytes,
                                   refers_to_date: str | None) -> None:
        """Archive a server-not-modified revisit (a 304 to a conditional request) and its
        request (written at the next flush())."""
        if self._closed:
            raise ValueError("WarcWriter is closed")
        _check_target(url, ip)
        if refers_to_date:
            _check_field(refers_to_date)
        # the shape of an exchange, with the referred date where the payload goes
        self._give((NOT_MODIFIED, url, fetched_at, ip, request_head, response_head,
                    refers_to_date, False), len(response_head))

    def _write_pending(self) -> None:
        """Decide, encode and write every waiting exchange, in order; rotate between exchanges."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        added: list[bytes | None] = []  # the payload SHA-1 each exchange added to the index
        try:
            records = _exchange_records(pending, self._index, added)
            members = self._records.members(records)
        except BaseException:
            self._forget(added)
            raise
        # one write per file (the records of a batch are ~2,000 small members): rotation is
        # still decided between exchanges, before each one, on the size written so far
        at, count = 0, len(pending)
        while at < count:
            if self._file is None or self._size >= self.max_size:
                self._open_next()  # only between exchanges: an exchange's records share a file
            start = size = self._size
            end = at
            while end < count and (end == at or size < self.max_size):
                size += len(members[2 * end]) + len(members[2 * end + 1])
                end += 1
            try:
                self._file.write(b"".join(members[2 * at:2 * end]))
            except BaseException:
                self._abandon(start)
                self._forget(added[at:])
                raise
            self._size, at = size, end

    def _forget(self, lost: list[bytes | None]) -> None:
        """Drop the index entries of responses that were never written."""
        for sha in lost:
            if sha is not None:
                self._index.pop(sha, None)

    def flush(self) -> None:
        """Write every exchange given so far and hand the bytes to the OS (they survive a kill
        -9 of the process)."""
        if self._pending:
            self._write_pending()
        if self._file is not None:
            self._file.flush()

    def _close_file(self) -> None:
        """Flush and close the current file (its lock goes with it)."""
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Write what waits, flush and close; the writer takes no more records."""
        if self._closed:
            return
        try:
            if self._pending:
                self._write_pending()
        finally:
            self._close_file()
            self._closed = True

    def __enter__(self) -> WarcWriter:
        """The writer itself; close() on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close."""
        self.close()


def _exchange_records(pending: list[tuple], index: dict[bytes, str],
                      added: list[bytes | None]) -> list[tuple]:
    """The records of waiting exchanges, in order: each response (or revisit), then its request,
    whose WARC-Concurrent-To names it (section 5.7; the order Heritrix and warcio write). A
    response's payload digest goes into *index* (and *added*, one entry per exchange) as it is
    decided, so a later identical payload in the same batch is its revisit."""
    records = []
    ids = new_record_ids(2 * len(pending))
    for n, (profile, url, fetched_at, ip, request_head, response_head, payload,
            truncated) in enumerate(pending):
        date = warc_date(fetched_at)
        record_id, request_id = ids[2 * n], ids[2 * n + 1]
        common = (f"WARC-Target-URI: {url}\r\nWARC-IP-Address: {ip}\r\n" if ip
                  else f"WARC-Target-URI: {url}\r\n")
        request = ("request", request_id, date,
                   f"{common}{_REQUEST_TYPE}WARC-Concurrent-To: {record_id}\r\n", request_head,
                   None)
        if profile is not None:  # a 304 to a conditional request (section 6.7.3)
            fields = (f"{common}{_RESPONSE_TYPE}WARC-Profile: {NOT_MODIFIED}\r\n"
                      f"WARC-Refers-To-Target-URI: {url}\r\n")
            refers_to_date = payload  # write_revisit_not_modified put it there
            if refers_to_date:
                fields += f"WARC-Refers-To-Date: {refers_to_date}\r\n"
            records += (("revisit", record_id, date, fields, response_head, None), request)
            added.append(None)
            continue
        sha = _sha1(payload).digest()  # the index key and the payload digest
        head = archival_head(response_head, len(payload))
        earlier = None if truncated or sha == EMPTY_SHA1 else index.get(sha)
        if earlier is not None:
            # WARC 1.1 section 6.7.2: the block holds only the HTTP head; the payload is the
            # earlier record's, named by digest, URI, date and record id.
            earlier_date, earlier_id, earlier_uri = earlier.split(" ", 2)
            records += (("revisit", record_id, date, (
                f"{common}{_RESPONSE_TYPE}WARC-Profile: {IDENTICAL_PAYLOAD}\r\n"
                f"WARC-Refers-To-Target-URI: {earlier_uri}\r\n"
                f"WARC-Refers-To-Date: {earlier_date}\r\nWARC-Refers-To: {earlier_id}\r\n"
                f"WARC-Payload-Digest: {sha1_label(sha)}\r\n"), head, None), request)
            added.append(None)
            continue
        if truncated:
            fields = f"{common}{_RESPONSE_TYPE}WARC-Truncated: length\r\n"  # section 5.13
            added.append(None)
        else:
            fields = common + _RESPONSE_TYPE
            if sha == EMPTY_SHA1:  # no revisit refers to an empty payload
                added.append(None)
            else:
                index[sha] = f"{date} {record_id} {url}"
                added.append(sha)
        records += (("response", record_id, date, fields, head + payload, sha), request)
    return records
