"""Child process of the cross-process tests: a real process with its own open of a shared cache.

    python shared_child.py lockstep
        Reads one JSON command a line, answers one JSON line each: ["open", path, capacity],
        ["put", key, value], ["get", key], ["del", key], ["compact"], ["state"], ["close"].
        The parent drives several of these one command at a time: an exact interleaving.

    python shared_child.py run PATH SEED N TAG [PAUSE] [STOP]
        Applies the seeded workload of tests/cache/lru_model.py with every key renamed "TAG/key", so
        each process owns its keys; prints "ack I" after op I returns. After op PAUSE it prints
        "paused" and waits for a line on stdin; after op STOP it waits for the kill (stdin closed
        without one: it exits as a kill would). -1 means no pause / no stop.

    python shared_child.py memo PATH COUNTS
        Waits for "go", then calls a memoized function on one key; the body appends a line to COUNTS,
        prints "computing" and waits for "release". Prints the result.
"""

from __future__ import annotations

import json
import os
import sys

from cache import PersistentLRU, memoize
from tests.cache.lru_model import Op, apply, workload

CAPACITY = 10_000  # "run" mode: large enough that no process's keys are ever evicted


def renamed(op: Op, tag: str) -> Op:
    """Return *op* with its key owned by *tag*."""
    return op if op.kind == "compact" else Op(op.kind, f"{tag}/{op.key!r}", op.value)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def lockstep() -> None:
    lru: PersistentLRU | None = None
    for line in sys.stdin:
        cmd, *args = json.loads(line)
        result: object = None
        if cmd == "open":
            lru = PersistentLRU(args[0], capacity=args[1], serializer="json")
        elif cmd == "close":
            assert lru is not None
            lru.close()
            lru = None
        else:
            assert lru is not None
            if cmd == "put":
                lru[args[0]] = args[1]
            elif cmd == "get":
                result = lru.get(args[0])
            elif cmd == "del":
                try:
                    del lru[args[0]]
                except KeyError:
                    result = "missing"
            elif cmd == "compact":
                lru.compact()
            elif cmd == "state":
                result = [[k, lru.peek(k)] for k in lru]
        say(json.dumps(result))


def run(path: str, seed: int, n: int, tag: str, pause: int, stop: int) -> None:
    ops = [renamed(op, tag) for op in workload(seed, n)]
    lru = PersistentLRU(path, capacity=CAPACITY, serializer="bytes", compact_min_bytes=4096)
    say("ready")
    for i, op in enumerate(ops):
        apply(lru, op)
        say(f"ack {i}")
        if i == pause:
            say("paused")
            sys.stdin.readline()
        if i == stop:
            sys.stdin.read()  # wait for the kill
            os._exit(1)  # the parent went away without killing: leave the file as a kill would
    lru.close()
    say("done")


def memo(path: str, counts: str) -> None:
    @memoize(path, capacity=100)
    def slow(x: int) -> int:
        with open(counts, "a") as f:
            f.write(f"{os.getpid()}\n")
        say("computing")
        sys.stdin.readline()  # "release"
        return x * 2

    slow.cache_key(0)  # nothing opened yet: the stampede opens the file too
    say("ready")
    sys.stdin.readline()  # "go"
    say(f"result {slow(21)}")
    slow.close()


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "lockstep":
        lockstep()
    elif mode == "run":
        path, seed, n, tag, pause, stop = args
        run(path, int(seed), int(n), tag, int(pause), int(stop))
    elif mode == "memo":
        memo(*args)


if __name__ == "__main__":
    main()
