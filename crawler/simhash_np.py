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

# Each byte's class in one bytes.translate (C, ~1 ns per byte; NumPy's take is 2-3x slower):
# 1 a word byte, 2 "<", 3 ">", 0 the rest.
_CLASS = bytes(1 if (48 <= i <= 57 or 65 <= i <= 90 or 97 <= i <= 122 or i == 95 or i >= 128)
               else 2 if i == 60 else 3 if i == 62 else 0 for i in range(256))
_INV_POWERS = np.array([pow(_BASE_INV, e, 1 << 64) for e in range(256)], dtype=np.uint64)
_BITS_OF = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1,
                         bitorder="little").T.astype(np.int64)  # [bit, value]: 1 if value has it
_LOWER = np.arange(256, dtype=np.uint64)
_LOWER[65:91] += 32  # ASCII case folding only: a byte-level tokenizer cannot fold the rest


def fingerprint(data: bytes, min_words: int) -> tuple[int, int]:
    """(SimHash, words) of a page's bytes with scripts, styles and comments already cut."""
    a = np.frombuffer(data, dtype=np.uint8)
    if a.size == 0:
        return 0, 0
    cls = np.frombuffer(data.translate(_CLASS), dtype=np.uint8)
    word = cls == 1
    marks = np.flatnonzero(cls >= 2)
    if marks.size:  # <...> (a "<" with no ">" after it is text, as in _TAG)
        is_gt = cls[marks] == 3
        lt, gt = marks[~is_gt], marks[is_gt]
        k = np.searchsorted(gt, lt)
        ok = k < gt.size
        tag_end, first = np.unique(gt[k[ok]], return_index=True)  # a "<" inside a tag is in it
        tag_start = lt[ok][first]
        if tag_start.size:  # no word byte inside a tag: the mask of the gaps between tags
            bounds = np.empty(2 * tag_start.size + 2, dtype=np.int64)
            bounds[0], bounds[-1] = 0, a.size
            bounds[1:-1:2], bounds[2:-1:2] = tag_start, tag_end + 1  # tags are disjoint, in order
            outside = np.zeros(bounds.size - 1, dtype=bool)
            outside[0::2] = True
            word &= np.repeat(outside, np.diff(bounds))
    # runs of word bytes: the changes of the mask alternate start, end, start...
    edges = np.flatnonzero(word[1:] != word[:-1]) + 1
    if word[0]:
        edges = np.concatenate(([0], edges))
    if edges.size % 2:
        edges = np.concatenate((edges, [a.size]))
    starts, ends = edges[0::2], edges[1::2]
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
    # votes per bit: a histogram of each of the 8 bytes' values, times which bits each value has
    # (3x cheaper than summing the unpacked bits)
    octets = features.astype("<u8").view(np.uint8).reshape(-1, 8)
    bits = np.concatenate([_BITS_OF @ np.bincount(octets[:, k], minlength=256) for k in range(8)])
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


