"""Placeholder until --similar lands."""

from __future__ import annotations


def find_similar(candidates, groups, options, *, threshold=50):  # type: ignore[no-untyped-def]
    """Return no pairs yet."""
    return []
