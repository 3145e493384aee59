"""I/O: read-ahead of the candidates on a cold page cache, in inode order, by a helper process.

On a cold disk the small-file stage waited on one random read per file (the pyenv tree: 97,000
candidates in size-group order, ~27,000 reads/s whatever the number of reader threads). Asking
the kernel to read ahead (`posix_fadvise(WILLNEED)`) queues a read without waiting for it, so
the disk gets a deep queue; asked in inode order, the files of a directory are mostly adjacent on
disk and the block layer merges their reads (the tree's 107,000 small files: 107,000 reads in
3.9 s one file at a time from 8 threads; 17,000 merged reads in 2.1 s in inode order).

`start` forks one helper that asks for the small candidates in inode order (whole), then the large
ones (whole while they fit `LARGE_BUDGET`, else both edges: what the partial stage reads), one
descriptor open at a time; the caller compares the small groups in the order the helper
completes them (`Plan.small`) while it works. A hint changes no result: every file is still read,
checked and compared as it is when it is read, and the report does not depend on the order of the
groups. Read-ahead while the walk still ran was tried: the data reads queued ahead of the walk's
directory and inode reads made the walk 3.5x slower and the run slower overall.
"""

from __future__ import annotations

import _signal as signal  # signal without its enums: the enum module is ~1.5 ms of imports
import errno
import os
from array import array

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from dedup.table import FileTable

_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_NOATIME = getattr(os, "O_NOATIME", 0)
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_REFUSED = (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS)
PROBES = 8  # files looked at to tell a cold page cache from a warm one
# Bytes of large candidates read ahead whole (beyond: their edges only). The pyenv tree has
# 221 MiB of them, read whole by the lockstep compare; a tree of same-size disk images must not
# fill the page cache with files whose edges differ.
LARGE_BUDGET = 512 * 1024 * 1024

Ask = tuple[str, int, bool]  # (path, size, whole): what the helper asks the kernel for


def _open(path: str) -> int:
    try:
        return os.open(path, _FLAGS | _NOATIME)
    except PermissionError:  # O_NOATIME is refused on files of other users (unless root)
        return os.open(path, _FLAGS)


def spread(count: int, wanted: int = PROBES) -> list[int]:
    """Return up to *wanted* positions spread evenly over range(count), first and last included."""
    if count <= wanted:
        return list(range(count))
    return sorted({k * (count - 1) // (wanted - 1) for k in range(wanted)})


def is_cold(paths: Iterable[str]) -> bool:
    """Return True when the first byte of at least half of *paths* is not in the page cache
    (False where the page cache cannot be asked: RWF_NOWAIT missing or refused); a path that
    fails is skipped. One miss is not enough: a warm page cache may miss a few files (the bench
    machine's kernel pages out file pages it finds idle), and one probe of 8 missing sent 1 warm
    /usr/lib run of 16 to the read-ahead (a helper asking for all 47,000 candidates)."""
    if not _NOWAIT:
        return False
    probe = bytearray(1)
    missed = hit = 0
    for path in paths:
        try:
            fd = _open(path)
        except OSError:
            continue
        try:
            os.preadv(fd, (probe,), 0, _NOWAIT)
            hit += 1
        except BlockingIOError:
            missed += 1
        except OSError as exc:
            if exc.errno in _REFUSED:
                return False
            continue  # neither: it failed
        finally:
            os.close(fd)
    return missed > 0 and missed >= hit


def read_ahead(asks: Iterable[Ask], edge: int) -> int:
    """Ask the kernel to read ahead each (path, size, whole) of *asks*, in order: the whole file,
    or its first and last *edge* bytes. One descriptor open at a time; a file that fails is
    skipped. Return the files asked for."""
    willneed = os.POSIX_FADV_WILLNEED
    asked = 0
    for path, size, whole in asks:
        try:
            fd = _open(path)
        except OSError:
            continue
        try:
            if whole or size <= 2 * edge:
                os.posix_fadvise(fd, 0, size, willneed)
            else:
                os.posix_fadvise(fd, 0, edge, willneed)
                os.posix_fadvise(fd, size - edge, edge, willneed)
            asked += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return asked


def group_order(last_inos: Sequence[int]) -> list[int]:
    """Return the order to compare groups in, given each group's highest member inode: a group
    is complete once the read-ahead, in inode order, passes its last member (ties: given order)."""
    return sorted(range(len(last_inos)), key=last_inos.__getitem__)


def rows_in_inode_order(rows: array, inos: array) -> array:
    """Return *rows* (table rows, "I") sorted by their *inos* ("Q"), each inode packed with its
    position in one machine integer while sorting (a tuple per row would cost the helper ~10 MB
    on the pyenv tree); inodes too large to pack fall back to a plain sort."""
    n = len(rows)
    shift = max(n - 1, 1).bit_length()
    if not inos or max(inos) >> (63 - shift) == 0:
        packed = sorted((ino << shift) | k for k, ino in enumerate(inos))
        mask = (1 << shift) - 1
        return array("I", (rows[key & mask] for key in packed))
    return array("I", sorted(rows, key=dict(zip(rows, inos, strict=True)).__getitem__))


class Plan:
    """A started read-ahead: the helper's pid (0: none), the small groups in the order to compare
    them, and whether the large candidates are read ahead whole (within `LARGE_BUDGET`)."""

    def __init__(self, pid: int, small: list, whole_large: bool) -> None:
        self.pid, self.small, self.whole_large = pid, small, whole_large

    def stop(self) -> None:
        """End the helper if it still runs, and reap it."""
        if not self.pid:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        self.pid = 0


def start(table: FileTable, small: list, large: list, edge: int) -> Plan | None:
    """Fork the helper if the page cache is cold for the candidates (*small*: groups of *table*
    rows or of records; *large*: groups of records); return its `Plan`, or None when warm, or
    when forking is refused (`dedup.processes.can_fork`)."""
    from dedup.processes import can_fork

    both = small + large
    firsts = [both[k][0] for k in spread(len(both))]
    del both
    if not is_cold(table.path(i) if type(i) is int else i[0] for i in firsts) or not can_fork():
        return None
    ino = table.ino
    last = [max(ino[i] for i in g) if type(g) is array else max(r[3] for r in g) for g in small]
    order = group_order(last)
    del last
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child; the parent's outcome is tested
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            read_ahead(_asks(table, small, large), edge)
            code = 0
        finally:
            os._exit(code)  # no cleanup of the parent's objects, no atexit
    whole_large = sum(r[1] for g in large for r in g) <= LARGE_BUDGET
    return Plan(pid, [small[g] for g in order], whole_large)


def _asks(table: FileTable, small: list, large: list) -> Iterator[Ask]:
    """The helper's asks: small candidates whole in inode order (records of hard-linked groups
    first: they are few), then large ones by inode, whole while `LARGE_BUDGET` lasts."""
    for g in small:
        if type(g) is not array:
            for r in g:
                yield r[0], r[1], True
    rows = array("I")
    for g in small:
        if type(g) is array:
            rows.extend(g)
    ino = table.ino
    rows = rows_in_inode_order(rows, array("Q", (ino[i] for i in rows)))
    path, size = table.path, table.size
    for i in rows:
        yield path(i), size[i], True
    budget = LARGE_BUDGET
    for _, p, n in sorted((r[3], r[0], r[1]) for g in large for r in g):
        budget -= n
        yield p, n, budget >= 0
