"""One cache file, several real processes: visibility, exact order, concurrency, kill -9, compaction.

Every child is a real process (tests/cache/shared_child.py) with its own open of the file. Where an
exact interleaving is needed, the parent drives children one command at a time (lockstep). Where
children run freely, each owns its keys, so the projection of the final state onto one child's keys
must be exactly its own model. Kills land by construction: the parent kills at a seeded
acknowledgement; the victim stops at a seeded point after it and waits. Nothing waits on a clock.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache import PersistentLRU
from tests.cache.lru_model import ModelLRU, model_states, read_state, workload
from tests.cache.shared_child import CAPACITY, renamed

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("shared_child.py")
HANG_GUARD = 600  # seconds: only a hung child (a bug) gets near this, never a slow machine
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def spawn(*args: str) -> subprocess.Popen[str]:
    """Start a child process in *args*' mode, talking lines over pipes."""
    return subprocess.Popen([sys.executable, str(CHILD), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)


class Lockstep:
    """A child driven one command at a time."""

    def __init__(self) -> None:
        self.proc = spawn("lockstep")

    def __call__(self, *cmd: object) -> object:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"child died on {cmd}"
        return json.loads(line)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(HANG_GUARD)
        self.proc.stdout.close()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def trio() -> Iterator[list[Lockstep]]:
    """Three lockstep children, reused across examples (each example opens a fresh file)."""
    children = [Lockstep() for _ in range(3)]
    yield children
    for child in children:
        child.stop()


def test_read_your_writes_across_processes(tmp_path: Path, trio: list[Lockstep]) -> None:
    a, b, c = trio
    path = str(tmp_path / "ryw.lru")
    for child in trio:
        child("open", path, 100)
    a("put", "k", "from a")
    assert b("get", "k") == "from a" and c("get", "k") == "from a"
    b("put", "k", "from b")
    assert a("get", "k") == "from b"
    c("del", "k")
    assert a("get", "k") is None and b("get", "k") is None
    with PersistentLRU(path, capacity=100, serializer="json") as here:  # and in this process too
        a("put", "x", 1)
        assert here["x"] == 1
        here["y"] = 2
        assert c("get", "y") == 2
    for child in trio:
        child("close")


STEP = st.tuples(
    st.integers(0, 2),
    st.sampled_from(["put", "get", "get", "get", "del", "compact"]),
    st.integers(0, 5),
)


@settings(max_examples=60)
@given(steps=st.lists(STEP, min_size=1, max_size=60))
def test_eviction_order_across_processes_is_one_exact_lru(tmp_path_factory, trio, steps) -> None:
    # Three processes interleave operations on a capacity-4 cache; every get answers what the model
    # answers and the final order and values are the model's: the one exact LRU of a single process
    # applying the same interleaving.
    path = str(tmp_path_factory.mktemp("order") / "c.lru")
    for child in trio:
        child("open", path, 4)
    model = ModelLRU(4)
    for i, (who, kind, key) in enumerate(steps):
        child = trio[who]
        if kind == "put":
            child("put", key, f"v{i}")
            model.put(key, f"v{i}")
        elif kind == "get":
            assert child("get", key) == model.get(key), f"step {i}"
        elif kind == "del":
            child("del", key)
            model.delete(key)
        else:
            child("compact")
        # The acting process's whole state after each step: order and values, exactly the model's.
        assert child("state") == [[k, v] for k, v in model.snapshot()], f"step {i}"
    for child in trio:
        assert child("state") == [[k, v] for k, v in model.snapshot()]
    for child in trio:
        child("close")


def run_free(path: Path, seeds: list[int], n: int, at_pause=None) -> list[str]:  # noqa: ANN001
    """Run one child per seed on *path*, concurrently, to the end; return their tags.

    With *at_pause*, each child pauses halfway; once all have, at_pause() runs, then they go on.
    """
    tags = [f"p{i}" for i in range(len(seeds))]
    pause = str(n // 2 if at_pause else -1)
    children = [spawn("run", str(path), str(seed), str(n), tag, pause, "-1") for seed, tag in zip(seeds, tags, strict=True)]
    if at_pause:
        for child in children:
            assert child.stdout is not None
            for line in child.stdout:
                if line == "paused\n":
                    break
        at_pause()
    for child in children:
        out, _ = child.communicate("go\n" if at_pause else None, timeout=HANG_GUARD)
        assert child.returncode == 0 and out.endswith("done\n"), out[-200:]
    return tags


def projection(state: list, tag: str) -> list:
    """The entries of *state* whose keys belong to *tag*, in order."""
    return [(k, v) for k, v in state if k.startswith(tag + "/")]


def expected(seed: int, n: int, tag: str, upto: int) -> list:
    """The model state of the child *tag* after its first *upto* ops."""
    ops = [renamed(op, tag) for op in workload(seed, n)]
    return model_states(ops, CAPACITY, {upto})[upto]


@pytest.mark.parametrize("seed", range(3))
def test_concurrent_writers_end_in_the_model_state(tmp_path: Path, seed: int) -> None:
    # Three processes write, read, delete and compact at once (compaction every few KiB): each
    # one's keys end exactly as its own model says, in its own order, nothing lost, nothing extra.
    path = tmp_path / "c.lru"
    n = 3000
    seeds = [seed * 10 + i for i in range(3)]
    tags = run_free(path, seeds, n)
    with PersistentLRU(path, capacity=CAPACITY, serializer="bytes") as lru:
        state = read_state(lru)
        assert lru.stats().torn_tail_bytes == 0
    for s, tag in zip(seeds, tags, strict=True):
        assert projection(state, tag) == expected(s, n, tag, n)
    assert len(state) == sum(len(expected(s, n, t, n)) for s, t in zip(seeds, tags, strict=True))


@pytest.mark.crash
@pytest.mark.parametrize("seed", range(6))
def test_kill_9_of_one_writer_while_others_run(tmp_path: Path, seed: int) -> None:
    # The victim is killed at a seeded acknowledgement (it stops at a seeded point after it). Two
    # others have the file open throughout: they pause once they are well into their work, and go
    # on (no restart) only after the kill. Every acknowledged op of every process is there.
    path = tmp_path / "k.lru"
    n = 3000
    rnd = random.Random(seed)
    kill_at = rnd.randrange(50, 1500)
    stop = kill_at + rnd.randrange(0, 400)
    victim = spawn("run", str(path), str(seed), str(n), "victim", "-1", str(stop))
    assert victim.stdout is not None and victim.stdout.readline() == "ready\n"
    others = [spawn("run", str(path), str(100 + seed * 2 + i), str(n), f"o{i}", str(n // 3), "-1")
              for i in range(2)]
    for other in others:  # both are open and running before the kill, and hold at their pause
        assert other.stdout is not None
        for line in other.stdout:
            if line == "paused\n":
                break
    last = _kill_at_ack(victim, kill_at)
    assert victim.returncode == -signal.SIGKILL and kill_at <= last <= stop
    for other in others:  # go on after the kill, with the open they had
        out, _ = other.communicate("go\n", timeout=HANG_GUARD)
        assert other.returncode == 0 and out.endswith("done\n"), out[-200:]
    with PersistentLRU(path, capacity=CAPACITY, serializer="bytes") as lru:
        state = read_state(lru)
    for i in range(2):
        assert projection(state, f"o{i}") == expected(100 + seed * 2 + i, n, f"o{i}", n)
    got = projection(state, "victim")
    assert got in [expected(seed, n, "victim", upto) for upto in (last + 1, last + 2)], (
        f"seed {seed}: the victim's keys after a kill at op {last} are not its acknowledged state"
    )


def test_compaction_under_concurrent_use(tmp_path: Path) -> None:
    # One process compacts again and again while three others write and read; at least one of its
    # compactions lands by construction while all three are halfway through their work. They
    # follow each new generation of the file and end exactly in their model states.
    path = tmp_path / "cc.lru"
    compactor = subprocess.Popen(
        [sys.executable, "-c", COMPACTOR, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=ENV, cwd=ROOT,
    )
    assert compactor.stdin is not None and compactor.stdout is not None
    assert compactor.stdout.readline() == "ready\n"

    def compact_once() -> None:
        compactor.stdin.write("once\n")  # type: ignore[union-attr]
        compactor.stdin.flush()  # type: ignore[union-attr]
        assert compactor.stdout.readline() == "compacted\n"  # type: ignore[union-attr]

    n = 2000
    seeds = [41, 42, 43]
    tags = run_free(path, seeds, n, at_pause=compact_once)
    out, _ = compactor.communicate("stop\n", timeout=HANG_GUARD)
    assert compactor.returncode == 0 and int(out.split()[-1]) >= 2
    with PersistentLRU(path, capacity=CAPACITY, serializer="bytes") as lru:
        state = read_state(lru)
    for s, tag in zip(seeds, tags, strict=True):
        assert projection(state, tag) == expected(s, n, tag, n)


# Compacts over and over; a line "once" asks for one compaction now (answered "compacted"), "stop"
# ends it (answered with the number of compactions). select() with a zero timeout only polls.
COMPACTOR = """
import select, sys
from cache import PersistentLRU
lru = PersistentLRU(sys.argv[1], capacity=10_000, serializer="bytes")
print("ready", flush=True)
count = 0
while True:
    lru.compact()
    count += 1
    if select.select([sys.stdin], [], [], 0)[0]:
        line = sys.stdin.readline()
        if line == "once\\n":
            lru.compact()
            count += 1
            print("compacted", flush=True)
        else:
            break
print(count, flush=True)
lru.close()
"""


@pytest.mark.crash
@pytest.mark.parametrize("seed", range(3))
def test_kill_9_of_a_sole_open_loses_nothing(tmp_path: Path, seed: int) -> None:
    # A process alone on the file keeps the writer lock between operations and does not keep the
    # shared header up (cache/shared.py). Killed there, by construction before anyone asked to
    # join, it leaves every acknowledged op in the log: the next open recovers them from its bytes.
    path = tmp_path / "s.lru"
    n = 2000
    kill_at = random.Random(seed).randrange(50, n - 100)
    victim = spawn("run", str(path), str(seed), str(n), "solo", "-1", str(kill_at))
    assert victim.stdout is not None and victim.stdout.readline() == "ready\n"
    last = _kill_at_ack(victim, kill_at)
    assert victim.returncode == -signal.SIGKILL and last == kill_at
    with open(f"{path}.lock", "rb") as f:
        assert int.from_bytes(f.read(96)[88:96], "little") == 1  # it died a sole open
    with PersistentLRU(path, capacity=CAPACITY, serializer="bytes") as lru:
        state = read_state(lru)
    assert projection(state, "solo") == expected(seed, n, "solo", last + 1)


def _kill_at_ack(victim: subprocess.Popen, kill_at: int) -> int:
    """SIGKILL *victim* as it acknowledges op *kill_at* (by construction, not by a timer); read
    its acknowledgements to the end; return the last one."""
    assert victim.stdout is not None
    last = -1
    for line in victim.stdout:
        if line.startswith("ack "):
            last = int(line.split()[1])
            if last == kill_at:
                victim.send_signal(signal.SIGKILL)
    victim.wait(HANG_GUARD)
    victim.stdout.close()
    victim.stdin.close()  # type: ignore[union-attr]
    return last
