"""`crawl --workers N` (N worker processes sharing one crawl) and `crawl status --state STATE`.

The parent process does no crawling: it takes the crawl's lock (SQLite: workers of one machine
only; no other crawl may use the file meanwhile), frees the leases a killed run left (every owner
is dead, since the lock was free), starts the workers, passes Ctrl-C and SIGTERM on, waits, and
prints the crawl's status. A worker that dies (kill -9, a crash) has its host leases ended at once,
so the others take its hosts over without waiting for the expiry. With PostgreSQL there is no lock:
any number of machines run `crawl` with the same `--state`, and a worker dead on another machine
gives its hosts back when their lease expires.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

from crawler.errors import StateError
from crawler.state import is_postgres_url, open_shared
from crawler.state.shared import worker_id

WORKER_NAME = "crawl-w{index}"  # a forked worker's process name (/proc/PID/comm, `ps -o comm`)
PROGRESS_EVERY = 1.0  # seconds between two progress lines of a --workers run
WATCH_EVERY = 0.1  # seconds between two looks at the workers (a dead one's hosts are freed)


def tagged(path: str | None, tag: str) -> str | None:
    """*path* with the worker's *tag* before its extension: out.jsonl -> out.TAG.jsonl."""
    if path is None or path == "-":
        return path
    head, dot, ext = os.path.basename(path).rpartition(".")
    name = f"{head}.{tag}.{ext}" if dot and head else f"{os.path.basename(path)}.{tag}"
    return os.path.join(os.path.dirname(path), name)


