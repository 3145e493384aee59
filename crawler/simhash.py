"""Near-duplicate detection (pure): 64-bit SimHash over word shingles, and an index that finds a
fingerprint within Hamming distance 3 without comparing every pair.

The index splits each fingerprint into four 16-bit blocks (Manku et al., WWW 2007): two
fingerprints within distance 3 differ in at most 3 blocks, so they share at least one block
exactly. A lookup compares only the fingerprints filed under one of its four blocks.
"""

from __future__ import annotations

import re
import sys
from array import array

import mmh3

MAX_DISTANCE = 3
SHINGLE = 3  # words per shingle
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


_LANE = 32  # bits per counter, so the lanes come out as an array of uint32 in one C call
_SPREAD = [sum(((byte >> j) & 1) << (_LANE * j) for j in range(8)) for byte in range(256)]


def simhash(words: list[str]) -> int:
    """The 64-bit SimHash of *words*, one feature per shingle of SHINGLE consecutive words."""
    if not words:
        return 0
    if len(words) < SHINGLE:
        shingles = [" ".join(words)]
    else:
        shingles = [" ".join(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)]
    hashes = [mmh3.hash64(s, signed=False)[0] for s in shingles]
    # Count the set bits of every position at once: each byte of a hash spreads into eight
    # 32-bit lanes of a big integer, and summing those integers adds all lanes in parallel
    # (a per-bit Python loop is 20x slower).
    total = 0
    for k in range(8):
        shift = 8 * k
        total |= sum(_SPREAD[(h >> shift) & 0xFF] for h in hashes) << (_LANE * shift)
    counts = array("I", total.to_bytes(64 * _LANE // 8, "little"))
    if sys.byteorder != "little":
        counts.byteswap()
    half = len(hashes)
    return sum(1 << bit for bit, c in enumerate(counts) if 2 * c > half)


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
