"""kill -9 a writer at seeded points of its run; reopening must show exactly what it acknowledged.

The kill is placed by construction, not by the clock: the parent kills as soon as it reads the
child's acknowledgement of a seeded op K, while the child goes on working up to a seeded stop
point (K plus a seeded slack, always short of the last op) where it stops and waits. The last
acknowledged op is therefore in [K, stop], mid-run, on a machine of any speed; where in that span
(and inside which write or compaction) the kill lands is left to the race between the two processes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cache import PersistentLRU
from cache.log import GROW
from tests.cache.lru_model import model_states, read_state, workload

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("crash_child.py")
N_OPS, CAPACITY = 40000, 40
HANG_GUARD = 600  # seconds: only a hung child (a bug) gets near this, never a slow machine

pytestmark = pytest.mark.crash


def run_child(path: Path, seed: int, durability: str, mix: str = "mixed",
              kill_at: int | None = None, stop: int | None = None) -> int:
    """Run the child; SIGKILL it once it acknowledges op *kill_at*; return the last acknowledged op.

    The child stops after op *stop* and waits, so the kill lands at op *stop* at the latest.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, str(CHILD), str(path), str(seed), str(N_OPS), str(CAPACITY), durability,
            mix] + ([] if stop is None else [str(stop)])
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                          cwd=ROOT) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        last = -1
        for line in child.stdout:  # everything the child flushed before it died is in the pipe
            if line.startswith("ack "):
                last = int(line.split()[1])
                if last == kill_at:
                    child.send_signal(signal.SIGKILL)
        child.wait(HANG_GUARD)
    if kill_at is not None:
        assert child.returncode == -signal.SIGKILL, child.returncode
    return last


def recovered_matches(recovered: list, states: dict, last_ack: int) -> bool:
    """The reopened state must be the model after the last acknowledged op, or after the one in flight."""
    candidates = [states[i] for i in (last_ack + 1, last_ack + 2) if i in states]
    return recovered in candidates


def crash_round(tmp_path: Path, seed: int, durability: str, mix: str = "mixed",
                slack: int | None = None) -> tuple[bool, int]:
    """Kill a child at a seeded op; return (is the state the acknowledged one?, last ack).

    *slack* (ops the child may run past the kill point) is seeded unless given; 0 makes the child
    stop exactly at the kill point, so the kill finds it between two operations.
    """
    path = tmp_path / f"crash-{seed}.lru"
    rnd = random.Random(seed)
    kill_at = rnd.randrange(100, 12000)
    stop = kill_at + (rnd.randrange(0, 3000) if slack is None else slack)
    assert stop < N_OPS - 1
    last = run_child(path, seed, durability, mix, kill_at=kill_at, stop=stop)
    assert kill_at <= last <= stop, "the kill lands mid-run by construction"
    states = model_states(workload(seed, N_OPS, mix=mix), CAPACITY, {last + 1, last + 2})
    with PersistentLRU(path, capacity=CAPACITY, serializer="bytes") as lru:
        recovered = read_state(lru)
    # A second open must find a clean file: the torn tail, if any, was cut off by the first.
    with PersistentLRU(path, capacity=CAPACITY, serializer="bytes") as lru:
        assert lru.stats().torn_tail_bytes == 0
        assert read_state(lru) == recovered
    return recovered_matches(recovered, states, last), last


@pytest.mark.parametrize("mix", ["mixed", "reads"])
@pytest.mark.parametrize("seed", range(8))
def test_kill_9_keeps_every_acknowledged_op_and_the_exact_order(
    tmp_path: Path, seed: int, mix: str
) -> None:
    ok, last = crash_round(tmp_path, seed, "process", mix)
    assert ok, f"seed {seed}: state after kill -9 at op {last} differs from the acknowledged one"


def test_kill_9_leaves_a_preallocated_zero_tail_that_reopens_clean(tmp_path: Path) -> None:
    # The writer stores through a map of a file grown in GROW steps (cache/log.py): between two
    # operations the file is always a whole number of steps, with zeros after the last record.
    # (Only inside a compaction, between the rename and the regrowth, is it not; the rounds of
    # the test above land there now and then.) Killed between two ops, the file keeps that zero
    # tail, and reopening must read it as the clean end: nothing torn, nothing lost.
    for seed in range(200, 204):
        path = tmp_path / f"crash-{seed}.lru"
        kill_at = random.Random(seed).randrange(100, 12000)
        last = run_child(path, seed, "process", "reads", kill_at=kill_at, stop=kill_at)
        size = os.path.getsize(path)
        assert size % GROW == 0, f"seed {seed}: the file ({size} bytes) is not preallocated"
        with PersistentLRU(path, capacity=CAPACITY, serializer="bytes") as lru:
            assert lru.stats().torn_tail_bytes == 0, "the zero tail was read as a torn record"
            recovered = read_state(lru)
        assert size > os.path.getsize(path), "no zero tail was cut on reopen"
        states = model_states(workload(seed, N_OPS, mix="reads"), CAPACITY, {last + 1})
        assert recovered == states[last + 1], f"seed {seed}: state after kill at op {last} differs"


def test_the_order_check_bites_when_read_touches_are_batched(tmp_path: Path) -> None:
    # durability="fast" keeps up to 64 recent read touches in memory, by design: a kill -9 loses
    # them. The exact-order check above must notice that, or it proves nothing. The child stops
    # at the kill point (slack 0), so each round is deterministic: it loses the touches pending at
    # its seeded op. A round whose pending touches leave the order as it was loses nothing
    # visible, so rounds go on (bounded) until one shows the loss.
    rounds = []
    for seed in range(100, 116):
        ok, _ = crash_round(tmp_path, seed, "fast", "reads", slack=0)
        rounds.append(ok)
        if not ok:
            break
    assert not all(rounds), "lost read touches went unnoticed by the order check"


def test_the_order_check_rejects_a_swapped_order() -> None:
    states = model_states(workload(1, 300), CAPACITY)
    good = states[200]
    assert recovered_matches(good, states, 199)
    bad = list(good)
    bad[0], bad[1] = bad[1], bad[0]
    assert not recovered_matches(bad, states, 199)


def test_a_clean_run_leaves_the_final_state(tmp_path: Path) -> None:
    path = tmp_path / "full.lru"
    last = run_child(path, 7, "process")  # no kill, no stop: the child runs to the end
    assert last == N_OPS - 1
    with PersistentLRU(path, capacity=CAPACITY, serializer="bytes") as lru:
        assert read_state(lru) == model_states(workload(7, N_OPS), CAPACITY, {N_OPS})[N_OPS]
