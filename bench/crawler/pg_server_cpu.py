"""CPU seconds of a PostgreSQL server from /proc, for bench/crawler/pg_scale.py."""

from __future__ import annotations

import os
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on


def server_cpu(postmaster: int) -> float:
    """CPU seconds (user + system) of a PostgreSQL server: the postmaster, its reaped children
    (backends that exited) and its live children (backends, autovacuum, checkpointer, walwriter)."""
    total = 0
    own = _stat_fields(postmaster)
    if own is None:
        return float("nan")
    total += sum(int(v) for v in own[11:15])  # utime stime cutime cstime (fields 14-17)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is not None and int(fields[1]) == postmaster:  # ppid (field 4)
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def postmaster_pid(data_dir: Any) -> int:
    """The postmaster's pid from its data directory."""
    with open(os.path.join(data_dir, "postmaster.pid"), encoding="ascii") as f:
        return int(f.readline())
