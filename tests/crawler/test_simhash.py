"""SimHash and its index: the fast bit counting equals the textbook per-bit loop; near copies are
found, unrelated pages are not; the index finds exactly what a brute-force scan finds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.simhash import MAX_SHINGLES, SHINGLE, SimHashIndex, hamming, html_simhash
from crawler.simhash import html_simhash_reference as textbook

VOCAB = [f"w{i}" for i in range(500)]
PIECES = VOCAB[:50] + ["<p>", "</p>", "<a href='x'>", "<b>", " ", "  ", "\n", "<", ">", "a<b",
                       "<!-- c w1 -->", "<script>w2 w3</script>", "<STYLE>w4</STYLE>", "é", "Ünï",
                       "¶", "_", "Word", "WORD", "x9", "<br/>", "&amp;", "-"]


def page(words: list[str]) -> str:
    return "<html><body><p>" + " ".join(words) + "</p></body></html>"


@settings(max_examples=150)
@given(st.lists(st.sampled_from(PIECES), max_size=300))
def test_vectorized_fingerprint_equals_the_textbook_loop(pieces: list[str]) -> None:
    html = "".join(pieces)
    assert html_simhash(html) == textbook(html)
    # the crawler hands a UTF-8 page's body instead of its text: the same fingerprint
    assert html_simhash(html.encode()) == textbook(html)
    assert html_simhash(html.encode(), 50) == html_simhash(html, 50)
    # a short page is only counted, without NumPy: the same count
    assert html_simhash(html, 50)[1] == textbook(html)[1]


def test_a_long_page_is_fingerprinted_by_its_first_shingles_only() -> None:
    rng = random.Random(3)
    words = [rng.choice(VOCAB) for _ in range(MAX_SHINGLES + 500)]
    head = words[:MAX_SHINGLES + SHINGLE - 1]
    fp, count = html_simhash(page(words))
    assert count == len(words) and fp == html_simhash(page(head))[0] == textbook(page(head))[0]
    assert html_simhash(page(words[:5000])) == textbook(page(words[:5000]))


def test_one_changed_word_in_a_long_page_is_near_and_a_different_page_is_not() -> None:
    rng = random.Random(5)
    near = far = 0
    for _ in range(40):
        words = [rng.choice(VOCAB) for _ in range(2000)]
        other = [rng.choice(VOCAB) for _ in range(2000)]
        a = html_simhash(page(words))[0]
        words[rng.randrange(2000)] = "changed"
        near += hamming(a, html_simhash(page(words))[0]) <= 3
        far += hamming(a, html_simhash(page(other))[0]) <= 3
    assert near >= 36 and far == 0


def test_a_short_page_is_counted_not_fingerprinted() -> None:
    assert html_simhash(page(VOCAB[:49]), min_words=50) == (0, 49)
    assert html_simhash(page(VOCAB[:50]), min_words=50) == textbook(page(VOCAB[:50]))


def test_markup_scripts_and_comments_are_not_words() -> None:
    html = "<html><script>var x = 1;</script><!-- hidden --><p>Hello <b>World</b></p></html>"
    assert html_simhash(html) == html_simhash("<p>hello world</p>")
    assert html_simhash(html)[1] == 2


@settings(max_examples=40)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=60), st.integers(0, 2**64 - 1),
       st.lists(st.integers(0, 63), max_size=3, unique=True))
def test_index_agrees_with_a_brute_force_scan(filed: list[int], probe_base: int,
                                              flips: list[int]) -> None:
    index = SimHashIndex()
    for i, fp in enumerate(filed):
        index.add(fp, f"u{i}")
    probe = probe_base
    if filed:  # a probe within distance 3 of a filed one, so both answers are exercised
        probe = filed[0]
        for bit in flips:
            probe ^= 1 << bit
    owners = {}
    for i, fp in enumerate(filed):
        owners.setdefault(fp, f"u{i}")
    within = {owners[fp] for fp in filed if hamming(fp, probe) <= 3}
    found = index.nearest(probe)
    assert (found is None) == (not within)
    if found is not None:
        assert found in within


def test_distance_over_three_is_refused() -> None:
    with pytest.raises(ValueError):
        SimHashIndex(max_distance=4)


def _cut_model(data: bytes) -> bytes:
    """Each opener searched for on its own, the cuts merged: what _text_bytes must equal."""
    cuts = []
    for opener, closer in ((b"<!--", b"-->"), (b"<script", b"</script"), (b"<SCRIPT", b"</SCRIPT"),
                           (b"<style", b"</style"), (b"<STYLE", b"</STYLE")):
        at = data.find(opener)
        while at >= 0:
            end = data.find(closer, at + len(opener))
            end = len(data) if end < 0 else end + len(closer)
            cuts.append((at, end))
            at = data.find(opener, end)
    parts, pos = [], 0
    for start, end in sorted(cuts):
        if start >= pos:
            parts.append(data[pos:start])
        pos = max(pos, end)
    return b" ".join([*parts, data[pos:]]) if cuts else data


@given(st.lists(st.sampled_from([b"<!--", b"-->", b"<script>", b"</script>", b"<SCRIPT", b"</SCRIPT>",
                                 b"<style", b"</style>", b"<STYLE>", b"</STYLE", b"x", b" ", b"<",
                                 b">", b"-", b"<!-", b"--", b"<Script>"]), max_size=16))
def test_scripts_styles_and_comments_are_cut_as_each_opener_alone_would(pieces: list[bytes]) -> None:
    from crawler.simhash import _text_bytes

    data = b"".join(pieces)
    assert _text_bytes(data) == _cut_model(data)
