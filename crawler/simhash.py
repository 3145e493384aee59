"""Near-duplicate detection (pure): 64-bit SimHash over word shingles, and an index that finds a
fingerprint within Hamming distance 3 without comparing every pair.

The index splits each fingerprint into four 16-bit blocks (Manku et al., WWW 2007): two
fingerprints within distance 3 differ in at most 3 blocks, so they share at least one block
exactly. A lookup compares only the fingerprints filed under one of its four blocks.
"""

from __future__ import annotations

import itertools
import re
import sys
from array import array

import mmh3

MAX_DISTANCE = 3
SHINGLE = 3  # words per shingle
MAX_SHINGLES = 10_000  # a longer page is fingerprinted by its first 10,000 (bounds the CPU per page)
_MASK = (1 << 64) - 1
_WORD = re.compile(r"\w+")
_MARKUP = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.IGNORECASE | re.DOTALL)


_TAG = re.compile(r"<[^>]*>")


def page_words(html: str) -> list[str]:
    """The lower-cased words of an HTML page's text (scripts, styles, comments and tags cut)."""
    lower = html.lower()
    if "<script" in lower or "<style" in lower or "<!--" in lower:
        return _WORD.findall(_MARKUP.sub(" ", lower))
    return _WORD.findall(_TAG.sub(" ", lower))  # the common page: tags only, 3x faster


def simhash(words: list[str]) -> int:
    """The 64-bit SimHash of *words*, one feature per shingle of SHINGLE consecutive words (the
    first MAX_SHINGLES of them)."""
    if not words:
        return 0
    words = words[:MAX_SHINGLES + SHINGLE - 1]
    text = " ".join(words)
    if len(words) < SHINGLE:
        shingles = [text]
    else:
        # each shingle sliced out of one joined text: one allocation instead of a list and a join
        ends = list(itertools.accumulate(len(w) + 1 for w in words))
        starts = [0, *ends[:-SHINGLE]]
        shingles = [text[a:b - 1] for a, b in zip(starts, ends[SHINGLE - 1:], strict=True)]
    hashes = array("Q", [mmh3.hash64(s, signed=False)[0] for s in shingles])
    if sys.byteorder != "little":
        hashes.byteswap()
    data = hashes.tobytes()
    n = len(hashes)
    # Count the set bits of each of the 64 positions over all hashes at once: byte k of every
    # hash, as one big integer, masked to bit b of each byte, has bit_count() hashes with bit
    # 8k+b set (a per-hash Python loop is 30-50x slower on a long page).
    masks = [int.from_bytes(bytes([1 << b]) * n, "little") for b in range(8)]
    result = 0
    for k in range(8):
        column = int.from_bytes(data[k::8], "little")
        for b, mask in enumerate(masks):
            if 2 * (column & mask).bit_count() > n:
                result |= 1 << (8 * k + b)
    return result


def simhash_reference(words: list[str]) -> int:
    """The textbook SimHash `simhash` is checked against: a Python loop per bit per shingle."""
    words = words[:MAX_SHINGLES + SHINGLE - 1]
    shingles = ([" ".join(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)]
                if len(words) >= SHINGLE else [" ".join(words)])
    counts = [0] * 64
    for s in shingles:
        h = mmh3.hash64(s, signed=False)[0]
        for bit in range(64):
            counts[bit] += 1 if h >> bit & 1 else -1
    return sum(1 << bit for bit in range(64) if counts[bit] > 0)


def hamming(a: int, b: int) -> int:
    """The number of bits in which *a* and *b* differ."""
    return ((a ^ b) & _MASK).bit_count()


class SimHashIndex:
    """Fingerprints of pages seen so far; `add` answers the first one within MAX_DISTANCE."""

    def __init__(self, max_distance: int = MAX_DISTANCE) -> None:
        """An empty index (max_distance at most 3: four blocks guarantee no miss up to 3)."""
        if not 0 <= max_distance <= 3:
            raise ValueError("max_distance must be between 0 and 3")
        self.max_distance = max_distance
        self._blocks: list[dict[int, list[int]]] = [{} for _ in range(4)]
        self._owner: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._owner)

    def add(self, fingerprint: int, url: str) -> str | None:
        """File *fingerprint* under *url*; return the URL of an earlier one within the distance."""
        found = self.nearest(fingerprint)
        if fingerprint not in self._owner:
            self._owner[fingerprint] = url
            for i, table in enumerate(self._blocks):
                table.setdefault(fingerprint >> (16 * i) & 0xFFFF, []).append(fingerprint)
        return found

    def nearest(self, fingerprint: int) -> str | None:
        """The URL of a filed fingerprint within the distance of *fingerprint*, or None."""
        best: tuple[int, int] | None = None
        for i, table in enumerate(self._blocks):
            for other in table.get(fingerprint >> (16 * i) & 0xFFFF, ()):
                d = hamming(fingerprint, other)
                if d <= self.max_distance and (best is None or d < best[0]):
                    best = (d, other)
        return None if best is None else self._owner[best[1]]
