"""The NumPy half of `crawler.simhash.html_simhash` (kept apart so NumPy loads only when a page
is fingerprinted, not when the crawler is imported: `crawl --help` and library users that never
fingerprint skip its ~100 ms of start-up)."""

from __future__ import annotations

import numpy as np

from crawler.simhash import (
    _BASE,
    _BASE_INV,
    _FMIX1,
    _FMIX2,
    _K1,
    _K2,
    MAX_SHINGLES,
    SHINGLE,
    _combine,
)

_IS_WORD = np.zeros(256, dtype=bool)
for _lo, _hi in ((48, 57), (65, 90), (97, 122), (95, 95), (128, 255)):
    _IS_WORD[_lo:_hi + 1] = True
_INV_POWERS = np.array([pow(_BASE_INV, e, 1 << 64) for e in range(256)], dtype=np.uint64)
_LOWER = np.arange(256, dtype=np.uint64)
_LOWER[65:91] += 32  # ASCII case folding only: a byte-level tokenizer cannot fold the rest


def fingerprint(data: bytes, min_words: int) -> tuple[int, int]:
    """(SimHash, words) of a page's bytes with scripts, styles and comments already cut."""
    a = np.frombuffer(data, dtype=np.uint8)
    if a.size == 0:
        return 0, 0
    # Runs of word bytes: "<" and ">" are no word bytes, so a run is wholly inside a tag or
    # wholly outside; runs are checked against the tags, not every byte.
    word = _IS_WORD.take(a)
    starts = np.flatnonzero(word[1:] > word[:-1]) + 1
    ends = np.flatnonzero(word[1:] < word[:-1]) + 1
    if word[0]:
        starts = np.concatenate(([0], starts))
    if word[-1]:
        ends = np.concatenate((ends, [a.size]))
    lt, gt = np.flatnonzero(a == 60), np.flatnonzero(a == 62)
    if starts.size and lt.size and gt.size:  # <...> (a "<" with no ">" after it is text, as in _TAG)
        k = np.searchsorted(gt, lt)
        ok = k < gt.size
        tag_end, first = np.unique(gt[k[ok]], return_index=True)  # a "<" inside a tag is in it
        tag_start = lt[ok][first]
        if tag_start.size:
            j = np.searchsorted(tag_start, starts, side="right") - 1
            inside = (j >= 0) & (starts <= tag_end[np.maximum(j, 0)])
            starts, ends = starts[~inside], ends[~inside]
    words = starts.size
    if words == 0 or words < min_words:
        return 0, words
    keep = MAX_SHINGLES + SHINGLE - 1  # later words are never read
    starts, ends = starts[:keep], ends[:keep]
    with np.errstate(over="ignore"):
        lengths = ends - starts
        bounds = np.zeros(starts.size + 1, dtype=np.int64)  # the words' bytes, packed
        np.cumsum(lengths, out=bounds[1:])
        m = int(bounds[-1])
        packed = a[np.arange(m) + np.repeat(starts - bounds[:-1], lengths)]
        powers = np.full(m, _BASE, dtype=np.uint64)
        powers[0] = 1
        np.cumprod(powers, out=powers)
        prefix = np.zeros(m + 1, dtype=np.uint64)
        np.cumsum(_LOWER.take(packed) * powers, out=prefix[1:])
        starts, ends = bounds[:-1], bounds[1:]
        inverse = np.full(starts.size, _BASE_INV, dtype=np.uint64)  # _BASE_INV ** start
        inverse[0] = 1
        inverse[1:] = _INV_POWERS.take(np.minimum(lengths[:-1], _INV_POWERS.size - 1))
        long = np.flatnonzero(lengths[:-1] >= _INV_POWERS.size)  # words of 256+ bytes: rare
        if long.size:
            inverse[long + 1] = _pow_each(np.uint64(_BASE_INV), lengths[long].astype(np.uint64))
        np.cumprod(inverse, out=inverse)
        hashes = _fmix((prefix[ends] - prefix[starts]) * inverse + (ends - starts).astype(np.uint64))
        if hashes.size >= SHINGLE:
            features = _fmix(hashes[:-2] * np.uint64(_K1) + hashes[1:-1] * np.uint64(_K2)
                             + hashes[2:])
        else:
            features = _fmix(np.array([_combine(list(map(int, hashes)))], dtype=np.uint64))
    bits = np.unpackbits(features.astype("<u8").view(np.uint8).reshape(-1, 8), axis=1,
                         bitorder="little").sum(axis=0, dtype=np.int64)
    fingerprint = 0
    for bit in np.flatnonzero(2 * bits > features.size):
        fingerprint |= 1 << int(bit)
    return fingerprint, words


def _pow_each(base: np.uint64, exponents: np.ndarray) -> np.ndarray:
    """base ** e (mod 2**64) for each e, by square-and-multiply over the exponents' bits."""
    result = np.ones(exponents.size, dtype=np.uint64)
    square = np.full(exponents.size, base, dtype=np.uint64)
    e = exponents.copy()
    while e.any():
        odd = (e & np.uint64(1)).astype(bool)
        result[odd] *= square[odd]
        square *= square
        e >>= np.uint64(1)
    return result


def _fmix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(_FMIX1)
    x ^= x >> np.uint64(33)
    x *= np.uint64(_FMIX2)
    x ^= x >> np.uint64(33)
    return x


