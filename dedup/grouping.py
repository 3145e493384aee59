"""Pure grouping: by size, by any key (the fclones "rehash" seam), hard-link collapsing.

A *candidate group* is a list of file records, one per distinct file (device, inode), all of one
size. A record is a `FileEntry` or a plain tuple in its field order (path, size, dev, ino,
mtime_ns, root): the pipeline keeps plain tuples, so fields are read by index here. Every function
returns only groups of two or more: a file alone cannot be a duplicate.
"""

from __future__ import annotations

import os
from operator import attrgetter

from dedup.model import DuplicateGroup

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Sequence

Record = tuple  # (path, size, dev, ino, mtime_ns, root): FileEntry's layout
CandidateGroup = list[Record]
PATH, SIZE, DEV, INO, MTIME, ROOT = range(6)


def record_order_key(record: Record) -> tuple[int, bytes]:
    """Return `FileEntry.order_key` of a record: root order, then the path's bytes."""
    return (record[ROOT], os.fsencode(record[PATH]))


def sort_records(records: list[Record]) -> None:
    """Sort records in place into `FileEntry.order_key` order."""
    if all(r[PATH].isascii() for r in records):
        # ASCII text orders as its bytes do: no encoding per path.
        records.sort(key=lambda r: (r[ROOT], r[PATH]))
    else:
        records.sort(key=record_order_key)


def collapse_hardlinks(
    entries: Iterable[Record],
) -> tuple[list[Record], dict[tuple[int, int], list[Record]]]:
    """Return one representative per (device, inode), and for inodes with several paths all of them.

    Paths seen twice (a root given twice) are kept once. The representative is the first path in
    `FileEntry.order_key` order, so results do not depend on directory listing order.
    """
    first: dict[tuple[int, int], Record] = {}
    links: dict[tuple[int, int], list[Record]] = {}  # only inodes seen under several paths
    for entry in entries:
        file_id = (entry[DEV], entry[INO])
        seen = first.get(file_id)
        if seen is None:
            first[file_id] = entry
        elif file_id in links:
            if all(e[PATH] != entry[PATH] for e in links[file_id]):
                links[file_id].append(entry)
        elif seen[PATH] != entry[PATH]:  # a root given twice lists one path twice: keep it once
            links[file_id] = [seen, entry]
    for paths in links.values():
        sort_records(paths)
        first[(paths[0][DEV], paths[0][INO])] = paths[0]
    representatives = list(first.values())
    return representatives, links


def collapse_bucket(
    bucket: Sequence[Record], links: dict[tuple[int, int], list[Record]]
) -> list[Record]:
    """Return one record per file of a same-size *bucket*, adding its hard links to *links*.

    Hard links share their size, so collapsing within each size bucket finds them all without a
    table over every scanned file.
    """
    if len({r[INO] for r in bucket}) == len(bucket):  # distinct inodes: no link, no repeated path
        return list(bucket)
    reps, found = collapse_hardlinks(bucket)
    links.update(found)
    return reps


def group_by_size(files: Iterable[Record]) -> list[CandidateGroup]:
    """Return the files grouped by size, dropping sizes held by a single file."""
    by_size: dict[int, CandidateGroup] = {}
    for entry in files:
        by_size.setdefault(entry[SIZE], []).append(entry)
    return [group for group in by_size.values() if len(group) > 1]


def split_by(
    groups: Iterable[CandidateGroup], key_fn: Callable[[Record], Hashable | None]
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
    groups: Iterable[CandidateGroup | DuplicateGroup],
    links: dict[tuple[int, int], list[Record]],
    *,
    consume: bool = False,
    ordered: bool = False,
) -> list[DuplicateGroup]:
    """Turn candidate groups into `DuplicateGroup`s listing every path of every member file.

    Groups are ordered by size (largest first), then by their first path, for stable output.
    With *consume*, each input group is emptied once converted (its records freed as it goes).
    *ordered*: the `DuplicateGroup`s among *groups* come in that order already; when no other
    group comes, they are not ordered again.
    """
    out = []
    made = False
    for group in groups:
        if type(group) is DuplicateGroup:  # expanded already (by a forked process)
            out.append(group)
            continue
        if len(group) < 2:
            continue
        made = True
        if links:
            records = [path for rep in group for path in links.get((rep[DEV], rep[INO]), (rep,))]
        else:
            records = list(group)
        sort_records(records)
        # A candidate group holds one record per distinct file: its length is the file count.
        out.append(DuplicateGroup(group[0][SIZE], records, files=len(group)))  # type: ignore[arg-type]
        if consume:
            group.clear()
    if ordered and not made:
        return out
    # Largest first through a key made in C; only groups of one size (a few) need the first
    # entry's path: `DuplicateGroup.order_key` for every group took 0.03 s of the pyenv run.
    out.sort(key=_SIZE, reverse=True)  # stable: ties keep their order for the pass below
    start, count = 0, len(out)
    while start < count:
        end, size = start + 1, out[start].size
        while end < count and out[end].size == size:
            end += 1
        if end - start > 1:
            out[start:end] = sorted(out[start:end], key=DuplicateGroup.order_key)
        start = end
    return out


_SIZE = attrgetter("size")
