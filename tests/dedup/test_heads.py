"""The head stage (issue 18): same-size files over HEAD_FROM bytes are split by their first HEAD
bytes; only files whose head another shares are read whole. Same report warm, cold and threaded."""

from __future__ import annotations

import os

import pytest

from dedup import ScanOptions, cachedreads, find_duplicates, hashing, heads, jobs, pipeline, probes
from dedup.report import to_json
from fixtures.trees import build_tree

SIZE = heads.HEAD_FROM + 500


def _spec() -> dict:
    same = b"s" * SIZE
    late = b"s" * (SIZE - 1) + b"!"  # shares the head of `same`: read whole, not a duplicate
    spec = {"a": same, "b": same, "c": late}
    for i in range(5):  # heads of their own: ruled out by HEAD bytes each
        spec[f"u{i}"] = bytes([65 + i]) * SIZE
    spec["v1"] = spec["v2"] = b"v" * (SIZE + 7)  # a second group: cold, its heads come from the pool
    spec["big/x"] = b"y" * (SIZE + 1)  # a size of its own: never read
    spec["small1"] = b"tiny"
    spec["small2"] = b"tiny"
    return spec


def _not_cached(fd, buffers, offset, flags=0):
    """preadv whose page-cache-only reads (RWF_NOWAIT) always miss."""
    if flags:
        raise BlockingIOError
    return os.preadv(fd, buffers, offset)


def _json(report) -> str:
    return to_json(report).replace(f'"elapsed_s": {report.stats.elapsed_s}', '"elapsed_s": 0')


def test_only_files_sharing_a_head_are_read_whole(tmp_path):
    root = build_tree(str(tmp_path / "t"), _spec())
    report = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    assert sorted(sorted(os.path.basename(p) for p in g.paths) for g in report.groups) == [
        ["a", "b"], ["small1", "small2"], ["v1", "v2"]]
    assert report.stats.bytes_read == 10 * heads.HEAD + 3 * SIZE + 2 * (SIZE + 7) + 2 * 4


def test_cold_heads_from_the_pool_give_the_same_report(tmp_path, monkeypatch):
    root = build_tree(str(tmp_path / "t"), _spec())
    warm = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    many = find_duplicates([root], ScanOptions(threads=2, io_threads=4))

    monkeypatch.setattr(cachedreads, "preadv", _not_cached)
    monkeypatch.setattr(cachedreads, "refused", [False])  # a tmpfs test before may have set it
    # A page cache known cold (as while a read-ahead runs): the first miss ends the warm path, and
    # the heads of the groups after it are the pool's jobs (counted: in this process, threads=1).
    monkeypatch.setattr(heads.Heads, "miss_budget", 0)
    jobs = []
    real_job = cachedreads.heads_job

    def counted_job(paths):
        jobs.append(len(paths))
        return real_job(paths)

    monkeypatch.setattr(cachedreads, "heads_job", counted_job)
    cold = find_duplicates([root], ScanOptions(threads=2, io_threads=4))
    one = find_duplicates([root], ScanOptions(threads=1, io_threads=4))
    assert jobs, "no head was read by the pool's path"
    assert _json(many) == _json(warm)
    assert _json(cold) == _json(warm)
    assert _json(one) == _json(warm)


@pytest.mark.parametrize("change", ["vanish", "shrink"])
@pytest.mark.parametrize("cold", [False, True])
def test_file_changed_before_its_head_is_read_is_an_error_entry(tmp_path, monkeypatch, change,
                                                                cold):
    # r and s, smaller, are the first group: cold, it spends the budget (0, below), so a, b and c
    # are read by the pool's path (their heads: read_head, counted).
    root = build_tree(str(tmp_path / "t"), {"a": b"d" * SIZE, "b": b"d" * SIZE, "c": b"d" * SIZE,
                                             "r": b"e" * (SIZE - 1), "s": b"e" * (SIZE - 1)})
    real_open = cachedreads.open_file
    real_head = cachedreads.read_head
    heads_read = []

    def alter(path):
        if path.endswith("/b"):
            if change == "vanish":
                os.unlink(path)
            else:
                os.truncate(path, 10)

    def changing_open(path):
        alter(path)
        return real_open(path)

    def changing_head(path):
        heads_read.append(os.path.basename(path))
        alter(path)
        return real_head(path)

    monkeypatch.setattr(cachedreads, "open_file", changing_open)
    monkeypatch.setattr(cachedreads, "read_head", changing_head)
    if cold:
        monkeypatch.setattr(cachedreads, "preadv", _not_cached)
        monkeypatch.setattr(heads.Heads, "miss_budget", 0)
    monkeypatch.setattr(cachedreads, "refused", [False])  # a tmpfs test before may have set it
    # Cold, one process: the pool's threads read the heads in this process, where they are counted.
    report = find_duplicates([root], ScanOptions(threads=1 if cold else 2, io_threads=4))
    assert sorted(sorted(g.paths) for g in report.groups) == [
        [f"{root}/a", f"{root}/c"], [f"{root}/r", f"{root}/s"]]
    assert [p.path for p in report.problems] == [f"{root}/b"]
    if cold:
        assert "b" in heads_read  # the change met the pool's head read


