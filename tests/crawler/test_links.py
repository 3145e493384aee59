"""Link extraction: base href, nofollow, meta robots, caps, malformed input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crawler.errors import InvalidURL
from crawler.links import extract_links
from crawler.urls import normalize_url

BASE = "http://127.0.1.1:8000/dir/page.html"


def test_relative_absolute_and_base_links() -> None:
    html = """<a href="a.html">a</a><A HREF='../b.html#x'>b</A><a href="http://127.0.1.2:8000/c">c</a>
              <a href="mailto:x@y">m</a><a href="javascript:void(0)">j</a><a href="a.html">dup</a>"""
    assert extract_links(html, BASE).urls == (
        "http://127.0.1.1:8000/dir/a.html", "http://127.0.1.1:8000/b.html", "http://127.0.1.2:8000/c",
    )
    with_base = '<base href="http://127.0.1.3:8000/other/"><a href="x">x</a>'
    assert extract_links(with_base, BASE).urls == ("http://127.0.1.3:8000/other/x",)


def test_nofollow_links_and_meta_robots() -> None:
    html = '<a href="keep">k</a><a rel="external nofollow" href="skip">s</a>'
    assert extract_links(html, BASE).urls == ("http://127.0.1.1:8000/dir/keep",)
    page = '<meta name="ROBOTS" content="noindex, nofollow"><a href="x">x</a>'
    links = extract_links(page, BASE)
    assert links.urls == () and links.nofollow and links.noindex


def test_link_count_is_capped() -> None:
    html = "".join(f'<a href="/p{i}">x</a>' for i in range(50))
    links = extract_links(html, BASE, max_links=10)
    assert len(links.urls) == 10 and links.truncated


@given(st.text(max_size=300))
def test_malformed_html_never_raises(html: str) -> None:
    extract_links("<a href=" + html + "<base href=" + html, BASE)


_tags = st.sampled_from([
    '<a href="{v}">x</a>', "<A HREF='{v}'>", "<a href={v} rel=nofollow>", '<area href="{v}">',
    '<base href="{v}">', '<meta name="robots" content="{v}">', '<a title="1>2" href="{v}">',
    "<!-- <a href='{v}'> -->", "<script>var s='<a href=\"{v}\">'</script>", "<p>{v}</p>",
    '<a href="{v}&amp;x=1">', "<br/>", '<a rel="external" href="{v}">', '<a  HREF = "{v}" >',
    '<a\nhref="{v}"\n>', '<a class="r i" href="{v}" title="t">', '<a href="{v}" href="/o">',
    '<a class="x" rel="nofollow" href="{v}">', '<a title="href=/t" href="{v}">', "<a href='{v}'>",
    '<a REL="nofollow" HREF="{v}">', '<a data-x="1" href="{v}"/>', '<a href ="{v}" id = "i" >',
    "<SCRIPT>'<a href=\"{v}\">'</SCRIPT>", '<a hreflang="en" href="{v}">',
])
_values = st.sampled_from(["a.html", "../b", "/c?d=1", "http://127.0.1.2/x", "nofollow",
                           "noindex", "#f", "mailto:x", " /sp ", "g;x", "%7Ey", "HTTP://127.0.1.2/Y",
                           "httpd.html", "//127.0.1.3/z", "/\\x", "", "?q", "./", "..", "a:b"])


@given(st.lists(st.tuples(_tags, _values), max_size=12))
def test_fast_extractor_agrees_with_html_parser(parts) -> None:
    from crawler.links import extract_links_reference

    page = "".join(t.format(v=v) for t, v in parts)
    assert extract_links(page, BASE) == extract_links_reference(page, BASE)


_BASES = st.sampled_from([BASE, "http://127.0.1.1:8000/", "http://127.0.1.1/a/b/?x=/y/z",
                          "https://h.example/a/b", "http://h.example/a/b/c?", "http://h/%7E/x"]).map(normalize_url)  # bases are normalized
_PIECES = st.sampled_from(["/", "//", "a", "B", "..", ".", "?", "#", "%7e", "%41", ":", "http:",
                           "HTTPS://", "h", "\\", " ", "\t", "é", "~", "-", "x.html", "@", ";"])


@given(st.lists(st.lists(_PIECES, max_size=6).map("".join), max_size=8), _BASES)
def test_memoized_resolution_equals_normalizing_each_link(hrefs, base) -> None:
    # the memo is keyed by the origin or the directory only; the answer must be as if each link
    # were normalized against the whole base
    from crawler.links import resolve_links

    expected: dict[str, None] = {}
    invalid = 0
    for href in hrefs:
        try:
            expected.setdefault(normalize_url(href, base))
        except InvalidURL:
            invalid += 1
    assert resolve_links(hrefs, base) == (tuple(expected), invalid)
    assert resolve_links(hrefs, base) == (tuple(expected), invalid)  # from the memo this time


def test_an_index_page_of_twelve_thousand_links_is_read_whole() -> None:
    # python3-doc's genindex-all.html and contents.html pass 10,000 links; pages reachable only
    # through them must not be lost to the cap
    page = "".join(f'<a href="/p{i}.html">{i}</a>' for i in range(12_000))
    found = extract_links(page, "http://docs.example/genindex.html")
    assert len(found.urls) == 12_000 and not found.truncated
    capped = extract_links(page, "http://docs.example/genindex.html", max_links=5_000)
    assert len(capped.urls) == 5_000 and capped.truncated
