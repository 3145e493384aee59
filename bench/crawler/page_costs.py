"""Per-page costs of the crawler's content work, on pages shaped like real ones (pure CPU, no
network): SimHash by page length against the textbook per-bit loop, and link extraction of a page
with 100 navigation links with and without the memo. Writes the "crawler-pages" section of
bench/RESULTS.md; `make bench-crawler` runs it, `python -m bench.crawler.page_costs` alone too."""

from __future__ import annotations

import random
import statistics
import timeit

import crawler.links as links
from bench.results import machine_line, write_section
from crawler.simhash import html_simhash, html_simhash_reference


def _per_call_us(fn, repeat: int = 5) -> float:
    """Median over *repeat* timings of the µs one call of *fn* takes."""
    number = max(1, int(0.05 / max(1e-9, timeit.timeit(fn, number=1))))
    return statistics.median(timeit.timeit(fn, number=number) / number for _ in range(repeat)) * 1e6


def main() -> str:
    """Measure and write the section; return its markdown."""
    rng = random.Random(1)
    vocab = [f"w{i}" for i in range(3000)]
    rows = ["| words | SimHash µs | textbook loop µs | speed-up |", "|---:|---:|---:|---:|"]
    for n in (60, 500, 2000, 8000):
        html = "<p>" + " ".join(f"<b>{rng.choice(vocab)}</b>" for _ in range(n)) + "</p>"
        assert html_simhash(html) == html_simhash_reference(html)
        ours, ref = _per_call_us(lambda h=html: html_simhash(h)), _per_call_us(
            lambda h=html: html_simhash_reference(h), repeat=3)
        rows.append(f"| {n:,} | {ours:,.0f} | {ref:,.0f} | {ref / ours:.1f}× |")
    nav = "".join(f'<a href="/section{i}/index.html">S{i}</a> <a href="../topic{i}/">T</a>'
                  for i in range(50))
    pages = [(f'<html><body><nav>{nav}</nav><a href="article{j}.html">a</a></body></html>',
              f"http://site.example/news/2026/{j}.html") for j in range(200)]

    def extract_all() -> None:
        for page, url in pages:
            links.extract_links(page, url)

    memo = _per_call_us(extract_all) / len(pages)
    memoized = links.resolve_links
    links.resolve_links = links._resolve_each  # every link normalized on its own
    try:
        plain = _per_call_us(extract_all) / len(pages)
    finally:
        links.resolve_links = memoized
    md = "\n\n".join([
        "## crawler page costs — content work per page, no network",
        machine_line(),
        "Command: `python -m bench.crawler.page_costs` (part of `make bench-crawler`). SimHash "
        "of an HTML page of random words over 3-word shingles (NumPy, `html_simhash`), median of "
        "5; the textbook loop hashes each word and counts each bit of each shingle in Python "
        "(the tests' reference; the same fingerprints).",
        "\n".join(rows),
        f"Link extraction of a page with 100 navigation links and one article link (200 pages of "
        f"one site): {memo:,.0f} µs per page with the origin/directory memo, {plain:,.0f} µs "
        f"normalizing every link ({plain / memo:.1f}×).",
    ])
    write_section("crawler-pages", md)
    return md


if __name__ == "__main__":
    print(main())