@pytest.mark.parametrize("change", ["vanish", "shrink", "grow"])
@pytest.mark.parametrize("size", [heads.HEAD_FROM, SIZE])
def test_warm_file_changed_before_it_is_opened_is_an_error_entry(tmp_path, monkeypatch, change,
                                                                 size):
    # Files read whole at once (at most HEAD_FROM bytes) and files split by a head first.
    root = build_tree(str(tmp_path / "t"), {n: b"d" * size for n in ("a", "b", "c")})
    real_open = cachedreads.open_file

    def changing_open(path):
        if path.endswith("/b"):
            if change == "vanish":
                os.unlink(path)
            else:
                with open(path, "r+b") as f:
                    f.truncate(size - 1) if change == "shrink" else f.write(b"d" * (size + 1))
        return real_open(path)

    monkeypatch.setattr(cachedreads, "open_file", changing_open)
    report = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    assert [set(g.paths) for g in report.groups] == [{f"{root}/a", f"{root}/c"}]
    assert [p.path for p in report.problems] == [f"{root}/b"]
    opened = 2 if change == "vanish" else 3
    assert report.stats.bytes_read == 2 * size + (
        opened * heads.HEAD if size > heads.HEAD_FROM else 0)


def test_a_cache_miss_inside_a_group_hands_the_whole_group_to_the_pool(tmp_path, monkeypatch):
    # Warm until the second file of a group of small files: that group is read again, whole,
    # by the pool's path, and nothing is counted twice.
    spec = {f"{g}{i}": bytes([65 + g]) * 100 for g in range(3) for i in range(3)}
    root = build_tree(str(tmp_path / "t"), {str(k): v for k, v in spec.items()})
    warm = find_duplicates([root], ScanOptions(threads=1, io_threads=4))
    calls = []

    def second_misses(fd, buffers, offset, flags=0):
        calls.append(flags)
        if flags and len(calls) == 2:
            raise BlockingIOError
        return os.preadv(fd, buffers, offset, flags)

    monkeypatch.setattr(cachedreads, "preadv", second_misses)
    monkeypatch.setattr(cachedreads, "refused", [False])
    cold = find_duplicates([root], ScanOptions(threads=1, io_threads=4))
    assert len(calls) == 2  # then the rest of the size group went to dedup.smallfiles
    assert _json(cold) == _json(warm)
    assert cold.stats.bytes_read == 9 * 100


def test_verify_warm_gives_the_groups_and_bytes_of_the_digest_run(tmp_path):
    root = build_tree(str(tmp_path / "t"), _spec())
    digests = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    verified = find_duplicates([root], ScanOptions(threads=1, io_threads=1, verify=True))
    assert [g.paths for g in verified.groups] == [g.paths for g in digests.groups]
    assert verified.stats.bytes_read == digests.stats.bytes_read


LONG = probes.PROBE_FROM + 1000


