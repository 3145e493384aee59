"""The shared protocol's edges: refused filesystems, a writer or a compactor dead mid-way, fork, memoize.

A writer "dies" here by having its writer lock released exactly as the kernel releases a dead
process's lock, at a chosen point of the protocol: deterministic, and the other opens must repair
what it left. Real kill -9s are in test_shared_processes.py.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cache import (
    CorruptStoreError,
    PersistentLRU,
    StoreLockedError,
    UnsupportedFilesystemError,
    shared,
    sharedlog,
)
from cache import records as fmt
from cache.encoding import encode_key
from cache.log import RecordLog
from tests.cache.lru_model import read_state

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("shared_child.py")
HANG_GUARD = 600  # seconds: only a hung child (a bug) gets near this


@pytest.mark.parametrize("fs", ["nfs", "nfs4", "cifs", "smb3", "fuse.sshfs", "fuseblk", "9p"])
def test_a_network_or_fuse_filesystem_is_refused_by_name(tmp_path: Path, monkeypatch, fs: str) -> None:
    monkeypatch.setattr(shared, "filesystem_type", lambda path: fs)
    with pytest.raises(UnsupportedFilesystemError, match=f"on {fs!r}"):
        PersistentLRU(tmp_path / "c.lru", capacity=3)
    assert not (tmp_path / "c.lru").exists()  # refused before anything was created
    with PersistentLRU(tmp_path / "c.lru", capacity=3, exclusive=True) as lru:  # one process: allowed
        lru["a"] = 1


@pytest.mark.parametrize("fs", ["ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", ""])
def test_local_filesystems_are_accepted(tmp_path: Path, monkeypatch, fs: str) -> None:
    monkeypatch.setattr(shared, "filesystem_type", lambda path: fs)
    with PersistentLRU(tmp_path / "c.lru", capacity=3) as lru:
        lru["a"] = 1


def test_the_filesystem_type_is_read_from_mountinfo(tmp_path: Path) -> None:
    found = shared.filesystem_type(str(tmp_path))
    assert found and found.split(".")[0] not in shared.REFUSED_FILESYSTEMS


def test_a_shared_open_needs_a_map(tmp_path: Path, monkeypatch) -> None:
    import errno
    import mmap

    with PersistentLRU(tmp_path / "c.lru", capacity=3) as lru:
        lru["a"] = 1
    real = mmap.mmap

    def refuse(fd: int, size: int, *args: object, **kwargs: object) -> mmap.mmap:
        if size == shared.PAGE:
            return real(fd, size, *args, **kwargs)
        raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr(mmap, "mmap", refuse)
    with pytest.raises(UnsupportedFilesystemError, match="cannot map"):
        PersistentLRU(tmp_path / "c.lru", capacity=3)


def test_a_hit_after_other_processes_read_moves_the_key(tmp_path: Path) -> None:
    # Another open's reads, replayed by this one (also ahead of its lock), make this open's idea of
    # its most recent key stale: its next hit must still be written, or the order is wrong.
    a = PersistentLRU(tmp_path / "c.lru", capacity=10)
    b = PersistentLRU(tmp_path / "c.lru", capacity=10)
    a["k"] = 1
    a["j"] = 2
    a.get("k")
    b.get("j")
    a.get("k")
    assert list(a) == list(b) == ["j", "k"]
    b.get("j")
    a.get("k")
    b.get("j")
    assert list(b) == list(a) == ["k", "j"]
    a.close()
    b.close()
    with PersistentLRU(tmp_path / "c.lru", capacity=10) as fresh:
        assert list(fresh) == ["k", "j"]


def die_holding_the_lock(lru: PersistentLRU) -> None:
    """Leave *lru* as a kill -9 would: its writer lock released by the 'kernel', nothing else done."""
    log = lru._log
    log._shared.close()  # type: ignore[attr-defined]  # closing the descriptor drops its locks
    log.closed = True
    os.close(log._fd)


def test_a_writer_dead_mid_append_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "c.lru"
    survivor = PersistentLRU(path, capacity=10, serializer="bytes")
    survivor["a"] = b"A"
    victim = PersistentLRU(path, capacity=10, serializer="bytes")
    victim._log.begin()  # type: ignore[attr-defined]
    # Three whole records of one write, unpublished: killed before finish().
    x, y = encode_key("x"), encode_key("y")
    victim._log.append_many([(fmt.PUT, x, b"X" * 100), (fmt.PUT, y, b"Y"), (fmt.TOUCH, x, b"")])
    die_holding_the_lock(victim)
    survivor["b"] = b"B"  # the next writer zeroes the dead write's bytes, then appends over them
    state = read_state(survivor)
    assert state == [("a", b"A"), ("b", b"B")]
    survivor.close()
    with PersistentLRU(path, capacity=10, serializer="bytes") as fresh:  # a first open: from the bytes
        assert read_state(fresh) == state
        assert fresh.stats().torn_tail_bytes == 0


def test_a_compactor_dead_between_rename_and_publication_is_finished_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "c.lru"
    other = PersistentLRU(path, capacity=10, serializer="bytes")
    for i in range(8):
        other[i] = b"v%d" % i
    other.get(2)
    want = read_state(other)
    victim = PersistentLRU(path, capacity=10, serializer="bytes")
    log = victim._log
    log.begin()  # type: ignore[attr-defined]
    log._shared.set(shared.COMPACTING, log.next_seq)  # type: ignore[attr-defined]
    entries = victim._order.payloads()
    RecordLog.rewrite(log, [(fmt.PUT, kb, log.read(o, n, kb)) for _k, (o, n, kb) in entries])
    die_holding_the_lock(victim)  # renamed, never published
    assert read_state(other) == want  # the next writer finishes the publication and follows
    other[99] = b"new"
    assert read_state(other) == want + [(99, b"new")]
    other.close()
    with PersistentLRU(path, capacity=10, serializer="bytes") as fresh:
        assert read_state(fresh) == want + [(99, b"new")]


def test_a_compactor_dead_before_its_rename_leaves_the_old_generation(tmp_path: Path) -> None:
    path = tmp_path / "c.lru"
    other = PersistentLRU(path, capacity=10, serializer="bytes")
    other[1] = b"one"
    victim = PersistentLRU(path, capacity=10, serializer="bytes")
    victim._log.begin()  # type: ignore[attr-defined]
    victim._log._shared.set(shared.COMPACTING, victim._log.next_seq)  # type: ignore[attr-defined]
    Path(str(path) + ".compact").write_bytes(b"half a compaction")
    die_holding_the_lock(victim)
    other[2] = b"two"
    assert read_state(other) == [(1, b"one"), (2, b"two")]
    assert not Path(str(path) + ".compact").exists()
    other.close()


def _forked_writer(lru: PersistentLRU, n: int) -> None:
    for i in range(n):
        lru[f"child/{i}"] = b"c%d" % i
        lru.get(f"child/{i // 2}")


def test_a_forked_child_gets_locks_of_its_own(tmp_path: Path) -> None:
    # The child inherits the open; without fresh locks its flock would be its parent's, and the two
    # would append over each other. Both write at once; every write of both is there, in order.
    lru = PersistentLRU(tmp_path / "f.lru", capacity=100_000, serializer="bytes")
    lru["before"] = b"fork"
    n = 2000
    child = multiprocessing.get_context("fork").Process(target=_forked_writer, args=(lru, n))
    child.start()
    for i in range(n):
        lru[f"parent/{i}"] = b"p%d" % i
    child.join(HANG_GUARD)
    assert child.exitcode == 0
    state = dict(read_state(lru))
    assert all(state[f"child/{i}"] == b"c%d" % i for i in range(n))
    assert all(state[f"parent/{i}"] == b"p%d" % i for i in range(n))
    assert len(state) == 2 * n + 1
    lru.close()


def test_exclusive_and_shared_opens_refuse_each_other_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "x.lru"
    code = f"from cache import PersistentLRU; PersistentLRU({str(path)!r}, capacity=3, {{}})"
    with PersistentLRU(path, capacity=3):
        run = subprocess.run([sys.executable, "-c", code.format("exclusive=True")], capture_output=True,
                             text=True, cwd=ROOT, timeout=HANG_GUARD)
        assert "StoreLockedError" in run.stderr
    with PersistentLRU(path, capacity=3, exclusive=True):
        run = subprocess.run([sys.executable, "-c", code.format("")], capture_output=True, text=True,
                             cwd=ROOT, timeout=HANG_GUARD)
        assert "StoreLockedError" in run.stderr and "exclusive=True" in run.stderr
    with pytest.raises(StoreLockedError), PersistentLRU(path, capacity=3, exclusive=True):
        PersistentLRU(path, capacity=3)


def _blocked_key_waiters(lock_path: str) -> int:
    """Count the OFD lock requests blocked on *lock_path* (the kernel lists them in /proc/locks)."""
    ino = os.stat(lock_path).st_ino
    with open("/proc/locks") as f:
        return sum(1 for line in f if "->" in line and "OFDLCK" in line and f":{ino} " in line)


def test_a_memoize_stampede_of_processes_computes_once(tmp_path: Path) -> None:
    path, counts = str(tmp_path / "m.lru"), str(tmp_path / "counts")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kids = [subprocess.Popen([sys.executable, str(CHILD), "memo", path, counts], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) for _ in range(4)]
    for kid in kids:
        assert kid.stdout.readline() == "ready\n"  # type: ignore[union-attr]
    owner, *waiters = kids

    def send(kid: subprocess.Popen[str], line: str) -> None:
        kid.stdin.write(line + "\n")  # type: ignore[union-attr]
        kid.stdin.flush()  # type: ignore[union-attr]

    send(owner, "go")
    assert owner.stdout.readline() == "computing\n"  # type: ignore[union-attr]
    for kid in waiters:
        send(kid, "go")
    # The owner stays in the body until every waiter is blocked on the key's lock (the kernel's
    # own list of blocked locks says so): a stampede by construction.
    while _blocked_key_waiters(path + ".lock") < len(waiters) and all(k.poll() is None for k in waiters):
        pass
    assert _blocked_key_waiters(path + ".lock") == len(waiters)
    send(owner, "release")
    for kid in kids:
        out, _ = kid.communicate(timeout=HANG_GUARD)
        assert kid.returncode == 0 and out.strip().endswith("result 42"), out
    assert Path(counts).read_text().count("\n") == 1


def test_a_sole_open_lets_a_second_open_in_while_idle(tmp_path: Path) -> None:
    # The first open holds the file between operations; a second one asks, and the first (idle:
    # its watcher thread answers) lets go and takes the lock per operation from then on.
    a = PersistentLRU(tmp_path / "c.lru", capacity=10)
    a["x"] = 1
    assert a._log.sole  # type: ignore[attr-defined]
    b = PersistentLRU(tmp_path / "c.lru", capacity=10)
    assert not a._log.sole and not b._log.sole  # type: ignore[attr-defined]
    assert b.get("x") == 1
    b["y"] = 2
    assert a.get("y") == 2 and list(a) == list(b) == ["x", "y"]
    b.close()
    a.close()
    with PersistentLRU(tmp_path / "c.lru", capacity=10) as fresh:
        assert list(fresh) == ["x", "y"]


def test_a_remembered_value_is_forgotten_when_another_open_compacts(tmp_path: Path) -> None:
    # Values read are remembered by their offset (cache/log.py RECENT_BYTES); after another open's
    # compaction the same offset holds another record, so what was remembered must not come back.
    path = tmp_path / "recent.lru"
    with PersistentLRU(path, capacity=10, serializer="bytes") as writer, \
            PersistentLRU(path, capacity=10, serializer="bytes") as reader:
        writer["k1"] = b"1" * 64
        assert reader["k1"] == b"1" * 64  # read from the file, then remembered
        offset = reader._order.peek("k1")[0]
        del writer["k1"]
        writer["k2"] = b"2" * 64  # the same length of key and value
        writer.compact()  # the new file: header, bounds, then k2, where k1 was in the old one
        assert writer._order.peek("k2")[0] == offset
        assert reader["k2"] == b"2" * 64
        assert reader.get("k1") is None


@pytest.mark.skipif(not sharedlog._LOOK_AHEAD, reason="lock-free reads need x86-64's store order")
def test_a_miss_takes_no_writer_lock_and_still_sees_every_acknowledged_put(tmp_path: Path) -> None:
    # While another open holds the writer lock (as mid-operation), a get that misses returns at
    # once; a put acknowledged before the get began is seen all the same, without the lock.
    path = tmp_path / "miss.lru"
    with PersistentLRU(path, capacity=10, serializer="json") as writer, \
            PersistentLRU(path, capacity=10, serializer="json") as reader:
        writer["old"] = 1
        assert reader["old"] == 1
        writer["new"] = 2  # acknowledged: published before it returned
        writer._log._shared.lock()  # another open's writer lock, held from here on
        try:
            done: list[object] = []
            miss = threading.Thread(target=lambda: done.append(reader.get("absent")))
            miss.start()
            miss.join(60)  # a guard only: the get returns at once unless it waits for the lock
            assert not miss.is_alive() and done == [None], "a miss waited for the writer lock"
            assert reader._log.end == writer._log.end  # it caught up with the put of "new" on the way
            assert reader._order.peek("new")[0] == writer._order.peek("new")[0]
        finally:
            writer._log._shared.unlock()
        assert reader["new"] == 2  # a hit: takes the lock (now free) to write its touch


def test_an_open_that_joins_checks_every_record_it_replays(tmp_path: Path) -> None:
    # Records other processes append later are followed without their CRCs (cache/follow.py); a
    # whole file read at once, as a joining open reads it, is checked as a first open checks it.
    path = tmp_path / "join.lru"
    with PersistentLRU(path, capacity=10, serializer="bytes") as first, \
            PersistentLRU(path, capacity=10, serializer="bytes"):
        first["a"] = b"A" * 100
        first["b"] = b"B" * 100
        where = path.read_bytes().index(b"A" * 100) + 50
        fd = os.open(path, os.O_WRONLY)
        os.pwrite(fd, b"Z", where)
        os.close(fd)
        with pytest.raises(CorruptStoreError, match="checksum"):
            PersistentLRU(path, capacity=10, serializer="bytes")


def test_a_process_following_another_generation_checks_every_record(tmp_path: Path) -> None:
    # The new file a compaction publishes is read whole by the others (cache/follow.py
    # apply_checked), each record's CRCs checked, as a joining open reads a file.
    path = tmp_path / "gen.lru"
    with PersistentLRU(path, capacity=10, serializer="bytes") as first, \
            PersistentLRU(path, capacity=10, serializer="bytes") as second:
        first["a"] = b"A" * 100
        first["b"] = b"B" * 100
        assert second["b"] == b"B" * 100
        first.compact()
        where = path.read_bytes().index(b"A" * 100) + 50
        fd = os.open(path, os.O_WRONLY)
        os.pwrite(fd, b"Z", where)
        os.close(fd)
        with pytest.raises(CorruptStoreError, match="checksum"):
            second.get("b")


def test_a_process_following_another_generation_holds_the_same_index(tmp_path: Path) -> None:
    path = tmp_path / "gen.lru"
    with PersistentLRU(path, capacity=30, serializer="bytes") as first, \
            PersistentLRU(path, capacity=30, serializer="bytes") as second:
        for i in range(50):
            first[i % 40] = b"v%d" % i * (i + 1)
            second.get((i * 7) % 40)
        first.compact()
        first[99] = b"after"
        assert list(second) == list(first)
        assert [second.peek(k) for k in second] == [first.peek(k) for k in first]


@pytest.mark.parametrize("advice", ["refused", "default"])
def test_opens_share_the_file_as_it_grows_whether_or_not_the_tail_is_premapped(
    tmp_path: Path, monkeypatch, advice: str
) -> None:
    # The zero tail is mapped writable ahead of the appends (MADV_POPULATE_WRITE): a kernel that
    # refuses the advice (EINVAL, here an unknown advice number) leaves the pages to fault one by one.
    from cache import growth

    if advice == "refused":
        monkeypatch.setattr(growth, "_POPULATE_WRITE", 9999)
    path = tmp_path / "grow.lru"
    value = bytes(range(256)) * 16  # 4 KiB: the file grows past several GROW steps
    with PersistentLRU(path, capacity=1000, serializer="bytes") as a, \
            PersistentLRU(path, capacity=1000, serializer="bytes") as b:
        for i in range(600):
            (a if i % 2 else b)[i] = value + i.to_bytes(4, "little")
        assert a._log._mapped > 8 * growth.GROW
        for i in range(0, 600, 7):
            assert a[i] == b[i] == value + i.to_bytes(4, "little")
        assert list(a) == list(b)