@contextlib.contextmanager
def crawl_lock(state: str) -> Iterator[None]:
    """Hold the SQLite state's lock file for the crawl (the kernel frees it if we die)."""
    path = state + ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(f"cannot create {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(f"another crawl is running on {state} (it holds {path})") from None
        yield
    finally:
        os.close(fd)


async def _prepare(state: str, workers: list[str]) -> None:
    """Free a killed run's leases (SQLite: we hold the lock, so their owners are dead), and
    register the workers before any starts: the first to claim hosts counts them all in its
    fair share, instead of claiming every host and giving half back a second later."""
    shared = await open_shared(state, workers[0])
    try:
        if not is_postgres_url(state):
            await shared.reset()
        for worker in workers:
            shared.worker = worker
            await shared.join(time.time())
    finally:
        await shared.close()


async def _forget(state: str, worker: str) -> None:
    """End the host leases of *worker*, seen dead."""
    shared = await open_shared(state, worker_id())
    try:
        await shared.forget(worker, time.time())
    finally:
        await shared.close()


class _Forked:
    """A worker forked from this process: no interpreter start-up and no imports (~0.35 s of
    CPU per worker on the bench machine, a tenth of a 20,000-page crawl's), and the parent's
    memory shared copy-on-write. The part of subprocess.Popen's interface run_workers uses."""

    def __init__(self, argv: list[str], index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:
            _worker_child(argv, index)  # never returns

    def poll(self) -> int | None:
        """The exit status once the worker has ended (-N: killed by signal N), else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        """Wait for the worker to end; its exit status."""
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Send *signum* to the worker unless it has been reaped."""
        if self.returncode is None:
            os.kill(self.pid, signum)


def _worker_child(argv: list[str], index: int) -> None:
    """The forked worker: run the crawl command, then leave without the parent's cleanup."""
    code = 1
    try:
        os.setsid()  # own session: a Ctrl-C at the terminal reaches the parent, which passes it on
        with contextlib.suppress(OSError):
            with open("/proc/self/comm", "w", encoding="ascii") as f:
                f.write(WORKER_NAME.format(index=index))
        from crawler.cli import main

        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _start_worker(argv: list[str], wid: str, index: int) -> Any:
    """Start worker *wid*: forked when this process runs one thread (it always does here; a fork
    with other threads could copy a lock one of them holds), else a new interpreter."""
    args = [*argv, "--quiet", "--worker-id", wid]
    if hasattr(os, "fork") and threading.active_count() == 1:
        return _Forked(args, index)
    return subprocess.Popen([sys.executable, "-m", "crawler", *args], start_new_session=True)


def worker_pids(parent: int) -> dict[int, int]:
    """Worker index -> pid of the forked workers of a `crawl --workers` process *parent*."""
    found = {}
    prefix = WORKER_NAME.format(index="")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/comm", encoding="ascii", errors="replace") as f:
                name = f.read().strip()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and name.startswith(prefix) and name[len(prefix):].isdigit():
            found[int(name[len(prefix):])] = int(entry)
    return found


def run_workers(argv: list[str], workers: int, state: str | None, quiet: bool) -> int:
    """Run *workers* processes of `crawl ARGV --worker-id ...`; return the crawl's exit status."""
    with contextlib.ExitStack() as stack:
        assert state is not None
        if not is_postgres_url(state):
            stack.enter_context(crawl_lock(state))
        ids = [worker_id(index) for index in range(1, workers + 1)]
        asyncio.run(_prepare(state, ids))
        # what every worker imports, imported once: the forked workers inherit it
        import crawler.engine_worker  # noqa: F401
        from crawler.cli import _loop_factory

        _loop_factory()
        children = [_start_worker(argv, wid, index) for index, wid in enumerate(ids, 1)]

        def forward(signum: int, _frame: Any) -> None:
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            show = not quiet and sys.stderr.isatty()
            forgotten: set[str] = set()
            shown = 0.0
            while True:
                alive = [child.poll() for child in children].count(None)  # every child polled
                for wid, child in zip(ids, children, strict=True):
                    if child.returncode and wid not in forgotten:
                        # a worker killed or crashed: its hosts go to the others now, not when
                        # their leases run out (the process is gone: it cannot write again)
                        forgotten.add(wid)
                        with contextlib.suppress(StateError, OSError, RuntimeError):
                            asyncio.run(_forget(state, wid))
                if not alive:
                    break
                if show and time.monotonic() - shown >= PROGRESS_EVERY:
                    shown = time.monotonic()
                    _progress(state)
                if show:
                    time.sleep(WATCH_EVERY)
                else:  # wake as a child ends (reaped by the next poll), not up to 0.1 s later
                    with contextlib.suppress(ChildProcessError):
                        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            codes = [child.wait() for child in children]
            if show:
                sys.stderr.write("\n")
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
    if not quiet:
        with contextlib.suppress(StateError, OSError, RuntimeError):
            for line in status_lines(asyncio.run(read_status(state))):
                print(line, file=sys.stderr)
    for code in (1, 130, 3):
        if code in codes:
            return code
    return 2 if any(codes) else 0


def _progress(state: str | None) -> None:
    """The live progress line of a --workers run on a terminal, from the shared state."""
    try:
        report = asyncio.run(read_status(state))
    except Exception:  # the state is busy or not there yet: skip this refresh
        return
    urls = report["urls"]
    live = sum(1 for w in report["workers"] if not w["left_at"])
    sys.stderr.write(
        f"\r{urls.get('fetched', 0)} fetched, {urls.get('failed', 0)} failed, "
        f"{urls.get('discovered', 0) + urls.get('retryable', 0)} queued, "
        f"{report['hosts_leased']} hosts leased, {live} workers\x1b[K")
    sys.stderr.flush()


async def read_status(state: str | None) -> dict[str, Any]:
    """The shared state's progress report."""
    if not state:
        raise StateError("status needs --state")
    if not is_postgres_url(state) and not os.path.exists(state):
        raise StateError(f"no crawl state at {state}")
    shared = await open_shared(state, worker_id())
    try:
        return await shared.status(time.time())
    finally:
        await shared.close()


def status_lines(report: dict[str, Any], now: float | None = None) -> list[str]:
    """`crawl status` as text."""
    now = time.time() if now is None else now
    urls = report["urls"]
    queued = urls.get("discovered", 0) + urls.get("retryable", 0)
    lines = [f"crawl: {urls.get('fetched', 0)} fetched, {urls.get('failed', 0)} failed, "
             f"{queued} queued, {urls.get('fetching', 0)} in flight; "
             f"{report['hosts']} hosts, {report['hosts_leased']} leased; "
             f"{len(report['workers'])} workers seen"]
    for w in report["workers"]:
        state = "left" if w["left_at"] else f"seen {max(0.0, now - w['seen']):.0f}s ago"
        lines.append(f"  {w['id']}: {w['pages']} pages, {w['errors']} errors, {state}")
    return lines


def status_main(argv: list[str]) -> int:
    """`crawl status --state STATE [--json]`."""
    p = argparse.ArgumentParser(prog="crawl status",
                                description="Print a crawl's progress across its workers.")
    p.add_argument("--state", required=True, metavar="DB_OR_URL",
                   help="the crawl state: a SQLite file or postgresql://USER@HOST/DB")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args = p.parse_args(argv)
    try:
        report = asyncio.run(read_status(args.state))
    except (StateError, OSError, RuntimeError) as exc:
        print(f"crawl status: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for line in status_lines(report):
            print(line)
    return 0
