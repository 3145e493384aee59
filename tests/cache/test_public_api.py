"""The cache package's public names are exactly its __all__, and the package is this project's."""

from __future__ import annotations

import types
from pathlib import Path

import cache

ROOT = Path(__file__).resolve().parents[2]


def test_imported_cache_is_this_projects() -> None:
    assert Path(cache.__file__).resolve().parent == ROOT / "cache"


def test_all_lists_every_public_name_sorted() -> None:
    public = {
        name for name, value in vars(cache).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(cache.__all__) == public
    assert cache.__all__ == sorted(cache.__all__, key=str.lower)
    for name in cache.__all__:
        if isinstance(getattr(cache, name), type):
            assert getattr(cache, name).__doc__, f"{name} needs a docstring"