def _probe_spec() -> dict:
    same = b"p" * LONG
    middle = bytearray(same)
    middle[LONG // 2] = ord("!")  # its head is `same`'s, its middle is not: never read whole
    end = b"p" * (LONG - 1) + b"!"  # head and middle of `same`: read whole, not a duplicate
    return {"a": same, "b": same, "c": bytes(middle), "d": end, "e": b"q" * LONG}


@pytest.mark.parametrize("cache", ["warm", "probes missed", "cold"])
def test_files_sharing_a_head_but_not_a_middle_are_not_read_whole(tmp_path, monkeypatch, cache):
    root = build_tree(str(tmp_path / "t"), _probe_spec())
    monkeypatch.setattr(cachedreads, "refused", [False])  # a tmpfs test before may have set it
    if cache == "probes missed":  # read blocking then, through the descriptors held
        monkeypatch.setattr(cachedreads, "preadv", lambda fd, bufs, offset, flags=0: (
            _not_cached(fd, bufs, offset, flags) if offset else os.preadv(fd, bufs, offset)))
    elif cache == "cold":  # every page-cache-only read misses: the group is read blocking
        monkeypatch.setattr(cachedreads, "preadv", _not_cached)
    report = find_duplicates([root], ScanOptions(threads=2, io_threads=4))
    assert [sorted(os.path.basename(p) for p in g.paths) for g in report.groups] == [["a", "b"]]
    # Five heads, four probes (not e: a head of its own), then a, b, d past their heads (their
    # first PREFIX bytes, then the rest): no byte read twice.
    assert report.stats.bytes_read == 5 * heads.HEAD + 4 * probes.PROBE + 3 * (LONG - heads.HEAD)


def test_file_shrunk_before_its_probe_is_an_error_entry(tmp_path, monkeypatch):
    root = build_tree(str(tmp_path / "t"), {n: b"d" * LONG for n in ("a", "b", "c")})
    real = cachedreads.preadv

    def shrink_b_at_first_probe(fd, bufs, offset, flags=0):
        if offset and os.path.getsize(f"{root}/b") == LONG:
            os.truncate(f"{root}/b", LONG // 2 + 1)
        return real(fd, bufs, offset, flags)

    monkeypatch.setattr(cachedreads, "preadv", shrink_b_at_first_probe)
    report = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    assert [set(g.paths) for g in report.groups] == [{f"{root}/a", f"{root}/c"}]
    assert [p.path for p in report.problems] == [f"{root}/b"]
    assert report.stats.bytes_read == 3 * heads.HEAD + 2 * probes.PROBE + 2 * (LONG - heads.HEAD)


@pytest.mark.parametrize("cold", [False, True])
def test_files_of_a_few_hundred_bytes_differing_in_their_head_are_not_read_whole(
        tmp_path, monkeypatch, cold):
    # Over HEAD_FROM (256 bytes): a head first, as larger files (/usr/lib: 9,400 such candidates,
    # 4.9 MiB read whole beyond the groups' bytes, 1.2 MiB with heads).
    spec = {f"u{i}": bytes([65 + i]) * 300 for i in range(5)}
    spec["a"] = spec["b"] = b"z" * 300
    root = build_tree(str(tmp_path / "t"), spec)
    monkeypatch.setattr(cachedreads, "refused", [False])  # a tmpfs test before may have set it
    if cold:
        monkeypatch.setattr(cachedreads, "preadv", _not_cached)
    report = find_duplicates([root], ScanOptions(threads=2, io_threads=4))
    assert [sorted(os.path.basename(p) for p in g.paths) for g in report.groups] == [["a", "b"]]
    assert report.stats.bytes_read == 7 * heads.HEAD + 2 * 300


def _groups_spec() -> dict:
    # Six groups of three same-size files each (two of each group identical): sizes over
    # HEAD_FROM (the head path) and at most HEAD_FROM (read whole), alternating.
    spec = {}
    for g in range(6):
        size = heads.HEAD_FROM + 100 + g if g % 2 else 100 + g
        spec[f"g{g}a"] = spec[f"g{g}b"] = bytes([65 + g]) * size
        spec[f"g{g}c"] = bytes([97 + g]) * size
    return spec


@pytest.mark.parametrize("budget", [0, 2, heads.WARM_MISSES])
def test_a_warm_run_goes_on_warm_after_a_few_misses(tmp_path, monkeypatch, budget):
    # The first file of each of the first two groups misses the page cache: with a budget of
    # misses left, the groups after them are still read warm (RWF_NOWAIT asked); once it is
    # spent, the rest go the pool's way (no page-cache-only read any more). Budget 0 (a
    # read-ahead runs: cold) ends the warm path at the first miss. Same report, same bytes.
    root = build_tree(str(tmp_path / "t"), _groups_spec())
    warm = find_duplicates([root], ScanOptions(threads=1, io_threads=4))
    calls: list[int] = []
    missed: list[str] = []  # the groups whose first page-cache-only read missed

    def two_misses(fd, buffers, offset, flags=0):
        calls.append(flags)
        group = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))[:2]
        if flags and len(missed) < 2 and group not in missed:
            missed.append(group)
            raise BlockingIOError
        return os.preadv(fd, buffers, offset, flags)

    monkeypatch.setattr(cachedreads, "preadv", two_misses)
    monkeypatch.setattr(cachedreads, "refused", [False])
    monkeypatch.setattr(heads.Heads, "miss_budget", budget)
    monkeypatch.setattr(heads.Heads, "warm_misses", 0)
    monkeypatch.setattr(heads.Heads, "warm_groups", 0)
    monkeypatch.setattr(heads, "MISS_EVERY", 1000)
    run = find_duplicates([root], ScanOptions(threads=1, io_threads=4))
    assert _json(run) == _json(warm)
    assert run.stats.bytes_read == warm.stats.bytes_read
    assert len(missed) == (1 if budget == 0 else 2)
    nowait = sum(1 for flags in calls if flags)
    if budget <= 2:
        assert nowait <= 2 * 3 * 2  # only the groups that missed were read warm
    else:
        assert nowait >= 2 + 4 * 3  # the four groups after the misses were read warm too


