"""crawler/sitemaps: decoding and parsing sitemap files (pure), hostile ones included, and SitemapWalk."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.errors import CrawlError
from crawler.sitemaps import (
    MAX_INDEX_DEPTH,
    MAX_SITEMAP_BYTES,
    Sitemap,
    SitemapEntry,
    SitemapError,
    SitemapWalk,
    decode_sitemap_body,
    parse_sitemap,
)

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
URL = "http://example.test/sitemap.xml"


def urlset(*locs: str) -> bytes:
    items = "".join(f"<url><loc>{escape(loc)}</loc></url>" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{NS}">{items}</urlset>'.encode()


def parse(data: bytes, **kwargs: int) -> Sitemap:
    return parse_sitemap(data, url=URL, **kwargs)


def test_urlset_with_lastmod() -> None:
    data = f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="{NS}">
  <url>
    <loc>
      http://example.test/a
    </loc>
    <lastmod>2024-05-01T10:20:30+02:00</lastmod>
    <changefreq>daily</changefreq>
  </url>
  <url><lastmod> 2024-05 </lastmod><loc>https://example.test/b</loc></url>
  <url><loc>http://example.test/c</loc><lastmod>yesterday</lastmod></url>
  <url><loc>http://example.test/d</loc><lastmod>2024-13-01</lastmod></url>
  <url><loc>http://example.test/e</loc><lastmod>2024-05-01 10:20:30Z</lastmod></url>
</urlset>""".encode()
    sitemap = parse(data)
    assert sitemap == Sitemap(
        "urlset",
        [
            SitemapEntry("http://example.test/a", "2024-05-01T10:20:30+02:00"),
            SitemapEntry("https://example.test/b", "2024-05"),
            SitemapEntry("http://example.test/c", None),
            SitemapEntry("http://example.test/d", None),
            SitemapEntry("http://example.test/e", "2024-05-01 10:20:30Z"),
        ],
        truncated=False,
        skipped=0,
    )
    assert isinstance(SitemapError("x"), CrawlError)


def test_sitemap_index() -> None:
    data = f"""<sitemapindex xmlns="{NS}">
  <sitemap><loc>http://example.test/s1.xml.gz</loc><lastmod>2024-01-02</lastmod></sitemap>
  <sitemap><loc>http://example.test/s2.xml</loc></sitemap>
</sitemapindex>""".encode()
    sitemap = parse(data)
    assert sitemap.kind == "index"
    assert sitemap.entries == [
        SitemapEntry("http://example.test/s1.xml.gz", "2024-01-02"),
        SitemapEntry("http://example.test/s2.xml", None),
    ]


@pytest.mark.parametrize(
    "root",
    [
        f'<urlset xmlns="{NS}">',  # the sitemaps.org namespace
        "<urlset>",  # none
        '<urlset xmlns="http://www.google.com/schemas/sitemap/0.84">',  # Google's old one
        f'<sm:urlset xmlns:sm="{NS}" xmlns="{NS}">',  # prefixed root
    ],
)
def test_namespace_variants(root: str) -> None:
    end = "</sm:urlset>" if root.startswith("<sm:") else "</urlset>"
    data = f"{root}<url><loc>http://example.test/a</loc></url>{end}".encode()
    assert parse(data).entries == [SitemapEntry("http://example.test/a")]


def test_encodings_bom_and_leading_blank_lines() -> None:
    body = '<?xml version="1.0" encoding="{}"?>\n<urlset><url><loc>http://a.test/é</loc></url></urlset>'
    expected = [SitemapEntry("http://a.test/é")]
    assert parse(body.format("UTF-16").encode("utf-16")).entries == expected
    assert parse(body.format("ISO-8859-1").encode("latin-1")).entries == expected
    # Blank lines before the XML declaration (XML forbids them; generators write them) are skipped.
    assert parse(b"\xef\xbb\xbf\r\n\n  " + body.format("UTF-8").encode()).entries == expected
    with pytest.raises(SitemapError, match="line 4, column 5: mismatched tag"):
        parse(b"\r\n\n<urlset>\n<x></urlset>")  # the skipped lines still count


def test_extension_locs_are_not_page_locs() -> None:
    # The image extension's <image:loc> sits inside <url>, in its own namespace.
    data = f"""<urlset xmlns="{NS}" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
<url><loc>http://example.test/page</loc>
<image:image><image:loc>http://example.test/photo.jpg</image:loc></image:image></url>
<url><image:loc>http://example.test/only-image.jpg</image:loc></url></urlset>""".encode()
    sitemap = parse(data)
    assert sitemap.entries == [SitemapEntry("http://example.test/page")]
    assert sitemap.skipped == 1  # the <url> without a <loc>


def test_cdata_and_predefined_entities_in_locs() -> None:
    data = f"""<urlset xmlns="{NS}">
<url><loc><![CDATA[http://example.test/a?x=1&y=<2>]]></loc></url>
<url><loc>http://example.test/b?x=1&amp;y=2&#38;z=&lt;3&gt;&quot;&apos;</loc></url>
</urlset>""".encode()
    assert [e.loc for e in parse(data).entries] == [
        "http://example.test/a?x=1&y=<2>",
        "http://example.test/b?x=1&y=2&z=<3>\"'",
    ]


