"""One fetch outcome -> its `CrawlRecord`: content hash and duplicate, links extracted and
admitted, SimHash and near duplicate. Sync and socket-free: the engine calls it after the fetch."""

from __future__ import annotations

import codecs
import functools
import hashlib
import time
from typing import NamedTuple

from crawler.admission import Admission, Link
from crawler.config import CrawlConfig
from crawler.errors import FetchError, InvalidURL
from crawler.fetcher import FetchResult
from crawler.links import extract_links
from crawler.page import charset_of
from crawler.records import CrawlRecord, CrawlSummary
from crawler.simhash import SimHashIndex, html_simhash
from crawler.state import Lease
from crawler.urls import normalize_url

MIN_SIMHASH_WORDS = 50
SIMHASH_TEXT = 1 << 20  # characters of a page read for its SimHash (ample for MAX_SHINGLES words)


class Validators(NamedTuple):
    """What a recrawl keeps of a URL's last response."""

    etag: str | None
    last_modified: str | None
    fetched_at: float  # wall-clock time of that fetch
    content_hash: str | None


def conditional_headers(previous: Validators) -> dict[str, str]:
    """If-None-Match / If-Modified-Since from the last response (RFC 9110 §13.1)."""
    headers = {}
    if previous.etag:
        headers["If-None-Match"] = previous.etag
    if previous.last_modified:
        headers["If-Modified-Since"] = previous.last_modified
    return headers


def keep_validators(record: CrawlRecord, previous: Validators) -> None:
    """A 304 keeps what the last full answer said (RFC 9110 §15.4.5: it may omit the validators),
    so the next recrawl can ask again; its content is the one already recorded."""
    record.etag = record.etag or previous.etag
    record.last_modified = record.last_modified or previous.last_modified
    record.content_hash = previous.content_hash


class Recorded(NamedTuple):
    """A fetch's record, and what was read of the page for it (HTML only)."""

    record: CrawlRecord
    text: str | None  # the decoded text
    urls: tuple[str, ...]  # the normalized links extracted


class PageRecorder:
    """Records fetched URLs; keeps the crawl's exact (SHA-256) and near (SimHash) content indexes."""

    def __init__(self, config: CrawlConfig, admission: Admission, summary: CrawlSummary) -> None:
        """Admit links through *admission*; count into *summary*."""
        self.config, self.admission, self.summary = config, admission, summary
        self.simhashes = SimHashIndex()
        self.hashes: dict[bytes, str] = {}  # body digest (16 bytes) -> first URL with that body

    def record(self, url: str, lease: Lease, result: FetchResult | None,
               error: FetchError | None, links: list[Link]) -> Recorded:
        """The record of *url*'s fetch, with the text and links read for it (a handler gets
        them); its new links are admitted into *links*."""
        depth = lease.depth
        text: str | None = None
        urls: tuple[str, ...] = ()
        if result is None:
            return Recorded(CrawlRecord(url, None, depth, lease.referrer, 0, None, time.time(),
                                        str(error)), text, urls)
        body = result.body
        digest = hashlib.sha256(body)
        err: str | None = None
        redirect_to = duplicate_of = near = fingerprint = None
        found = 0
        if result.truncated:
            err = f"body larger than {self.config.max_body} bytes: cut off"
        status = result.status
        if 300 <= status < 400 and result.location:
            try:
                redirect_to = normalize_url(result.location, url)
            except InvalidURL as exc:
                err = f"invalid redirect target: {exc}"
            else:
                err, found = self.admission.redirect(url, redirect_to, depth, links)
        elif 200 <= status < 300 and "html" in result.content_type.lower() and err is None:
            key = digest.digest()[:16]
            duplicate_of = self.hashes.setdefault(key, url)
            if duplicate_of == url:
                duplicate_of = None
            # A duplicate's links are still extracted: relative links resolve against a different
            # base, so the same bytes can lead to different pages (the known-URL index drops the rest).
            err, found, text, urls, utf8 = self._follow_links(url, depth, body,
                                                              result.content_type, links)
            if duplicate_of is None and text is not None:
                # the body itself when it is the text's UTF-8 (no encoding it back)
                source = body if utf8 and len(body) <= SIMHASH_TEXT else text[:SIMHASH_TEXT]
                fp, words = html_simhash(source, MIN_SIMHASH_WORDS)
                # 50+ words only: on a shorter page one changed word moves the fingerprint
                # further than distance 3 anyway
                if words >= MIN_SIMHASH_WORDS:
                    near, fingerprint = self.simhashes.add(fp, url), f"{fp:016x}"
                    if near == url:  # a recrawled page near its own earlier version
                        near = None
        headers = result.headers
        etag = last_modified = None
        if headers is not None and (200 <= status < 300 or status == 304):
            etag, last_modified = headers.get("ETag"), headers.get("Last-Modified")
        return Recorded(CrawlRecord(
            url, status, depth, lease.referrer, len(body), digest.hexdigest(), time.time(), err,
            result.content_type or None, redirect_to, duplicate_of, found, near, fingerprint,
            etag, last_modified,
        ), text, urls)

    def _follow_links(self, url: str, depth: int, body: bytes, content_type: str, out: list[Link],
                      ) -> tuple[str | None, int, str | None, tuple[str, ...], bool]:
        """Extract and admit the page's links: (error text, links admitted, decoded text, the
        links extracted, whether the body is that text's UTF-8)."""
        if b"\x00" in body[:1024]:
            return "binary body served as HTML: links not extracted", 0, None, (), False
        charset = charset_of(content_type)
        err = None
        try:
            text = body.decode(charset)
            utf8 = _is_utf8(charset)
        except (UnicodeDecodeError, LookupError) as exc:
            err = f"undecodable body ({exc.__class__.__name__}, {charset}): decoded with replacement"
            text = body.decode("utf-8", "replace")
            utf8 = False
        page = extract_links(text, url, self.config.max_links)
        self.summary.invalid_links += page.invalid
        if page.truncated:
            err = f"more than {self.config.max_links} links: the rest ignored"
        return err, self.admission.page_links(url, depth, page.urls, out), text, page.urls, utf8


@functools.lru_cache(maxsize=64)
def _is_utf8(charset: str) -> bool:
    """Whether text decoded strictly with *charset* encodes back to the same bytes in UTF-8."""
    return codecs.lookup(charset).name in ("utf-8", "ascii")
