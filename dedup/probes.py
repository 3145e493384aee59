"""Middle probes of small files: files over `PROBE_FROM` bytes whose heads match (dedup.heads)
are told apart by `PROBE` bytes from their middle before they are read whole.

/usr/lib has 6,374 small files sharing a head with another of their size (.py files under one
licence header, ELF headers), half of them not duplicates; reading them whole was 24.6 MiB of
the run's 33 MiB beyond the groups' bytes. A probe of 64 bytes at the middle (which beat the
tail, 64 bytes or a page, and a second page from the start) rules out most: 3,880 probes save
7.9 MiB. Warm, the head stage probes through the descriptors it holds (`probe_middles`);
otherwise the probes are jobs of their own (`split_by_probes`), so bytes_read does not depend on
the page cache.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING

from dedup import hashing
from dedup.jobs import BATCH_FILES, bounded_map
from dedup.model import FileProblem
from dedup.walk import describe_os_error

if TYPE_CHECKING:
    # Not at run time: concurrent.futures imports logging, 7.6 ms of every command-line run
    # (python -X importtime), for a name only the annotations use.
    from concurrent.futures import Executor

PROBE = 64
PROBE_FROM = 2048  # at most this size, a probe saves less than its read costs

Preadv = Callable[[int, tuple[bytearray], int, int], int]


def probe_middles(fds: list[int], paths: list[str], shared: Iterable[list[int]], size: int,
                  nowait: int, failed: list[FileProblem], preadv: Preadv,
                  refused: Callable[[OSError], int]) -> tuple[list[int], int, int, bool]:
    """Probe each open file of *shared* (lists of positions sharing a head) through *preadv*
    (page cache only while *nowait*; *refused* maps its refusal to new flags); return (the
    positions whose probe another of their head shares, sorted; bytes read; the flags to read
    with from now on; whether the page cache served every probe)."""
    buf = bytearray(PROBE)
    bufs = (buf,)
    at = size // 2
    keep: list[int] = []
    read = 0
    cached = True
    for ks in shared:
        probes: dict[bytes, list[int]] = {}
        for k in ks:
            try:
                try:
                    got = preadv(fds[k], bufs, at, nowait)
                except BlockingIOError:
                    cached = False
                    got = preadv(fds[k], bufs, at, 0)
                except OSError as exc:
                    nowait = refused(exc)
                    got = preadv(fds[k], bufs, at, 0)
                if got != PROBE:
                    raise hashing.FileChangedError(f"now {at + got} bytes or fewer")
            except OSError as exc:
                failed.append(FileProblem(paths[k], describe_os_error(exc)))
                continue
            read += PROBE
            probes.setdefault(bytes(buf), []).append(k)
        keep += (k for same in probes.values() if len(same) > 1 for k in same)
    return sorted(keep), read, nowait, cached


def read_probe(path: str, size: int, opener: Callable[[str], int]) -> bytes:
    """Return `PROBE` bytes from the middle of a file of *size* bytes (blocking); raise OSError,
    or `FileChangedError` if it is shorter now."""
    fd = opener(path)
    try:
        data = os.pread(fd, PROBE, size // 2)
    finally:
        os.close(fd)
    if len(data) != PROBE:
        raise hashing.FileChangedError(f"now {size // 2 + len(data)} bytes or fewer")
    return data


def _probes_job(items: list[tuple[str, int]], opener: Callable[[str], int]
                ) -> list[bytes | FileProblem]:
    out: list[bytes | FileProblem] = []
    for path, size in items:
        try:
            out.append(read_probe(path, size, opener))
        except OSError as exc:
            out.append(FileProblem(path, describe_os_error(exc)))
    return out


def split_by_probes(classes: list, paths: list[list[str]], sizes: list[int],
                    pool: Executor | None, window: int, opener: Callable[[str], int],
                    problem: Callable[[FileProblem], None]) -> tuple[list[list], int]:
    """Split each class (members of one size sharing a head; *paths*: its members' paths,
    *sizes*: its size) by its members' probes, read in *pool* when given; return, for each
    class, its sub-classes of two or more (of the class's kind), and the bytes read."""
    every = ((p, size) for ps, size in zip(paths, sizes, strict=True) for p in ps)
    jobs = iter(lambda: list(islice(every, BATCH_FILES)), [])
    if pool is not None:
        results = bounded_map(pool, lambda batch: _probes_job(batch, opener), jobs, window)
    else:
        results = (_probes_job(batch, opener) for batch in jobs)
    probes = (p for batch in results for p in batch)
    out: list[list] = []
    read = 0
    for cls in classes:
        split: dict[bytes, list] = {}
        for member in cls:
            probe = next(probes)
            if type(probe) is not bytes:
                problem(probe)  # type: ignore[arg-type]
                continue
            read += PROBE
            split.setdefault(probe, []).append(member)
        out.append([array("I", same) if type(cls) is array else same
                    for same in split.values() if len(same) > 1])
    return out, read
