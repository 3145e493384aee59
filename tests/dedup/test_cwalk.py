"""dedup._cwalk.Columns, the compiled walk-task listing, against the Python one it replaces
(dedup.subtrees._Columns): the same columns, subdirectories, problems and counts, byte for byte."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedup import subtrees
from dedup._cwalk import Columns
from fixtures.trees import build_tree
from tests.dedup.test_parallel_io import _hostile_spec
from tests.dedup.test_processes import forking  # noqa: F401  (a fixture: tasks of a few entries)

BIG = (1 << 63) - 1


def test_the_walk_uses_the_compiled_listing():
    # A broken build would fall back to the Python listing silently (and slowly).
    assert subtrees.CompiledColumns is Columns


def _both(dirs, *, root_dev=None, dev=None, one_fs=False, lowest=1, highest=BIG):
    """List *dirs* in order with both listings; return (Python's, compiled's) packed columns and
    the subdirectories each returned."""
    python, compiled = subtrees._Columns(), Columns()
    py_out, c_out = [], []
    for k, path in enumerate(dirs):
        st_dev = os.stat(path).st_dev if os.path.isdir(path) else 0
        args = (path, k, st_dev if root_dev is None else root_dev,
                st_dev if dev is None else dev, one_fs, lowest)
        py_out.append(python.list_dir(*args, float("inf") if highest == BIG else highest, None))
        c_out.append(compiled.list_dir(*args, highest))
    return python.build().pack(), compiled.pack(), py_out, c_out


def _every_dir(root: str) -> list[str]:
    out = []
    for here, subdirs, _ in os.walk(root):
        out.append(here)
        subdirs.sort()
    return out


def _same(dirs, **kwargs) -> tuple:
    py_packed, c_packed, py_out, c_out = _both(dirs, **kwargs)
    assert c_packed == py_packed
    assert c_out == py_out
    return c_packed


def test_hostile_trees_list_the_same(tmp_path):
    for seed in range(6):
        root = build_tree(str(tmp_path / f"t{seed}"), _hostile_spec(seed))
        os.mkfifo(os.path.join(root, "fifo"))
        packed = _same(_every_dir(root))
        assert len(packed[7]) // 8 > 3  # files were kept
        assert packed[12] >= 2 and packed[13] == 1  # symlinks, the fifo


def test_names_of_every_kind_keep_their_character_offsets(tmp_path):
    root = tmp_path / "n"
    root.mkdir()
    names = [b"plain", "caf\u00e9".encode(), "\U0001f600x".encode(), b"bad-\xff\xfe",
             b"mixed-\xc3\xa9-\xff", b"x" * 255, b"new\nline", b"\xe2\x82"]
    for k, name in enumerate(names):
        (root / os.fsdecode(name)).write_bytes(b"z" * (k + 1))
    packed = _same([str(root)])
    assert len(packed[3][0]) < sum(len(n) + 1 for n in names)  # some names are multi-byte


def test_failures_are_problems_with_the_python_listings_text(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    packed = _same([str(tmp_path / "missing"), str(tmp_path / "file"), str(tmp_path)])
    assert [text for _, text in packed[11]] == ["No such file or directory", "Not a directory"]
    assert packed[15] == 3


def test_size_range_devices_and_hard_links(tmp_path):
    for size in (0, 1, 5, 9, 100):
        (tmp_path / f"f{size}").write_bytes(b"y" * size)
    os.link(tmp_path / "f5", tmp_path / "f5-link")
    one = str(tmp_path)
    packed = _same([one], lowest=2, highest=9)
    assert sorted(packed[3][0].split("\0")) == ["f5", "f5-link", "f9"] and packed[14] == 3
    assert len(packed[16]) == 2  # both names of the linked file
    dev = os.stat(one).st_dev
    assert len(_same([one], dev=dev + 1)[10]) == 5  # every file on another device than its dir
    assert _same([one], root_dev=dev + 1, one_fs=True)[7] == b""  # none on the root's device


_names = st.binary(min_size=1, max_size=40).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.dictionaries(_names, st.one_of(st.integers(0, 300), st.none()), max_size=25),
       lowest=st.integers(0, 5), highest=st.sampled_from([BIG, 200, 3]))
def test_random_directories_list_the_same(tmp_path_factory, entries, lowest, highest):
    root = tmp_path_factory.mktemp("h")
    for name, size in entries.items():
        path = os.path.join(os.fsencode(root), name)
        if size is None:
            os.mkdir(path)
        else:
            with open(path, "wb") as f:
                f.write(b"q" * size)
    _same([str(root)], lowest=lowest, highest=highest)


AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run a child as nobody")


def _as_nobody(fn):
    """Run *fn* in a forked child as user nobody (root reads any directory); return its result."""
    import pickle

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read)
            with os.fdopen(write, "wb") as out:
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                except PermissionError as exc:  # root without CAP_SETUID (a container)
                    pickle.dump(("cannot become nobody", str(exc)), out)
                    code = 0
                else:
                    pickle.dump(("done", fn()), out)
                    code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child failed: see its traceback above"
    what, result = pickle.loads(data)
    if what != "done":
        pytest.skip(f"{what}: {result}")
    return result


@AS_ROOT
def test_directories_another_user_cannot_read_or_search(tmp_path_factory):
    # tmp_path's parents are root's alone: a tree in a fresh directory of /tmp, open to all.
    import shutil
    import tempfile

    base = tempfile.mkdtemp(dir="/tmp")
    try:
        os.chmod(base, 0o755)
        for name, mode in (("noread", 0o311), ("nosearch", 0o644), ("nothing", 0o000)):
            os.mkdir(os.path.join(base, name))
            with open(os.path.join(base, name, "f"), "wb") as f:
                f.write(b"data")
            os.mkdir(os.path.join(base, name, "sub"))
            os.chmod(os.path.join(base, name), mode)
        dirs = [base] + [os.path.join(base, n) for n in ("noread", "nosearch", "nothing")]
        py_packed, c_packed, py_out, c_out = _as_nobody(lambda: _both(dirs))
        assert c_packed == py_packed and c_out == py_out
        problems = c_packed[11]
        assert (os.path.join(base, "noread"), "Permission denied") in problems
        # readable, not searchable: each entry's stat refused, the entry's own problem
        assert (os.path.join(base, "nosearch", "f"), "Permission denied") in problems
        assert len(problems) == 4
    finally:
        for name in ("noread", "nosearch", "nothing"):
            os.chmod(os.path.join(base, name), 0o755)
        shutil.rmtree(base)


def test_size_bounds_past_int64_bound_nothing_or_everything(tmp_path):
    for size in (1, 5):
        (tmp_path / f"f{size}").write_bytes(b"b" * size)
    assert _same([str(tmp_path)], lowest=1 << 70)[14] == 2  # every file under the bound
    assert len(_same([str(tmp_path)], highest=1 << 70)[7]) == 16  # both kept
    assert len(_same([str(tmp_path)], lowest=-(1 << 70))[7]) == 16


def test_a_directory_removed_after_its_open_is_empty_not_a_problem(tmp_path):
    # /proc/self/fd/N opens the directory N holds, removed: getdents64 answers ENOENT there.
    gone = tmp_path / "gone"
    gone.mkdir()
    fd = os.open(gone, os.O_RDONLY | os.O_DIRECTORY)
    try:
        gone.rmdir()
        packed = _same([f"/proc/self/fd/{fd}"])
    finally:
        os.close(fd)
    assert packed[11] == [] and packed[15] == 1


def test_times_past_int64_nanoseconds_are_clamped_in_every_listing(tmp_path):
    from dedup.listing import list_dir
    from dedup.table import NS_MAX, FileTable

    path = tmp_path / "future"
    path.write_bytes(b"t")
    os.utime(path, ns=(0, 10**19))  # the year 2286: past int64 nanoseconds
    if os.stat(path).st_mtime_ns != 10**19:
        pytest.skip("this file system does not hold the time")
    packed = _same([str(tmp_path)])
    assert packed[9] == NS_MAX.to_bytes(8, "little", signed=True)
    listing = list_dir(str(tmp_path), 0, False, 0, False, 1, float("inf"), None, os.scandir)
    table = FileTable()  # the sequential walk's table
    table.add_dir(str(tmp_path) + "/", 0, 0, listing.names, listing.sizes, listing.inos,
                  listing.mtimes)
    assert list(table.mtime) == [NS_MAX]
    # The files before the one clamped keep their places (array.extend had appended them).
    table.add_dir("/d/", 0, 0, ["a", "b", "c"], [1, 2, 3], [4, 5, 6], [7, 10**19, 8])
    assert list(table.mtime) == [NS_MAX, 7, NS_MAX, 8] and len(table.size) == 4


def test_times_before_1678_in_both_listings(tmp_path):
    import tempfile

    from dedup.table import NS_MIN

    if not os.path.isdir("/dev/shm"):
        pytest.skip("no tmpfs at /dev/shm (ext4 holds no time before 1901)")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as root:
        times = (-9223372036500000000, -(10**19))  # seconds past int64 ns, the sum not; and past
        for k, ns in enumerate(times):
            with open(os.path.join(root, f"old{k}"), "wb") as f:
                f.write(b"o")
            os.utime(os.path.join(root, f"old{k}"), ns=(0, ns))
        if os.stat(os.path.join(root, "old1")).st_mtime_ns != -(10**19):
            pytest.skip("this file system does not hold the time")
        packed = _same([root])
    from array import array

    mtimes = array("q")
    mtimes.frombytes(packed[9])
    assert sorted(mtimes) == [NS_MIN, times[0]]


def test_a_directory_of_many_getdents_calls(tmp_path):
    names = {f"{k:05d}-" + "n" * 60 for k in range(1500)}  # about 120 KB of entries
    for name in names:
        (tmp_path / name).write_bytes(b"m")
    packed = _same([str(tmp_path) + "/"])  # a path ending in "/" too
    assert set(packed[3][0].split("\0")) == names and packed[0] == [str(tmp_path) + "/"]


def test_one_call_at_a_time_on_one_object(tmp_path):
    import threading

    for k in range(3000):
        (tmp_path / f"e{k}").write_bytes(b"")
    columns, errors, go = Columns(), [], threading.Barrier(2)

    def lister():
        go.wait()
        for _ in range(20):
            try:
                columns.list_dir(str(tmp_path), 0, 0, 0, False, 1, BIG)
            except RuntimeError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=lister) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert columns.pack()[15] + len(errors) == 40  # each call listed, or refused: no crash


def _forked(root: str, monkeypatch, compiled: bool) -> tuple:
    from tests.dedup.test_processes import _listed

    monkeypatch.setattr(subtrees, "CompiledColumns", Columns if compiled else None)
    return _listed(subtrees.walk_forked, [root], procs=3)


@pytest.mark.usefixtures("forking")
def test_forked_walks_with_and_without_the_compiled_listing_agree(tmp_path, monkeypatch):
    for seed in range(4):
        root = build_tree(str(tmp_path / f"t{seed}"), _hostile_spec(seed))
        assert _forked(root, monkeypatch, True) == _forked(root, monkeypatch, False)


@AS_ROOT
@pytest.mark.usefixtures("forking")
def test_forked_walk_reports_directories_another_user_cannot_read(monkeypatch):
    import shutil
    import tempfile

    base = tempfile.mkdtemp(dir="/tmp")  # tmp_path's parents are root's alone
    try:
        os.chmod(base, 0o755)
        for name in ("a", "b", "b/c", "d"):
            os.mkdir(os.path.join(base, name))
            with open(os.path.join(base, name, "f"), "wb") as f:
                f.write(b"w")
        os.chmod(os.path.join(base, "b"), 0o311)  # searchable, not readable
        records, _, problems, counts = _as_nobody(lambda: _forked(base, monkeypatch, True))
        assert [r[0] for r in records] == [base + "/a/f", base + "/d/f"]
        assert [(p.path, p.error) for p in problems] == [(base + "/b", "Permission denied")]
        assert counts[0] == 4
    finally:
        os.chmod(os.path.join(base, "b"), 0o755)
        shutil.rmtree(base)


def test_directory_ids_of_tasks_added_once_per_device():
    from array import array

    ids = subtrees._DirIds()
    assert ids.add_new(array("Q", [1, 1, 2]), array("Q", [5, 6, 5]))
    assert (2, 5) in ids and (1, 6) in ids and (2, 6) not in ids
    assert ids.add_new(array("Q", [1, 3]), array("Q", [7, 5]))
    assert not ids.add_new(array("Q", [3]), array("Q", [5]))  # one device, added before
    assert not ids.add_new(array("Q", [9, 2]), array("Q", [1, 5]))  # (2, 5) was added before
    assert (9, 1) in ids  # added all the same: the walk is void from here (subtrees.Refused)
