"""The crawler package's public names are exactly its __all__, each documented."""

from __future__ import annotations

import types

import crawler


def test_all_lists_every_public_name_sorted() -> None:
    # dir(): the names load on first use (PEP 562), so vars() holds only those used so far
    public = {n for n in dir(crawler)
              if not n.startswith("_") and not isinstance(getattr(crawler, n), types.ModuleType)}
    assert set(crawler.__all__) == public
    assert set(crawler._WHERE) == public  # nothing loadable on first use that __all__ leaves out
    assert crawler.__all__ == sorted(crawler.__all__, key=str.lower)
    for name in crawler.__all__:
        assert getattr(crawler, name).__doc__, name


def test_imported_package_is_this_checkout() -> None:
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    assert Path(crawler.__file__).resolve().is_relative_to(repo / "crawler")


def test_design_md_names_are_exported() -> None:
    for name in ("crawl", "CrawlConfig", "CrawlRecord", "CrawlSummary", "normalize_url",
                 "InvalidURL", "CrawlError", "FetchError"):
        assert name in crawler.__all__
