"""Sitemap parsing (pure, no I/O): gzip within bounds, XML without entity expansion, plain text.

After the sitemaps.org protocol (https://www.sitemaps.org/protocol.html): a <urlset> or a
<sitemapindex> in XML, or a text file with one URL per line; at most 50,000 URLs and 50 MB
(uncompressed) per file; an index lists sitemaps, not other indexes. The engine fetches the files
(through the host's politeness slot) and checks scope; this module only reads bytes.
"""

from __future__ import annotations

import io
import re
import zlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from xml.parsers import expat

from crawler.errors import CrawlError

MAX_SITEMAP_URLS = 50_000  # sitemaps.org: "no more than 50,000 URLs" per file
MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # sitemaps.org: "no larger than 50MB (52,428,800 bytes)"
# robots.txt names an index (depth 0), which names sitemaps (depth 1); an index at depth 1 is cut off.
MAX_INDEX_DEPTH = 1
MAX_LOC_LENGTH = 2048  # sitemaps.org: a <loc> "must be less than 2,048 characters"
_GZIP_MAGIC = b"\x1f\x8b"
_INFLATE_PIECE = 1 << 18  # inflate at most 256 KiB per call, so a bomb never outruns the check
_FEED_PIECE = 1 << 16  # input slices: no big copies of the rest, and max_urls stops expat early
# W3C Datetime (https://www.w3.org/TR/NOTE-datetime), loosely: a space for the T, offsets without
# the colon, and any fraction are accepted, as real sitemaps write them.
_W3C_DATETIME = re.compile(
    r"\d{4}(?:-(\d{2})(?:-(\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?)?)?)?"
)


class SitemapError(CrawlError):
    """A sitemap cannot be used (too large, broken gzip, malformed or hostile XML); names the URL."""


@dataclass(slots=True)
class SitemapEntry:
    """One <url> of a urlset, one <sitemap> of an index, or one line of a text sitemap."""

    loc: str
    lastmod: str | None = None


@dataclass(slots=True)
class Sitemap:
    """A parsed sitemap file: kind is "urlset", "index" or "text"."""

    kind: str
    entries: list[SitemapEntry] = field(default_factory=list)
    truncated: bool = False  # more than max_urls entries: the rest was not read
    skipped: int = 0  # locs that are not absolute http(s) URLs, or too long


def decode_sitemap_body(
    body: bytes, *, url: str, content_type: str = "", max_bytes: int = MAX_SITEMAP_BYTES
) -> bytes:
    """The sitemap's bytes, gunzipped when they are gzip; SitemapError past *max_bytes* or if broken."""
    # The magic bytes decide, not the name or the Content-Type: servers send .xml.gz already
    # decoded (Content-Encoding: gzip) and gzip files under any name or type.
    label = f" (Content-Type {content_type})" if content_type else ""
    if not body.startswith(_GZIP_MAGIC):
        if len(body) > max_bytes:
            raise SitemapError(f"sitemap {url} is larger than {_size(max_bytes)}{label}")
        return body
    out = bytearray()
    pos, data = 0, b""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        while True:
            if not data and pos < len(body):
                data = body[pos : pos + _FEED_PIECE]
                pos += len(data)
            piece = inflater.decompress(data, min(_INFLATE_PIECE, max_bytes - len(out) + 1))
            out += piece
            if len(out) > max_bytes:
                raise SitemapError(
                    f"sitemap {url} is larger than {_size(max_bytes)} uncompressed{label}"
                )
            data = inflater.unconsumed_tail
            if inflater.eof:
                # A gzip file may hold several members (RFC 1952 §2.2); zero padding may follow.
                pos, data = pos - len(inflater.unused_data), b""
                if body.startswith(_GZIP_MAGIC, pos):
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    continue
                if body[pos:].strip(b"\x00"):
                    raise SitemapError(f"sitemap {url}: garbage after the gzip data{label}")
                return bytes(out)
            if not piece and not data and pos >= len(body):
                raise SitemapError(f"sitemap {url}: gzip data cut off{label}")
    except zlib.error as exc:
        raise SitemapError(f"sitemap {url}: broken gzip data ({exc}){label}") from None


def _size(n: int) -> str:
    return f"{n >> 20} MB" if n % (1 << 20) == 0 else f"{n:,} bytes"


