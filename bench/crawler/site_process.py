"""Run the fixture site in its own process (so the server and the crawler under test do not share
a core), read its `ready` line, stop it with SIGTERM and load the request log it writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fixtures.site import RequestRecord


@dataclass
class SiteProcess:
    """A fixture-site server process; `requests` is filled in by `stop()`."""

    proc: subprocess.Popen[str]
    port: int
    seeds: list[str]
    records: Path
    requests: list[RequestRecord] | None = None

    def stop(self) -> list[RequestRecord]:
        """Stop the server and return every request it saw."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self.requests = [RequestRecord(**json.loads(line))
                         for line in self.records.read_text().splitlines()]
        return self.requests


def start_site(work: Path, *, hosts: int, pages: int, seed: int, features: str,
               crawl_delay: float = 0.1, latency: float = 0.0) -> SiteProcess:
    """Start `python -m fixtures.site serve` and wait until every host listens."""
    records = work / f"requests-{os.getpid()}-{len(list(work.glob('requests-*')))}.jsonl"
    cmd = [sys.executable, "-m", "fixtures.site", "serve", "--hosts", str(hosts), "--pages",
           str(pages), "--seed", str(seed), "--features", features, "--crawl-delay",
           str(crawl_delay), "--latency", str(latency), "--records", str(records)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "ready":
        proc.kill()
        raise RuntimeError(f"the fixture site did not start: {line}")
    return SiteProcess(proc, int(line[1]), line[2:], records)
