"""kill -9 in the middle of compactions: the store reopens whole, with the same entries and order."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cache import PersistentLRU
from tests.cache.lru_model import read_state

ROOT = Path(__file__).resolve().parents[2]
COMPACTOR = """
import sys
from cache import PersistentLRU
lru = PersistentLRU(sys.argv[1], capacity=10_000, serializer="bytes")
print("ready", flush=True)
for i in range(100_000):  # bounded: the parent kills it long before
    lru.compact()
    print(i, flush=True)
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
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen([sys.executable, "-c", COMPACTOR, str(path)], stdout=subprocess.PIPE,
                          text=True, env=env) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        timer = threading.Timer(random.Random(seed).uniform(0.01, 0.3), child.send_signal, (signal.SIGKILL,))
        timer.start()
        done = sum(1 for _ in child.stdout)
        child.wait()
        timer.cancel()
    assert child.returncode == -signal.SIGKILL and done < 100_000
    with PersistentLRU(path, capacity=10_000, serializer="bytes") as lru:
        assert read_state(lru) == state
        assert lru.stats().torn_tail_bytes == 0
    assert not Path(str(path) + ".compact").exists()  # the interrupted temp file is cleaned up
