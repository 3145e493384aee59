"""The public surface of dedup: its names, and that the imported package is this checkout's."""

from __future__ import annotations

from pathlib import Path

import dedup

EXPECTED = [
    "Action", "ActionResult", "DedupError", "DuplicateGroup", "FileEntry", "FileProblem",
    "HashCacheError", "Report", "ScanOptions", "Stats", "UnsafeActionError", "UsageError",
    "apply_actions", "find_duplicates", "plan_actions",
]


def test_all_lists_the_public_names_of_design():
    assert sorted(dedup.__all__) == sorted(EXPECTED)
    for name in dedup.__all__:
        assert getattr(dedup, name).__doc__, name


def test_imported_package_is_this_checkout():
    repo_root = Path(__file__).resolve().parents[2]
    assert Path(dedup.__file__).resolve().parent == repo_root / "dedup"


def test_every_public_name_has_a_one_line_docstring():
    for name in dedup.__all__:
        doc = getattr(dedup, name).__doc__
        assert doc.strip().splitlines()[0], name
