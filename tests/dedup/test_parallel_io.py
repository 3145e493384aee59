"""The parallel I/O paths (issue 18): same reports as one thread, bounded descriptors, changes mid-run.

Nothing here depends on machine speed: a cold disk is simulated by making every small file look
uncached (read_small_cached hands back its descriptor), which sends every read through the pool.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from dedup import ScanOptions, cachedreads, find_duplicates, hashing, heads, prefetch
from dedup.listing import walk_listings
from dedup.report import to_json
from dedup.table import FileTable
from fixtures.trees import HardLink, Symlink, build_tree


def _cold(monkeypatch):
    """Every small file is "not in the page cache": its read goes to the I/O pool, and the
    candidates are read ahead by a helper process (dedup.prefetch) in inode order."""
    monkeypatch.setattr(prefetch, "is_cold", lambda paths: True)
    real = hashing.read_small_cached

    def uncached(path, size):
        got = real(path, size)
        if type(got) is int:
            return got
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    monkeypatch.setattr(hashing, "read_small_cached", uncached)

    def not_cached(fd, buffers, offset, flags=0):  # the head stage's own cached reads miss too
        if flags:
            raise BlockingIOError
        return os.preadv(fd, buffers, offset)

    monkeypatch.setattr(cachedreads, "preadv", not_cached)
    monkeypatch.setattr(cachedreads, "refused", [False])  # a tmpfs test before may have set it


def _hostile_spec(seed: int) -> dict:
    """A random tree: many same-size files (copies and one-byte traps), hard links, symlinks to
    files and to directories (a loop), empty files, odd names, files over the whole-read limit."""
    rng = random.Random(seed)
    spec: dict = {}
    contents = [rng.randbytes(rng.choice([1, 2, 7, 4096, 4097])) for _ in range(6)]
    big = rng.randbytes(hashing.WHOLE_LIMIT + 5000)
    names = ["a", "b", "new\nline", b"bad-\xff", "-dash", "sp ace"]
    for i in range(rng.randrange(30, 80)):
        depth = rng.randrange(0, 4)
        parent = "/".join(f"d{rng.randrange(3)}" for _ in range(depth))
        name = names[i % len(names)]
        rel = (os.fsencode(parent) + b"/" if parent else b"") + os.fsencode(name) + b"%d" % i
        r = rng.random()
        if r < 0.5:
            data = rng.choice(contents)
        elif r < 0.7:
            base = bytearray(rng.choice(contents))
            base[rng.randrange(len(base))] ^= 1
            data = bytes(base)
        elif r < 0.8:
            data = big if rng.random() < 0.7 else big[:-1] + b"\0"
        elif r < 0.85:
            data = b""
        else:
            data = rng.randbytes(rng.randrange(1, 100))
        spec[rel] = data
    files = [k for k, v in spec.items() if isinstance(v, bytes)]
    spec[b"links/hard"] = HardLink(files[0])
    spec[b"links/soft"] = Symlink(b"../" + files[1])
    spec[b"links/loop"] = Symlink(b"..")
    return spec


def _report_without_time(report) -> str:
    return to_json(report).replace(f'"elapsed_s": {report.stats.elapsed_s}', '"elapsed_s": 0')


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("follow", [False, True])
@pytest.mark.parametrize("verify", [False, True])
def test_reports_are_identical_for_one_and_many_threads(tmp_path, monkeypatch, seed, follow, verify):
    root = build_tree(str(tmp_path / "t"), _hostile_spec(seed))
    one = find_duplicates([root, root + "/d0"], ScanOptions(
        threads=1, io_threads=1, follow_symlinks=follow, verify=verify))
    warm = find_duplicates([root, root + "/d0"], ScanOptions(
        threads=4, io_threads=8, follow_symlinks=follow, verify=verify))
    _cold(monkeypatch)
    cold = find_duplicates([root, root + "/d0"], ScanOptions(
        threads=4, io_threads=8, follow_symlinks=follow, verify=verify))
    assert one.groups  # the tree does hold duplicates
    assert _report_without_time(warm) == _report_without_time(one)
    assert _report_without_time(cold) == _report_without_time(one)


def test_mixed_tree_same_report_with_the_io_pool(mixed, monkeypatch):
    root, _ = mixed
    one = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    _cold(monkeypatch)
    many = find_duplicates([root], ScanOptions(threads=4, io_threads=16))
    assert _report_without_time(many) == _report_without_time(one)


@pytest.mark.parametrize("seed", range(6))
def test_walk_with_a_pool_lists_in_the_sequential_order(tmp_path, seed):
    root = build_tree(str(tmp_path / "t"), _hostile_spec(seed))
    roots = [root, root + "/d1", root]  # repeated roots: each directory listed once, first path

    def listings(pool, follow):
        out = []
        for prefix, index, dev, listing in walk_listings(roots, follow_symlinks=follow, pool=pool,
                                                         window=3):
            out.append((prefix, index, dev, listing.names, listing.sizes, listing.subdirs,
                        listing.problems, listing.skipped_symlinks))
        return out

    with ThreadPoolExecutor(4) as pool:
        for follow in (False, True):
            assert listings(pool, follow) == listings(None, follow)


def test_open_descriptors_stay_bounded_on_10000_files_in_one_directory(tmp_path, monkeypatch):
    root = tmp_path / "wide"
    root.mkdir()
    for i in range(10_000):
        (root / f"f{i:05d}").write_bytes(b"%05d" % (i % 5000))  # one size: every file compared
    _cold(monkeypatch)
    peak = 0
    real = hashing.read_fd_whole

    def counting(fd, size):
        nonlocal peak
        peak = max(peak, len(os.listdir("/proc/self/fd")))
        return real(fd, size)

    real_small = hashing.read_small

    def counting_small(path, size):  # the later files of a pool job, opened there
        nonlocal peak
        peak = max(peak, len(os.listdir("/proc/self/fd")))
        return real_small(path, size)

    monkeypatch.setattr(hashing, "read_fd_whole", counting)
    monkeypatch.setattr(hashing, "read_small", counting_small)
    baseline = len(os.listdir("/proc/self/fd"))
    report = find_duplicates([str(root)], ScanOptions(threads=2, io_threads=8))
    assert len(report.groups) == 5000
    # io_threads * IO_DEPTH reads in flight, plus what counting itself holds: each of the 8 I/O
    # threads may be inside os.listdir("/proc/self/fd") at once, one descriptor each (38 was seen
    # under load against the former bound of 36), plus the walk's directories. Unbounded reads
    # would reach thousands here.
    assert peak - baseline <= 8 * 4 + 8 + 4


@pytest.mark.parametrize("change", ["vanish", "shrink", "grow"])
def test_file_changed_between_listing_and_pool_read_is_an_error_entry(tmp_path, monkeypatch,
                                                                      change):
    root = build_tree(str(tmp_path / "t"), {"a": b"dup!", "b": b"dup!", "c": b"dup!"})
    _cold(monkeypatch)
    real = hashing.read_fd_whole

    def changing(fd, size):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.endswith("/b"):
            if change == "vanish":
                os.unlink(target)  # the descriptor is open already: then it reads the old bytes
                os.close(fd)
                raise FileNotFoundError(2, "No such file or directory")
            with open(target, "r+b") as f:
                f.truncate(2) if change == "shrink" else f.write(b"dup!more")
        return real(fd, size)

    real_small = hashing.read_small

    def changing_small(path, size):
        # A pool job opens every file of its batch after the first itself (no descriptor yet).
        if path.endswith("/b"):
            if change == "vanish":
                os.unlink(path)
            else:
                with open(path, "r+b") as f:
                    f.truncate(2) if change == "shrink" else f.write(b"dup!more")
        return real_small(path, size)

    monkeypatch.setattr(hashing, "read_fd_whole", changing)
    monkeypatch.setattr(hashing, "read_small", changing_small)
    report = find_duplicates([root], ScanOptions(threads=2, io_threads=4))
    assert [set(g.paths) for g in report.groups] == [{f"{root}/a", f"{root}/c"}]
    assert [p.path for p in report.problems] == [f"{root}/b"]


def test_read_small_cached_reads_cached_files_and_catches_growth(tmp_path):
    for size in (1, 4095, 4096, 8192, 10_000):
        path = tmp_path / f"f{size}"
        path.write_bytes(b"x" * size)
        got = hashing.read_small_cached(str(path), size)
        if type(got) is int:  # not cached (no RWF_NOWAIT here): the blocking read agrees
            got = hashing.read_fd_whole(got, size)
        assert bytes(got) == b"x" * size
        with pytest.raises(hashing.FileChangedError):
            got = hashing.read_small_cached(str(path), size - 1)
            if type(got) is int:
                hashing.read_fd_whole(got, size - 1)


def test_file_table_round_trips_records():
    table = FileTable()
    table.add_dir("/r/", 0, 7, ["a", "b\nc", "\udcff"], [1, 2, 3], [10, 11, 12], [5, 6, 7],
                  [(1, 9)])
    table.add_dir("", 1, 8, ["/x/root-file"], [4], [13], [8])
    assert table.records(range(4)) == [
        ("/r/a", 1, 7, 10, 5, 0), ("/r/b\nc", 2, 9, 11, 6, 0), ("/r/\udcff", 3, 7, 12, 7, 0),
        ("/x/root-file", 4, 8, 13, 8, 1)]


def test_a_file_system_refusing_rwf_nowait_is_read_in_this_thread(tmp_path, monkeypatch):
    # tmpfs answers RWF_NOWAIT with EOPNOTSUPP: every file then was an error entry (bench scale).
    import errno

    root = build_tree(str(tmp_path / "t"), {"a": b"dup", "b": b"dup", "c": b"other"})

    def refusing(fd, buffers, offset, flags=0):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "preadv", refusing)
    report = find_duplicates([root], ScanOptions(threads=2, io_threads=4))
    assert [set(g.paths) for g in report.groups] == [{f"{root}/a", f"{root}/b"}]
    assert report.problems == ()


@pytest.mark.parametrize("threads", [1, 2])
def test_the_head_stage_reads_a_file_system_refusing_rwf_nowait_blocking(tmp_path, monkeypatch,
                                                                         threads):
    # The head stage's own cached reads (dedup.heads: small groups read whole, heads of larger
    # files, then their whole reads) refused as tmpfs refuses them: read blocking, no error entry.
    import errno

    real = os.preadv
    same_head = b"h" * heads.HEAD_FROM
    root = build_tree(str(tmp_path / "t"), {
        "a": b"dup", "b": b"dup", "c": b"other",
        "big1": same_head + b"x" * 900, "big2": same_head + b"x" * 900,
        "big3": same_head + b"y" * 900})
    refused = []

    def refusing_nowait(fd, buffers, offset, flags=0):
        if flags:
            refused.append(fd)
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real(fd, buffers, offset)

    monkeypatch.setattr(cachedreads, "preadv", refusing_nowait)
    monkeypatch.setattr(cachedreads, "refused", [False])
    report = find_duplicates([root], ScanOptions(threads=threads, io_threads=4))
    assert sorted(sorted(os.path.basename(p) for p in g.paths) for g in report.groups) == [
        ["a", "b"], ["big1", "big2"]]
    assert report.problems == ()
    assert len(refused) == 1 and cachedreads.refused == [True]  # asked once, then never again


def test_tmpfs_tree_same_report_with_the_io_pool(tmp_path):
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        root = build_tree(os.path.join(shm, "t"), _hostile_spec(3))
        one = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
        many = find_duplicates([root], ScanOptions(threads=4, io_threads=8))
        assert one.groups and not one.problems
        assert _report_without_time(many) == _report_without_time(one)


def test_a_partly_cached_small_file_is_finished_from_where_the_cache_stopped(tmp_path,
                                                                             monkeypatch):
    # RWF_NOWAIT returns the cached first part of a file: the I/O thread reads only the rest.
    spec = {"a": b"x" * 9000, "b": b"x" * 9000, "c": b"x" * 8999 + b"!", "d": b"q" * 300,
            "e": b"q" * 300}
    root = build_tree(str(tmp_path / "t"), spec)
    one = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    real = os.preadv

    def partly(fd, buffers, offset, flags=0):
        if flags:  # a RWF_NOWAIT read: only the first 100 bytes are "cached"
            view = memoryview(buffers[0])[:100]
            return real(fd, (view,), offset)
        return real(fd, buffers, offset, flags)

    monkeypatch.setattr(os, "preadv", partly)
    many = find_duplicates([root], ScanOptions(threads=2, io_threads=4))
    assert [set(map(os.path.basename, g.paths)) for g in one.groups] == [{"a", "b"}, {"d", "e"}]
    assert _report_without_time(many) == _report_without_time(one)
