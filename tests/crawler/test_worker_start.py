"""How `crawl --workers` starts a worker (crawler/cli_workers.py): forked from the parent, which has
imported the crawler, or as a new interpreter when the parent runs other threads; either way the
worker's exit status reaches the parent as subprocess.Popen reports it."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

from crawler.cli_workers import _Forked, _start_worker

BOUND = 60.0  # seconds any child here may take


def _wait(child: object) -> int:
    deadline = time.monotonic() + BOUND
    while child.poll() is None:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the worker did not end"
        time.sleep(0.01)
    return child.wait()  # type: ignore[attr-defined]


def test_a_forked_worker_reports_the_commands_exit_status() -> None:
    # --help exits 0 through SystemExit; an unknown option exits 2 (argparse's usage error).
    # The workers' names (crawl-wN, found by worker_pids) are used by the kill test of
    # test_workers_e2e.py, which finds its victim through them.
    first = _start_worker(["--help"], "host-1-1", 1)
    assert isinstance(first, _Forked)
    assert _wait(first) == 0
    assert _wait(_start_worker(["--no-such-option"], "host-1-2", 2)) == 2
    first.send_signal(signal.SIGTERM)  # reaped: nothing is signalled, and no error


def test_with_another_thread_running_a_worker_is_a_new_interpreter() -> None:
    # forking while another thread runs could copy a lock that thread holds
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        child = _start_worker(["--help"], "host-1-4", 4)
        assert isinstance(child, subprocess.Popen)
        assert child.wait(BOUND) == 0
    finally:
        stop.set()
        other.join()
