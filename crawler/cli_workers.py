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
import time
from collections.abc import Iterator
from typing import Any

from crawler.errors import StateError
from crawler.state import is_postgres_url, open_shared
from crawler.state.shared import worker_id

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


def run_workers(argv: list[str], workers: int, state: str | None, quiet: bool) -> int:
    """Run *workers* processes of `crawl ARGV --worker-id ...`; return the crawl's exit status."""
    with contextlib.ExitStack() as stack:
        assert state is not None
        if not is_postgres_url(state):
            stack.enter_context(crawl_lock(state))
        ids = [worker_id(index) for index in range(1, workers + 1)]
        asyncio.run(_prepare(state, ids))
        children = []
        for wid in ids:
            cmd = [sys.executable, "-m", "crawler", *argv, "--quiet", "--worker-id", wid]
            # own process group: a Ctrl-C at the terminal reaches us, and we pass it on once
            children.append(subprocess.Popen(cmd, start_new_session=True))

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
