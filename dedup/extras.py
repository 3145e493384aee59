"""Wire `--dirs` and `--similar` onto a finished `Report` (one metadata walk shared by both)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from dedup.model import FileProblem, Report
from dedup.options import PathSelection, ScanOptions
from dedup.report import quote_path

log = logging.getLogger("dedup.similar")


def add_extras(report: Report, paths: Sequence[str], options: ScanOptions, *, dirs: bool,
               similar: bool, min_size: int = 1024 * 1024, threshold: int = 50) -> Report:
    """Return *report* with `dirs` (duplicate directories) and/or `similar` (shared regions) set."""
    from dedup.dirs import content_keys, duplicate_dirs, list_tree

    selection = PathSelection(options)
    listing = list_tree(paths, follow_symlinks=options.follow_symlinks,
                        one_file_system=options.one_file_system,
                        enters_dir=selection.enters_dir if options.exclude else None)
    changes: dict[str, object] = {}
    if dirs:
        keys = content_keys(report.groups, listing)
        changes["dirs"] = tuple(duplicate_dirs(listing, keys, include_empty=options.include_empty))
    if similar:
        from dedup.similar import find_similar

        candidates = [(path, *info) for path, info in listing.files.items()
                      if info[0] >= min_size and selection.selects_file(path, info[0])]
        pairs, problems = find_similar(candidates, report.groups, options, threshold=threshold)
        changes["similar"] = tuple(pairs)
        if problems:
            for path, error in problems:
                log.warning("%s: %s", quote_path(path), error)
            found = [FileProblem(path, error) for path, error in problems]
            changes["problems"] = report.problems + tuple(found)
            changes["stats"] = dataclasses.replace(report.stats,
                                                   errors=report.stats.errors + len(found))
    return dataclasses.replace(report, **changes)  # type: ignore[arg-type]
