"""kill -9 in the middle of compactions: the store reopens whole, with the same entries and order.

The parent kills when the child reports a seeded number of finished compactions, while the child
goes on compacting up to a seeded stop point where it waits: the kill lands among the compactions
on a machine of any speed, inside one or between two as the race between the processes falls.
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
from tests.cache.lru_model import read_state

ROOT = Path(__file__).resolve().parents[2]
COMPACTOR = """
import sys
from cache import PersistentLRU
lru = PersistentLRU(sys.argv[1], capacity=10_000, serializer="bytes")
stop = int(sys.argv[2])
print("ready", flush=True)
for i in range(stop + 1):
    lru.compact()
    print(i, flush=True)
sys.stdin.read()  # stopped: wait for the kill (or for the parent to close the pipe)
"""

pytestmark = pytest.mark.crash


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list]:
    path = tmp_path_factory.mktemp("compact") / "base.lru"
    rnd = random.Random(5)
    with PersistentLRU(path, capacity=10_000, serializer="bytes") as lru:
        for _ in range(3000):
            lru[rnd.randrange(2000)] = rnd.randbytes(rnd.randrange(50, 400))
            lru.get(rnd.randrange(2000))
        state = read_state(lru)
    return path.read_bytes(), state


@pytest.mark.parametrize("seed", range(6))
def test_kill_9_during_compaction_leaves_the_old_or_new_file_whole(tmp_path, seeded_store, seed) -> None:
    data, state = seeded_store
    path = tmp_path / "c.lru"
    path.write_bytes(data)
    rnd = random.Random(seed)
    kill_at = rnd.randrange(0, 20)  # finished compactions
    stop = kill_at + rnd.randrange(0, 10)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen([sys.executable, "-c", COMPACTOR, str(path), str(stop)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        last = -1
        for line in child.stdout:
            last = int(line)
            if last == kill_at:
                child.send_signal(signal.SIGKILL)
        child.wait(600)  # a guard against a hung child only
    assert child.returncode == -signal.SIGKILL and kill_at <= last <= stop
    with PersistentLRU(path, capacity=10_000, serializer="bytes") as lru:
        assert read_state(lru) == state
        assert lru.stats().torn_tail_bytes == 0
    assert not Path(str(path) + ".compact").exists()  # the interrupted temp file is cleaned up
