"""`--warc DIR`: WARC/1.1 (ISO 28500:2017) request, response and revisit records, one gzip member
per record, encoded by crawler/warc_records.py (bench/crawler/warc_costs.py measured it against
FastWARC's and warcio's writers)."""

from __future__ import annotations

import hashlib
import os
import re
import time

from crawler.warc_files import (
    EMPTY_SHA1,
    create_file,
    list_files,
    repair_and_index,
    warc_date,
)
from crawler.warc_records import GzipRecords, new_record_id, sha1_label

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


def _target_fields(url: str, ip: str | None) -> str:
    """WARC-Target-URI and WARC-IP-Address (if known) lines."""
    if ip:
        return f"WARC-Target-URI: {_check_field(url)}\r\nWARC-IP-Address: {_check_field(ip)}\r\n"
    return f"WARC-Target-URI: {_check_field(url)}\r\n"


# Exchanges wait in memory until flush() (the engine's group commit) or until their payloads
# pass this many bytes; see WarcWriter.
PENDING_BYTES = 4 << 20


class WarcWriter:
    """Writes WARC/1.1 records, one gzip member per record, into a directory; rotates files.

    An exchange is decided when it is given (response or revisit: the payload-digest index is
    updated at once) and encoded at the next flush(), which writes every waiting exchange in
    order and hands the bytes to the OS; the engine flushes before the state marks a URL
    fetched. Encoding a batch in one go keeps the deflate and hashing code and tables warm: in
    a crawl, an exchange encoded between two pages cost ~1.5x what it costs in a batch."""

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
                       truncated: bool) -> str:
        """Archive a response (or an identical-payload revisit) and its request record (written
        at the next flush()); return "response" or "revisit". *payload* is transfer-decoded,
        not content-decoded."""
        if self._closed:
            raise ValueError("WarcWriter is closed")
        sha = hashlib.sha1(payload).digest()  # the index key and the payload digest
        date = warc_date(fetched_at)
        response_id = new_record_id()
        common = _target_fields(url, ip)  # raises now, not at flush, on a line break
        earlier = None if truncated or sha == EMPTY_SHA1 else self._index.get(sha)
        if earlier is not None:
            kind = "revisit"
        else:
            kind = "response"
            if not truncated and sha != EMPTY_SHA1:
                self._index[sha] = f"{date} {response_id} {url}"  # not there: earlier is None
        self._give((kind, response_id, date, common, request_head, response_head, payload, sha,
                    truncated, earlier), len(payload))
        return kind

    def write_revisit_not_modified(self, *, url: str, fetched_at: float, ip: str | None,
                                   request_head: bytes, response_head: bytes,
                                   refers_to_date: str | None) -> None:
        """Archive a server-not-modified revisit (a 304 to a conditional request) and its
        request (written at the next flush())."""
        if self._closed:
            raise ValueError("WarcWriter is closed")
        common = _target_fields(url, ip)
        fields = (f"{common}{_RESPONSE_TYPE}WARC-Profile: {NOT_MODIFIED}\r\n"
                  f"WARC-Refers-To-Target-URI: {url}\r\n")
        if refers_to_date:
            fields += f"WARC-Refers-To-Date: {_check_field(refers_to_date)}\r\n"
        self._give(("not-modified", new_record_id(), warc_date(fetched_at), common, request_head,
                    response_head, fields), len(response_head))

    def _write_pending(self) -> None:
        """Encode and write every waiting exchange, in order; rotate between exchanges."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        try:
            records = []
            for exchange in pending:
                records += _exchange_records(exchange)
            members = self._records.members(records)
        except BaseException:
            self._forget(pending)
            raise
        write = None
        for i in range(len(pending)):
            if self._file is None or self._size >= self.max_size:
                self._open_next()  # only between exchanges: an exchange's records share a file
                write = None
            if write is None:
                write = self._file.write
            start = self._size
            response, request = members[2 * i], members[2 * i + 1]
            try:
                write(response)
                write(request)
            except BaseException:
                self._abandon(start)
                self._forget(pending[i:])
                raise
            self._size += len(response) + len(request)

    def _forget(self, lost: list[tuple]) -> None:
        """Drop the index entries of responses that were never written."""
        for exchange in lost:
            if exchange[0] == "response":
                _, response_id, date, _, _, _, _, sha, _, _ = exchange
                if self._index.get(sha, "").startswith(f"{date} {response_id} "):
                    del self._index[sha]

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


def _exchange_records(exchange: tuple) -> list[tuple]:
    """The records of one waiting exchange: the response (or revisit), then its request, whose
    WARC-Concurrent-To names it (section 5.7; the order Heritrix and warcio write)."""
    kind, record_id, date, common, request_head, response_head = exchange[:6]
    request = ("request", new_record_id(), date,
               f"{common}{_REQUEST_TYPE}WARC-Concurrent-To: {record_id}\r\n", request_head, None)
    if kind == "not-modified":
        return [("revisit", record_id, date, exchange[6], response_head, None), request]  # 6.7.3
    payload, sha, truncated, earlier = exchange[6:]
    head = archival_head(response_head, len(payload))
    if earlier is not None:
        # WARC 1.1 section 6.7.2: the block holds only the HTTP head; the payload is the
        # earlier record's, named by digest, URI, date and record id.
        earlier_date, earlier_id, earlier_uri = earlier.split(" ", 2)
        return [(kind, record_id, date, (
            f"{common}{_RESPONSE_TYPE}WARC-Profile: {IDENTICAL_PAYLOAD}\r\n"
            f"WARC-Refers-To-Target-URI: {earlier_uri}\r\n"
            f"WARC-Refers-To-Date: {earlier_date}\r\nWARC-Refers-To: {earlier_id}\r\n"
            f"WARC-Payload-Digest: {sha1_label(sha)}\r\n"), head, None), request]
    fields = common + _RESPONSE_TYPE
    if truncated:
        fields += "WARC-Truncated: length\r\n"  # section 5.13
    return [(kind, record_id, date, fields, head + payload, sha), request]