def parse_sitemap(data: bytes, *, url: str, max_urls: int = MAX_SITEMAP_URLS) -> Sitemap:
    """Parse decoded sitemap bytes: XML urlset or sitemapindex, else a text sitemap; SitemapError if unusable."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with its byte order mark
        return _XmlSitemap(url, max_urls).parse(data, 0)
    # Generated files often start with blank lines, which XML forbids before <?xml ...?>: skip
    # them (and a UTF-8 BOM), and count them back into error line numbers.
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    head = data[start : start + 4096]
    blank = len(head) - len(head.lstrip(b" \t\r\n"))
    if head.startswith(b"<", blank):
        lines = head[:blank].count(b"\n")
        return _XmlSitemap(url, max_urls).parse(memoryview(data)[start + blank :], lines)
    return _parse_text(data, url, max_urls)


def _usable_loc(loc: str) -> bool:
    """True for an absolute http(s) URL of protocol length: the protocol allows nothing else."""
    if len(loc) >= MAX_LOC_LENGTH:
        return False
    try:
        parts = urlsplit(loc)
    except ValueError:  # e.g. a malformed IPv6 literal
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _lastmod(text: str) -> str | None:
    """*text* stripped if it looks like a W3C datetime (month and day in range), else None."""
    match = _W3C_DATETIME.fullmatch(text := text.strip())
    if match and all(
        not g or 1 <= int(g) <= top for g, top in zip(match.groups(), (12, 31), strict=True)
    ):
        return text
    return None


def _parse_text(data: bytes, url: str, max_urls: int) -> Sitemap:
    # sitemaps.org: a text sitemap is UTF-8, one URL per line, nothing else. NUL bytes mean a binary
    # body (an image, a doubly gzipped file), which is an error rather than a sitemap of junk lines.
    if b"\x00" in data[:4096]:
        raise SitemapError(f"sitemap {url} is neither XML nor text (binary data)")
    sitemap = Sitemap("text")
    for line in io.StringIO(data.decode("utf-8-sig", errors="replace"), newline=None):
        loc = line.strip()
        if not loc:
            continue
        if not _usable_loc(loc):
            sitemap.skipped += 1
        elif len(sitemap.entries) >= max_urls:
            sitemap.truncated = True
            break
        else:
            sitemap.entries.append(SitemapEntry(loc))
    return sitemap


class _Stop(Exception):
    """Raised inside an expat handler to end the parse early (max_urls reached)."""


class _XmlSitemap:
    """One streaming expat parse: no tree is built, no entity is declared, none is expanded."""

    _ROOTS = {"urlset": ("urlset", "url"), "sitemapindex": ("index", "sitemap")}

    def __init__(self, url: str, max_urls: int) -> None:
        self.url = url
        self.max_urls = max_urls
        self.sitemap: Sitemap | None = None
        self.item = ""  # "url" in a urlset, "sitemap" in an index
        self.ns = ""  # the root's namespace: children are read in it (or in none)
        self.path: list[str] = []  # local names of the open elements that matter, or "" for others
        self.loc: list[str] | None = None  # the pieces of text of the current item's <loc>
        self.lastmod: list[str] | None = None  # ... and of its <lastmod>
        self.text: list[str] | None = None  # where character data goes now: one of those, or none
        self.text_len = 0

    def parse(self, data: bytes | memoryview, lines_before: int) -> Sitemap:
        # namespace_separator splits "uri local"; the sitemaps.org URI is not required, as old files
        # use Google's 0.84 namespace and some none at all.
        parser = expat.ParserCreate(namespace_separator=" ")
        # Never read external DTDs or parameter entities, and refuse any DOCTYPE outright: with no
        # declarations, only the five predefined entities and character references exist, so
        # neither billion laughs nor XXE (SYSTEM "file:///etc/passwd") can happen.
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._doctype
        parser.EntityDeclHandler = self._entity
        parser.UnparsedEntityDeclHandler = self._entity
        parser.ExternalEntityRefHandler = self._entity
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._chars
        parser.buffer_text = True
        try:
            for start in range(0, len(data), _FEED_PIECE):
                parser.Parse(data[start : start + _FEED_PIECE], False)
            parser.Parse(b"", True)
        except _Stop:
            pass
        except expat.ExpatError as exc:
            raise SitemapError(
                f"sitemap {self.url}: malformed XML at line {exc.lineno + lines_before}, column {exc.offset}: "
                f"{expat.ErrorString(exc.code)}"
            ) from None
        assert self.sitemap is not None  # expat reports "no element found" otherwise
        return self.sitemap

    def _doctype(self, name: str, *_: object) -> None:
        what = "an HTML page" if name.lower() == "html" else f"a DOCTYPE ({name})"
        raise SitemapError(
            f"sitemap {self.url} is {what}: DOCTYPE and entity declarations are refused"
        )

    def _entity(self, *_: object) -> None:  # pragma: no cover - the DOCTYPE is refused first
        raise SitemapError(f"sitemap {self.url}: entity declarations are refused")

    def _start(self, name: str, _attrs: dict[str, str]) -> None:
        ns, _, local = name.rpartition(" ")
        depth = len(self.path)
        if depth == 0:
            if local not in self._ROOTS:
                raise SitemapError(
                    f"sitemap {self.url}: root element <{local}> is neither <urlset> nor "
                    "<sitemapindex>"
                )
            kind, self.item = self._ROOTS[local]
            self.sitemap = Sitemap(kind)
            self.ns = ns
            self.path.append(local)
            return
        # Only <urlset><url><loc> (or <sitemapindex><sitemap><loc>) counts: an extension's
        # <image:loc> sits deeper and in another namespace.
        ours = ns in (self.ns, "") and all(self.path)
        if ours and depth == 1 and local == self.item:
            self.loc = self.lastmod = None
        elif ours and depth == 2 and local in ("loc", "lastmod"):
            if local == "loc" and self.loc is None:
                self.text = self.loc = []
            elif local == "lastmod" and self.lastmod is None:
                self.text = self.lastmod = []
            self.text_len = 0
        else:
            local = ""
        self.path.append(local)

    def _chars(self, text: str) -> None:
        if self.text is not None and self.text_len <= MAX_LOC_LENGTH:
            # A loc past the protocol length is skipped anyway: hold no more than that of it.
            self.text.append(text)
            self.text_len += len(text)

    def _end(self, _name: str) -> None:
        local = self.path.pop()
        self.text = None
        if len(self.path) != 1 or local != self.item:
            return
        sitemap = self.sitemap
        assert sitemap is not None
        loc = "".join(self.loc or ()).strip()
        if not _usable_loc(loc):  # a <url> without <loc> too
            sitemap.skipped += 1
        elif len(sitemap.entries) >= self.max_urls:
            sitemap.truncated = True
            raise _Stop
        else:
            lastmod = None if self.lastmod is None else _lastmod("".join(self.lastmod))
            sitemap.entries.append(SitemapEntry(loc, lastmod))


class SitemapWalk:
    """Which sitemap URLs to fetch next, per host: refuses loops, nesting beyond max_depth, and more
    than max_files_per_host files. Pure: the engine fetches, parses and reports."""

    def __init__(self, max_depth: int = MAX_INDEX_DEPTH, max_files_per_host: int = 1000) -> None:
        self.max_depth = max_depth
        self.max_files_per_host = max_files_per_host
        self._seen: dict[str, set[str]] = {}

    def start(self, host_key: str, urls: list[str]) -> tuple[list[tuple[str, int]], str | None]:
        """The (url, depth 0) pairs to fetch from robots.txt's Sitemap lines (or [/sitemap.xml]),
        and an error text when some were cut off."""
        return self._admit(host_key, urls, 0)

    def found_index(
        self, host_key: str, parent_depth: int, children: list[str]
    ) -> tuple[list[tuple[str, int]], str | None]:
        """The (url, depth) children of an index at *parent_depth* to fetch, and an error text when
        some were cut off (loop, too deep, too many)."""
        depth = parent_depth + 1
        if depth > self.max_depth:
            # An index lists Sitemaps (sitemaps.org: <sitemap> "encapsulates information about an
            # individual Sitemap"); Google's documentation states index files cannot nest.
            return [], (
                f"sitemap index at depth {parent_depth} lists {len(children)} more sitemap(s): "
                f"nesting deeper than {self.max_depth} cut off"
            )
        return self._admit(host_key, children, depth)

    def _admit(
        self, host_key: str, urls: list[str], depth: int
    ) -> tuple[list[tuple[str, int]], str | None]:
        seen = self._seen.setdefault(host_key, set())
        admitted: list[tuple[str, int]] = []
        repeats = over = 0
        for url in dict.fromkeys(urls):  # the same URL twice in one list is no loop: drop it
            if url in seen:
                # Already fetched or listed for this host: an index naming itself or an ancestor
                # (a loop), or the same file listed twice; fetching it again adds nothing.
                repeats += 1
            elif len(seen) >= self.max_files_per_host:
                over += 1
            else:
                seen.add(url)
                admitted.append((url, depth))
        problems = []
        if repeats:
            problems.append(f"{repeats} sitemap URL(s) already seen on this host (loop) skipped")
        if over:
            problems.append(
                f"{over} sitemap URL(s) beyond {self.max_files_per_host} per host cut off"
            )
        return admitted, "; ".join(problems) or None