def test_the_budget_of_warm_misses_grows_with_the_groups_read_warm():
    # One miss every MISS_EVERY groups or fewer never ends the warm path; a miss in every
    # group ends it after about WARM_MISSES groups.
    run = heads.Heads()
    assert all(run._warm_after(k % heads.MISS_EVERY == 0) for k in range(10 * heads.MISS_EVERY))
    run = heads.Heads()
    ends = next(k for k in range(1000) if not run._warm_after(True))
    assert heads.WARM_MISSES <= ends + 1 <= 2 * heads.WARM_MISSES


@pytest.mark.parametrize("budget", [0, heads.WARM_MISSES])
def test_a_small_file_the_page_cache_missed_is_read_here_while_the_budget_lasts(
        tmp_path, monkeypatch, budget):
    # A group of files of at most HEAD_FROM bytes whose warm read missed goes to the whole-read
    # stage (dedup.smallfiles); a file missed there too is read in this thread while the budget
    # of warm misses lasts (no I/O pool started: its threads and imports cost ~10 ms), by the
    # pool once it is spent (budget 0: the first miss spends it). Same report, same bytes.
    root = build_tree(str(tmp_path / "t"), _groups_spec())
    monkeypatch.setattr(pipeline, "usable_cpus", lambda: 1)  # the pool's jobs are seen here
    warm = find_duplicates([root], ScanOptions(threads=1, io_threads=4))
    real = hashing.read_small_cached

    def g0a_uncached(path, size):
        got = real(path, size)
        if os.path.basename(path) == "g0a" and type(got) is not int:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return got

    def g0a_missed(fd, buffers, offset, flags=0):
        if flags and os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == "g0a":
            raise BlockingIOError
        return os.preadv(fd, buffers, offset, flags)

    monkeypatch.setattr(hashing, "read_small_cached", g0a_uncached)
    monkeypatch.setattr(cachedreads, "preadv", g0a_missed)
    monkeypatch.setattr(cachedreads, "refused", [False])
    monkeypatch.setattr(heads.Heads, "miss_budget", budget)
    monkeypatch.setattr(heads.Heads, "warm_misses", 0)
    monkeypatch.setattr(heads.Heads, "warm_groups", 0)
    jobs_run: list = []
    submit = jobs.LazyPool.submit
    monkeypatch.setattr(jobs.LazyPool, "submit",
                        lambda pool, fn, *args: jobs_run.append(fn) or submit(pool, fn, *args))
    run = find_duplicates([root], ScanOptions(threads=1, io_threads=4))
    assert _json(run) == _json(warm)
    assert run.stats.bytes_read == warm.stats.bytes_read
    reads = [fn for fn in jobs_run if fn.__name__ != "list_dir"]  # the walk lists in it too
    assert bool(reads) == (budget == 0)