def test_relative_and_non_http_locs_are_skipped() -> None:
    data = urlset(
        "/relative",
        "page.html",
        "ftp://example.test/f",
        "javascript:alert(1)",
        "http://",
        "http://example.test/" + "x" * 2100,  # the protocol caps a loc under 2,048 characters
        "HTTPS://example.test/kept",
    )
    sitemap = parse(data)
    assert sitemap.entries == [SitemapEntry("HTTPS://example.test/kept")]
    assert sitemap.skipped == 6


def test_more_than_max_urls_is_truncated() -> None:
    locs = [f"http://example.test/{i}" for i in range(10)]
    sitemap = parse(urlset(*locs), max_urls=3)
    assert [e.loc for e in sitemap.entries] == locs[:3]
    assert sitemap.truncated
    exactly = parse(urlset(*locs[:3]), max_urls=3)
    assert len(exactly.entries) == 3 and not exactly.truncated
    # The parse stops at the cut: what follows is never read, broken or not.
    cut = parse(urlset(*locs)[:-20] + b"<<< not XML &&&", max_urls=3)
    assert [e.loc for e in cut.entries] == locs[:3] and cut.truncated
    text = parse("\n".join(locs).encode(), max_urls=4)
    assert [e.loc for e in text.entries] == locs[:4] and text.truncated


def test_text_sitemap() -> None:
    data = b"\xef\xbb\xbfhttp://example.test/a\r\n\r\n  https://example.test/caf\xc3\xa9  \n/rel\nhttp://example.test/b"
    sitemap = parse(data)
    assert sitemap == Sitemap(
        "text",
        [
            SitemapEntry("http://example.test/a"),
            SitemapEntry("https://example.test/café"),
            SitemapEntry("http://example.test/b"),
        ],
        skipped=1,
    )


def test_binary_body_is_not_a_text_sitemap() -> None:
    with pytest.raises(SitemapError, match="neither XML nor text"):
        parse(gzip.compress(gzip.compress(urlset("http://example.test/a"))))


def test_gzip_with_and_without_gz_in_the_name() -> None:
    plain = urlset("http://example.test/a", "http://example.test/b")
    for url in ("http://example.test/s.xml.gz", "http://example.test/sitemap.xml", URL + "?p=1"):
        decoded = decode_sitemap_body(gzip.compress(plain), url=url, content_type="text/xml")
        assert decoded == plain
        assert len(parse_sitemap(decoded, url=url).entries) == 2
    # Already decoded by the fetcher (Content-Encoding: gzip) yet named .gz: passed through.
    assert decode_sitemap_body(plain, url="http://example.test/s.xml.gz") == plain
    # Several gzip members are one file (RFC 1952), as `cat a.gz b.gz` makes.
    two = gzip.compress(b"http://example.test/a\n") + gzip.compress(b"http://example.test/b\n")
    assert decode_sitemap_body(two, url=URL) == b"http://example.test/a\nhttp://example.test/b\n"


