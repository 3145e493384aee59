"""normalize_url: the data-driven table, and properties over generated URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crawler.urls
from crawler.errors import InvalidURL
from crawler.urls import MAX_URL_LENGTH, Origin, _normalize_general, normalize_url, origin_of

TABLE = Path(__file__).resolve().parents[2] / "fixtures" / "urls" / "normalize.tsv"


def cases() -> list[tuple[str, str]]:
    rows = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            given_url, expected = line.split("\t")
            rows.append((given_url, expected))
    return rows


@pytest.mark.parametrize(("url", "expected"), cases())
def test_normalization_table(url: str, expected: str) -> None:
    if expected == "!InvalidURL":
        with pytest.raises(InvalidURL):
            normalize_url(url)
    else:
        assert normalize_url(url) == expected
        assert normalize_url(expected) == expected


def test_tabs_and_newlines_inside_a_link_go_before_it_is_resolved() -> None:
    # WHATWG URL drops them first: "/\t/x" is the scheme-relative "//x", not a path under base
    base = "http://127.0.1.1:8000/dir/page.html"
    assert normalize_url("/\t/x.example/a", base) == "http://x.example/a"
    assert normalize_url("/\n/x.example/", base) == "http://x.example/"
    assert normalize_url("a\r\nb.html", base) == "http://127.0.1.1:8000/dir/ab.html"
    with pytest.raises(InvalidURL):
        normalize_url("/\t/", base)  # "//": no host


def test_relative_links_resolve_against_the_base() -> None:
    base = "http://127.0.1.1:8000/dir/page.html"
    assert normalize_url("../up.html", base) == "http://127.0.1.1:8000/up.html"
    assert normalize_url("./same.html#x", base) == "http://127.0.1.1:8000/dir/same.html"
    assert normalize_url("//127.0.1.2:8000/other", base) == "http://127.0.1.2:8000/other"
    assert normalize_url("?q=1", base) == "http://127.0.1.1:8000/dir/page.html?q=1"


def test_overlong_and_non_string_urls_are_refused() -> None:
    with pytest.raises(InvalidURL, match="exceeds"):
        normalize_url("http://example.com/" + "a" * MAX_URL_LENGTH)
    with pytest.raises(InvalidURL):
        normalize_url(None)  # type: ignore[arg-type]
    assert isinstance(InvalidURL("x"), ValueError)


def test_origin_of() -> None:
    assert origin_of("http://127.0.1.1:8000/a") == Origin("http", "127.0.1.1", 8000)
    assert origin_of("https://example.com/") == Origin("https", "example.com", 443)
    assert str(origin_of("https://example.com/")) == "https://example.com"
    with pytest.raises(InvalidURL):
        origin_of("ftp://example.com/")


TOKEN_CHARS = "abcXYZ09-_~"
SEGMENT = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=5)
RESOURCE = st.tuples(st.lists(SEGMENT, max_size=3), st.one_of(st.none(), SEGMENT))


def spell(resource: tuple[list[str], str | None], encode: list[bool], host: str, port: str) -> str:
    """Write a URL for *resource*, percent-encoding some unreserved characters (same resource)."""
    segments, query = resource
    flags = iter(encode + [False] * 64)

    def maybe_encode(text: str) -> str:
        return "".join(f"%{ord(c):02x}" if next(flags) else c for c in text)

    path = "/" + "/".join(maybe_encode(seg) for seg in segments)
    return f"http://{host}{port}{path}" + ("" if query is None else "?" + maybe_encode(query))


SPELLING = st.tuples(st.lists(st.booleans(), max_size=30), st.sampled_from(["example.com", "EXAMPLE.COM"]),
                     st.sampled_from(["", ":80"]))


@given(RESOURCE, RESOURCE, SPELLING, SPELLING)
def test_equal_exactly_when_path_and_query_are_equal(r1, r2, s1, s2) -> None:
    a, b = spell(r1, *s1), spell(r2, *s2)
    assert (normalize_url(a) == normalize_url(b)) == (r1 == r2)


@given(RESOURCE, SPELLING, st.sampled_from(["", "/.", "/./x/..", "#frag"]))
def test_normalization_is_idempotent(resource, spelling, tail) -> None:
    once = normalize_url(spell(resource, *spelling) + tail)
    assert normalize_url(once) == once


BASES = ["http://a.example/", "https://b.example:8443/x/y?q", "http://[::1]:81/d/",
         "http://127.0.1.1:8080/s1/p4.html", "http://a/b/c/d;p?q", "http://h.example:80x/"]
REF_ALPHABET = "/ab.%?#:@=&~-_'()!$*+,;2FAHTPEe7 \t"


@settings(max_examples=1500)
@given(
    st.sampled_from(BASES[:-1]),
    st.sampled_from(["", "/", "./", "../", "http://", "https://", "HTTP://", "http://h.example",
                     "http://h.example:8080", "http://h.example:80", "http://H.example:0081",
                     "//h.example", "http://h..example", "http://h.example.", "http://1.2.3.4:70000"]),
    st.text(alphabet=REF_ALPHABET, max_size=20),
)
def test_fast_paths_agree_with_the_general_path(base: str, prefix: str, rest: str) -> None:
    ref = prefix + rest
    try:
        expected = _normalize_general(ref, base)
    except InvalidURL:
        expected = None
    try:
        got = normalize_url(ref, base)
    except InvalidURL:
        got = None
    assert got == expected
    try:
        alone = normalize_url(ref)
    except InvalidURL:
        alone = None
    try:
        assert alone == _normalize_general(ref, None)
    except InvalidURL:
        assert alone is None


def test_the_fast_paths_are_taken_for_clean_links() -> None:
    base = "http://127.0.1.1:8080/s1/p4.html"
    for ref in ("http://127.0.1.1:8080/s2/p7.html", "/s2/p7.html", "p7.html", "../s2/p7.html",
                "./p7.html#x", "search?q=1", "#part"):
        assert crawler.urls._normalize_clean(ref, base) == _normalize_general(ref, base)


# RFC 3986 §5.4.1 and §5.4.2 (the abnormal cases that stay in http), base "http://a/b/c/d;p?q".
RFC3986_RESOLUTION = {
    "g": "http://a/b/c/g", "./g": "http://a/b/c/g", "g/": "http://a/b/c/g/", "/g": "http://a/g",
    "//g": "http://g/", "?y": "http://a/b/c/d;p?y", "g?y": "http://a/b/c/g?y",
    "#s": "http://a/b/c/d;p?q", "g#s": "http://a/b/c/g", ";x": "http://a/b/c/;x",
    "g;x": "http://a/b/c/g;x", "g;x?y#s": "http://a/b/c/g;x?y", "": "http://a/b/c/d;p?q",
    ".": "http://a/b/c/", "./": "http://a/b/c/", "..": "http://a/b/", "../g": "http://a/b/g",
    "../..": "http://a/", "../../g": "http://a/g", "../../../g": "http://a/g", "/./g": "http://a/g",
    "/../g": "http://a/g", "g.": "http://a/b/c/g.", ".g": "http://a/b/c/.g", "g..": "http://a/b/c/g..",
    "./../g": "http://a/b/g", "./g/.": "http://a/b/c/g/", "g/./h": "http://a/b/c/g/h",
    "g/../h": "http://a/b/c/h", "g;x=1/./y": "http://a/b/c/g;x=1/y", "g;x=1/../y": "http://a/b/c/y",
    "g?y/./x": "http://a/b/c/g?y/./x",  # strict RFC: "http:g" is "http:g", which has no host
}


@pytest.mark.parametrize("ref", sorted(RFC3986_RESOLUTION))
def test_rfc3986_reference_resolution(ref: str) -> None:
    assert normalize_url(ref, "http://a/b/c/d;p?q") == RFC3986_RESOLUTION[ref]
