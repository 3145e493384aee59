"""`--warc DIR`: WARC/1.1 (ISO 28500:2017) request, response and revisit records, one gzip member
per record, written with FastWARC (bench/crawler/warc_costs.py measured it against warcio)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
import uuid

from fastwarc.stream_io import GzipWriter
from fastwarc.warc import WarcRecord, WarcRecordType

from crawler.warc_files import (
    EMPTY_SHA1,
    create_file,
    list_files,
    repair_and_index,
    warc_date,
)

IDENTICAL_PAYLOAD = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
NOT_MODIFIED = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
_HTTP_RESPONSE = "application/http; msgtype=response"
_HTTP_REQUEST = "application/http; msgtype=request"
_TYPES = {"warcinfo": WarcRecordType.warcinfo, "response": WarcRecordType.response,
          "request": WarcRecordType.request, "revisit": WarcRecordType.revisit}
# Level 6, zlib's default: on HTML it costs less CPU than 9 (FastWARC's default, and warcio's
# only level) for files within 2% of the size; level 1 costs about 40% less CPU for files about a
# third larger (bench/crawler/warc_costs.py). gzip_level= chooses.
GZIP_LEVEL = 6
_FRAMING = re.compile(rb"(?im)^(transfer-encoding|content-length)[ \t]*:")


class FastWarcRecords:
    """Encodes records with FastWARC onto a binary file, each record its own gzip member."""

    def __init__(self, file, level: int = GZIP_LEVEL) -> None:
        """Write to *file* (anything with write/flush) at gzip *level*."""
        self._gzip = GzipWriter(file, compression_level=level)

    def record(self, kind: str, record_id: str, date: str, fields: list[tuple[str, str]],
               block: bytes, payload_sha1: bytes | None = None) -> None:
        """One record: WARC-Type, -Record-ID, -Date, Content-Length and WARC-Block-Digest are
        set here, *fields* after them; WARC-Payload-Digest from *payload_sha1* if given."""
        rec = WarcRecord()
        rec.init_headers(_TYPES[kind], record_urn=record_id[5:-1].encode())  # "<urn:" ... ">"
        headers = rec.headers
        headers["WARC-Date"] = date
        for name, value in fields:
            headers.append(name, value)
        rec.set_bytes_content(block)
        rec.write(self._gzip, checksum_data=True, payload_digest=payload_sha1)
        self._gzip.finish()  # ends the gzip member: one member per record (WARC 1.1 annex D)


def new_record_id() -> str:
    """A WARC-Record-ID: <urn:uuid:...> (WARC 1.1 section 5.2)."""
    return f"<urn:uuid:{uuid.uuid4()}>"


def sha1_label(digest: bytes) -> str:
    """"sha1:" + base32, the labelled digest WARC readers verify (section 5.8)."""
    return "sha1:" + base64.b32encode(digest).decode("ascii")


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
    if not re.search(rb"(?im)^transfer-encoding[ \t]*:", head):
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


class WarcWriter:
    """Writes WARC/1.1 records, one gzip member per record, into a directory; rotates files."""

    records_class = FastWarcRecords  # the record encoder (the bench swaps in warcio's)

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
        self._records: FastWarcRecords | None = None
        self.path: str | None = None  # the file being written
        self._closed = False
        self._open_next()

    def _open_next(self) -> None:
        """Close the current file and start the next one with its warcinfo record."""
        self._close_file()
        self.path, self._serial, self._file = create_file(
            self.directory, self.prefix, time.time(), self._serial + 1)
        self._records = self.records_class(self._file, self.gzip_level)
        fields = {"format": "WARC File Format 1.1",
                  "conformsTo": "https://iipc.github.io/warc-specifications/specifications/"
                                "warc-format/warc-1.1/"}
        fields.update(self._info)
        block = "".join(f"{_check_field(str(k))}: {_check_field(str(v))}\r\n"
                        for k, v in fields.items()).encode("utf-8")
        self._records.record("warcinfo", new_record_id(), warc_date(time.time()), [
            ("WARC-Filename", os.path.basename(self.path)),
            ("Content-Type", "application/warc-fields")], block)

    def _start_exchange(self) -> int:
        """Rotate if the last write took the file past max_size; return the exchange's offset.
        Rotation happens only between exchanges, so an exchange's records share a file."""
        if self._closed:
            raise ValueError("WarcWriter is closed")
        if self._file is None or self._file.tell() >= self.max_size:
            self._open_next()
        return self._file.tell()

    def _abandon(self, start: int) -> None:
        """After a failed write: drop the exchange's partial bytes, and go on in a new file."""
        path, file = self.path, self._file
        self._file = self._records = None
        try:
            file.close()
        except OSError:
            pass
        try:
            os.truncate(path, start)
        except OSError:
            pass  # the next WarcWriter on this directory cuts the torn member instead

    def write_exchange(self, *, url: str, fetched_at: float, ip: str | None,
                       request_head: bytes, response_head: bytes, payload: bytes,
                       truncated: bool) -> str:
        """Write a response (or an identical-payload revisit) and its request record; return
        "response" or "revisit". *payload* is transfer-decoded, not content-decoded."""
        sha = hashlib.sha1(payload).digest()  # the index key; base32 only when a revisit needs it
        head = archival_head(response_head, len(payload))
        date = warc_date(fetched_at)
        response_id = new_record_id()
        common = [("WARC-Target-URI", _check_field(url))]
        if ip:
            common.append(("WARC-IP-Address", ip))
        earlier = None if truncated or sha == EMPTY_SHA1 else self._index.get(sha)
        if earlier is not None:
            earlier_date, earlier_id, earlier_uri = earlier.split(" ", 2)
        start = self._start_exchange()
        try:
            if earlier is not None:
                # WARC 1.1 section 6.7.2: the block holds only the HTTP head; the payload is the
                # earlier record's, named by digest, URI, date and record id.
                kind = "revisit"
                self._records.record(kind, response_id, date, common + [
                    ("Content-Type", _HTTP_RESPONSE), ("WARC-Profile", IDENTICAL_PAYLOAD),
                    ("WARC-Refers-To-Target-URI", earlier_uri),
                    ("WARC-Refers-To-Date", earlier_date), ("WARC-Refers-To", earlier_id),
                    ("WARC-Payload-Digest", sha1_label(sha))], head)
            else:
                kind = "response"
                fields = common + [("Content-Type", _HTTP_RESPONSE)]
                if truncated:
                    fields.append(("WARC-Truncated", "length"))  # section 5.13
                self._records.record(kind, response_id, date, fields, head + payload, sha)
                if not truncated and sha != EMPTY_SHA1:
                    self._index.setdefault(sha, f"{date} {response_id} {url}")
            self._write_request(response_id, date, common, request_head)
        except BaseException:
            self._abandon(start)
            raise
        return kind

    def write_revisit_not_modified(self, *, url: str, fetched_at: float, ip: str | None,
                                   request_head: bytes, response_head: bytes,
                                   refers_to_date: str | None) -> None:
        """Write a server-not-modified revisit (a 304 to a conditional request) and its request."""
        date = warc_date(fetched_at)
        revisit_id = new_record_id()
        common = [("WARC-Target-URI", _check_field(url))]
        if ip:
            common.append(("WARC-IP-Address", ip))
        fields = common + [("Content-Type", _HTTP_RESPONSE), ("WARC-Profile", NOT_MODIFIED),
                           ("WARC-Refers-To-Target-URI", url)]
        if refers_to_date:
            fields.append(("WARC-Refers-To-Date", _check_field(refers_to_date)))
        start = self._start_exchange()
        try:
            self._records.record("revisit", revisit_id, date, fields, response_head)  # 6.7.3
            self._write_request(revisit_id, date, common, request_head)
        except BaseException:
            self._abandon(start)
            raise

    def _write_request(self, concurrent_to: str, date: str, common: list[tuple[str, str]],
                       request_head: bytes) -> None:
        """The request record, after its response: WARC-Concurrent-To names the response
        (section 5.7), the order Heritrix and warcio write."""
        self._records.record("request", new_record_id(), date, common + [
            ("Content-Type", _HTTP_REQUEST), ("WARC-Concurrent-To", concurrent_to)],
            request_head)

    def flush(self) -> None:
        """Hand every record written so far to the OS (it survives a kill -9 of the process)."""
        if self._file is not None:
            self._file.flush()

    def _close_file(self) -> None:
        """Flush and close the current file (its lock goes with it)."""
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = self._records = None

    def close(self) -> None:
        """Flush and close; the writer takes no more records."""
        self._close_file()
        self._closed = True

    def __enter__(self) -> WarcWriter:
        """The writer itself; close() on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close."""
        self.close()