def test_broken_or_cut_off_gzip() -> None:
    whole = gzip.compress(urlset(*(f"http://example.test/{i}" for i in range(1000))))
    with pytest.raises(SitemapError, match="cut off"):
        decode_sitemap_body(whole[: len(whole) // 2], url=URL)
    with pytest.raises(SitemapError, match="broken gzip"):
        decode_sitemap_body(whole[:10] + b"\xff" * 50 + whole[60:], url=URL)
    with pytest.raises(SitemapError, match="broken gzip"):  # the CRC no longer matches
        decode_sitemap_body(whole[:-8] + b"\x00\x00\x00\x00" + whole[-4:], url=URL)


def gzip_bomb(total: int, piece: int = 1 << 20) -> bytes:
    """*total* zero bytes gzipped, built from one compressed piece repeated (about 1 KiB per MiB).

    After Z_FULL_FLUSH the compressor starts afresh, so every further piece compresses to the same
    bytes; the trailer's CRC is not that of the whole, which no reader ever gets to check."""
    zeros = bytes(piece)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + again * (total // piece - 1) + compressor.flush()


def test_gzip_bomb_stops_at_the_limit_without_holding_it() -> None:
    bomb = gzip_bomb(1 << 30)  # 1 GiB of zeros
    assert len(bomb) < 2 << 20
    limit = 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(SitemapError, match="larger than 1 MB uncompressed") as info:
            decode_sitemap_body(bomb, url=URL, max_bytes=limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert URL in str(info.value)
    assert peak < 3 * limit  # the limit and a piece (1.7 MiB measured), not the gigabyte


def test_gzip_bomb_default_limit_is_50_mb() -> None:
    with pytest.raises(SitemapError, match="larger than 50 MB uncompressed"):
        decode_sitemap_body(gzip_bomb(MAX_SITEMAP_BYTES + (1 << 20)), url=URL)
    exactly = gzip_bomb(2 << 20)  # two pieces: the compressor saw all, so the trailer is right
    assert decode_sitemap_body(exactly, url=URL, max_bytes=2 << 20) == bytes(2 << 20)


def test_plain_body_over_the_limit() -> None:
    with pytest.raises(SitemapError, match="larger than"):
        decode_sitemap_body(b"x" * 101, url=URL, max_bytes=100)
    assert decode_sitemap_body(b"x" * 100, url=URL, max_bytes=100) == b"x" * 100


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<urlset><url><loc>http://example.test/&lol9;</loc></url></urlset>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<urlset><url><loc>http://example.test/&xxe;</loc></url></urlset>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE urlset SYSTEM "http://attacker.test/evil.dtd">
<urlset><url><loc>http://example.test/&ent;</loc></url></urlset>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>
<urlset/>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, XXE, EXTERNAL_DTD, PARAMETER_ENTITY])
def test_doctype_and_entity_declarations_are_refused(data: bytes) -> None:
    with pytest.raises(SitemapError, match="DOCTYPE and entity declarations are refused"):
        parse(data)
    with pytest.raises(SitemapError, match="refused"):  # gzipped the same
        parse(decode_sitemap_body(gzip.compress(data), url=URL))


def test_an_undeclared_entity_is_malformed() -> None:
    with pytest.raises(SitemapError, match="undefined entity"):
        parse(b"<urlset><url><loc>http://example.test/&nbsp;</loc></url></urlset>")


def test_an_html_page_is_not_a_sitemap() -> None:
    with pytest.raises(SitemapError, match="is an HTML page"):
        parse(b"<!DOCTYPE html>\n<html><body>Not found</body></html>")
    with pytest.raises(SitemapError, match="root element <html>"):
        parse(b"<html><body>Not found</body></html>")


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"<urlset>\n<url><loc>http://example.test/a</url>\n</urlset>", 2),
        (b"<urlset>\n<url>\n<loc>http://example.test/a</loc></url>\n", 4),  # cut off
        (b"<urlset>\n\n\n<url><loc>a & b</loc></url></urlset>", 4),
        (b"<urlset><url/></urlset>trailing<x/>", 1),
        (b"<unbound:urlset/>", 1),
    ],
)
def test_malformed_xml_names_the_url_and_the_line(data: bytes, line: int) -> None:
    with pytest.raises(SitemapError, match="malformed XML") as info:
        parse(data)
    assert URL in str(info.value)
    assert f"line {line}," in str(info.value)


http_urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https"]),
    st.builds(
        "{}.test:{}".format,
        st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12),
        st.integers(1, 65535),
    ),
    # Any character XML 1.0 can carry except whitespace (a loc is trimmed): & < > " ' included.
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cn", "Zs", "Zl", "Zp")), max_size=60),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(http_urls, max_size=30))
def test_property_generated_urlset_parses_back(locs: list[str]) -> None:
    sitemap = parse(urlset(*locs))
    assert [e.loc for e in sitemap.entries] == locs
    assert sitemap.skipped == 0 and not sitemap.truncated


def test_walk_cuts_nesting() -> None:
    walk = SitemapWalk()
    assert MAX_INDEX_DEPTH == 1
    todo, error = walk.start("h", ["http://h/index.xml"])
    assert todo == [("http://h/index.xml", 0)] and error is None
    children, error = walk.found_index("h", 0, ["http://h/s1.xml", "http://h/s2.xml"])
    assert children == [("http://h/s1.xml", 1), ("http://h/s2.xml", 1)] and error is None
    # s1.xml turns out to be an index too: what it lists is nesting the protocol does not allow.
    deeper, error = walk.found_index("h", 1, ["http://h/s3.xml"])
    assert deeper == [] and error is not None and "nesting" in error


def test_walk_cuts_loops_and_ignores_plain_duplicates() -> None:
    walk = SitemapWalk(max_depth=5)
    todo, error = walk.start("h", ["http://h/a.xml", "http://h/a.xml", "http://h/b.xml"])
    assert todo == [("http://h/a.xml", 0), ("http://h/b.xml", 0)] and error is None
    # a.xml lists itself and b.xml: a loop, cut off; c.xml is new.
    children, error = walk.found_index(
        "h", 0, ["http://h/a.xml", "http://h/c.xml", "http://h/b.xml"]
    )
    assert children == [("http://h/c.xml", 1)]
    assert error is not None and "2 sitemap URL(s) already seen" in error
    # Hosts are apart: the same path on another host is another file.
    assert walk.start("other", ["http://h/a.xml"]) == ([("http://h/a.xml", 0)], None)


def test_walk_caps_files_per_host() -> None:
    walk = SitemapWalk(max_depth=3, max_files_per_host=4)
    todo, error = walk.start("h", [f"http://h/{i}.xml" for i in range(3)])
    assert len(todo) == 3 and error is None
    children, error = walk.found_index("h", 0, [f"http://h/c{i}.xml" for i in range(5)])
    assert children == [("http://h/c0.xml", 1)]
    assert error is not None and "4 sitemap URL(s) beyond 4 per host cut off" in error
    assert walk.found_index("h", 1, ["http://h/d.xml"])[0] == []
