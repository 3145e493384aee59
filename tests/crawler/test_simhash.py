"""SimHash and its index: the fast bit counting equals the textbook per-bit loop; near copies are
found, unrelated pages are not; the index finds exactly what a brute-force scan finds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.simhash import SimHashIndex, hamming, page_words, simhash
from crawler.simhash import simhash_reference as textbook

VOCAB = [f"w{i}" for i in range(500)]


@settings(max_examples=60)
@given(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=300))
def test_bit_counting_equals_the_textbook_loop(words: list[str]) -> None:
    assert simhash(words) == textbook(words)


def test_a_long_page_is_fingerprinted_by_its_first_shingles_only() -> None:
    from crawler.simhash import MAX_SHINGLES, SHINGLE

    rng = random.Random(3)
    words = [rng.choice(VOCAB) for _ in range(MAX_SHINGLES + 500)]
    head = words[:MAX_SHINGLES + SHINGLE - 1]
    assert simhash(words) == simhash(head) == textbook(head)
    assert simhash(words[:5000]) == textbook(words[:5000])  # long pages count every bit right


def test_one_changed_word_in_a_long_page_is_near_and_a_different_page_is_not() -> None:
    rng = random.Random(5)
    near = far = 0
    for _ in range(40):
        words = [rng.choice(VOCAB) for _ in range(2000)]
        other = [rng.choice(VOCAB) for _ in range(2000)]
        a = simhash(words)
        words[rng.randrange(2000)] = "changed"
        near += hamming(a, simhash(words)) <= 3
        far += hamming(a, simhash(other)) <= 3
    assert near >= 36 and far == 0


def test_page_words_ignores_markup_scripts_and_comments() -> None:
    html = "<html><script>var x = 1;</script><!-- hidden --><p>Hello <b>World</b></p></html>"
    assert page_words(html) == ["hello", "world"]


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
