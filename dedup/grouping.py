"""Pure grouping: by size, by any key (the fclones "rehash" seam), hard-link collapsing.

A *candidate group* is a list of `FileEntry` representatives, one per distinct file (device, inode),
all of one size. Every function returns only groups of two or more: a file alone cannot be a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from dedup.model import DuplicateGroup, FileEntry

CandidateGroup = list[FileEntry]


def collapse_hardlinks(
    entries: Iterable[FileEntry],
) -> tuple[list[FileEntry], dict[tuple[int, int], list[FileEntry]]]:
    """Return one representative per (device, inode), and for inodes with several paths all of them.

    Paths seen twice (a root given twice) are kept once. The representative is the first path in
    `FileEntry.order_key` order, so results do not depend on directory listing order.
    """
    first: dict[tuple[int, int], FileEntry] = {}
    links: dict[tuple[int, int], list[FileEntry]] = {}  # only inodes seen under several paths
    for entry in entries:
        file_id = (entry.dev, entry.ino)
        seen = first.get(file_id)
        if seen is None:
            first[file_id] = entry
        elif file_id in links:
            if all(e.path != entry.path for e in links[file_id]):
                links[file_id].append(entry)
        elif seen.path != entry.path:  # a root given twice lists one path twice: keep it once
            links[file_id] = [seen, entry]
    for paths in links.values():
        paths.sort(key=FileEntry.order_key)
        first[(paths[0].dev, paths[0].ino)] = paths[0]
    representatives = list(first.values())
    return representatives, links


def group_by_size(files: Iterable[FileEntry]) -> list[CandidateGroup]:
    """Return the files grouped by size, dropping sizes held by a single file."""
    by_size: dict[int, CandidateGroup] = {}
    for entry in files:
        by_size.setdefault(entry.size, []).append(entry)
    return [group for group in by_size.values() if len(group) > 1]


def split_by(
    groups: Iterable[CandidateGroup], key_fn: Callable[[FileEntry], Hashable | None]
) -> list[CandidateGroup]:
    """Split each group by `key_fn(entry)`; a None key drops the entry (it could not be read).

    Only the entry whose key is None leaves: the rest of its group is split and kept as usual.
    """
    result: list[CandidateGroup] = []
    for group in groups:
        by_key: dict[Hashable, CandidateGroup] = {}
        for entry in group:
            key = key_fn(entry)
            if key is not None:
                by_key.setdefault(key, []).append(entry)
        result.extend(sub for sub in by_key.values() if len(sub) > 1)
    return result


def expand_groups(
    groups: Iterable[CandidateGroup], links: dict[tuple[int, int], list[FileEntry]]
) -> list[DuplicateGroup]:
    """Turn candidate groups into `DuplicateGroup`s listing every path of every member file.

    Groups are ordered by size (largest first), then by their first path, for stable output.
    """
    out = []
    for group in groups:
        if len(group) < 2:
            continue
        entries = [path for rep in group for path in links.get((rep.dev, rep.ino), (rep,))]
        entries.sort(key=FileEntry.order_key)
        out.append(DuplicateGroup(size=group[0].size, entries=tuple(entries)))
    out.sort(key=lambda g: (-g.size, g.entries[0].order_key()))
    return out
