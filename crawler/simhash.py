"""Near-duplicate detection (pure): 64-bit SimHash over word shingles, and an index that finds a
fingerprint within Hamming distance 3 without comparing every pair.

The fingerprint is computed from the page's bytes with NumPy (tags located once, words as runs of
bytes, a polynomial hash per word from two prefix sums, the bits voted in one pass), because the
per-word Python work was most of the crawler's CPU on real documentation pages of ~100 KB.

The index splits each fingerprint into four 16-bit blocks (Manku et al., WWW 2007): two
fingerprints within distance 3 differ in at most 3 blocks, so they share at least one block
exactly. A lookup compares only the fingerprints filed under one of its four blocks.
"""

from __future__ import annotations

import re

MAX_DISTANCE = 3
SHINGLE = 3  # words per shingle
MAX_SHINGLES = 10_000  # a longer page is fingerprinted by its first 10,000 (bounds the CPU per page)
_MASK = (1 << 64) - 1
_TAG = re.compile(rb"<[^>]*>")
_SMALL = 4096  # bytes: below, words are counted with regular expressions before NumPy starts
_WORD = re.compile(rb"[0-9A-Za-z_\x80-\xff]+")
_WORD_OR_SPACE = b"".join(b"w" if _WORD.fullmatch(bytes([i])) else b" " for i in range(256))

# Word hash: a polynomial over the word's bytes (mod 2**64), then murmur3's 64-bit finalizer so
# every output bit depends on every input bit; a shingle mixes three word hashes in order.
_BASE = 0x100000001B3  # odd, so invertible mod 2**64: a span's hash comes from two prefix sums
_BASE_INV = pow(_BASE, -1, 1 << 64)
_K1, _K2 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F
_FMIX1, _FMIX2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53


_OPENER = re.compile(rb"<(!--|script|SCRIPT|style|STYLE)")
_CLOSER = {b"!--": b"-->", b"script": b"</script", b"SCRIPT": b"</SCRIPT", b"style": b"</style",
           b"STYLE": b"</STYLE"}


def _text_bytes(html: str | bytes) -> bytes:
    """The page's bytes (UTF-8) with scripts, styles and comments cut (tags are cut by the callers).

    Openers are found in lower and upper case by one regular expression over the bytes: a
    case-insensitive one costs ~0.5 ms on a 100 KB page, and bytes.find of an absent "<SCRIPT"
    ~80 µs (its skip table cannot tell "S" from "s"). A mixed-case `<Script>` stays (its code
    counts as words: a rare page fingerprinted a little worse, never wrongly matched)."""
    data = html if isinstance(html, bytes) else html.encode("utf-8", "surrogatepass")
    cuts: list[tuple[int, int]] = []
    after: dict[bytes, int] = {}  # per opener: its next search starts past its last cut
    for m in _OPENER.finditer(data):
        kind, at = m.group(1), m.start()
        if at < after.get(kind, 0):
            continue
        closer = _CLOSER[kind]
        end = data.find(closer, m.end())
        end = len(data) if end < 0 else end + len(closer)
        cuts.append((at, end))
        after[kind] = end
    if not cuts:
        return data
    parts, pos = [], 0
    for start, end in cuts:  # in order of start already
        if start >= pos:  # a cut inside an earlier one (a comment in a script) is part of it
            parts.append(data[pos:start])
        pos = max(pos, end)
    parts.append(data[pos:])
    return b" ".join(parts)


def html_simhash(html: str | bytes, min_words: int = 0) -> tuple[int, int]:
    """(64-bit SimHash, number of words) of an HTML page's text (a str, or the same text's UTF-8
    bytes, which spares encoding it again): one feature per shingle of
    SHINGLE consecutive words (the first MAX_SHINGLES), a bit set where most features set it.

    A word is a run of ASCII letters, digits, "_" or non-ASCII bytes outside the tags, ASCII
    letters lower-cased. Vectorized with NumPy: 5-8x less CPU than slicing shingles and hashing
    each in Python on real documentation pages (bench/RESULTS.md, crawler-pages); equal to
    `html_simhash_reference`, the per-word loop (a property test checks it). A page of fewer
    than *min_words* words is counted, not fingerprinted: (0, words).
    """
    data = _text_bytes(html)
    if min_words and len(data) < _SMALL:  # most small pages stop here: ~3x cheaper than NumPy's
        marks = _TAG.sub(b" ", data).translate(_WORD_OR_SPACE)  # start-up on a 0.5 KB page
        count = marks.count(b" w") + marks.startswith(b"w")  # runs of word bytes, no list made
        if count < min_words:
            return 0, count
    from crawler.simhash_np import fingerprint  # NumPy loads with the first page that needs it

    return fingerprint(data, min_words)


def _combine(hashes: list[int]) -> int:
    """The one feature of a page with fewer than SHINGLE words."""
    value = 0
    for h in hashes:
        value = (value * _K1 + h) & _MASK
    return value


def _fmix_int(x: int) -> int:
    x ^= x >> 33
    x = (x * _FMIX1) & _MASK
    x ^= x >> 33
    x = (x * _FMIX2) & _MASK
    return x ^ (x >> 33)


def html_simhash_reference(html: str) -> tuple[int, int]:
    """The textbook loop `html_simhash` is checked against: tags cut by a regular expression,
    each word hashed byte by byte, each shingle's bits counted one by one."""
    text = _TAG.sub(b" ", _text_bytes(html))
    words = _WORD.findall(text)
    count = len(words)
    words = words[:MAX_SHINGLES + SHINGLE - 1]
    if not words:
        return 0, 0
    hashes = []
    for w in words:
        value, power = 0, 1
        for byte in w.lower():
            value = (value + byte * power) & _MASK
            power = (power * _BASE) & _MASK
        hashes.append(_fmix_int((value + len(w)) & _MASK))
    if len(hashes) >= SHINGLE:
        features = [_fmix_int((hashes[i] * _K1 + hashes[i + 1] * _K2 + hashes[i + 2]) & _MASK)
                    for i in range(len(hashes) - SHINGLE + 1)]
    else:
        features = [_fmix_int(_combine(hashes))]
    counts = [0] * 64
    for f in features:
        for bit in range(64):
            counts[bit] += 1 if f >> bit & 1 else -1
    return sum(1 << bit for bit in range(64) if counts[bit] > 0), count


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
