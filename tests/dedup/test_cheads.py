"""dedup._cheads.open_heads, the warm head stage's loop compiled, against the Python loop it
replaces (dedup.cachedreads.open_heads_python): the same descriptors kept, classes, failures,
misses and RWF_NOWAIT flag, on real files (a real page-cache miss, a file system refusing
RWF_NOWAIT, files another user may not open or may open only with atime)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedup import cachedreads, hashing, heads
from dedup._cheads import open_heads, read_wholes
from tests.dedup.test_cwalk import AS_ROOT, _as_nobody

HEAD = heads.HEAD
FLAGS = hashing._OPEN_FLAGS
NOWAIT = hashing._RWF_NOWAIT


def test_the_head_stage_uses_the_compiled_loop():
    # A broken build would run the Python loops, slowly.
    assert heads.open_heads is open_heads and heads.read_wholes is read_wholes


def _opened(fds: list[int]) -> list[str | None]:
    """The path behind each descriptor kept (None for -1)."""
    return [os.readlink(f"/proc/self/fd/{fd}") if fd >= 0 else None for fd in fds]


def _open_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _run(fn, paths, nowait: int = NOWAIT, head: int = HEAD) -> tuple:
    """Run one loop as dedup.heads does (the caller's list of descriptors, closed after; one
    item in it already); return (the paths kept open, classes, failures, missed, RWF_NOWAIT
    after); check that only the descriptors of files sharing a head were open, none is left."""
    before = _open_count()
    fds: list[int] = [-1]
    try:
        sharing, failures, missed, after = fn(paths, FLAGS, nowait, head, fds)
        assert len(fds) == 1 + len(paths) and fds[0] == -1
        assert _open_count() == before + sum(fd >= 0 for fd in fds)
        return _opened(fds[1:]), sharing, failures, missed, after
    finally:
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        assert _open_count() == before


def _nowait_kept(directory) -> bool:
    """Whether the file system of *directory* answers RWF_NOWAIT reads (tmpfs refuses them)."""
    path = os.path.join(directory, ".probe")
    with open(path, "wb") as f:
        f.write(b"p")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(1)], 0, NOWAIT)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(path)


def _both(paths: list[str], nowait: int = NOWAIT) -> tuple:
    """Run both loops on *paths*; check they agree; return the result."""
    out = [_run(fn, list(paths), nowait) for fn in (cachedreads.open_heads_python, open_heads)]
    assert out[1] == out[0]
    return out[1]


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.one_of(
    st.tuples(st.just("file"), st.integers(0, 3), st.integers(0, 40)),  # head kind, extra bytes
    st.tuples(st.just("short"), st.integers(0, HEAD - 1), st.just(0)),
    st.just(("missing", 0, 0)), st.just(("dir", 0, 0)), st.just(("fifo", 0, 0))),
    min_size=1, max_size=20))
def test_random_groups_give_the_same_heads_classes_and_failures(tmp_path_factory, files):
    root = tmp_path_factory.mktemp("g")
    paths = []
    for k, (kind, a, b) in enumerate(files):
        path = str(root / f"f{k}")
        if kind == "file":  # four heads: files sharing one are common
            with open(path, "wb") as f:
                f.write(bytes([a]) * HEAD + b"r" * b)
        elif kind == "short":
            with open(path, "wb") as f:
                f.write(b"s" * a)
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "fifo":
            os.mkfifo(path)
        paths.append(path)
    fds, sharing, failures, missed, after = _both(paths)
    # A directory refuses RWF_NOWAIT as tmpfs does (EOPNOTSUPP): not the file system's refusal,
    # RWF_NOWAIT stays on for the run's other reads (where the file system answers it at all).
    assert missed is False and (after == NOWAIT if _nowait_kept(root) else after in (0, NOWAIT))
    assert sorted([k for ks in sharing for k in ks] + [k for k, _ in failures]
                  + [k for k, p in enumerate(fds) if p is None and k not in
                     {k for k, _ in failures}]) == list(range(len(paths)))
    texts = {text for _, text in failures}
    assert texts <= {"No such file or directory", "Is a directory", "Illegal seek"} | {
        f"now {n} bytes or fewer" for n in range(HEAD)}


def test_a_read_the_page_cache_cannot_serve_is_a_miss_and_read_blocking(tmp_path):
    if not _nowait_kept(tmp_path):
        pytest.skip("the file system of the test's directory refuses RWF_NOWAIT (tmpfs)")
    out = []
    for fn in (cachedreads.open_heads_python, open_heads):
        paths = []
        for k in range(3):
            paths.append(str(tmp_path / f"{fn.__name__}{k}"))
            fd = os.open(paths[-1], os.O_RDWR | os.O_CREAT | os.O_EXCL)
            os.write(fd, b"same" * 1000 + b"x" * k)
            os.fsync(fd)  # clean pages, which the advice drops from the page cache
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        out.append(_run(fn, paths)[1:])
    assert out[0] == out[1] == ([[0, 1, 2]], [], True, NOWAIT)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no tmpfs at /dev/shm")
def test_a_file_system_refusing_rwf_nowait_is_read_blocking(monkeypatch):
    import tempfile

    monkeypatch.setattr(cachedreads, "refused", [False])  # the Python loop sets it
    with tempfile.TemporaryDirectory(dir="/dev/shm") as root:
        if _nowait_kept(root):
            pytest.skip("tmpfs answers RWF_NOWAIT on this kernel")
        paths = []
        for k in range(4):
            paths.append(os.path.join(root, f"f{k}"))
            with open(paths[-1], "wb") as f:
                f.write(b"x" * (HEAD + k % 2))
        _, sharing, failures, missed, after = _both(paths)
        wholes = _wholes_both(paths[::2], HEAD)
    assert after == 0 and sharing == [[0, 1, 2, 3]] and not failures and missed is False
    assert wholes == ([[0, 1]], [], 0)


@AS_ROOT
def test_another_users_files_opened_without_atime_or_refused():
    import shutil
    import tempfile

    base = tempfile.mkdtemp(dir="/tmp")  # tmp_path's parents are root's alone
    try:
        os.chmod(base, 0o755)
        paths = []
        for k, mode in enumerate((0o644, 0o644, 0o600, 0o644)):
            paths.append(os.path.join(base, f"f{k}"))
            with open(paths[-1], "wb") as f:
                f.write(b"h" * (HEAD + 5))
            os.chmod(paths[-1], mode)
        # root's files: O_NOATIME is refused (EPERM) to nobody, the open retried without it
        fds, sharing, failures, missed, after = _as_nobody(lambda: _both(paths))
        assert failures == [(2, "Permission denied")] and sharing == [[0, 1, 3]]
    finally:
        shutil.rmtree(base)


def test_classes_come_in_the_order_a_heads_second_file_came(tmp_path):
    paths = []
    for k, mark in enumerate("ABBACDC"):
        paths.append(str(tmp_path / f"f{k}"))
        with open(paths[-1], "wb") as f:
            f.write(mark.encode() * (HEAD + 1))
    opened, sharing, failures, _, _ = _both(paths)
    assert sharing == [[1, 2], [0, 3], [4, 6]] and not failures
    assert opened == [p if k != 5 else None for k, p in enumerate(paths)]


def test_no_path_and_bad_arguments(tmp_path):
    assert _both([]) == ([], [], [], False, NOWAIT)
    good = str(tmp_path / "g")
    with open(good, "wb") as f:
        f.write(b"g" * HEAD)
    for fn in (cachedreads.open_heads_python, open_heads):
        for head in (0, 4097, 2**32 + 5):
            with pytest.raises((ValueError, OverflowError)):
                _run(fn, [good], head=head)
    # A path that is not one fails before anything is opened (and closes nothing, fd 0 included).
    stdin = os.fstat(0)
    for bad in ([good, "nul\0here"], [good, 7]):
        with pytest.raises((ValueError, TypeError)):
            _run(open_heads, bad)
    assert os.fstat(0) == stdin


def test_an_interrupt_leaves_every_descriptor_with_the_caller(tmp_path, monkeypatch):
    paths = []
    for k in range(5):
        paths.append(str(tmp_path / f"f{k}"))
        with open(paths[-1], "wb") as f:
            f.write(b"i" * HEAD)
    calls = []

    def interrupted(fd, buffers, offset, flags=0):
        calls.append(fd)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return os.preadv(fd, buffers, offset, flags)

    monkeypatch.setattr(cachedreads, "preadv", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(cachedreads.open_heads_python, paths)  # checks that none is left open
    assert len(calls) == 4


# read_wholes (dedup/_cwholes.h) against read_wholes_python: groups of small files read whole.

def _wholes_both(paths: list[str], size: int, nowait: int = NOWAIT):
    """Run both whole-read loops; check they agree and leave no descriptor open."""
    out = []
    for fn in (cachedreads.read_wholes_python, read_wholes):
        before = _open_count()
        out.append(fn(list(paths), size, FLAGS, nowait))
        assert _open_count() == before
    assert out[1] == out[0]
    return out[1]


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.sampled_from([0, 1, 7, 256, 4096]), data=st.data(),
       files=st.lists(st.one_of(
           st.tuples(st.just("file"), st.integers(0, 3)),
           st.tuples(st.sampled_from(["short", "grown", "missing", "dir", "fifo"]), st.just(0))),
           min_size=1, max_size=20))
def test_whole_reads_give_the_same_classes_and_failures(tmp_path_factory, size, data, files):
    root = tmp_path_factory.mktemp("w")
    # Four contents that differ in one byte each (the first, the middle, the last): a loop that
    # compared only part of the bytes would merge them.
    base = data.draw(st.binary(min_size=size, max_size=size))
    contents = [base]
    for at in (0, size // 2, size - 1):
        if size:
            changed = bytearray(base)
            changed[at] ^= 0xFF
            contents.append(bytes(changed))
    paths = []
    for k, (kind, mark) in enumerate(files):
        path = str(root / f"f{k}")
        if kind in ("file", "short", "grown"):
            body = contents[mark % len(contents)]
            body = {"file": body, "short": body[:-1], "grown": body + b"+"}[kind]
            with open(path, "wb") as f:
                f.write(body)
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "fifo":
            os.mkfifo(path)
        paths.append(path)
    got = _wholes_both(paths, size)
    classes, failures, _ = got
    texts = {text for _, text in failures}
    assert texts <= {"No such file or directory", "Is a directory", "Illegal seek",
                     f"changed during scan: grew (expected {size} bytes)",
                     f"changed during scan: shrank (expected {size} bytes)"}
    assert classes == sorted(classes) and all(len(c) > 1 for c in classes)


def test_a_whole_read_the_page_cache_cannot_serve_leaves_the_group(tmp_path):
    if not _nowait_kept(tmp_path):
        pytest.skip("the file system of the test's directory refuses RWF_NOWAIT (tmpfs)")
    for fn in (cachedreads.read_wholes_python, read_wholes):
        paths = []
        for k in range(3):
            paths.append(str(tmp_path / f"{fn.__name__}{k}"))
            fd = os.open(paths[-1], os.O_RDWR | os.O_CREAT | os.O_EXCL)
            os.write(fd, b"w" * 200)
            os.fsync(fd)
            if k == 1:  # the middle one dropped from the page cache
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        before = _open_count()
        assert fn(paths, 200, FLAGS, NOWAIT) is None
        assert _open_count() == before


def test_many_tiny_files_and_bad_sizes(tmp_path):
    paths = []
    for k in range(3000):
        paths.append(str(tmp_path / f"t{k}"))
        with open(paths[-1], "wb") as f:
            f.write(bytes([k % 3]))
    classes, failures, _ = _wholes_both(paths, 1)
    assert classes == [list(range(r, 3000, 3)) for r in range(3)] and not failures
    for fn in (cachedreads.read_wholes_python, read_wholes):
        for size in (-1, 65537, 2**40):
            with pytest.raises(ValueError):
                fn(paths[:1], size, FLAGS, NOWAIT)
    assert _wholes_both(paths[:2], 65536) == ([], [(0, "changed during scan: shrank (expected "
                                                    "65536 bytes)"), (1, "changed during scan: "
                                                    "shrank (expected 65536 bytes)")], NOWAIT)


def test_an_interrupt_in_the_python_whole_reads_leaves_no_descriptor(tmp_path, monkeypatch):
    paths = []
    for k in range(4):
        paths.append(str(tmp_path / f"i{k}"))
        with open(paths[-1], "wb") as f:
            f.write(b"i" * 100)
    for where in ("preadv", "read_to_end"):
        calls = []
        real = getattr(cachedreads, where)

        def interrupted(*args, real=real, calls=calls):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real(*args)

        monkeypatch.setattr(cachedreads, where, interrupted)
        before = _open_count()
        with pytest.raises(KeyboardInterrupt):
            cachedreads.read_wholes_python(paths, 100 if where == "preadv" else 101, FLAGS,
                                           NOWAIT)
        assert _open_count() == before and len(calls) == 3
        monkeypatch.setattr(cachedreads, where, real)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no tmpfs at /dev/shm")
def test_the_whole_read_stage_remembers_a_refusal(monkeypatch):
    import tempfile

    from dedup import ScanOptions, find_duplicates

    monkeypatch.setattr(cachedreads, "refused", [False])
    with tempfile.TemporaryDirectory(dir="/dev/shm") as root:
        if _nowait_kept(root):
            pytest.skip("tmpfs answers RWF_NOWAIT on this kernel")
        for k in range(4):
            with open(os.path.join(root, f"s{k}"), "wb") as f:
                f.write(b"s" * 50)
        report = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    assert report.stats.groups == 1 and cachedreads.refused[0] is True


def test_a_grown_file_whose_next_page_is_not_cached_is_caught(tmp_path):
    # A file of a whole page read page-cache-only stops at the page's end: the byte past it
    # (growth) is read blocking, or the grown file would pass as its old size.
    if not _nowait_kept(tmp_path):
        pytest.skip("the file system of the test's directory refuses RWF_NOWAIT (tmpfs)")
    out = []
    for fn in (cachedreads.read_wholes_python, read_wholes):
        path = str(tmp_path / fn.__name__)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        os.write(fd, b"g" * 4097)
        os.fsync(fd)
        os.posix_fadvise(fd, 4096, 4096, os.POSIX_FADV_DONTNEED)  # the second page only
        os.close(fd)
        out.append(fn([path], 4096, FLAGS, NOWAIT))
    assert out[0] == out[1] == ([], [(0, "changed during scan: grew (expected 4096 bytes)")], NOWAIT)
